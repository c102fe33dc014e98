"""The shell contract of `qkviz`: help, exit codes, and error messages without tracebacks.

These run `main()` in-process (fast); `test_entry_point` checks the installed console script once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from qkviz import cli
from qkviz.cli._inputs import read_inputs
from qkviz.errors import InputError

SUBCOMMANDS = ["demo", "capture", "embed", "html", "info"]


def run(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse exits for --help / usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_subcommand(capsys, sub):
    code, out, _ = run(capsys, sub, "--help")
    assert code == 0
    assert out.startswith(f"usage: qkviz {sub}")
    assert "--debug" in out


def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for sub in SUBCOMMANDS:
        assert f"    {sub} " in out


def test_version(capsys):
    import qkviz

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"qkviz {qkviz.__version__}"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["capture", "minilm"], "required"),
        (["capture", "minilm", "in.txt"], "-o/--output"),
        (["embed", "run.qkv", "--method", "mds"], "invalid choice: 'mds'"),
        (["demo", "--sentences", "0"], "at least 1"),
        (["demo", "--sentences", "many"], "whole number"),
        (["html", "run.qkv"], "-o/--output"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert fragment in err and "usage: qkviz" in err
    assert "Traceback" not in err


def test_missing_run_file_is_an_error_not_a_traceback(capsys, tmp_path):
    code, out, err = run(capsys, "info", str(tmp_path / "nothing.qkv"))
    assert code == 1 and out == ""
    assert err.startswith("qkviz info: error: ") and "no such file" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        cli.main(["info", str(tmp_path / "nothing.qkv"), "--debug"])
    with pytest.raises(InputError):  # before the subcommand as well
        cli.main(["--debug", "info", str(tmp_path / "nothing.qkv")])


def test_capture_bad_inputs_fail_before_loading_the_model(capsys, tmp_path, monkeypatch):
    import qkviz

    def no_model(spec):  # the inputs are checked first: a typo must not cost a model load
        raise AssertionError("model loaded before the inputs were read")

    monkeypatch.setattr(qkviz, "load_model", no_model, raising=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run(capsys, "capture", "minilm", str(empty), "-o", str(tmp_path / "r.qkv"))
    assert code == 1 and "holds no text" in err and "Traceback" not in err


def test_unexpected_exceptions_are_reported_as_bugs(capsys, monkeypatch):
    def explode(args, rep):
        raise ZeroDivisionError("oops")

    _with_info_command(monkeypatch, explode)
    code, _, err = run(capsys, "info", "x")
    assert code == 1
    assert "unexpected error: ZeroDivisionError: oops" in err and "--debug" in err
    assert "Traceback" not in err


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    def interrupt(args, rep):
        raise KeyboardInterrupt

    _with_info_command(monkeypatch, interrupt)
    code, _, err = run(capsys, "info", "x")
    assert code == 130 and "interrupted" in err


# --- INPUTS ---------------------------------------------------------------------------------------


def test_text_file_one_sequence_per_line(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("First line.\n\n  Second line.  \nThird.\n", encoding="utf-8")
    assert read_inputs(f) == ["First line.", "Second line.", "Third."]
    assert read_inputs(f, limit=2) == ["First line.", "Second line."]


def test_jsonl_with_a_field(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps({"sentence": s, "id": i}) for i, s in enumerate("abc")) + "\n")
    assert read_inputs(f, field="sentence") == ["a", "b", "c"]
    with pytest.raises(InputError, match=r"line 1: no 'text' field \(found 'sentence', 'id'\).*--field"):
        read_inputs(f)


@pytest.mark.parametrize(
    "content, fragment",
    [("{not json\n", "line 1: not valid JSON"), ('{"text": 3}\n', "'text' is int"), ("[1, 2]\n", "no 'text' field")],
)
def test_jsonl_errors_name_the_line(tmp_path, content, fragment):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(InputError, match=fragment):
        read_inputs(f)


def test_non_utf8_text_says_how_to_convert(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8.*iconv"):
        read_inputs(f)


def test_folder_of_images(tmp_path):
    from PIL import Image

    for name, colour in [("b.png", (255, 0, 0)), ("a.jpg", (0, 0, 255))]:
        Image.new("RGB", (20, 10), colour).save(tmp_path / name)
    Image.new("L", (8, 8)).save(tmp_path / "grey.bmp")
    (tmp_path / "notes.txt").write_text("ignored")
    images = read_inputs(tmp_path)
    assert list(images) == ["a.jpg", "b.png", "grey.bmp"]  # sorted by name, text files skipped
    assert all(im.mode == "RGB" for im in images.values())
    assert images["b.png"].getpixel((0, 0)) == (255, 0, 0)


def test_folder_without_images_and_broken_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="folder without images"):
        read_inputs(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png: not a readable image"):
        read_inputs(tmp_path)


def test_a_single_image_points_at_its_folder(tmp_path):
    f = tmp_path / "x.png"
    f.write_bytes(b"")
    with pytest.raises(InputError, match="pass the folder"):
        read_inputs(f)


def test_entry_point_is_installed():
    exe = shutil.which("qkviz", path=str(__import__("pathlib").Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the qkviz console script is not installed in this environment")
    proc = subprocess.run([exe, "info", "/nonexistent/run.qkv"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("qkviz info: error:") and "Traceback" not in proc.stderr


def test_force_never_deletes_a_folder_that_is_not_a_capture(capsys, tmp_path, monkeypatch):
    import qkviz

    monkeypatch.setattr(qkviz, "load_model", lambda *a, **k: pytest.fail("model loaded"), raising=False)
    texts = tmp_path / "t.txt"
    texts.write_text("One line.\n")
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    code, _, err = run(capsys, "capture", "minilm", str(texts), "-o", str(precious), "--force")
    assert code == 1 and "not a qkviz capture; refusing to replace it" in err
    assert (precious / "chapter1.tex").read_text() == "..."
    code, _, err = run(capsys, "capture", "minilm", str(texts), "-o", str(precious))
    assert code == 1 and "not a qkviz capture" in err  # --force would not help: it is not a capture


def _with_info_command(monkeypatch, func):
    real = cli.build_parser

    def patched():
        p = real()
        for action in p._subparsers._group_actions:
            action.choices["info"].set_defaults(func=func)
        return p

    monkeypatch.setattr(cli, "build_parser", patched)


def test_warnings_are_one_shell_line(capsys, monkeypatch):
    import warnings

    def warn(args, rep):
        warnings.warn("the capture is gone; attention is unavailable", UserWarning, stacklevel=2)
        return 0

    _with_info_command(monkeypatch, warn)
    code, _, err = run(capsys, "info", "x")
    assert code == 0
    assert err == "qkviz: warning: the capture is gone; attention is unavailable\n"
