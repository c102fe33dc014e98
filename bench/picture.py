"""Cost of the static picture every displayed QKViz carries (``qkviz.export._picture.picture_png``).

For grids of 6 x 12, 12 x 12 and 24 x 16 heads (random clustered layouts), prints one JSON object
with, per grid: ``picture_s`` (the matrix alone) and ``focused_s`` (matrix + one head), the PNG's
``bytes``, and as a baseline measured in the same run ``state_s``: building the widget's state from
the embedding (``WidgetState.from_embedding``, which every ``QKViz(emb)`` pays). ``ratio`` =
picture_s / state_s, the share a display adds (minimum over repeats).

Run: ``.venv/bin/python bench/picture.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from qkviz import Embedding
from qkviz.export._picture import picture_png
from qkviz.wire import View, WidgetState


def _embedding(n_layers: int, n_heads: int, n_tokens: int, seed: int = 0) -> Embedding:
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(n_tokens // 50 + 1), 50)[:n_tokens]
    tokens = pd.DataFrame({"seq": seq, "pos": np.concatenate([np.arange(c) for c in np.bincount(seq)]),
                           "token": [f"t{i}" for i in range(n_tokens)]})  # fmt: skip
    xy = {}
    for la in range(n_layers):
        for he in range(n_heads):
            c = rng.normal(scale=0.3, size=(2 * n_tokens, 2))
            c[n_tokens:] += 0.4
            xy[(la, he)] = np.tanh(c).astype(np.float32)
    return Embedding.from_coords(xy, tokens)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {"machine": platform.machine(), "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "grids": []}
    for n_layers, n_heads, n_tokens in ((6, 12, 2_000), (12, 12, 5_000), (24, 16, 10_000)):
        emb = _embedding(n_layers, n_heads, n_tokens)
        st = WidgetState.from_embedding(emb)
        focus = View(layer=1, head=0)
        row = {
            "grid": f"{n_layers}x{n_heads}",
            "points": st.n_points,
            "state_s": _best(lambda emb=emb: WidgetState.from_embedding(emb), args.repeats),
            "picture_s": _best(lambda st=st: picture_png(st), args.repeats),
            "focused_s": _best(lambda st=st, focus=focus: picture_png(st, focus), args.repeats),
            "bytes": len(picture_png(st, focus)),
        }
        row["ratio"] = row["picture_s"] / row["state_s"]
        out["grids"].append(row)
    out["loadavg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
