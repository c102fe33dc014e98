"""The writer process of ``test_crash.py``: imports qkviz once, then forks one child per trial.

Run as a script with a JSON setup argument; reads one JSON command per line on stdin and answers
one JSON line per command on stdout. A command names an operation and either a ``delay`` (the
child is SIGKILLed that many seconds after the fork, unless it finished first) or a ``kill_at``
(the child SIGKILLs itself just before its k-th file-system call: rename, replace, fsync, unlink,
rmtree, mkdir). Without either, the child runs to the end and the answer counts its calls.

Forking from one warm process keeps a trial at tens of milliseconds instead of the seconds an
interpreter needs to import torch; torch is limited to one thread before it runs anything, so the
children never inherit a half-initialised OpenMP pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import sys
import time
import traceback


def _own_tqdm_lock() -> None:
    """Give this child its own tqdm lock. tqdm guards every bar with a multiprocessing RLock made once
    per process tree, so forked children share it: a child SIGKILLed while making a progress bar
    (export makes one, hidden or not) would leave it held, and every later child would wait on it
    for ever. Forgetting the lock makes the next bar create a fresh one in this child."""
    from tqdm import std

    classes = [std.tqdm]
    while classes:
        cls = classes.pop()
        if "_lock" in vars(cls):
            delattr(cls, "_lock")
        classes.extend(cls.__subclasses__())
    if "mp_lock" in vars(std.TqdmDefaultWriteLock):
        del std.TqdmDefaultWriteLock.mp_lock
    std.TqdmDefaultWriteLock.th_lock = std.TRLock()


def main() -> None:
    import torch

    torch.set_num_threads(1)
    setup = json.loads(sys.argv[1])
    sys.path.insert(0, setup["tests"])
    import qkviz
    import qkviz.export as export
    from _models import tiny_bert

    model = tiny_bert()
    new_texts = setup["new_texts"]
    new_cap = qkviz.capture(model, new_texts, progress=False)
    new_emb = qkviz.embed(new_cap, method="pca", progress=False, cache=False)
    new_emb.method = "custom"  # tells it from the old embedding ("pca")
    page = export.to_html(new_emb, top_k=0)
    export.to_html = lambda *a, **k: page  # save_html's slow part done once, here

    def run(op: str, path: pathlib.Path) -> None:
        if op == "capture_save":
            new_cap.save(path)
        elif op == "embedding_save":
            new_emb.save(path)
        elif op == "html":
            qkviz.save_html(new_emb, path)
        elif op == "stream_new":
            qkviz.capture(model, new_texts, batch_size=1, progress=False, out=path)
        elif op == "stream_resume":
            qkviz.capture(model, new_texts, batch_size=1, progress=False, out=path, resume=True)
        elif op == "stream_overwrite":
            qkviz.capture(model, new_texts, batch_size=1, progress=False, out=path, overwrite=True)
        else:
            raise ValueError(op)

    def count_calls(kill_at: int | None) -> dict[str, int]:
        calls = {"n": 0}

        def wrap(mod, name):
            real = getattr(mod, name)

            def f(*a, **k):
                calls["n"] += 1
                if kill_at is not None and calls["n"] >= kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*a, **k)

            setattr(mod, name, f)

        for name in ("rename", "replace", "fsync", "unlink", "mkdir"):
            wrap(os, name)
        wrap(shutil, "rmtree")
        return calls

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        r, w = os.pipe()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: one write, then out without any clean-up
            os.close(r)
            _own_tqdm_lock()
            calls = count_calls(cmd.get("kill_at"))
            code = 0
            try:
                run(cmd["op"], pathlib.Path(cmd["path"]))
            except BaseException:
                traceback.print_exc()
                code = 1
            os.write(w, str(calls["n"]).encode())
            os._exit(code)
        os.close(w)
        if cmd.get("delay") is not None:
            time.sleep(cmd["delay"])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(r) as fh:
            calls = fh.read()
        print(
            json.dumps(
                {
                    "pid": pid,
                    "killed": os.WIFSIGNALED(status),
                    "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                    "calls": int(calls) if calls else None,
                    "seconds": time.perf_counter() - t0,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
