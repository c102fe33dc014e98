"""The layout sections of ``bench/scale.py`` (issue 11): the layout curve from 6k to 96k tokens, and
SmolLM2 end to end. Run them through ``bench/scale.py --sections layout,smollm2``.

Each section follows ``scale.py``'s convention (``<name>_section(args, scratch) -> dict``;
``scale.py`` imports them and adds this module's options with :func:`add_arguments`):

* ``layout``: MiniLM, layer 2 (``--heads``, default all 12), captured once per size over the first
  sentences of the demo corpus followed by CPython's documentation sentences (``pydoc_data``; each
  sentence once) until ``--tokens`` (default 6k, 12k, 24k, 48k and 96k tokens; two points per token).
  Each ``--methods`` entry (default ``pca``, ``tsne``: the default layout, and ``tsne-previous``:
  the default before issue 11, on ``--previous-heads`` up to ``--previous-max`` tokens) embeds the heads with
  ``executor="serial"`` and no cache in a fresh process, after a warm-up embed of a small synthetic
  capture. Per size and method: wall seconds per head (each head timed by ``embed``'s callback), CPU
  seconds per head (every thread of the process), recall@5 and Spearman per head and their means,
  peak memory (the process's peak RSS, and how far the embed raised it above what loading the
  capture took), the threads in use. ``curve`` gathers the seconds per head by size, the growth per
  doubling of tokens, and each method's recall against PCA's on the same heads; ``goals`` checks
  issue 11's three.
* ``smollm2``: SmolLM2-135M over ``--e2e-sentences`` demo sentences (700: about 19.7k tokens, 270
  heads): ``capture`` to a store, then the default ``embed`` of every head with the default
  executor, in a fresh process: seconds of each stage and their sum (issue 11's goal: at most 6
  minutes).
* ``layout_synthetic`` (what CI runs, ``tests/test_bench_scale_layout.py``): the same rows on
  captures made without a model, small, in this process: for the logic only.

``scale.py`` records ``machine`` and ``load`` with every run, and each measurement records the load
average when it finished: this machine is shared and its speed varies, so read the ratios within
one run, and the CPU seconds beside the wall seconds.

Run: ``.venv/bin/python bench/scale.py --sections layout [--scratch DIR]
[--tokens 6000,12000,24000,48000,96000] [--methods pca,tsne,tsne-previous] [--heads 0,1]``.
This file runs alone only as the fresh process of one measurement (``--child``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np

#: What this module adds to ``bench/scale.py``'s sections.
SECTIONS = ("layout", "smollm2", "layout_synthetic")

#: ``embed`` parameters of each benchmarked method. ``tsne-previous`` is the default t-SNE before
#: issue 11 (cosine kNN with perplexity 30 by exact search, global top-15 q·k links, std-5 PCA start,
#: 40 iterations at exaggeration 2, openTSNE on one thread), kept to measure the change within one run.
METHODS: dict[str, dict[str, Any]] = {
    "pca": {"method": "pca"},
    "tsne": {"method": "tsne"},
    "tsne-previous": {
        "method": "tsne",
        "metric": "cosine",
        "perplexity": 30,
        "seq_keys": 0,
        "qk_neighbors": 15,
        "qk_weight": 0.3,
        "init_std": 5.0,
        "n_iter": 40,
        "theta": 0.9,
        "neighbors": "exact",
        "negative_gradient_method": "auto",
        "n_jobs": 1,
    },
    "umap": {"method": "umap"},
    "attention": {"method": "attention"},
}


# ---------------------------------------------------------------------------------------------
# helpers


def loadavg() -> list[float]:  # as scale.py's: this module also runs alone, as one measurement
    try:
        return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:  # not Linux
        return [round(x, 2) for x in os.getloadavg()]


def corpus() -> list[str]:
    """The demo sentences, then CPython's documentation sentences (stdlib, PSF licence), each once.

    Both sources repeat some sentences (81 of the demo corpus's 2,768; pydoc's short stock phrases):
    only the first of each is kept, so a larger size is more text, never the same text again.
    """
    import pydoc_data.topics as topics

    from qkviz.data import demo_sentences

    text = re.sub(r"\s+", " ", "\n".join(topics.topics.values()))
    pydoc = [s for s in re.split(r"(?<=[.!?])\s+", text) if 6 <= len(s.split()) <= 40 and s[:1].isupper()]
    return list(dict.fromkeys(demo_sentences() + pydoc))


def sentences_for(tokenizer: Any, texts: list[str], tokens: int) -> int:
    """How many of ``texts`` (from the first) hold at least ``tokens`` tokens with the special ones."""
    total = 0
    for i, t in enumerate(texts):
        total += len(tokenizer(t)["input_ids"])
        if total >= tokens:
            return i + 1
    raise SystemExit(f"the corpus holds only {total} tokens; ask for fewer than {tokens}")


def minilm_store(scratch: pathlib.Path, tokens: int, texts: list[str], tokenizer: Any) -> tuple[pathlib.Path, int]:
    """A MiniLM layer-2 capture of about ``tokens`` tokens in ``scratch``, made once and reused."""
    import hashlib

    import qkviz

    n = sentences_for(tokenizer, texts, tokens)
    # named by its text, so a changed corpus never reuses (or overwrites) another text's store
    digest = hashlib.sha256("\n".join(texts[:n]).encode()).hexdigest()[:8]
    out = scratch / f"minilm_L2_{n}s_{digest}"
    if (out / "meta.json").exists():
        try:
            if qkviz.load(out).sequences["text"].tolist() == texts[:n]:
                return out, n
        except Exception:  # an unfinished store: resume it
            pass
        qkviz.capture("minilm", texts[:n], layers=[2], batch_size=32, progress=False, out=out, resume=True)
        return out, n
    qkviz.capture("minilm", texts[:n], layers=[2], batch_size=32, progress=False, out=out)
    return out, n


def growth_per_doubling(tokens: list[int], seconds: list[float]) -> list[float | None]:
    """``(s₂/s₁)^(1 / log₂(t₂/t₁))`` between consecutive sizes: 2.0 is linear, 4.0 quadratic."""
    out: list[float | None] = []
    for (t1, s1), (t2, s2) in zip(zip(tokens, seconds), zip(tokens[1:], seconds[1:])):
        if s1 and s2 and t2 > t1:
            out.append(round((s2 / s1) ** (1.0 / math.log2(t2 / t1)), 3))
        else:
            out.append(None)
    return out


# ---------------------------------------------------------------------------------------------
# one measurement (run in a fresh process for the real sections)


def measure(store: str | pathlib.Path | Any, name: str, heads: list[int], layer: int = 2) -> dict[str, Any]:
    """Embed ``heads`` of ``layer`` with method ``name`` (serial, no cache) and time each head.

    ``store`` is a capture store path or a :class:`qkviz.Capture`.
    """
    import resource

    import torch

    import qkviz
    from qkviz.project._driver import warm_up

    kw = dict(METHODS[name])
    method = kw.pop("method")
    cap = qkviz.load(store) if isinstance(store, (str, os.PathLike)) else store
    # Imports and one-time costs (numba's compile for UMAP, openTSNE's first FFT plan) are paid
    # before the clock starts: a long run pays them once, not per head.
    warm_up(method)
    qkviz.embed(_synthetic_capture(n_seq=20, length=12, n_heads=1), executor="serial", cache=False,
                progress=False, **{**kw, "method": method})  # fmt: skip
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    marks: list[float] = []
    t0, c0 = time.perf_counter(), time.process_time()
    emb = qkviz.embed(cap, layers=[layer], heads=heads, executor="serial", cache=False, progress=False,
                      callback=lambda done, total, cell: marks.append(time.perf_counter()), **kw,
                      method=method)  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    f = emb.faithfulness(5)
    per_head = np.diff([t0, *marks]).tolist()
    try:
        import faiss

        faiss_threads = int(faiss.omp_get_max_threads())
    except ImportError:
        faiss_threads = None
    return {
        "tokens": int(cap.n_tokens),
        "points_per_head": 2 * int(cap.n_tokens),
        "heads": heads,
        "s_per_head": round(wall / len(heads), 3),
        "s_each_head": [round(s, 3) for s in per_head],
        "cpu_s_per_head": round(cpu / len(heads), 3),
        "recall5": [round(float(r), 4) for r in f["recall"]],
        "recall5_mean": round(float(f["recall"].mean()), 4),
        "chance_recall5_mean": round(float(f["chance_recall"].mean()), 5),
        # the rank correlation of layout distance with attention over all of a query's keys: the
        # default's in-sequence links are each query's top-5 keys, so recall@5 partly measures them
        "spearman": [round(float(r), 4) for r in f["spearman"]],
        "spearman_mean": round(float(f["spearman"].mean()), 4),
        "peak_rss_mb": round(peak_after, 1),
        "peak_rss_over_load_mb": round(max(0.0, peak_after - peak_before), 1),
        "threads": {"torch": torch.get_num_threads(), "faiss": faiss_threads},
        "params": {k: v for k, v in emb.params.items()},
        "load": loadavg(),
    }


def _measure_in_child(store: pathlib.Path, name: str, heads: list[int]) -> dict[str, Any]:
    job = json.dumps({"store": str(store), "name": name, "heads": heads})
    done = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", job],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{name} on {store}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _synthetic_capture(n_seq: int = 60, length: int = 20, d: int = 16, n_heads: int = 2, seed: int = 0):
    """A capture without a model: queries and keys share token types and a positional signal."""
    import pandas as pd

    import qkviz

    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(n_seq), length).astype(np.int32)
    n = len(seq)
    pos = np.tile(np.arange(length), n_seq).astype(np.int32)
    types = rng.integers(0, 12, n)
    pe = np.stack([np.sin(pos / (3 + i)) for i in range(d)], 1)
    words = np.array([f"w{i}" for i in range(12)])
    tokens = pd.DataFrame({"seq": seq, "pos": pos, "token": words[types]})
    tokens["display"] = tokens["token"]
    q, k = {}, {}
    for h in range(n_heads):
        cq, ck = rng.normal(size=(12, d)) * 2, rng.normal(size=(12, d)) * 2
        q[(0, h)] = (cq[types] + pe + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
        k[(0, h)] = (ck[types] + pe + 1.0 + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    geometry = qkviz.HeadGeometry(
        layers=(0,), heads=tuple(range(n_heads)), n_heads=n_heads, n_kv_heads=n_heads, d_head=d, causal=False,
        scaling={0: d**-0.5},
    )  # fmt: skip
    return qkviz.Capture.from_arrays(q, k, tokens, geometry, model={"name": "synthetic"})


def curve(rows: dict[str, dict[str, dict[str, Any]]], methods: list[str]) -> dict[str, Any]:
    """Seconds per head by size, growth per doubling, and recall against PCA on the same heads."""
    out: dict[str, Any] = {}
    for m in methods:
        sizes = [s for s in rows if m in rows[s]]
        if not sizes:
            continue
        tokens = [rows[s][m]["tokens"] for s in sizes]
        wall = [rows[s][m]["s_per_head"] for s in sizes]
        cpu = [rows[s][m]["cpu_s_per_head"] for s in sizes]
        entry: dict[str, Any] = {
            "tokens": tokens,
            "s_per_head": wall,
            "cpu_s_per_head": cpu,
            "growth_per_doubling": growth_per_doubling(tokens, wall),
            "cpu_growth_per_doubling": growth_per_doubling(tokens, cpu),
            "recall5_mean": [rows[s][m]["recall5_mean"] for s in sizes],
            "spearman_mean": [rows[s][m].get("spearman_mean") for s in sizes],
        }
        if m != "pca" and all("pca" in rows[s] for s in sizes):
            diff = [_minus_pca(rows[s][m], rows[s]["pca"]) for s in sizes]
            entry["recall5_minus_pca_mean"] = [round(float(d.mean()), 4) for d in diff]
            entry["heads_below_pca"] = [int((d < 0).sum()) for d in diff]
            entry["worst_head_minus_pca"] = [round(float(d.min()), 4) for d in diff]
            if all("spearman" in rows[s][m] for s in sizes):
                sd = [_minus_pca(rows[s][m], rows[s]["pca"], "spearman") for s in sizes]
                entry["spearman_minus_pca_mean"] = [round(float(d.mean()), 4) for d in sd]
                entry["heads_below_pca_spearman"] = [int((d < 0).sum()) for d in sd]
        out[m] = entry
    return out


def _minus_pca(row: dict[str, Any], pca: dict[str, Any], score: str = "recall5") -> np.ndarray:
    """``score`` of ``row`` minus PCA's, head by head (on the heads both measured)."""
    by_head = dict(zip(pca["heads"], pca[score]))
    return np.array([r - by_head[h] for h, r in zip(row["heads"], row[score])])


