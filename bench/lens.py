"""The research lens on real MiniLM heads, in one run: head scores, the similar-heads map, placement.

Prints one JSON object. The capture is MiniLM over the first 84 demo sentences (6 x 12 heads, about
2,400 tokens), with value vectors. In the same run:

* ``head_scores``: seconds for every head, with and without the value-weighted scores, and the ratio
  against a plain per-query Python loop over the same attention (the baseline: one head, scaled by
  the number of heads; both read attention through ``Capture.attention``);
* ``similar_heads_map``: seconds at 1,024 and 2,048 sampled queries;
* ``Embedding.place``: for each method (embed's defaults, layers 0 and 3, heads 2 and 7), one corpus
  sentence placed again: seconds per head, and how far its points move in the [-1, 1] box (median,
  90th percentile, max over queries and keys of every head); PCA must not move at all.

The machine is shared: the load average is recorded before and after.

    python bench/lens.py
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _naive_scores(cap, layer: int, head: int) -> float:
    """Every score of one head from its definition, one query at a time (the baseline)."""
    ids = cap.tokens["token_id"].to_numpy()
    special = cap.tokens["special"].to_numpy(bool)
    t0 = time.perf_counter()
    acc = []
    for s in range(len(cap.sequences)):
        off, n = cap._seq_rows(s)
        a = cap.attention(layer, head, s).astype(np.float64)
        t, sp = ids[off : off + n], special[off : off + n]
        for i in range(n):
            row = a[i]
            acc.append(
                (
                    row[i - 1] if i else 0.0,
                    row[0],
                    row[i],
                    row[sp].sum(),
                    -(row[row > 0] * np.log(row[row > 0])).sum(),
                    float((row * np.abs(np.arange(n) - i)).sum()),
                    sum(row[j + 1] for j in range(i) if t[j] == t[i]),
                )
            )
    return time.perf_counter() - t0


def main() -> None:
    import qkviz
    from qkviz.analysis import similar_heads_map
    from qkviz.data import demo_sentences

    out: dict = {"load_before": _load()}
    texts = demo_sentences(84)
    cap = qkviz.capture("minilm", texts, values=True, progress=False)
    out["tokens"] = cap.n_tokens
    n_heads = len(cap.layers) * len(cap.heads)

    t0 = time.perf_counter()
    cap.head_scores(value_weighted=False)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    cap.head_scores()
    with_vw = time.perf_counter() - t0
    naive = _naive_scores(cap, 2, 5) * n_heads
    out["head_scores"] = {
        "seconds_all_heads": round(plain, 3),
        "seconds_with_value_weighted": round(with_vw, 3),
        "naive_loop_seconds_estimate": round(naive, 2),
        "speedup_vs_naive": round(naive / plain, 1),
    }
    out["similar_heads_map"] = {}
    for q in (1024, 2048):
        t0 = time.perf_counter()
        similar_heads_map(cap, max_queries=q)
        out["similar_heads_map"][f"seconds_{q}_queries"] = round(time.perf_counter() - t0, 3)

    seq = 40
    off, n = cap._seq_rows(seq)
    out["place"] = {}
    for method in ("pca", "tsne", "umap", "attention"):
        emb = qkviz.embed(cap, method, layers=[0, 3], heads=[2, 7], progress=False, cache=False)
        t0 = time.perf_counter()
        placed = emb.place([texts[seq]])
        secs = time.perf_counter() - t0
        d = []
        for key in emb.cells:
            a, b = emb.coords(*key), placed.coords(*key)
            old = np.concatenate([a[off : off + n], a[cap.n_tokens + off : cap.n_tokens + off + n]])
            new = np.concatenate([b[:n], b[placed.n_tokens : placed.n_tokens + n]])
            d.append(np.linalg.norm(old - new, axis=1))
        dd = np.concatenate(d)
        out["place"][method] = {
            "seconds_per_head": round(secs / len(emb.cells), 3),
            "displacement_median": float(np.median(dd)),
            "displacement_p90": float(np.quantile(dd, 0.9)),
            "displacement_max": float(dd.max()),
        }
    out["load_after"] = _load()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
