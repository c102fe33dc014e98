"""The Python shown on the documentation pages runs against the current code.

A fenced ``python`` block placed right after the line ``<!-- docs-test -->`` (an HTML comment, so
readers never see it) is run here. The marked blocks of one page run in order in one namespace,
offline, in a temporary working directory, and on small inputs: ``qkviz.data.demo_sentences(n)``
returns at most :data:`N_SENTENCES` sentences, so a page can show realistic sizes. Each page starts
from the names a reader has after the earlier steps of the docs:

* ``qkviz``, ``texts`` (the first :data:`N_SENTENCES` demo sentences),
* ``cap`` (``qkviz.capture("minilm", texts)``) and ``emb`` (its PCA embedding).

Blocks that need a network, a GPU, a cluster or files of the reader's stay unmarked.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[2]
DOCS = ROOT / "docs"
MARK = "<!-- docs-test -->"
BLOCK = re.compile(re.escape(MARK) + r"\n```python[^\n]*\n(.*?)\n```", re.DOTALL)
N_SENTENCES = 12


def _pages() -> list[pathlib.Path]:
    return sorted(p for p in DOCS.rglob("*.md") if MARK in p.read_text())


def _blocks(page: pathlib.Path) -> list[tuple[int, str]]:
    """``(line number, code)`` of every marked block of ``page``."""
    text = page.read_text()
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_every_mark_precedes_a_python_block():
    """A mark before anything but a ```python fence would silently test nothing."""
    pages = _pages()
    assert len(pages) >= 5, "the marked snippets disappeared from the docs"
    for page in pages:
        assert len(_blocks(page)) == page.read_text().count(MARK), page


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """What a reader has after the first steps of the docs (see the module docstring)."""
    import qkviz
    from qkviz.data import demo_sentences

    texts = demo_sentences(N_SENTENCES)
    cap = qkviz.capture("minilm", texts, progress=False)
    emb = qkviz.embed(cap, method="pca", progress=False, cache=False)
    return {"texts": texts, "cap": cap, "emb": emb, "cache": tmp_path_factory.mktemp("layout-cache")}


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_snippets_run(page, reader, tmp_path, monkeypatch):
    import qkviz
    import qkviz.data

    full = qkviz.data.demo_sentences
    monkeypatch.setattr(
        qkviz.data, "demo_sentences", lambda n=None, **kw: full(min(n or N_SENTENCES, N_SENTENCES), **kw)
    )
    # one layout cache for the whole module: pages that embed the same small capture share it
    monkeypatch.setenv("QKVIZ_CACHE_DIR", str(reader["cache"]))
    monkeypatch.chdir(tmp_path)
    ns = {
        "__name__": "docs_snippet",
        "qkviz": qkviz,
        "texts": reader["texts"],
        "cap": reader["cap"],
        "emb": reader["emb"],
    }
    for line, code in _blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        try:
            exec(compile(code, where, "exec"), ns)
        except Exception as err:  # name the page and line: the traceback alone points into exec
            raise AssertionError(f"the snippet at {where} fails: {type(err).__name__}: {err}") from err
