"""`qkviz demo` stage by stage: load, capture, embed and export seconds, CPU time and HTML size.

Prints one JSON object. Each method runs the real demo command (``qkviz demo -n N --method M``) in
a fresh Python process with an empty layout cache, so every head is computed (a second demo run
with the same inputs reads the cache and skips the embed). In the same report:

* per method: seconds of each stage (the command's own stage timer), wall and CPU seconds of the
  whole run (CPU includes the embed's pool workers), embed seconds per head, the HTML size;
* per method, when ``--executor`` lists several: the embed stage under each ``qkviz.embed``
  executor (``pool``: the default local process pool, one worker per core; ``serial``: in-process);
* the load average before and after each run: the machine is shared, and on a loaded machine wall
  times stretch while CPU seconds do not; ``idle_estimate_s`` divides the CPU seconds by the cores.

    python bench/cli_demo.py                         # PCA and the default t-SNE, 300 sentences
    python bench/cli_demo.py --methods pca -n 50     # quick
    python bench/cli_demo.py --methods tsne --executor pool,serial
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _one(method: str, n: int, executor: str, out: str) -> dict:
    """Run ``qkviz demo`` in this process and return its stage timings (called in a child)."""
    from qkviz import cli

    args = cli.build_parser().parse_args(["demo", "-n", str(n), "--method", method, "-o", out, "-q"])
    if executor != "pool":
        import functools

        import qkviz

        real = qkviz.embed

        @functools.wraps(real)  # keeps the signature the command reads its defaults from
        def embed(*a, **k):
            return real(*a, **{**k, "executor": executor})

        qkviz.embed = embed
    rep = cli._Reporter(quiet=True)
    t0 = time.perf_counter()
    args.func(args, rep)
    wall = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return {
        "stages_s": {k: round(v, 2) for k, v in rep.timings.items()},
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "html_bytes": os.path.getsize(out),
    }


def _run(method: str, n: int, executor: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="qkviz-bench-demo-") as tmp:
        env = {**os.environ, "QKVIZ_CACHE_DIR": tmp, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        out = os.path.join(tmp, "demo.html")
        before = _load()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", method, str(n), executor, out],
            env=env,
            capture_output=True,
            text=True,
            check=False,  # a failed run is reported, not raised
        )
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    heads = 72  # MiniLM: 6 layers x 12 heads
    row["embed_per_head_s"] = round(row["stages_s"]["embed"] / heads, 3)
    row["html_mb"] = round(row["html_bytes"] / 1e6, 2)
    row["idle_estimate_s"] = round(row["cpu_s"] / (os.cpu_count() or 1), 1)
    row["load_before"], row["load_after"] = before, _load()
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, n, executor, out = sys.argv[2:6]
        print(json.dumps(_one(method, int(n), executor, out)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="pca,tsne", help="comma-separated (default: %(default)s)")
    ap.add_argument("-n", "--sentences", type=int, default=300, help="demo sentences (default: %(default)s)")
    ap.add_argument(
        "--executor",
        default="pool",
        help="comma-separated embed executors: pool (the default), serial (default: %(default)s)",
    )
    args = ap.parse_args()
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sentences": args.sentences,
        "runs": {},
    }
    for method in args.methods.split(","):
        for executor in args.executor.split(","):
            report["runs"][f"{method}/{executor}"] = _run(method, args.sentences, executor)
            print(json.dumps({f"{method}/{executor}": report["runs"][f"{method}/{executor}"]}), file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
