"""Which pool runs the heads of ``qkviz.embed``: serial, spawn processes, loky processes, threads.

Prints one JSON object. MiniLM over the first 84 demo sentences (about 4,900 points per head), the
default method (or ``--method``), cache off; the same heads through each option, ``--repeat`` rounds,
the order rotated every round because the load of a shared machine drifts within a round. Reports
seconds per round, the speed-up over serial (median), whether every option gives the coordinates of
the serial run, and the load average before and after.

The default executor (``executor=None``) is the thread pool for methods whose heavy code releases the
GIL and loky's reusable process pool for the others (UMAP); see ``qkviz.project._driver``.

    python bench/executors.py [--heads 8] [--repeat 5] [--method tsne]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import statistics
import time

import numpy as np


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--method", default="tsne")
    ap.add_argument("--sentences", type=int, default=84)
    args = ap.parse_args()

    from joblib.externals.loky import get_reusable_executor

    import qkviz
    from qkviz.data import demo_sentences
    from qkviz.project import _driver

    load_before = _load()
    cap = qkviz.capture("minilm", demo_sentences(args.sentences), progress=False)
    cells = [(la, h) for la in cap.layers for h in cap.heads][: args.heads]
    layers, heads = sorted({c[0] for c in cells}), sorted({c[1] for c in cells})
    workers = min(os.cpu_count() or 1, len(cells))
    init = {"initializer": _driver._worker_init, "initargs": (args.method, max(1, (os.cpu_count() or 1) // workers))}

    def spawn():
        return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), **init), True

    def loky_fresh():
        get_reusable_executor(max_workers=workers).shutdown(wait=True, kill_workers=True)
        return get_reusable_executor(max_workers=workers, **init), False

    options = {
        "serial": lambda: ("serial", False),
        "spawn_pool": spawn,  # the default before issue 15 (re-imports __main__ in every worker)
        "loky_fresh": loky_fresh,
        "loky_reused": lambda: (get_reusable_executor(max_workers=workers, **init), False),
        "threads": lambda: (cf.ThreadPoolExecutor(workers), True),
    }
    seconds: dict[str, list[float]] = {k: [] for k in options}
    coords: dict[str, np.ndarray] = {}
    for rep in range(args.repeat):
        names = list(options)
        names = names[rep % len(names) :] + names[: rep % len(names)]
        for name in names:
            t0 = time.perf_counter()
            ex, owned = options[name]()
            emb = qkviz.embed(cap, args.method, layers=layers, heads=heads, executor=ex, cache=False, progress=False)
            if owned:
                ex.shutdown(wait=True)
            seconds[name].append(round(time.perf_counter() - t0, 2))
            coords.setdefault(name, np.concatenate([emb.coords(*c) for c in emb.cells]))
    serial = statistics.median(seconds["serial"])
    print(
        json.dumps(
            {
                "method": args.method,
                "heads": len(cells),
                "points_per_head": 2 * cap.n_tokens,
                "workers": workers,
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": _load(),
                "seconds": seconds,
                "speedup_vs_serial_median": {k: round(serial / statistics.median(v), 2) for k, v in seconds.items()},
                "same_coords_as_serial": {k: bool(np.array_equal(c, coords["serial"])) for k, c in coords.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
