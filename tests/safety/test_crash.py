"""Crash consistency: SIGKILL a writer at random moments, and at every file-system call.

For each writer — ``Capture.save`` over an old capture, a streaming capture into a new folder and
over an old capture (``overwrite=True``), ``Embedding.save`` over an old embedding, and the HTML
export over an old page — a child process forked from one warm writer process
(``_crash_zygote.py``) is killed either after a random delay within the write's own duration, or
just before its k-th rename / replace / fsync / unlink / mkdir / rmtree, for every k. Afterwards:

* the old or the new artefact loads, never neither (a new folder may be absent, or a partial
  capture that resumes to the full one);
* a file the user keeps beside it, and the template the old artefact came from, are untouched;
* the next write of the same artefact leaves no hidden temporary behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import warnings

import pytest

import qkviz

from .conftest import snapshot

ROOT = pathlib.Path(__file__).parents[2]
OLD_TEXTS = ["The old capture.", "It was here first.", "Keep it safe."]
NEW_TEXTS = ["The new capture replaces it.", "Only once complete.", "A third line.", "And a fourth."]
RANDOM_TRIALS = 12  # per writer; 5 writers -> 60 random kills, plus one kill per file-system call

OPS = {
    # op: (name of the artefact in the folder, what is there before)
    "capture_save": ("run.qkv", "capture"),
    "stream_new": ("run.qkv", None),
    "stream_overwrite": ("run.qkv", "capture"),
    "embedding_save": ("run.qke", "embedding"),
    "html": ("report.html", "page"),
}


class Writer:
    """Talks to the zygote: one JSON command line, one JSON answer line."""

    def __init__(self, tmp: pathlib.Path):
        setup = {"tests": str(ROOT / "tests"), "new_texts": NEW_TEXTS}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
        self.log = open(tmp / "zygote.log", "w")  # noqa: SIM115 (open for the writer's lifetime)
        self.proc = subprocess.Popen(
            [sys.executable, str(pathlib.Path(__file__).with_name("_crash_zygote.py")), json.dumps(setup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )  # fmt: skip
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def __call__(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the writer process died"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Old artefacts in a template folder, the writer process, and the new page's bytes."""
    from _models import tiny_bert

    tmp = tmp_path_factory.mktemp("crash")
    template = tmp / "template"
    template.mkdir()
    old_cap = qkviz.capture(tiny_bert(), OLD_TEXTS, progress=False)
    old_cap.save(template / "run.qkv")
    old_emb = qkviz.embed(old_cap, method="pca", progress=False, cache=False)
    old_emb.save(template / "run.qke")
    qkviz.save_html(old_emb, template / "report.html", top_k=0)
    (template / "notes.txt").write_text("the user's own file, beside the artefacts")
    writer = Writer(tmp)
    yield {"tmp": tmp, "template": template, "writer": writer, "model": tiny_bert()}
    writer.close()


def _trial_dir(world, op: str, i: int) -> pathlib.Path:
    d = world["tmp"] / f"{op}-{i}"
    d.mkdir()
    name, before = OPS[op]
    if before is not None:
        src = world["template"] / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, d / name)
    shutil.copy2(world["template"] / "notes.txt", d / "notes.txt")
    return d


def _state(op: str, path: pathlib.Path) -> str:
    """``"old"``, ``"new"``, ``"absent"`` or ``"partial"``; fails when nothing loads."""
    if op == "html":
        data = path.read_bytes()
        if data == (pathlib.Path(path).parents[1] / "template" / "report.html").read_bytes():
            return "old"
        assert b"qkviz" in data[:400] and data.rstrip().endswith(b"</html>"), "a torn page"
        return "new"
    if not path.exists():
        return "absent"
    if op == "embedding_save":
        emb = qkviz.Embedding.load(path, capture=None)
        return {"pca": "old", "custom": "new"}[emb.method]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap = qkviz.load(path)
    texts = cap.sequences["text"].tolist()
    if texts == OLD_TEXTS:
        return "old"
    assert texts == NEW_TEXTS[: len(texts)], texts
    partial = any("partial" in str(w.message) for w in caught)
    return "partial" if partial else "new"


def _check(world, op: str, d: pathlib.Path, result: dict) -> str:
    name, before = OPS[op]
    path = d / name
    try:
        state = _state(op, path)
    except qkviz.StoreError as e:
        if op == "stream_new":  # killed before its first batch: a store with no batch yet
            assert "no finished batch" in str(e), e
            state = "empty"
        else:
            raise AssertionError(f"{op}: neither the old nor the new artefact loads ({e}); {result}") from e
    if before is not None:
        assert state in ("old", "new"), (op, state, result)
    else:
        assert state in ("absent", "empty", "partial", "new"), (op, state, result)
    assert (d / "notes.txt").read_text() == "the user's own file, beside the artefacts"
    return state


def _follow_up(world, op: str, d: pathlib.Path, state: str) -> None:
    """The next write of the same artefact completes and leaves no hidden temporary behind."""
    name, _ = OPS[op]
    if op == "stream_new":
        if state in ("partial", "empty"):
            r = world["writer"](op="stream_resume", path=str(d / name))
        elif state == "absent":
            r = world["writer"](op="stream_new", path=str(d / name))
        else:
            return
    else:
        r = world["writer"](op=op, path=str(d / name))
    assert r["exit"] == 0, (op, state, r, (world["tmp"] / "zygote.log").read_text()[-2000:])
    assert _state(op, d / name) == "new"
    hidden = sorted(p.name for p in d.iterdir() if p.name.startswith("."))
    assert hidden == [], (op, state, hidden)
    if (d / name).is_dir():
        assert not [p.name for p in (d / name).iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("op", list(OPS))
def test_sigkill_at_random_moments(world, op):
    template = snapshot(world["template"])
    calib = world["writer"](op=op, path=str(_trial_dir(world, op, 1000) / OPS[op][0]))
    assert calib["exit"] == 0, (world["tmp"] / "zygote.log").read_text()[-2000:]
    rng = random.Random(f"{op}-15")
    states = []
    for i in range(RANDOM_TRIALS):
        d = _trial_dir(world, op, i)
        r = world["writer"](op=op, path=str(d / OPS[op][0]), delay=rng.uniform(0, 1.2 * calib["seconds"]))
        state = _check(world, op, d, r)
        states.append((state, r["killed"]))
        _follow_up(world, op, d, state)
    assert snapshot(world["template"]) == template
    # the kills did land during the writes (not all before, not all after)
    assert any(killed for _, killed in states), states


@pytest.mark.parametrize("op", list(OPS))
def test_sigkill_before_every_file_system_call(world, op):
    d = _trial_dir(world, op, 2000)
    full = world["writer"](op=op, path=str(d / OPS[op][0]))
    assert full["exit"] == 0 and full["calls"] > 0
    seen = set()
    for k in range(1, full["calls"] + 1):
        d = _trial_dir(world, op, 3000 + k)
        r = world["writer"](op=op, path=str(d / OPS[op][0]), kill_at=k)
        assert r["killed"], (k, r)
        seen.add(_check(world, op, d, r))
        _follow_up(world, op, d, _check(world, op, d, r))
    if OPS[op][1] is not None:
        assert seen == {"old", "new"} or seen == {"old"}, seen  # "new" needs a kill after the swap
