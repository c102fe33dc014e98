"""Joint Q-K embedding: time and faithfulness of every method on real MiniLM heads, in one run.

Prints one JSON object. The capture is MiniLM over the first 84 demo sentences (all 6 x 12 heads,
about 2,400 tokens, so about 4,900 points per head). In the same run:

* PCA, t-SNE, UMAP and the attention-guided layout through ``qkviz.embed`` with its defaults (cache
  off): total seconds, seconds per head (grid throughput) and mean recall@5 / Spearman / chance;
* PCA on 144 head clouds (the 72 heads twice), to check "144 heads x 5,000 points < 5 s";
* AttentionViz's recipe (keys translated, scikit-learn ``TSNE(perplexity=50, max_iter=300,
  metric="cosine")``) and openTSNE's default (Euclidean, translated + scaled) on a *sample* of heads
  (named in the output), with qkviz's default t-SNE scored on the same sample;
* PCA with and without translation / scaling and with each metric, on all heads;
* umap-learn's numba first-call compile cost, measured in a fresh process;
* the cache: a second ``embed`` call with the same inputs.

The machine is shared: the load average is recorded before and after, and the speed-up of the
default t-SNE grid over AttentionViz's recipe is a ratio of timings taken in the same run.

    python bench/embed.py [--quick] [--sample 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _calibrate() -> float:
    """Seconds for ten 1200x1200 float32 matmuls on 2 threads (about 0.13 s on a quiet machine)."""
    import torch

    a = torch.randn(1200, 1200)
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    return round(time.perf_counter() - t, 3)


def _faith(emb) -> dict:
    f = emb.faithfulness(5)
    return {
        "recall@5": round(float(f["recall"].mean()), 4),
        "spearman": round(float(f["spearman"].mean()), 4),
        "chance_recall@5": round(float(f["chance_recall"].mean()), 4),
    }


def _embed_row(cap, method, keys, **kw) -> dict:
    import qkviz

    layers = sorted({k[0] for k in keys})
    heads = sorted({k[1] for k in keys})
    t = time.perf_counter()
    emb = qkviz.embed(cap, method, layers=layers, heads=heads, cache=False, progress=False, **kw)
    total = time.perf_counter() - t
    n = len(emb.cells)
    return {
        "heads": n,
        "total_s": round(total, 2),
        "per_head_s": round(total / n, 3),
        **_faith(emb),
        "params": {k: v for k, v in emb.params.items() if k != "random_state"},
    }, emb


def _per_head(cap, method, keys, **kw) -> dict:
    """One embed call per (layer, head), serially: time and recall@5 on exactly these heads."""
    import qkviz

    times, recalls = [], []
    for layer, head in keys:
        t = time.perf_counter()
        emb = qkviz.embed(
            cap, method, layers=[layer], heads=[head], cache=False, progress=False, executor="serial", **kw
        )
        times.append(time.perf_counter() - t)
        recalls.append(float(emb.faithfulness(5)["recall"].iloc[0]))
    return {
        "heads": len(keys),
        "per_head_s": round(float(np.mean(times)), 3),
        "recall@5": round(float(np.mean(recalls)), 4),
        "recall@5_per_head": [round(r, 3) for r in recalls],
    }


def _recipe_sample(cap, sample) -> dict:
    """AttentionViz's t-SNE (scikit-learn) and openTSNE's default, head by head on the sample."""
    from openTSNE import TSNE as OTSNE
    from sklearn.manifold import TSNE

    from qkviz.joint import normalize
    from qkviz.metrics import head_faithfulness

    seq = cap.tokens["seq"].to_numpy()
    out = {}
    for name in ("attentionviz_recipe", "opentsne_default_euclidean"):
        times, recalls = [], []
        heads = sample if name == "attentionviz_recipe" else sample[:2]  # a slow anchor: 2 heads
        for layer, head in heads:
            q, k = cap.q(layer, head), cap.k(layer, head)
            t = time.perf_counter()
            if name == "attentionviz_recipe":
                qn, kn, _ = normalize(q, k, translate=True, scale=None)
                y = TSNE(2, perplexity=50, max_iter=300, metric="cosine", n_jobs=2, random_state=0).fit_transform(
                    np.vstack([qn, kn])
                )
            else:
                qn, kn, _ = normalize(q, k, translate=True, scale="auto")
                y = np.asarray(OTSNE(n_jobs=2, random_state=0).fit(np.vstack([qn, kn])))
            times.append(time.perf_counter() - t)
            recalls.append(head_faithfulness(y, q, k, seq, cap.scaling[layer], k=5).recall)
        out[name] = {
            "heads": len(heads),
            "per_head_s": round(float(np.mean(times)), 3),
            "recall@5": round(float(np.mean(recalls)), 4),
            "recall@5_per_head": [round(r, 3) for r in recalls],
        }
    return out


def _pca_144(cap, keys) -> dict:
    from qkviz.joint import dot_lift, normalize
    from qkviz.project import PCA

    clouds = []
    for layer, head in keys:
        qn, kn, _ = normalize(cap.q(layer, head), cap.k(layer, head))
        clouds.append(dot_lift(qn, kn))
    clouds = (clouds * 2)[:144]
    PCA(2).fit_transform(clouds[0])  # warm torch
    runs = []
    for _ in range(3):  # best of 3: the machine is shared
        t = time.perf_counter()
        for x in clouds:
            PCA(2).fit_transform(x)
        runs.append(time.perf_counter() - t)
    return {
        "heads": len(clouds),
        "points_per_head": int(clouds[0].shape[0]),
        "total_s_best_of_3": round(min(runs), 3),
        "total_s_runs": [round(r, 3) for r in runs],
        "calibration_matmul_s": _calibrate(),
    }


_JIT_SNIPPET = r"""
import json, sys, time, numpy as np
from qkviz.joint import normalize
from qkviz.project import UMAP
d = np.load(sys.argv[1])
x = np.vstack(normalize(d["q"], d["k"])[:2])
t = time.perf_counter(); import umap; imp = time.perf_counter() - t
t = time.perf_counter(); UMAP(2).fit(x); first = time.perf_counter() - t
t = time.perf_counter(); UMAP(2).fit(x); second = time.perf_counter() - t
print(json.dumps({"import_s": round(imp, 2), "first_fit_s": round(first, 2),
                  "second_fit_s": round(second, 2), "compile_s": round(first - second, 2)}))
