"""Unit and property tests of ``qkviz._fs``, the module that holds qkviz's data-safety rules.

``test_regressions.py`` and ``test_crash.py`` check the rules through the writers (``Capture.save``,
the HTML export...). This file calls the module's functions directly, on plain files and folders
built in ``tmp_path``, so that each rule is pinned down on its own:

* ``atomic_write_bytes`` leaves exactly the new bytes, through a new file (the old one is never
  written in place); it refuses a foreign file or an artefact of another kind, and checks again just
  before the rename; a write that fails part-way leaves the old file byte-identical and no temporary.
* ``kind_of`` recognises a store by the ``format`` its ``meta.json`` names and a page by the generator
  mark in its first bytes, and calls everything else foreign; ``check_target`` refuses foreign and
  other-kind artefacts whatever ``overwrite`` says, with a message that says what to do.
* ``replace_dir`` swaps a folder of the same kind in with ``renameat2(RENAME_EXCHANGE)`` (the
  destination is the old or the new store at every step), or with two renames where the call is
  missing or the file system refuses it; it refuses anything else. ``recover`` repairs a swap cut
  between the two renames and removes nothing foreign.
* ``clean_stale`` and ``clean_stale_in`` remove only temporaries named exactly as qkviz names them
  whose writer is gone (and, outside qkviz's own cache folders, whose content is qkviz's);
  hypothesis draws names near that pattern and checks that every look-alike survives.
* ``temp_sibling`` names are hidden, in the target's folder, distinct, and recognised as temporaries
  of their own target only. ``writing`` turns a write error into a ``StoreError``.

A writer is "gone" when its pid is that of a process that has exited (one is spawned here), or when
its temporary is more than a day old. Three tests pin bugs found while writing this file, now
fixed: a failed fallback swap left the old store hidden under ``.old``; a concurrent ``recover``
took a live swap of a week-old store apart; a pid past the C ``int`` range raised OverflowError.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkviz import _fs
from qkviz.errors import QKVizError, StoreError

from .conftest import snapshot

CAPTURE, EMBEDDING = "qkviz.capture", "qkviz.embedding"
#: The entry names a test store may hold (the real stores' patterns are longer; the rule is the same).
OWN = re.compile(r"^(meta\.json|part-\d{5}\.bin)$")
PAGE_BYTES = (
    _fs._PAGE_START + b' lang="en">\n<head>\n<meta charset="windows-1252">\n' + _fs.PAGE_MARK + b' 0.0">\n'
    b"<title>old</title>\n</head>\n<body>the old page</body>\n</html>\n"
)
NEW_PAGE = PAGE_BYTES.replace(b"old", b"new")
USER_PAGE = b"<!DOCTYPE html>\n<html><title>my own site</title></html>\n"

# derandomize: the same examples on every run, so CI is reproducible (as in test_fuzz.py); each
# example works in a fresh folder of its own, so the function-scoped tmp_path is safe to share
PROPS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# ---- helpers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited: temporaries named with it belong to a writer that is gone."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def make_store(path: pathlib.Path, fmt: str = CAPTURE, tag: str = "old") -> pathlib.Path:
    """A store folder of kind ``fmt``; ``tag`` tells which of two stores it is."""
    path.mkdir()
    (path / "meta.json").write_text(json.dumps({"format": fmt, "version": 1, "tag": tag}))
    (path / "part-00000.bin").write_bytes(tag.encode() * 64)
    return path


def tag_of(path: pathlib.Path) -> str | None:
    """The tag of the store at ``path``, or ``None`` when no complete store is there."""
    try:
        return json.loads((path / "meta.json").read_text())["tag"]
    except OSError:
        return None


def temp_name(name: str, pid: int, hex8: str = "0123abcd", suffix: str = "tmp") -> str:
    """A temporary of ``name`` exactly as qkviz names them (``temp_sibling`` draws the hex part)."""
    return f".{name}.qkviz-{pid}-{hex8}.{suffix}"


def age(path: pathlib.Path, days: float = 2) -> None:
    """Make ``path`` look ``days`` old (older than a day: stale, whatever its writer's pid says)."""
    t = time.time() - days * 86400
    os.utime(path, (t, t), follow_symlinks=False)


def fresh(tmp_path: pathlib.Path) -> pathlib.Path:
    """A new empty folder: one per hypothesis example."""
    return pathlib.Path(tempfile.mkdtemp(dir=tmp_path))


# ---- atomic_write_bytes -------------------------------------------------------------------------------


@PROPS
@given(contents=st.lists(st.binary(max_size=3000), min_size=1, max_size=4))
def test_atomic_write_leaves_exactly_the_last_bytes_and_no_temporary(tmp_path, contents):
    folder = fresh(tmp_path)
    target = folder / "blob.bin"
    for data in contents:
        _fs.atomic_write_bytes(target, data)
        assert target.read_bytes() == data
        assert os.listdir(folder) == ["blob.bin"]


def test_atomic_write_replaces_a_page_through_a_new_file(tmp_path):
    page = tmp_path / "report.html"
    page.write_bytes(PAGE_BYTES)
    # a hard link sees the old file's own bytes: a writer that truncated and rewrote the page in
    # place (losing it if cut half-way) would change what the link reads
    keep = tmp_path / "elsewhere"
    keep.mkdir()
    os.link(page, keep / "old.html")
    _fs.atomic_write_bytes(page, NEW_PAGE, kind=_fs.PAGE, what="page")
    assert page.read_bytes() == NEW_PAGE
    assert (keep / "old.html").read_bytes() == PAGE_BYTES
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "report.html"]


