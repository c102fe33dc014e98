"""Side-panel detail requests: time per request on real MiniLM heads, in one run.

Prints one JSON object. The capture is MiniLM over the first 84 demo sentences (6 x 12 heads,
about 2,400 tokens). In the same run it times, per head (all 72, fastest of ``--repeats``):

* ``sequence_detail`` of one sequence (what a click in the scatter asks for);
* ``aggregate_detail`` (every sequence of the head), against its floor: computing the attention of
  every sequence and nothing else (the ratio is the aggregation's overhead, same machine and load);
* the payload bytes of each (what travels to the browser).

    python bench/detail.py [--n 84] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _attention_only(cap, layer: int, head: int) -> None:
    """The floor of an aggregate: every sequence's attention, nothing else."""
    for s in cap.sequences["seq"].to_numpy():
        cap.attention(layer, head, int(s))


def _payload_bytes(d: dict) -> int:
    return sum(v.nbytes for v in d.values() if isinstance(v, np.ndarray))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=84, help="number of demo sentences")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import qkviz
    from qkviz import analysis as _detail
    from qkviz.data import demo_sentences

    load0 = os.getloadavg()[0]
    cap = qkviz.capture("minilm", demo_sentences(args.n), batch_size=16, progress=False)
    heads = [(la, h) for la in cap.layers for h in cap.heads]
    seq = int(np.argmax(cap.sequences["n_tokens"].to_numpy()))
    seq_t, agg_t, base_t = [], [], []
    for la, h in heads:
        # the lambdas run inside _best, within this iteration: binding la, h late is what we want
        seq_t.append(_best(lambda: _detail.sequence_detail(cap, la, h, seq), args.repeats))  # noqa: B023
        agg_t.append(_best(lambda: _detail.aggregate_detail(cap, la, h), args.repeats))  # noqa: B023
        base_t.append(_best(lambda: _attention_only(cap, la, h), args.repeats))  # noqa: B023
    print(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "load_before": load0,
                    "load_after": os.getloadavg()[0],
                },
                "capture": {
                    "sequences": int(len(cap.sequences)),
                    "tokens": int(len(cap.tokens)),
                    "heads": len(heads),
                    "longest_seq": int(cap.sequences["n_tokens"].max()),
                },
                "sequence_detail_ms": {
                    "median": 1e3 * float(np.median(seq_t)),
                    "max": 1e3 * float(np.max(seq_t)),
                    "payload_bytes": _payload_bytes(_detail.sequence_detail(cap, 0, 0, seq)),
                },
                "aggregate_detail_ms": {
                    "median": 1e3 * float(np.median(agg_t)),
                    "max": 1e3 * float(np.max(agg_t)),
                    "payload_bytes": _payload_bytes(_detail.aggregate_detail(cap, 0, 0)),
                },
                "attention_only_ms": {"median": 1e3 * float(np.median(base_t))},
                "aggregate_over_attention_only": float(np.median(agg_t) / np.median(base_t)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