def goals(cv: dict[str, Any], method: str = "tsne", at: int = 48_000) -> dict[str, Any]:
    """Issue 11's goals for ``method``: seconds per head near ``at`` tokens, growth, recall vs PCA."""
    c = cv.get(method)
    if c is None:
        return {}
    near = int(np.argmin([abs(t - at) for t in c["tokens"]]))
    growth = [g for g in c["growth_per_doubling"] if g is not None]
    out: dict[str, Any] = {
        f"s_per_head_at_{c['tokens'][near]}_tokens": c["s_per_head"][near],
        "s_per_head_goal": 5.0,
        "max_growth_per_doubling": max(growth) if growth else None,
        "growth_goal": 2.3,
    }
    if "recall5_minus_pca_mean" in c:
        out["mean_recall_at_least_pca_at_every_size"] = all(d >= 0 for d in c["recall5_minus_pca_mean"])
        out["heads_below_pca_by_size"] = c["heads_below_pca"]
    if "spearman_minus_pca_mean" in c:
        out["mean_spearman_at_least_pca_at_every_size"] = all(d >= 0 for d in c["spearman_minus_pca_mean"])
    return out


# ---------------------------------------------------------------------------------------------
# sections


def layout_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    from qkviz.models import load_model

    tok = load_model("minilm").tokenizer
    texts = corpus()
    heads = [int(h) for h in str(getattr(args, "heads", "0,1,2,3,4,5,6,7,8,9,10,11")).split(",")]
    methods = [m for m in str(getattr(args, "methods", "pca,tsne,tsne-previous")).split(",") if m]
    previous_max = int(getattr(args, "previous_max", 48_000))
    previous_heads = [int(h) for h in str(getattr(args, "previous_heads", "0,1")).split(",")]
    rows: dict[str, dict[str, Any]] = {}
    for target in (int(t) for t in str(getattr(args, "tokens", "6000,12000,24000,48000,96000")).split(",")):
        store, n = minilm_store(scratch, target, texts, tok)
        label = f"{round(target / 1000)}k"
        rows[label] = {"sentences": n}
        for m in methods:
            if m == "tsne-previous" and target > previous_max:
                continue
            rows[label][m] = _measure_in_child(store, m, previous_heads if m == "tsne-previous" else heads)
            print(f"[layout] {label} {m}: {rows[label][m]['s_per_head']} s/head, recall@5 "
                  f"{rows[label][m]['recall5_mean']}", file=sys.stderr, flush=True)  # fmt: skip
    cv = curve({s: {m: r for m, r in v.items() if m != "sentences"} for s, v in rows.items()}, methods)
    return {"model": "minilm", "layer": 2, "heads": heads, "executor": "serial", "runs": rows, "curve": cv,
            "goals": goals(cv)}  # fmt: skip


