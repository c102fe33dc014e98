"""Every subcommand against the ways a shell user gets it wrong: exit 1 with one line, no traceback.

Fast: the saved tiny capture (2 layers x 4 heads, random weights) stands in for a real run, and the
output and input checks happen before any model or capture is loaded (the ``no_heavy_work`` guard
fails the test if one is).
"""

from __future__ import annotations

import functools
import inspect
import sys

import pytest

import qkviz
from qkviz import cli
from qkviz.errors import InputError, QKVizError


def run(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, command, fragment):
    assert code == 1
    assert out == ""  # stdout is for result paths only
    assert err.count("\n") == 1, err  # one line: no stage chatter, no traceback
    assert err.startswith(f"qkviz {command}: error: "), err
    assert fragment in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_run(tiny_capture, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-tiny") / "tiny.qkv"
    tiny_capture.save(path)
    return path


@pytest.fixture
def files(tmp_path):
    """A folder with the usual suspects: a file where a folder is expected, empty inputs, one text."""
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "empty.txt").write_text("\n   \n")
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "one.txt").write_text("One short line.\n")
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Fail the test if the command gets as far as loading a model, a capture or embedding."""

    def forbidden(name):
        def fail(*args, **kwargs):
            pytest.fail(f"qkviz.{name} called: the error should have been caught before")

        return fail

    for name in ("load_model", "capture", "embed", "load"):
        monkeypatch.setattr(qkviz, name, forbidden(name), raising=False)


# --- unwritable outputs: caught before the slow stages -----------------------------------------

UNWRITABLE = [
    # (argv with {d} for the folder, fragment)
    (["demo", "-o", "{d}/afile/demo.html"], "afile is a file, not a folder"),
    (["demo", "-o", "{d}/missing/demo.html"], "the folder {d}/missing does not exist"),
    (["demo", "-o", "{d}/out"], "it is a folder; name the file"),
    (["demo", "--save-capture", "{d}/afile/run.qkv", "-o", "{d}/d.html"], "afile is a file"),
    (["capture", "minilm", "{d}/one.txt", "-o", "{d}/afile/run.qkv"], "afile is a file, not a folder"),
    (["capture", "minilm", "{d}/one.txt", "-o", "{d}/missing/run.qkv"], "does not exist"),
    (["embed", "{run}", "-o", "{d}/afile/run.qke"], "afile is a file, not a folder"),
    (["embed", "{run}", "-o", "{d}/out"], "exists and is not a qkviz embedding"),
    (["html", "{run}", "-o", "{d}/afile/run.html"], "afile is a file, not a folder"),
    (["html", "{run}", "-o", "{d}/missing/run.html"], "does not exist"),
    (["html", "{run}", "-o", "{d}/out"], "it is a folder"),
]


@pytest.mark.parametrize("argv, fragment", UNWRITABLE, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_unwritable_output_fails_first(capsys, files, tiny_run, no_heavy_work, argv, fragment):
    argv = [a.format(d=files, run=tiny_run) for a in argv]
    code, out, err = run(capsys, *argv)
    assert_one_line_error(code, out, err, argv[0], fragment.format(d=files))
    assert "cannot write" in err


def test_unwritable_folder(capsys, files, tiny_run, no_heavy_work, monkeypatch):
    import os

    ro = files / "ro"
    ro.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes into read-only folders: let access() say what it says to users
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
    code, out, err = run(capsys, "html", tiny_run, "-o", ro / "x.html")
    assert_one_line_error(code, out, err, "html", "no permission to write")


# --- missing, empty and corrupt inputs ------------------------------------------------------------

MISSING_OR_EMPTY = [
    (["capture", "minilm", "{d}/nothing.txt", "-o", "{d}/r.qkv"], "nothing.txt: no such file"),
    (["capture", "minilm", "{d}/empty.txt", "-o", "{d}/r.qkv"], "holds no text"),
    (["capture", "minilm", "{d}/empty.jsonl", "-o", "{d}/r.qkv"], "holds no records"),
    (["embed", "{d}/nothing.qkv"], "nothing.qkv: no such file"),
    (["html", "{d}/nothing.qkv", "-o", "{d}/x.html"], "nothing.qkv: no such file"),
    (["info", "{d}/nothing.qkv"], "nothing.qkv: no such file"),
]


@pytest.mark.parametrize("argv, fragment", MISSING_OR_EMPTY, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_missing_or_empty_inputs(capsys, files, no_heavy_work, argv, fragment):
    argv = [a.format(d=files) for a in argv]
    assert_one_line_error(*run(capsys, *argv), argv[0], fragment)


def _corrupt(kind, tiny_run, d):
    import shutil

    if kind == "garbage file":
        (d / "run.qkv").write_bytes(b"\x00garbage")
    elif kind == "empty folder":
        (d / "run.qkv").mkdir()
    else:
        shutil.copytree(tiny_run, d / "run.qkv")
        if kind == "broken meta.json":
            (d / "run.qkv" / "meta.json").write_text('{"format": ')
        else:  # "truncated vectors"
            part = next((d / "run.qkv").glob("*.safetensors"))
            part.write_bytes(part.read_bytes()[:100])
    return d / "run.qkv"


CORRUPT = {
    "garbage file": "not a qkviz capture",
    "empty folder": "not a qkviz capture",
    "broken meta.json": "truncated or corrupted",
    "truncated vectors": "truncated or was modified",
}


@pytest.mark.parametrize("command", ["embed", "html", "info"])
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_capture(capsys, files, tiny_run, monkeypatch, command, kind):
    monkeypatch.setenv("QKVIZ_CACHE_DIR", str(files / "cache"))
    path = _corrupt(kind, tiny_run, files)
    argv = {"embed": ["embed", path, "--method", "pca", "-o", files / "x.qke"],
            "html": ["html", path, "--method", "pca", "-o", files / "x.html"],
            "info": ["info", path]}[command]  # fmt: skip
    code, out, err = run(capsys, *argv, "-q")
    assert_one_line_error(code, out, err, command, CORRUPT[kind])
    assert not (files / "x.html").exists() and not (files / "x.qke").exists()


@pytest.mark.parametrize("argv", [["capture", "no-such-model", "{d}/one.txt", "-o", "{d}/r.qkv"],
                                  ["demo", "--model", "no-such-model", "-n", "2", "-o", "{d}/d.html"]])  # fmt: skip
def test_unknown_model_is_one_line(capsys, files, argv):
    argv = [a.format(d=files) for a in argv]
    code, out, err = run(capsys, *argv, "-q")
    assert_one_line_error(code, out, err, argv[0], "'no-such-model'")
    assert "minilm" in err  # the message lists the offline models that do work
    assert not (files / "r.qkv").exists() and not (files / "d.html").exists()


# --- --debug: the traceback, for every subcommand -------------------------------------------------

DEBUG = [
    ["demo", "-o", "{d}/afile/d.html"],
    ["capture", "minilm", "{d}/empty.txt", "-o", "{d}/r.qkv"],
    ["embed", "{d}/nothing.qkv"],
    ["html", "{d}/nothing.qkv", "-o", "{d}/x.html"],
    ["info", "{d}/nothing.qkv"],
]


@pytest.mark.parametrize("argv", DEBUG, ids=lambda a: a[0])
def test_debug_raises_the_real_exception(capsys, files, no_heavy_work, argv):
    argv = [a.format(d=files) for a in argv]
    with pytest.raises(InputError):
        cli.main(argv + ["--debug"])
    assert run(capsys, *argv)[0] == 1  # and without --debug, the exit code


def test_messages_are_one_line():
    multi = QKVizError("could not load 'x' (OSError: We couldn't connect.\nCheck your connection)")
    assert cli._message(multi) == "could not load 'x' (OSError: We couldn't connect. Check your connection)"
    assert (
        cli._message(FileNotFoundError(2, "No such file or directory", "a.txt")) == "a.txt: No such file or directory"
    )


# --- the happy path on the tiny run: stage lines, sizes, no progress bars in a pipe -------------


def test_embed_html_info_on_the_tiny_run(capsys, tmp_path, tiny_run, monkeypatch):
    import pathlib

    monkeypatch.setenv("QKVIZ_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real = qkviz.embed

    @functools.wraps(real)
    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(qkviz, "embed", spy)
    code, out, err = run(capsys, "embed", tiny_run, "--method", "pca", "-o", tmp_path / "t.qke")
    assert code == 0 and pathlib.Path(out.strip()) == (tmp_path / "t.qke").resolve()
    assert seen[-1]["method"] == "pca" and seen[-1]["progress"] is False  # stderr is not a terminal
    assert "\r" not in err  # so no progress bar redraws in a log
    assert "embed: pca, 8 heads ..." in err and "  embed done in " in err
    assert err.rstrip().splitlines()[-1].startswith("  total ")

    html = tmp_path / "t.html"
    code, out, err = run(capsys, "html", tmp_path / "t.qke", "-o", html)
    assert code == 0 and pathlib.Path(out.strip()) == html.resolve()
    assert f"  wrote {html} ({cli._size(html)})" in err
    assert html.read_bytes().startswith(b"<!DOCTYPE html>")

    code, out, _ = run(capsys, "info", tmp_path / "t.qke")
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert code == 0 and fields["layout"] == "pca, 2-D, 2 layers x 4 heads"
    assert fields["sequences"] == "6"


def test_progress_bars_follow_the_terminal(capsys, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("QKVIZ_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real = qkviz.embed
    monkeypatch.setattr(qkviz, "embed", functools.wraps(real)(lambda *a, **k: seen.append(k) or real(*a, **k)))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert run(capsys, "embed", tiny_run, "--method", "pca", "-o", tmp_path / "a.qke")[0] == 0
    assert seen[-1]["progress"] is True
    assert run(capsys, "embed", tiny_run, "--method", "pca", "-o", tmp_path / "b.qke", "-q")[0] == 0
    assert seen[-1]["progress"] is False  # --quiet wins


def test_parser_defaults_match_the_library():
    from qkviz.project import METHODS

    sig = inspect.signature(qkviz.embed).parameters
    assert sig["method"].default == cli.DEFAULT_METHOD
    assert set(cli.METHODS) == set(METHODS)
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["embed"].format_help()
    assert f"(default: {sig['dim'].default})" in help_text
    assert f"(default: {sig['random_state'].default})" in " ".join(help_text.split())


def test_at_least_rejects_below_the_minimum(capsys):
    code, _, err = run(capsys, "html", "r.qkv", "-o", "x.html", "--top-k", "-1")
    assert code == 2 and "at least 0, got -1" in err
    assert cli._at_least(0)("0") == 0 and cli._at_least(1)("3") == 3
