"""The console outputs shown on the documentation pages are what the commands print today.

Every ```` ```console ```` block after ``<!-- docs-output -->`` is compared with a fresh run by
``docs/_outputs.py`` (its docstring says how, and how to regenerate the pages): timings are masked,
paths reduced to file names, sizes compared within 15 %, and everything else (counts of sentences,
tokens and heads, the method, messages) must match exactly.

The blocks of a page run in order in one folder. Those that only need the packaged MiniLM on three
sentences (capture, embed, html, info, the error messages) run in the normal suite; the full
``qkviz demo`` (minutes on 2 cores) runs under ``-m slow``. A fast test checks the demo block's
sentence count, method and heads against the constants the command uses, so a change of the demo's
defaults fails at once, without the slow run.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[2]


def _load_outputs():
    spec = importlib.util.spec_from_file_location("docs_outputs", ROOT / "docs" / "_outputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


outputs = _load_outputs()


def _is_demo(block: str) -> bool:
    return any(cmd.split()[:2] == ["qkviz", "demo"] for cmd in outputs.commands(block))


def _marked(page: pathlib.Path) -> list[tuple[int, str]]:
    """``(line number, block)`` of every marked block of ``page``."""
    text = page.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in outputs.blocks(text)]


PAGES = outputs.pages()
_IDS = lambda p: str(p.relative_to(outputs.DOCS))  # noqa: E731


def test_every_mark_precedes_a_console_block():
    """A mark before anything but a ```console fence would silently check nothing."""
    assert {p.name for p in PAGES} >= {"cli.md", "getting-started.md"}, "the marked outputs disappeared"
    for page in PAGES:
        text = page.read_text()
        assert len(outputs.blocks(text)) == text.count(outputs.MARK), page
        for line, block in _marked(page):
            assert outputs.commands(block), f"{page.name}:{line}: a marked block without a `$ qkviz` line"
            assert all(c.startswith("qkviz ") for c in outputs.commands(block)), f"{page.name}:{line}"


def test_normalise_masks_only_what_varies_between_runs():
    """The comparison is not vacuous: counts and messages survive, timings and paths do not."""
    a = "capture done in 2.6 s\n  28 tokens in 3 sequences\n  wrote run.qkv (539.3 KB)\n/home/you/run.qkv"
    b = "capture done in 31.0 s\n  28 tokens in 3 sequences\n  wrote run.qkv (560.0 KB)\n/tmp/x/y/run.qkv"
    assert outputs.differences(a, b) == []
    assert outputs.differences("embed done in 6.5 min", "embed done in 95.2 s") == []
    assert outputs.differences(a, b.replace("28 tokens", "29 tokens"))
    assert outputs.differences(a, b.replace("560.0 KB", "700.0 KB"))  # sizes beyond the tolerance
    assert outputs.differences(a, b.replace("run.qkv (", "other.qkv ("))


def test_the_demo_block_shows_the_demo_defaults():
    """Sentences, method and heads of every shown demo run equal what ``qkviz demo`` does today."""
    from transformers import AutoConfig

    from qkviz import cli
    from qkviz.models._offline import minilm_dir

    cfg = AutoConfig.from_pretrained(minilm_dir())
    heads = cfg.num_hidden_layers * cfg.num_attention_heads
    demos = [(p, line, b) for p in PAGES for line, b in _marked(p) if _is_demo(b)]
    assert len(demos) >= 2, "the getting-started and cli pages both show the demo"
    for page, line, block in demos:
        where = f"{page.name}:{line}"
        assert re.search(rf"^{cli.DEMO_SENTENCES} demo sentences", block, re.M), where
        assert re.search(rf"^capture: {cli.DEMO_SENTENCES} inputs", block, re.M), where
        assert re.search(rf"^embed: {cli.DEMO_METHOD}, {heads} heads", block, re.M), where
        assert f"{cfg.num_hidden_layers} layers x {cfg.num_attention_heads} heads" in block, where


def _check(page: pathlib.Path, which) -> None:
    import tempfile

    failures = []
    with tempfile.TemporaryDirectory() as d:
        cwd = outputs.page_folder(pathlib.Path(d))
        for line, block in _marked(page):
            if not which(block):
                continue
            diff = outputs.differences(block, outputs.fresh(block, cwd))
            if diff:
                failures.append(f"{page.name}:{line}:\n" + "\n".join(diff))
    assert not failures, (
        "the shown output differs from a fresh run; regenerate it with `python docs/_outputs.py`:\n"
        + "\n\n".join(failures)
    )


@pytest.mark.parametrize("page", [p for p in PAGES if any(not _is_demo(b) for _, b in _marked(p))], ids=_IDS)
def test_shown_cli_outputs_match_a_fresh_run(page):
    """The cheap blocks (MiniLM on three sentences), in page order, in one folder."""
    _check(page, lambda b: not _is_demo(b))


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(_is_demo(b) for _, b in _marked(p))], ids=_IDS)
def test_shown_demo_output_matches_a_fresh_run(page):
    """The full demo (minutes; its layouts come from the layout cache after the first run)."""
    _check(page, _is_demo)