_E2E = """
import json, sys, time
sys.path.insert(0, {src!r})
import qkviz
from qkviz.data import demo_sentences
t0 = time.perf_counter()
cap = qkviz.capture("smollm2", demo_sentences({n}), out={out!r}, progress=False)
t1 = time.perf_counter()
emb = qkviz.embed(cap, cache=False, progress=False)
t2 = time.perf_counter()
f = emb.faithfulness(5)
print(json.dumps({{"tokens": int(cap.n_tokens), "heads": len(emb.cells), "capture_s": round(t1 - t0, 1),
                  "embed_s": round(t2 - t1, 1), "total_s": round(t2 - t0, 1),
                  "embed_s_per_head": round((t2 - t1) / len(emb.cells), 3),
                  "recall5_mean": round(float(f["recall"].mean()), 4), "timings": emb.timings}}))
"""


def smollm2_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    import shutil

    n = int(getattr(args, "e2e_sentences", 700))
    out = scratch / f"smollm2-{n}-e2e.qkv"
    if out.exists():
        shutil.rmtree(out)
    code = _E2E.format(src=str(ROOT / "src"), n=n, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    row["goal_total_s"] = 360
    return {"model": "smollm2", "sentences": n, **row}


def layout_synthetic_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    methods = [m for m in str(getattr(args, "synthetic_methods", "pca,tsne")).split(",") if m]
    rows: dict[str, dict[str, Any]] = {}
    for n_seq in (int(x) for x in str(getattr(args, "synthetic_sizes", "50,100")).split(",")):
        cap = _synthetic_capture(n_seq=n_seq, length=20, n_heads=2)
        rows[str(cap.n_tokens)] = {m: measure(cap, m, [0, 1], layer=0) for m in methods}
    cv = curve(rows, methods)
    return {"model": "synthetic", "runs": rows, "curve": cv, "goals": goals(cv, at=max(int(t) for t in rows))}


# ---------------------------------------------------------------------------------------------


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """This module's options, on ``bench/scale.py``'s parser."""
    ap.add_argument("--tokens", default="6000,12000,24000,48000,96000", help="capture sizes of the layout curve")
    ap.add_argument("--methods", default="pca,tsne,tsne-previous", help=f"of {', '.join(METHODS)}")
    ap.add_argument("--heads", default="0,1,2,3,4,5,6,7,8,9,10,11", help="heads of MiniLM's layer 2")
    ap.add_argument("--previous-max", type=int, default=48_000, help="largest size for tsne-previous")
    ap.add_argument("--previous-heads", default="0,1", help="heads for tsne-previous (the issue's own two)")
    ap.add_argument("--e2e-sentences", type=int, default=700, help="smollm2 section: demo sentences (~19.7k tokens)")
    ap.add_argument("--synthetic-sizes", default="50,100", help="sequences of 20 tokens per synthetic size")
    ap.add_argument("--synthetic-methods", default="pca,tsne")


def main() -> None:
    ap = argparse.ArgumentParser(description="one measurement of bench/scale.py's layout section")
    ap.add_argument("--child", required=True, help='{"store": ..., "name": ..., "heads": [...]}')
    job = json.loads(ap.parse_args().child)
    print(json.dumps(measure(job["store"], job["name"], job["heads"])))


if __name__ == "__main__":
    main()
