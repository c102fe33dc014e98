"""Research scale end to end: capture and standalone HTML of SmolLM2-135M over >= 20k tokens.

Prints one JSON object. Sections (``--sections``, comma-separated; each is a function of this module
that returns a dict, so the layout half (issue 11) and the widget half add theirs the same way):

* ``capture``: SmolLM2 (30 layers x 9 heads) over ``--sentences`` demo sentences (720: ~20k
  tokens), streamed to a store once per ``--dtypes`` entry: seconds, tokens per second, store bytes,
  bytes per token and head (``Capture.bytes_per_token_head``), peak RSS of the capturing process;
  ``ratio_to_float32`` compares each dtype with float32 measured in the same run;
* ``stream``: MiniLM streamed over 1,000 and 8,000 sentences (``--stream-sizes``; the demo corpus
  repeated), each in a fresh process: peak RSS, store bytes; ``rss_ratio`` is the largest corpus's
  peak over the smallest's (1.0 = memory bounded by one batch, whatever the corpus);
* ``html``: ``save_html`` of the PCA layout of every head of the float16 capture: the default 20 MB
  budget, the same with one head whole (``full=``), and every point (``max_bytes=None``): seconds,
  bytes, points held, tokens per sampled head;
* ``synthetic`` (what CI runs, ``tests/test_bench_scale.py``): the same HTML rows on a capture made
  without a model (``Capture.from_arrays`` + save), fast, for the logic only.

``machine`` (platform, CPUs, memory) and ``load`` (``/proc/loadavg`` before and after) are recorded
with every run: this machine's speed varies with what else runs, so compare ratios within one run.

Run: ``.venv/bin/python bench/scale.py [--sections capture,stream,html] [--sentences 720]
[--scratch DIR] [--dtypes float32,float16,bfloat16]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np

import qkviz
from qkviz import export

SECTIONS = ("capture", "stream", "html", "synthetic")


# ---------------------------------------------------------------------------------------------
# helpers


def loadavg() -> list[float]:
    try:
        return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:  # not Linux
        return list(os.getloadavg())


def machine() -> dict[str, Any]:
    import psutil

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
    }


def folder_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def corpus(n: int) -> list[str]:
    """``n`` demo sentences (the corpus repeated, numbered past its end so every text differs)."""
    from qkviz.data import demo_sentences

    base = demo_sentences()
    return [base[i % len(base)] + ("" if i < len(base) else f" ({i // len(base)})") for i in range(n)]


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
sys.path.insert(0, {bench!r})
import scale, qkviz
texts = scale.corpus({n})
t0 = time.perf_counter()
cap = qkviz.capture({model!r}, texts, out={out!r}, dtype={dtype!r}, batch_size={batch_size}, progress=False)
dt = time.perf_counter() - t0
print(json.dumps({{"seconds": dt, "tokens": cap.n_tokens, "sequences": len(cap.sequences),
                  "bytes_per_token_head": cap.bytes_per_token_head,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def capture_in_child(model: str, n: int, out: pathlib.Path, dtype: str, batch_size: int = 16) -> dict[str, Any]:
    """Stream a capture in a fresh process; its seconds, tokens and peak RSS (the whole process)."""
    code = _CHILD.format(
        src=str(ROOT / "src"), bench=str(ROOT / "bench"), n=n, model=model, out=str(out), dtype=dtype,
        batch_size=batch_size,
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["store_bytes"] = folder_bytes(out)
    return row


# ---------------------------------------------------------------------------------------------
# sections


def capture_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for dtype in args.dtypes.split(","):
        out = scratch / f"smollm2-{args.sentences}-{dtype}.qkv"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        row = capture_in_child("smollm2", args.sentences, out, dtype)
        row["tokens_per_s"] = round(row["tokens"] / row["seconds"], 1)
        rows[dtype] = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
    if "float32" in rows:
        ref = rows["float32"]
        for row in rows.values():
            row["ratio_to_float32"] = {
                "store_bytes": round(row["store_bytes"] / ref["store_bytes"], 3),
                "seconds": round(row["seconds"] / ref["seconds"], 3),
            }
    return {"model": "smollm2", "sentences": args.sentences, "dtypes": rows}


def stream_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    rows = {}
    for n in (int(x) for x in args.stream_sizes.split(",")):
        out = scratch / f"minilm-stream-{n}.qkv"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        row = capture_in_child(args.stream_model, n, out, "float32")
        rows[str(n)] = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
    sizes = sorted(rows, key=int)
    return {
        "model": args.stream_model,
        "batch_size": 16,
        "runs": rows,
        "rss_ratio": round(rows[sizes[-1]]["peak_rss_mb"] / rows[sizes[0]]["peak_rss_mb"], 3),
        "token_ratio": round(rows[sizes[-1]]["tokens"] / rows[sizes[0]]["tokens"], 2),
    }


def html_rows(emb: qkviz.Embedding, folder: pathlib.Path, full: tuple[int, int]) -> dict[str, Any]:
    """``save_html`` with the default budget, with one head whole, and with every point."""
    variants = {
        "default (20 MB budget)": {},
        f"full=[{full}]": {"full": [full]},
        "every point (max_bytes=None)": {"max_bytes": None},
    }
    out = {}
    for name, kw in variants.items():
        page = export.save_html(emb, folder / "page.html", **kw)
        out[name] = {
            "seconds": round(page.seconds, 2),
            "bytes": page.size,
            "sampled": page.sampled,
            "points": page.points,
            "points_total": page.points_total,
            "tokens_per_sampled_head": page.tokens_per_sampled_head,
            "bytes_per_point_held": round(page.size / page.points, 2),
        }
    return out


def html_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    store = scratch / f"smollm2-{args.sentences}-float16.qkv"
    if not store.exists():
        capture_in_child("smollm2", args.sentences, store, "float16")
    cap = qkviz.load(store)
    t0 = time.perf_counter()
    emb = qkviz.embed(cap, method="pca", progress=False, cache=False)
    embed_s = time.perf_counter() - t0
    rows = html_rows(emb, scratch, (cap.layers[3], cap.heads[5 % len(cap.heads)]))
    return {
        "tokens": cap.n_tokens,
        "heads": len(cap.layers) * len(cap.heads),
        "points": 2 * cap.n_tokens * len(cap.layers) * len(cap.heads),
        "embed_pca_s": round(embed_s, 2),
        "exports": rows,
    }


def synthetic_store(
    folder: pathlib.Path, n_layers: int = 4, n_heads: int = 6, n_seqs: int = 600, d: int = 16
) -> pathlib.Path:
    """A large capture made without a model (structured random q/k), saved as a store."""
    import pandas as pd

    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 60, n_seqs)
    seq = np.repeat(np.arange(n_seqs), lengths).astype(np.int32)
    pos = np.concatenate([np.arange(k) for k in lengths]).astype(np.int32)
    words = np.array(["the", "a", "cat", "sat", "on", "mat", ".", "dog", "ran", "far"])
    tokens = pd.DataFrame({"seq": seq, "pos": pos, "token": words[rng.integers(0, len(words), seq.size)]})
    tokens["display"] = tokens["token"]
    n = len(tokens)
    base = rng.normal(size=(n, d)) + np.sin(pos[:, None] / 4.0)
    geometry = qkviz.HeadGeometry(
        layers=tuple(range(n_layers)), heads=tuple(range(n_heads)), n_heads=n_heads, n_kv_heads=n_heads,
        d_head=d, causal=True, scaling={la: d**-0.5 for la in range(n_layers)},
    )  # fmt: skip
    q, k = {}, {}
    for la in range(n_layers):
        for h in range(n_heads):
            r = np.linalg.qr(rng.normal(size=(d, d)))[0]
            q[(la, h)] = base @ r + 0.3 * rng.normal(size=(n, d))
            k[(la, h)] = 1.4 * base @ r + 0.3 * rng.normal(size=(n, d))
    cap = qkviz.Capture.from_arrays(q, k, tokens, geometry, model={"name": "synthetic"})
    return cap.save(folder / "synthetic.qkv")


def synthetic_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict[str, Any]:
    store = synthetic_store(scratch)
    cap = qkviz.load(store)
    emb = qkviz.embed(cap, method="pca", progress=False, cache=False)
    budget = int(getattr(args, "synthetic_budget", 1_500_000))
    page = export.save_html(emb, scratch / "synthetic.html", max_bytes=budget)
    whole = export.save_html(emb, scratch / "synthetic-whole.html", max_bytes=None)
    return {
        "tokens": cap.n_tokens,
        "heads": len(cap.layers) * len(cap.heads),
        "store_bytes": folder_bytes(store),
        "bytes_per_token_head": cap.bytes_per_token_head,
        "budget": budget,
        "page": {"bytes": page.size, "sampled": page.sampled, "points": page.points, "seconds": round(page.seconds, 3),
                 "tokens_per_sampled_head": page.tokens_per_sampled_head},
        "whole": {"bytes": whole.size, "points": whole.points, "seconds": round(whole.seconds, 3)},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    out: dict[str, Any] = {"bench": "scale", "machine": machine(), "load": {"before": loadavg()}}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = pathlib.Path(args.scratch) if args.scratch else pathlib.Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        for name in sections:
            t0 = time.perf_counter()
            out[name] = globals()[f"{name}_section"](args, scratch)
            out[name]["section_s"] = round(time.perf_counter() - t0, 1)
            out[name]["load_after"] = loadavg()
    out["load"]["after"] = loadavg()
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="capture,stream,html")
    ap.add_argument("--sentences", type=int, default=720, help="SmolLM2 demo sentences (720: ~20k tokens)")
    ap.add_argument("--dtypes", default="float32,float16", help="capture storage formats to compare")
    ap.add_argument("--stream-sizes", default="1000,8000", help="streamed corpus sizes (sentences)")
    ap.add_argument("--stream-model", default="minilm", help="model of the stream section")
    ap.add_argument("--scratch", help="folder for the stores (kept; default: a temporary folder)")
    return ap


def main() -> None:
    print(json.dumps(run(parser().parse_args()), indent=1))


if __name__ == "__main__":
    main()
