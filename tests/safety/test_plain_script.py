"""Item 14: a plain script (no ``if __name__ == "__main__":`` guard) runs ``qkviz.embed`` with its
defaults as a notebook does: its top runs once, and the heads still run in parallel."""

from __future__ import annotations

import concurrent.futures as cf
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).parents[2]

SCRIPT = """
import sys
print("TOP OF SCRIPT", flush=True)
from _models import tiny_bert
import qkviz
from qkviz.data import demo_sentences
cap = qkviz.capture(tiny_bert(), demo_sentences(6), progress=False)
emb = qkviz.embed(cap, {method}progress=False, cache=False)
print("DONE", len(emb.cells), flush=True)
"""


def _run_script(tmp_path, method_arg: str) -> subprocess.CompletedProcess:
    script = tmp_path / "analysis.py"  # a file: spawn pools re-import a script's file, not -c code
    script.write_text(textwrap.dedent(SCRIPT.format(method=method_arg)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)  # fmt: skip


def test_plain_script_with_the_default_method_runs_its_top_once(tmp_path):
    proc = _run_script(tmp_path, "")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("TOP OF SCRIPT") == 1
    assert "DONE 8" in proc.stdout


@pytest.mark.slow
def test_plain_script_with_umap_runs_its_top_once(tmp_path):
    proc = _run_script(tmp_path, "method='umap', ")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("TOP OF SCRIPT") == 1
    assert "DONE 8" in proc.stdout


def test_the_default_executor_follows_the_gil():
    """Threads where the heavy code releases the GIL; loky's process pool (never re-importing
    ``__main__``) where it does not; several workers either way."""
    from qkviz.project._driver import _executor_for

    ex, owned, workers = _executor_for(None, 8, "tsne")
    try:
        assert isinstance(ex, cf.ThreadPoolExecutor) and owned
        assert workers == min(os.cpu_count() or 1, 8)
    finally:
        ex.shutdown()
    ex, owned, workers = _executor_for(None, 8, "umap")
    assert type(ex).__module__.startswith("joblib.externals.loky") and not owned
    assert _executor_for(None, 8, "pca")[2] == 1  # milliseconds a head: inline


def test_threads_give_the_same_layouts_as_serial(tiny_capture):
    import numpy as np

    import qkviz

    a = qkviz.embed(tiny_capture, progress=False, cache=False, executor="serial")
    b = qkviz.embed(tiny_capture, progress=False, cache=False)  # threads
    for cell in a.cells:
        np.testing.assert_array_equal(a.coords(*cell), b.coords(*cell))


def test_a_store_saved_again_at_the_same_path_is_reopened(tmp_path, tiny_capture):
    """Workers and threads cache opened stores by path: a new store at that path is a new key."""
    import qkviz
    from qkviz.data import demo_sentences

    p = tiny_capture.save(tmp_path / "run.qkv")
    qkviz.embed(qkviz.load(p), progress=False, cache=False)
    other = qkviz.capture(__import__("_models").tiny_bert(1), demo_sentences(9)[3:], progress=False)
    other.save(p)
    emb = qkviz.embed(qkviz.load(p), progress=False, cache=False)
    assert emb.n_tokens == other.n_tokens