"""


def _umap_jit(cap, key) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "head.npz")
        np.savez(f, q=cap.q(*key), k=cap.k(*key))
        r = subprocess.run([sys.executable, "-c", _JIT_SNIPPET, f], capture_output=True, text=True, timeout=600)
    if r.returncode:
        return {"error": r.stderr[-500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 heads, 2 sampled for the recipe")
    ap.add_argument("--sample", type=int, default=6, help="heads sampled for the slow references")
    ap.add_argument("--methods", default="pca,tsne,umap,attention")
    args = ap.parse_args()

    import qkviz
    from qkviz.data import demo_sentences

    report: dict = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "load_avg_start": _load(),
        "calibration_matmul_s_start": _calibrate(),
    }
    t = time.perf_counter()
    cap = qkviz.capture("minilm", demo_sentences(84), progress=False)
    report["capture"] = {
        "sentences": len(cap.sequences),
        "tokens": int(cap.n_tokens),
        "points_per_head": 2 * int(cap.n_tokens),
        "seconds": round(time.perf_counter() - t, 2),
    }
    keys = [(l, h) for l in cap.layers for h in cap.heads]
    if args.quick:
        keys = [(l, h) for l in (0, 3) for h in (0, 1, 2, 3)]
        args.sample = min(args.sample, 2)
    rng = np.random.default_rng(0)
    sample = [keys[i] for i in sorted(rng.choice(len(keys), size=min(args.sample, len(keys)), replace=False))]
    report["grid_heads"] = len(keys)
    report["sample_heads"] = [list(k) for k in sample]
    methods = args.methods.split(",")

    rows = {}
    if "pca" in methods:
        rows["pca"], _ = _embed_row(cap, "pca", keys)
        rows["pca_144_clouds"] = _pca_144(cap, keys)
        variants = {}
        for metric in ("dot", "euclidean"):
            for translate in (True, False):
                for scale in ("auto", None):
                    r, _ = _embed_row(cap, "pca", keys, metric=metric, translate=translate, scale=scale)
                    variants[f"metric={metric},translate={translate},scale={scale}"] = r["recall@5"]
        rows["pca_variants_recall@5"] = variants
    if "tsne" in methods:
        rows["tsne"], emb = _embed_row(cap, "tsne", keys)
        # the same default settings, only on the sampled heads: compare with the recipe head for head
        rows["tsne_on_sample"] = _per_head(cap, "tsne", sample)
        rows.update(_recipe_sample(cap, sample))
        rows["speedup_default_tsne_grid_vs_attentionviz_recipe"] = round(
            rows["attentionviz_recipe"]["per_head_s"] / rows["tsne"]["per_head_s"], 2
        )
        with tempfile.TemporaryDirectory() as tmp:
            a = time.perf_counter()
            qkviz.embed(cap, "tsne", layers=[0], heads=[0, 1], cache=tmp, progress=False)
            first = time.perf_counter() - a
            a = time.perf_counter()
            e2 = qkviz.embed(cap, "tsne", layers=[0], heads=[0, 1], cache=tmp, progress=False)
            second = time.perf_counter() - a
        rows["cache"] = {
            "heads": 2,
            "first_s": round(first, 2),
            "second_s": round(second, 3),
            "second_per_head_s": round(second / 2, 3),
            "all_hits": e2.timings["heads_cached"] == 2,
        }
    if "umap" in methods:
        rows["umap_numba_compile_fresh_process"] = _umap_jit(cap, keys[0])
        rows["umap"], _ = _embed_row(cap, "umap", keys)
    if "attention" in methods:
        att_keys = keys if args.quick else keys[::3]
        rows["attention"], _ = _embed_row(cap, "attention", att_keys)
        if not args.quick:
            rows["attention"]["note"] = "every third head of the grid (24 heads)"
    report["results"] = rows
    report["load_avg_end"] = _load()
    report["calibration_matmul_s_end"] = _calibrate()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