def _user_page(p):
    p.write_bytes(USER_PAGE)


def _mark_past_the_head(p):
    # the mark quoted far down a page of the user's (a blog post about qkviz) does not make it ours
    p.write_bytes(USER_PAGE + b" " * 2000 + b"<pre>" + _fs.PAGE_MARK + b' 1.0"&gt;</pre>')


def _user_folder(p):
    p.mkdir()
    (p / "index.html").write_bytes(USER_PAGE)


PAGE_REFUSALS = {
    "a page of the user's": (_user_page, ["not a qkviz page", "a file qkviz did not write", "Choose another path"]),
    "the mark past the head": (_mark_past_the_head, ["not a qkviz page", "Choose another path"]),
    "a folder of the user's": (_user_folder, ["not a qkviz page", "a folder qkviz did not write"]),
    "a capture": (make_store, ["it is a qkviz capture, not a page", "Choose another path"]),
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("existing", list(PAGE_REFUSALS))
def test_atomic_write_never_replaces_what_is_not_a_page(tmp_path, existing, overwrite):
    target = tmp_path / "report.html"
    make, words = PAGE_REFUSALS[existing]
    make(target)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as info:
        _fs.atomic_write_bytes(target, NEW_PAGE, kind=_fs.PAGE, what="page", overwrite=overwrite)
    assert isinstance(info.value, QKVizError) and info.value.path == target
    for w in words:
        assert w in str(info.value)
    assert snapshot(tmp_path) == before


def test_atomic_write_needs_overwrite_to_replace_a_page(tmp_path):
    page = tmp_path / "report.html"
    page.write_bytes(PAGE_BYTES)
    with pytest.raises(StoreError, match="pass overwrite=True"):
        _fs.atomic_write_bytes(page, NEW_PAGE, kind=_fs.PAGE, what="page", overwrite=False)
    assert page.read_bytes() == PAGE_BYTES and os.listdir(tmp_path) == ["report.html"]


class _DiskFull:
    """An open temporary that takes half of what is written, then fails as a full disk does."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.fh, name)


def _break(monkeypatch, where: str) -> type[BaseException]:
    """Make the write fail at ``where``; returns the exception the caller sees."""
    if where == "write":
        real_open = open

        def open_(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            return _DiskFull(fh) if "w" in mode else fh

        monkeypatch.setattr(_fs, "open", open_, raising=False)  # the module's `open`, not the builtin
        return StoreError

    def fail(*args, **kwargs):
        raise KeyboardInterrupt if where == "ctrl-c" else OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_fs.os, "replace" if where == "replace" else "fsync", fail)
    return KeyboardInterrupt if where == "ctrl-c" else StoreError  # Ctrl-C is not disguised as a write error


@pytest.mark.parametrize("where", ["write", "fsync", "replace", "ctrl-c"])
def test_a_write_that_fails_part_way_leaves_the_old_page_and_no_temporary(tmp_path, monkeypatch, where):
    page = tmp_path / "report.html"
    page.write_bytes(PAGE_BYTES)
    raised = _break(monkeypatch, where)
    with pytest.raises(raised) as info:
        _fs.atomic_write_bytes(page, NEW_PAGE, kind=_fs.PAGE, what="page")
    monkeypatch.undo()
    if raised is StoreError:  # a typed error that names the cause and says nothing was replaced
        assert isinstance(info.value.__cause__, OSError)
        assert "unchanged" in str(info.value) and info.value.__cause__.strerror in str(info.value)
    assert page.read_bytes() == PAGE_BYTES
    assert os.listdir(tmp_path) == ["report.html"]


def test_atomic_write_checks_the_target_again_just_before_the_rename(tmp_path, monkeypatch):
    """A page of the user's saved at the path while the export was writing is not replaced."""
    page = tmp_path / "report.html"
    real = os.fsync

    def fsync(fd):
        real(fd)
        if not page.exists():
            page.write_bytes(USER_PAGE)

    monkeypatch.setattr(_fs.os, "fsync", fsync)
    with pytest.raises(StoreError, match="not a qkviz page"):
        _fs.atomic_write_bytes(page, NEW_PAGE, kind=_fs.PAGE, what="page")
    monkeypatch.undo()
    assert page.read_bytes() == USER_PAGE and os.listdir(tmp_path) == ["report.html"]


# ---- kind_of and check_target -------------------------------------------------------------------------


def _folder_with_meta(raw: bytes):
    def make(p):
        p.mkdir()
        (p / "meta.json").write_bytes(raw)
        (p / "thesis.tex").write_text("chapter 1")

    return make


def _meta_only(fmt: str):
    def make(p):
        p.mkdir()
        (p / "meta.json").write_text(json.dumps({"format": fmt}))

    return make


def _link_to(make):
    def link(p):
        real = p.with_name("real-" + p.name)
        make(real)
        p.symlink_to(real)

    return link


KINDS = {
    "nothing": (lambda p: None, None),
    "a capture": (make_store, CAPTURE),
    "an embedding": (lambda p: make_store(p, EMBEDDING), EMBEDDING),
    # only the marker decides: a damaged capture is still a capture (and may be replaced by one)
    "a damaged capture": (_meta_only(CAPTURE), CAPTURE),
    "a kind of a later qkviz": (_meta_only("qkviz.layout"), "qkviz.layout"),
    "a page": (lambda p: p.write_bytes(PAGE_BYTES), _fs.PAGE),
    "a page cut after its mark": (lambda p: p.write_bytes(PAGE_BYTES[: PAGE_BYTES.index(b"qkviz") + 5]), _fs.PAGE),
    "a page of the user's": (_user_page, "foreign"),
    "the mark past the head": (_mark_past_the_head, "foreign"),
    "an empty file": (lambda p: p.write_bytes(b""), "foreign"),
    "an empty folder": (lambda p: p.mkdir(), "foreign"),
    "meta.json {}": (_folder_with_meta(b"{}"), "foreign"),
    "meta.json []": (_folder_with_meta(b"[]"), "foreign"),
    "meta.json not JSON": (_folder_with_meta(b"not json"), "foreign"),
    "meta.json not UTF-8": (_folder_with_meta(b'{"format": "qkviz.capture\xff"}'), "foreign"),
    "another program's format": (_folder_with_meta(b'{"format": "my.thesis"}'), "foreign"),
    "a format that is not a string": (_folder_with_meta(b'{"format": 3}'), "foreign"),
    "meta.json is a folder": (lambda p: (p.mkdir(), (p / "meta.json").mkdir()), "foreign"),
    # a link is never followed: replacing it would not replace what it points at
    "a link to a capture": (_link_to(make_store), "foreign"),
    "a link to a page": (_link_to(lambda p: p.write_bytes(PAGE_BYTES)), "foreign"),
    "a dangling link": (lambda p: p.symlink_to(p.with_name("gone")), "foreign"),
}


@pytest.mark.parametrize("what", list(KINDS))
def test_kind_of_reads_the_marker_and_calls_everything_else_foreign(tmp_path, what):
    make, expected = KINDS[what]
    target = tmp_path / "x"
    make(target)
    before = snapshot(tmp_path)
    assert _fs.kind_of(target) == expected
    assert _fs.kind_of(str(target)) == expected
    assert snapshot(tmp_path) == before  # looking changes nothing


@PROPS
@given(head=st.binary(max_size=1100), tail=st.binary(max_size=64), marked=st.booleans())
def test_a_file_is_a_page_only_when_the_mark_is_in_its_first_kilobyte(tmp_path, head, tail, marked):
    # the mark is drawn at every offset, across the 1024-byte boundary too: past it, a file that only
    # quotes the mark is foreign (never replaced), within it the file is a page
    data = head + (_fs.PAGE_MARK if marked else b"") + tail
    f = fresh(tmp_path) / "x.html"
    f.write_bytes(data)
    assert _fs.kind_of(f) == (_fs.PAGE if _fs.PAGE_MARK in data[:1024] else "foreign")


def test_check_target_allows_nothing_there_and_the_same_kind_with_overwrite(tmp_path):
    assert _fs.check_target(str(tmp_path / "new.qkv"), CAPTURE, what="capture", overwrite=False) == (
        tmp_path / "new.qkv"
    )
    store = make_store(tmp_path / "run.qkv")
    assert _fs.check_target(store, CAPTURE, what="capture", overwrite=True, own=OWN) == store
    page = tmp_path / "r.html"
    page.write_bytes(PAGE_BYTES)
    assert _fs.check_target(page, _fs.PAGE, what="page", overwrite=True) == page


TARGET_REFUSALS = {
    # (what is there, the writer's kind and name, words the message must hold)
    "a file of the user's": (_user_page, CAPTURE, "capture", ["is not a qkviz capture", "a file qkviz did not write"]),
    "a folder of the user's": (
        _folder_with_meta(b'{"format": "my.thesis"}'),
        CAPTURE,
        "capture",
        ["is not a qkviz capture", "a folder qkviz did not write"],
    ),
    "an embedding where a capture goes": (
        lambda p: make_store(p, EMBEDDING),
        CAPTURE,
        "capture",
        ["it is a qkviz embedding, not a capture", "a capture never replaces an embedding"],
    ),
    "a capture where an embedding goes": (
        make_store,
        EMBEDDING,
        "embedding",
        ["it is a qkviz capture, not an embedding", "an embedding never replaces a capture"],
    ),
    "a page where a capture goes": (
        lambda p: p.write_bytes(PAGE_BYTES),
        CAPTURE,
        "capture",
        ["it is a qkviz page, not a capture"],
    ),
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("existing", list(TARGET_REFUSALS))
def test_check_target_refuses_foreign_and_other_kinds_whatever_overwrite_says(tmp_path, existing, overwrite):
    make, kind, what, words = TARGET_REFUSALS[existing]
    target = tmp_path / "out"
    make(target)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as info:
        _fs.check_target(target, kind, what=what, overwrite=overwrite, own=OWN)
    message = str(info.value)
    for w in [*words, "Choose another path"]:  # what is wrong, and what to do
        assert w in message, message
    assert info.value.path == target
    assert snapshot(tmp_path) == before


def test_check_target_asks_for_overwrite_with_the_writers_own_hint(tmp_path):
    store = make_store(tmp_path / "run.qkv")
    with pytest.raises(StoreError, match="pass overwrite=True to replace it"):
        _fs.check_target(store, CAPTURE, what="capture", overwrite=False)
    with pytest.raises(StoreError, match="use --force to replace it"):
        _fs.check_target(store, CAPTURE, what="capture", overwrite=False, hint="use --force to replace it")


@pytest.mark.parametrize("n_mine", [1, 7])
def test_check_target_refuses_a_store_holding_files_of_the_user(tmp_path, n_mine):
    store = make_store(tmp_path / "run.qkv")
    mine = [f"notes-{i}.txt" for i in range(n_mine)]
    for name in mine:
        (store / name).write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(StoreError) as info:
        _fs.check_target(store, CAPTURE, what="capture", overwrite=True, own=OWN)
    message = str(info.value)
    assert all(name in message for name in mine[:5]) and not any(name in message for name in mine[5:])
    assert message.count(", ...") == (n_mine > 5)  # the list is cut, and says so
    assert "would delete them" in message and "Move them out first" in message
    assert snapshot(tmp_path) == before


# ---- replace_dir ---------------------------------------------------------------------------------------


def _failing_renameat2(err: int):
    """A renameat2 that fails with ``err``, as the C call does (through ctypes' saved errno)."""

    def fn(*args):
        ctypes.set_errno(err)
        return -1

    return fn


@pytest.fixture(params=["renameat2", "no renameat2", "a file system without the call"])
def swap(request, monkeypatch, tmp_path):
    """How replace_dir swaps: the Linux call, or the two-rename fallback (off Linux, or where the
    file system answers EINVAL)."""
    if request.param == "renameat2":
        a, b = tmp_path / ".probe-a", tmp_path / ".probe-b"
        a.mkdir()
        b.mkdir()
        supported = _fs._exchange(a, b)
        a.rmdir()
        b.rmdir()
        if not supported:
            pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    elif request.param == "no renameat2":
        monkeypatch.setattr(_fs, "_load_renameat2", lambda: False)  # what it gives off Linux
    else:
        monkeypatch.setattr(_fs, "_load_renameat2", lambda: _failing_renameat2(errno.EINVAL))
    return request.param


def _watch(monkeypatch, dest: pathlib.Path) -> list[str | None]:
    """Record which store is at ``dest`` before and after every rename, exchange and removal."""
    seen: list[str | None] = []

    def wrap(fn):
        def wrapped(*args, **kwargs):
            seen.append(tag_of(dest))
            out = fn(*args, **kwargs)
            seen.append(tag_of(dest))
            return out

        return wrapped

    monkeypatch.setattr(_fs.os, "rename", wrap(os.rename))
    monkeypatch.setattr(_fs, "_exchange", wrap(_fs._exchange))
    monkeypatch.setattr(_fs, "_remove", wrap(_fs._remove))
    return seen


def test_replace_dir_swaps_in_a_complete_store_of_the_same_kind(tmp_path, monkeypatch, swap):
    dest = make_store(tmp_path / "run.qkv", tag="old")
    (tmp_path / "notes.txt").write_text("mine")
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    seen = _watch(monkeypatch, dest)
    _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    monkeypatch.undo()
    assert tag_of(dest) == "new"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run.qkv"]  # the old store and every temporary gone
    assert (tmp_path / "notes.txt").read_text() == "mine"
    if swap == "renameat2":
        # one atomic exchange: at every step the destination is the old or the new store
        assert set(seen) == {"old", "new"}, seen
    else:
        # the two renames did run: between them nothing is at the destination (recover's case)
        assert None in seen and seen[-1] == "new", seen


def test_replace_dir_puts_a_store_where_there_was_none(tmp_path, swap):
    dest = tmp_path / "run.qkv"
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    assert tag_of(dest) == "new" and os.listdir(tmp_path) == ["run.qkv"]


def _store_with_notes(p):
    make_store(p)
    (p / "notes.txt").write_text("mine")


@pytest.mark.parametrize(
    ("existing", "words"),
    [
        (lambda p: make_store(p, EMBEDDING), "it is a qkviz embedding"),
        (_folder_with_meta(b"{}"), "a folder qkviz did not write"),
        (_user_page, "a file qkviz did not write"),
        (_store_with_notes, "notes.txt"),
    ],
    ids=["an embedding", "a folder of the user's", "a file of the user's", "a capture holding the user's notes"],
)
def test_replace_dir_refuses_what_it_may_not_replace_and_drops_its_temporary(tmp_path, existing, words):
    dest = tmp_path / "run.qkv"
    existing(dest)
    before = snapshot(tmp_path)
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    with pytest.raises(StoreError, match=re.escape(words)):
        _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    assert snapshot(tmp_path) == before  # untouched, and the new store's temporary is removed


def test_an_exchange_that_fails_leaves_the_old_store(tmp_path, monkeypatch):
    """Any error of renameat2 but "not supported" is a failed write, not a cue to fall back."""
    monkeypatch.setattr(_fs, "_load_renameat2", lambda: _failing_renameat2(errno.EACCES))
    dest = make_store(tmp_path / "run.qkv", tag="old")
    before = snapshot(tmp_path)
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    with pytest.raises(StoreError, match="unchanged"):
        _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    assert snapshot(tmp_path) == before


def test_exchange_swaps_two_folders(tmp_path):
    a, b = make_store(tmp_path / "a", tag="a"), make_store(tmp_path / "b", tag="b")
    if not _fs._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert (tag_of(a), tag_of(b)) == ("b", "a")
    with pytest.raises(OSError) as info:  # a real error is raised, not taken for "no such call"
        _fs._exchange(a, tmp_path / "missing")
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("failure", ["OSError", "KeyboardInterrupt"])
def test_a_fallback_swap_cut_after_its_first_rename_puts_the_old_store_back(tmp_path, monkeypatch, failure):
    """Without renameat2, replace_dir renames the old store to ``.old``, then the new one into place.
    When the second rename fails (an OSError: EIO, EDQUOT...) or Ctrl-C arrives between the two, the
    old store goes back to its path: the StoreError's "the previous capture ... is unchanged" holds,
    and the path is never left empty until the process exits (``recover`` leaves a live writer's
    swap alone)."""
    monkeypatch.setattr(_fs, "_load_renameat2", lambda: False)
    dest = make_store(tmp_path / "run.qkv", tag="old")
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    real = os.rename

    def rename(a, b):
        if pathlib.Path(b) == dest and pathlib.Path(a).name.endswith(".new"):  # the second rename only
            raise KeyboardInterrupt if failure == "KeyboardInterrupt" else OSError(errno.EIO, "Input/output error")
        real(a, b)

    monkeypatch.setattr(_fs.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt if failure == "KeyboardInterrupt" else StoreError):
        _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    monkeypatch.undo()
    assert tag_of(dest) == "old"  # as the error says: unchanged
    assert os.listdir(tmp_path) == ["run.qkv"]


# ---- recover -------------------------------------------------------------------------------------------


def test_recover_rolls_a_swap_cut_between_its_renames_forward(tmp_path, monkeypatch, dead_pid):
    """A writer (another process, since exited) killed between the two renames of the fallback: the
    next reader finds the new store at the path; the user's files, and a folder merely named like a
    leftover, are untouched."""
    dest = make_store(tmp_path / "run.qkv", tag="old")
    (tmp_path / "notes.txt").write_text("mine")
    lookalike = tmp_path / temp_name("run.qkv", dead_pid, "0badf00d", "old")
    lookalike.mkdir()
    (lookalike / "thesis.tex").write_text("keep")
    tmp = make_store(tmp_path / temp_name("run.qkv", dead_pid, "1234abcd", "tmp"), tag="new")

    class Killed(BaseException):
        pass

    real = os.rename

    def rename(a, b):
        real(a, b)
        if str(b).endswith(".old"):
            raise Killed  # stands in for SIGKILL between the two renames

    monkeypatch.setattr(_fs, "_load_renameat2", lambda: False)
    monkeypatch.setattr(_fs, "temp_sibling", lambda p, s="tmp": p.with_name(temp_name(p.name, dead_pid, "5678abcd", s)))
    monkeypatch.setattr(_fs.os, "rename", rename)
    monkeypatch.setattr(_fs, "_remove", lambda entry: None)  # a killed process cleans nothing up
    with pytest.raises(Killed):
        _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    monkeypatch.undo()
    assert not dest.exists()  # the cut: neither store at the path
    assert _fs.kind_of(dest) == CAPTURE  # every reader recovers first
    assert tag_of(dest) == "new"
    assert sorted(os.listdir(tmp_path)) == sorted(["notes.txt", "run.qkv", lookalike.name])
    assert (lookalike / "thesis.tex").read_text() == "keep"
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("left", "expected"),
    [(["old"], "old"), (["new"], "new"), (["old", "new"], "new")],
    ids=["a lone old store goes back", "a complete new store rolls forward", "the new one wins"],
)
@pytest.mark.parametrize("gone", ["dead pid", "a day old"])
def test_recover_restores_what_a_gone_writer_left(tmp_path, dead_pid, left, expected, gone):
    dest = tmp_path / "run.qkv"
    pid = dead_pid if gone == "dead pid" else os.getpid()
    for i, which in enumerate(left):
        d = make_store(tmp_path / temp_name("run.qkv", pid, f"{i:08x}", which), tag=which)
        if gone == "a day old":
            age(d)
    (tmp_path / "notes.txt").write_text("mine")
    _fs.recover(dest)
    assert tag_of(dest) == expected
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run.qkv"]  # the other copy, of the same kind, removed


@pytest.mark.parametrize("writer", ["this process", "another live process"])
def test_recover_leaves_the_swap_of_a_live_writer_alone(tmp_path, writer):
    pid = os.getpid() if writer == "this process" else os.getppid()
    make_store(tmp_path / temp_name("run.qkv", pid, "aaaaaaaa", "old"), tag="old")
    make_store(tmp_path / temp_name("run.qkv", pid, "bbbbbbbb", "new"), tag="new")
    before = snapshot(tmp_path)
    _fs.recover(tmp_path / "run.qkv")
    assert snapshot(tmp_path) == before


def test_a_reader_between_the_two_renames_leaves_a_live_swap_alone_however_old_the_store(tmp_path, monkeypatch):
    """The fallback's ``.old`` is the replaced store renamed, and a rename keeps its mtime: a store
    written last week would look abandoned (over a day old) to a reader that calls ``recover`` while
    the writer is between its two renames, and the reader would rename it back into place, failing
    the save. replace_dir touches the old store before renaming it, so the swap is left alone."""
    monkeypatch.setattr(_fs, "_load_renameat2", lambda: False)
    dest = make_store(tmp_path / "run.qkv", tag="old")
    age(dest, days=7)
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    real, seen = os.rename, []

    def rename(a, b):
        if pathlib.Path(b) == dest:  # the second rename: a reader comes by first
            before = snapshot(tmp_path)
            _fs.recover(dest)
            seen.append(snapshot(tmp_path) == before)
        real(a, b)

    monkeypatch.setattr(_fs.os, "rename", rename)
    _fs.replace_dir(tmp, dest, kind=CAPTURE, what="capture", own=OWN)
    monkeypatch.undo()
    assert seen == [True]
    assert tag_of(dest) == "new" and os.listdir(tmp_path) == ["run.qkv"]


@pytest.mark.parametrize("existing", ["a store", "an empty folder", "a file"])
def test_recover_never_replaces_what_is_at_the_path(tmp_path, dead_pid, existing):
    dest = tmp_path / "run.qkv"
    # an empty folder is the case a plain rename would replace (over a full one it fails)
    {"a store": lambda: make_store(dest, tag="current"), "an empty folder": dest.mkdir,
     "a file": lambda: dest.write_bytes(b"mine")}[existing]()  # fmt: skip
    make_store(tmp_path / temp_name("run.qkv", dead_pid, "aaaaaaaa", "new"), tag="new")
    make_store(tmp_path / temp_name("run.qkv", dead_pid, "bbbbbbbb", "old"), tag="old")
    before = snapshot(tmp_path)
    _fs.recover(dest)
    assert snapshot(tmp_path) == before


# ---- clean_stale and clean_stale_in -------------------------------------------------------------------


def _temp_store(p):
    make_store(p, tag="left over")


def _temp_store_with_thesis(p):
    make_store(p, tag="left over")
    (p / "thesis.tex").write_text("keep")


STALE = {
    # entry: (how to make it, clean_stale's arguments, removed when its writer is gone)
    "a store folder of ours": (_temp_store, {"own": OWN}, True),
    "a store folder holding a file of the user's": (_temp_store_with_thesis, {"own": OWN}, False),
    "a folder, no pattern to tell": (_temp_store, {}, False),
    "a page of ours": (lambda p: p.write_bytes(PAGE_BYTES), {"page": True}, True),
    "a page cut before its mark": (lambda p: p.write_bytes(_fs._PAGE_START[:9]), {"page": True}, True),
    "an empty page temporary": (lambda p: p.write_bytes(b""), {"page": True}, True),
    "a page of the user's": (_user_page, {"page": True}, False),
    "a page, but a store writer": (lambda p: p.write_bytes(PAGE_BYTES), {"own": OWN}, False),
    "a folder of the user's in a cache folder": (_temp_store_with_thesis, {"owned_folder": True}, True),
}


@pytest.mark.parametrize("writer", ["dead", "a day old", "this process", "another live process"])
@pytest.mark.parametrize("entry", list(STALE))
def test_clean_stale_removes_only_our_leftovers_of_gone_writers(tmp_path, dead_pid, entry, writer):
    make, kwargs, ours = STALE[entry]
    dest = tmp_path / "run.qkv"
    pid = {"dead": dead_pid, "another live process": os.getppid()}.get(writer, os.getpid())
    temp = tmp_path / temp_name("run.qkv", pid)
    make(temp)
    if writer == "a day old":  # pids are reused: a day-old temporary is stale whatever its pid says
        age(temp)
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    gone = writer in ("dead", "a day old")
    if gone and not ours:
        with pytest.warns(UserWarning, match=re.escape(temp.name)):
            _fs.clean_stale(dest, **kwargs)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a leftover that is removed, or not yet stale, is not mentioned
            _fs.clean_stale(dest, **kwargs)
    if gone and ours:
        before = {k: v for k, v in before.items() if k != temp.name and not k.startswith(temp.name + "/")}
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kwargs", [{"own": OWN}, {"owned_folder": True}], ids=["store writer", "cache folder"])
def test_a_link_named_like_a_leftover_never_costs_what_it_points_at(tmp_path, dead_pid, kwargs):
    mine = make_store(tmp_path / "my-store", tag="mine")  # every name in it matches OWN
    before = snapshot(mine)
    (tmp_path / temp_name("run.qkv", dead_pid)).symlink_to(mine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fs.clean_stale(tmp_path / "run.qkv", **kwargs)
        if "owned_folder" in kwargs:
            _fs.clean_stale_in(tmp_path)
    assert snapshot(mine) == before
    if "own" in kwargs:  # a link is not a folder of ours, whatever it points at: left in place
        assert (tmp_path / temp_name("run.qkv", dead_pid)).is_symlink()


# A name of exactly qkviz's pattern, cut into the parts a look-alike changes; each replacement breaks
# the pattern (another name, a missing dot, uppercase, 7 or 9 hex digits, another suffix...).
NAME = "run.qkv"
NEAR = {
    "dot": ["", "_", ".."],
    "name": ["run.qk", "run.qkvx", "Run.qkv", "run-qkv", "xrun.qkv", "run.qkv.qkv", "run.qkv "],
    "marker": [".qkvis-", ".QKVIZ-", "-qkviz-", ".qkviz_", "qkviz-", "."],
    "pid": ["", "-1", "12a", "1.5", " 12", "0x1f"],
    "dash": ["", "_", "--", "."],
    "hex": ["0123abc", "0123abcde", "0123ABCD", "0123abcg", "", "0123 abc"],
    "sep": ["", "-", "..", "_"],
    "suffix": ["", "tmp~", "TMP", "temp", "bak", "tmp.bak", "new1", "partial", "old.swp"],
}


def _parts(pid: int, hex8: str = "0123abcd", suffix: str = "tmp") -> dict[str, str]:
    return {"dot": ".", "name": NAME, "marker": ".qkviz-", "pid": str(pid), "dash": "-", "hex": hex8, "sep": ".",
            "suffix": suffix}  # fmt: skip


def _temp_of_any_target(near: dict[str, str], exact: dict[str, str]) -> bool:
    """Whether a look-alike is still a temporary of *some* target: only the target's name (or the dots
    before it) differs. ``clean_stale_in``, where the name alone decides, removes those by design."""
    return near["dot"] in (".", "..") and all(near[k] == exact[k] for k in exact if k not in ("dot", "name"))


def _ours_in_every_way(path: pathlib.Path, as_folder: bool) -> None:
    """Content that is qkviz's for every cleaner: only the name can tell a look-alike apart."""
    if as_folder:
        _temp_store(path)
    else:
        path.write_bytes(PAGE_BYTES)


def _clean_everything(folder: pathlib.Path, also_cache_cleaner: bool) -> None:
    """Every cleaner of ``NAME``'s leftovers, and ``clean_stale_in`` (every name) if asked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # look-alikes are warned about; the warnings are tested above
        _fs.clean_stale(folder / NAME, own=OWN, page=True)
        _fs.clean_stale(folder / NAME, owned_folder=True)
        if also_cache_cleaner:
            _fs.clean_stale_in(folder)


@pytest.mark.parametrize("as_folder", [False, True], ids=["files", "folders"])
def test_every_single_change_to_our_name_pattern_is_left_alone(tmp_path, dead_pid, as_folder):
    exact = _parts(dead_pid)
    nears = {
        "".join({**exact, key: value}.values()): _temp_of_any_target({**exact, key: value}, exact)
        for key, values in NEAR.items()
        for value in values
    }
    ours = "".join(exact.values())
    for also_cache_cleaner in (False, True):
        folder = fresh(tmp_path)
        # in a cache folder the name alone decides, so a temporary of another target goes too
        kept = sorted(n for n, of_any_target in nears.items() if not (also_cache_cleaner and of_any_target))
        for name in [*kept, ours]:
            _ours_in_every_way(folder / name, as_folder)
        before = snapshot(folder)
        _clean_everything(folder, also_cache_cleaner)
        # our leftover is gone (the setup does trigger a clean-up); every look-alike is untouched
        assert sorted(os.listdir(folder)) == kept
        assert snapshot(folder) == {k: v for k, v in before.items() if k != ours and not k.startswith(ours + "/")}


@st.composite
def near_names(draw, pid: int) -> tuple[str, str, bool]:
    """``(a name of exactly our pattern, a look-alike with one to three parts changed, whether the
    look-alike is a temporary of no target at all)``."""
    exact = _parts(
        pid, draw(st.text("0123456789abcdef", min_size=8, max_size=8)), draw(st.sampled_from(["tmp", "new", "old"]))
    )
    changed = draw(st.sets(st.sampled_from(list(NEAR)), min_size=1, max_size=3))
    near = {k: draw(st.sampled_from(NEAR[k])) if k in changed else v for k, v in exact.items()}
    return "".join(exact.values()), "".join(near.values()), not _temp_of_any_target(near, exact)


@PROPS
@given(data=st.data(), as_folder=st.booleans())
def test_only_names_of_exactly_our_pattern_are_cleaned(tmp_path, dead_pid, data, as_folder):
    exact, near, of_no_target = data.draw(near_names(dead_pid))
    folder = fresh(tmp_path)
    for name in (exact, near):
        _ours_in_every_way(folder / name, as_folder)
    keep = snapshot(folder / near) if as_folder else (folder / near).read_bytes()
    _clean_everything(folder, also_cache_cleaner=of_no_target)
    assert os.listdir(folder) == [near]  # our leftover is gone: the look-alike alone survives
    assert (snapshot(folder / near) if as_folder else (folder / near).read_bytes()) == keep


def test_clean_stale_in_removes_leftovers_of_gone_writers_of_any_name(tmp_path, dead_pid):
    cache = tmp_path / "layouts"
    cache.mkdir()
    stale = [temp_name("a.npz", dead_pid), temp_name("b.npz", os.getpid(), "aaaaaaaa")]
    live = [temp_name("c.npz", os.getpid()), temp_name("d.npz", os.getppid())]
    kept = ["a.npz", "notes.txt", stale[0] + ".bak", stale[0][1:], f".a.npz.qkviz-{dead_pid}-0123ABCD.tmp"]
    for name in stale + live + kept:
        (cache / name).write_bytes(b"x")
    age(cache / stale[1])  # this process is alive, but the temporary is days old
    make_store(cache / temp_name("model-x", dead_pid, suffix="new"), tag="half converted")
    (cache / "model-x").mkdir()
    _fs.clean_stale_in(cache)
    assert sorted(os.listdir(cache)) == sorted(["model-x", *live, *kept])
    _fs.clean_stale_in(tmp_path / "no-such-folder")  # a cache folder not made yet: nothing to do


def test_a_pid_no_process_can_have_is_a_writer_that_is_gone(tmp_path):
    """A pid past the C ``int`` range (a name like ``.run.qkv.qkviz-99999999999-0123abcd.tmp``, which
    the pattern's ``\\d+`` accepts) makes ``os.kill`` raise OverflowError: no process has it, so its
    writer is gone, and nothing but a QKVizError may escape ``clean_stale``, ``clean_stale_in`` and
    ``recover`` (every save to that path, and ``kind_of`` / ``qkviz.load`` of a missing path)."""
    dest = tmp_path / "run.qkv"
    make_store(tmp_path / temp_name("run.qkv", 2**40, suffix="new"), tag="new")
    (tmp_path / temp_name("page.html", 2**40)).write_bytes(PAGE_BYTES)
    _fs.kind_of(dest)
    _fs.clean_stale(dest, own=OWN)
    _fs.clean_stale_in(tmp_path)
    # nothing of the store is lost: it is at the path or still under its hidden name
    assert tag_of(dest) == "new" or any(tag_of(p) == "new" for p in tmp_path.iterdir())


# ---- temp_sibling --------------------------------------------------------------------------------------

NAMES = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=24).filter(
    lambda s: s not in (".", "..")
)


@PROPS
@given(name=NAMES, other=NAMES, suffix=st.sampled_from(["tmp", "new", "old"]))
def test_temp_siblings_are_hidden_distinct_and_recognised_for_their_own_target_only(tmp_path, name, other, suffix):
    folder = fresh(tmp_path)
    target = folder / name
    temps = [_fs.temp_sibling(target, suffix) for _ in range(8)]
    assert len(set(temps)) == len(temps)
    for t in temps:
        assert t.parent == folder and t != target
        assert t.name.startswith(f".{name}.qkviz-{os.getpid()}-") and t.name.endswith(f".{suffix}")
    target.write_bytes(b"the target itself")
    for t in temps:
        t.write_bytes(b"x")
        age(t)  # stale: this process is alive, but the temporaries are days old
    if other != name:
        # the temporaries of one target are never taken for those of another
        _fs.clean_stale(folder / other, owned_folder=True)
        assert len(os.listdir(folder)) == 1 + len(temps)
    _fs.clean_stale(target, owned_folder=True)
    assert os.listdir(folder) == [name]  # every one recognised as a temporary of its target


# ---- writing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EROFS, "Read-only file system"), ValueError("a bug of the writer"), KeyboardInterrupt()],
    ids=["a write error", "another error", "ctrl-c"],
)
def test_writing_drops_the_temporary_and_types_only_write_errors(tmp_path, error):
    dest = make_store(tmp_path / "run.qkv")
    tmp = make_store(_fs.temp_sibling(dest), tag="new")
    expected = StoreError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected) as info, _fs.writing(dest, "capture", cleanup=tmp):
        raise error
    assert os.listdir(tmp_path) == ["run.qkv"]
    if expected is StoreError:
        message = str(info.value)
        assert "Read-only file system" in message and "the previous capture" in message and "unchanged" in message
        assert info.value.__cause__ is error
    else:
        assert info.value is error  # not disguised as a write failure
