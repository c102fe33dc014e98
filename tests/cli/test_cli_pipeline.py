"""The subcommands end to end on the packaged MiniLM and a handful of sentences.

One capture is shared by the module (a session-scoped run of `qkviz capture`); the other commands
work from it. Slow: loads a real model.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from qkviz import cli

pytestmark = pytest.mark.slow

TEXTS = ["The cat sat on the mat.", "A dog barked at the postman.", "Paris is the capital of France.",
         "It rained all day in Sydney.", "She read the letter twice."]  # fmt: skip


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def captured(run_dir):
    """`qkviz capture minilm texts.jsonl --field sentence -o run.qkv` (two layers, to stay quick)."""
    src = run_dir / "texts.jsonl"
    src.write_text("\n".join(json.dumps({"sentence": t, "id": i}) for i, t in enumerate(TEXTS)))
    out = run_dir / "run.qkv"
    code = cli.main(["capture", "minilm", str(src), "--field", "sentence", "-o", str(out),
                     "--layers", "0,-1", "-q"])  # fmt: skip
    assert code == 0
    return out


def test_capture_writes_a_loadable_run(captured, capsys):
    import qkviz

    cap = qkviz.load(captured)
    assert cap.sequences["text"].tolist() == TEXTS
    assert cap.layers == (0, 5) and len(cap.heads) == 12
    assert cap.model["name"] == "minilm"


def test_capture_refuses_to_overwrite(captured, run_dir, capsys):
    src = run_dir / "one.txt"
    src.write_text("One line.\n")
    code, _, err = run(capsys, "capture", "minilm", src, "-o", captured)
    assert code == 1 and "already exists" in err and "--force" in err


def test_capture_force_replaces_a_capture(captured, run_dir, capsys):
    import qkviz

    src = run_dir / "two.txt"
    src.write_text("One line.\nAnother line here.\n")
    out = run_dir / "replaced.qkv"
    assert run(capsys, "capture", "minilm", src, "-o", out, "--layers", "0", "-q")[0] == 0
    src.write_text("Only this one.\n")
    assert run(capsys, "capture", "minilm", src, "-o", out, "--layers", "0", "-q", "--force")[0] == 0
    assert qkviz.load(out).sequences["text"].tolist() == ["Only this one."]


def test_capture_unknown_model_is_a_clean_error(run_dir, capsys):
    src = run_dir / "one.txt"
    src.write_text("One line.\n")
    code, out, err = run(capsys, "capture", str(run_dir / "no-such-model-dir"), src, "-o", run_dir / "x.qkv")
    assert code == 1 and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("qkviz capture: error:") and "no-such-model-dir" in last
    assert "Traceback" not in err


def test_info_of_a_capture(captured, capsys):
    code, out, err = run(capsys, "info", captured)
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert fields["kind"] == "capture"
    assert fields["model"].startswith("minilm (bert, text)")
    assert fields["heads"].startswith("2 layers x 12 heads")
    assert fields["sequences"] == "5"


def test_embed_then_info_then_html(captured, run_dir, capsys):
    code, out, err = run(capsys, "embed", captured, "--method", "pca")
    assert code == 0
    emb_path = pathlib.Path(out.strip())
    assert emb_path == (run_dir / "run.pca.qke").resolve()
    assert "embed" in err and "timings:" in err  # stage timings go to stderr

    code, out, _ = run(capsys, "info", emb_path)
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert code == 0 and fields["kind"] == "embedding" and fields["layout"].startswith("pca, 2-D")

    html = run_dir / "run.html"
    code, out, _ = run(capsys, "html", emb_path, "-o", html, "-q")
    assert code == 0 and pathlib.Path(out.strip()) == html.resolve()
    page = html.read_bytes()  # not all text: the export may pack binary data into the page
    assert page.startswith(b"<!DOCTYPE html>") and b'id="qkviz-data"' in page

    code, _, err = run(capsys, "html", emb_path, "-o", html, "--method", "tsne", "--force")
    assert code == 1 and "made with 'pca'" in err


def test_html_from_a_capture_embeds_first(captured, run_dir, capsys):
    html = run_dir / "direct.html"
    code, _, err = run(capsys, "html", captured, "-o", html, "--method", "pca")
    assert code == 0 and html.stat().st_size > 10_000
    assert "embed: pca" in err and "export html" in err


def test_html_into_a_missing_folder(captured, run_dir, capsys):
    code, _, err = run(capsys, "html", captured, "-o", run_dir / "nope" / "x.html", "--method", "pca")
    assert code == 1 and "does not exist" in err


def test_demo_small(run_dir, capsys):
    out = run_dir / "demo.html"
    code, stdout, err = run(capsys, "demo", "-n", "6", "--method", "pca", "-o", out)
    assert code == 0
    assert pathlib.Path(stdout.strip()) == out.resolve()
    for stage in ("load model", "capture", "embed", "export html"):
        assert f"\n  {stage} done in " in err  # a timing line per stage
    assert "6 demo sentences" in err and "embed: pca, 72 heads" in err
    assert f"  wrote {out} ({cli._size(out)})" in err
    assert err.rstrip().splitlines()[-1].startswith("  total ")
    assert "\r" not in err  # no progress bars outside a terminal
    assert out.stat().st_size > 10_000
