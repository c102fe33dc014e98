"""A standalone HTML export of a real capture, opened from file:// with the network blocked.

The page must show the grid of every head, open a head on click, draw a query's attention lines to
the keys it attends to most (from the embedded top-k), show that query's sentence view, recolour,
answer a search, and make no request that leaves the page. Screenshots go to test-artifacts/ (docs/img reuses them).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import qkviz
from _browser import click_at
from qkviz import export
from qkviz.wire import SINGLE_SCALE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEXTS = [
    "The cat sat on the mat.", "A dog barked at the postman.", "Paris is the capital of France.",
    "It rained all day in Sydney.", "She read the letter twice.", "The market fell sharply on Monday.",
]  # fmt: skip
LAYERS = (0, 5)


@pytest.fixture(scope="module")
def emb():
    cap = qkviz.capture("minilm", TEXTS, layers=list(LAYERS), progress=False)
    return qkviz.embed(cap, method="pca", progress=False, cache=False)


@pytest.fixture(scope="module")
def page_file(emb, tmp_path_factory):
    viz = qkviz.QKViz(emb)
    out = tmp_path_factory.mktemp("static") / "minilm.html"
    export.save_html(viz, out)
    return out


def open_page(page, path):
    page.goto(path.as_uri())
    page.wait_for_selector("#qkviz-root[data-qk-static='ready']", state="attached", timeout=30_000)
    page.wait_for_selector(".qk-root[data-qk-ready='1']", state="attached", timeout=30_000)
    page.wait_for_function("Number(document.querySelector('.qk-root').dataset.qkDraws) >= 1", timeout=30_000)
    return page.locator("canvas.qk-canvas")


def ink(page):
    """Number of drawn (non-background) pixels on the canvas."""
    return page.evaluate("""() => { const c = document.querySelector('canvas.qk-canvas');
        const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const ctx = g.getContext('2d'); ctx.drawImage(c, 0, 0);
        const d = ctx.getImageData(0, 0, g.width, g.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (d[i + 3] > 40 && (765 - d[i] - d[i + 1] - d[i + 2]) > 60) n++;
        return n; }""")


def test_grid_head_lines_and_search_offline(offline_page, page_file, emb, artifacts):
    page = offline_page
    canvas = open_page(page, page_file)
    # a text capture offers the text tabs only, from the start
    page.wait_for_selector(".qkv-tabs", state="attached")
    assert page.locator(".qkv-tabs button[data-tab='image']").is_hidden()
    assert page.locator(".qkv-tabs button[data-tab='sentence']").is_visible()
    root = page.locator(".qk-root")

    # the grid: every head, labelled, with points drawn
    assert root.get_attribute("data-qk-mode") == "matrix"
    labels = page.locator(".qk-cell-label").all_inner_texts()
    cells = [(la, he) for la in LAYERS for he in range(12)]
    # long labels, or "layer.head" when the cells are small
    assert labels in ([f"L{la} H{he}" for la, he in cells], [f"{la}.{he}" for la, he in cells])
    assert ink(page) > 2000
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-matrix.png"))

    # a head: click the centre of cell (layer 5, head 7); 2 rows x 12 columns in the [-1, 1] box
    box = canvas.bounding_box()
    n_cols, row, col = 12, 1, 7
    cell = 2 / n_cols
    y0 = 1 - (n_cols - len(LAYERS)) * cell / 2
    cx, cy = -1 + (col + 0.5) * cell, y0 - (row + 0.5) * cell
    click_at(page, box["x"] + (cx + 1) / 2 * box["width"], box["y"] + (1 - cy) / 2 * box["height"])
    page.wait_for_selector(".qk-root[data-qk-mode='single']", timeout=10_000)
    assert root.get_attribute("data-qk-layer") == "5" and root.get_attribute("data-qk-head") == "7"

    # lines: click an isolated query; its lines go to the keys it attends to most
    n = emb.n_tokens
    xy = emb.coords(5, 7)
    d = np.sqrt(((xy[:n, None, :] - xy[None, :, :]) ** 2).sum(-1))
    d[np.arange(n), np.arange(n)] = np.inf
    p = int(np.argmax(d.min(axis=1)))
    page.wait_for_function("Number(document.querySelector('.qk-root').dataset.qkDraws) >= 2")
    box = canvas.bounding_box()  # the single view may lay the canvas out anew
    x, y = (float(v) for v in xy[p] * SINGLE_SCALE)
    click_at(page, box["x"] + (x + 1) / 2 * box["width"], box["y"] + (1 - y) / 2 * box["height"])
    page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=10_000)
    lines = json.loads(root.get_attribute("data-qk-lines"))
    seq = int(emb.tokens.seq[p])
    first = int(np.flatnonzero(emb.tokens.seq.to_numpy() == seq)[0])
    a = emb.attention(5, 7, seq)[p - first]
    k = len(lines["to"])
    assert 1 <= k <= 5 and lines["kind"] == "query"
    top = np.argsort(-a, kind="stable")[:k]
    cell_offset = (1 * 12 + 7) * 2 * n
    assert lines["from"] == cell_offset + p
    assert sorted(lines["to"]) == sorted(cell_offset + n + first + top)
    # weights come from the page's 8-bit copy of the top-k: within 0.002 of the exact ones (the side
    # panel shows the embedded rows as they are when nothing is hidden: no re-normalisation)
    np.testing.assert_allclose(np.sort(lines["weights"]), np.sort(a[top]), atol=2.5e-3)

    # the sentence view of the clicked token's sequence, from the embedded data
    page.wait_for_function("document.querySelector('.qkv-title').textContent.includes('sequence')", timeout=10_000)
    assert page.locator(".qkv-title").inner_text().startswith(f"layer 5 head 7 · sequence {seq}")
    words = emb.tokens.loc[emb.tokens.seq == seq, "display"].tolist()
    assert page.locator(".qkv-col-q .qkv-tok-text").all_inner_texts() == words
    # the page says plainly that it shows a top-k cut of this sequence's attention
    note = page.locator(".qk-static-note")
    assert note.inner_text().startswith(f"Static page: top 5 of {len(words)} keys embedded per query")
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-lines.png"))

    # the aggregate view: exact (precomputed per head in Python), compared with qkviz.analysis
    from qkviz.analysis import aggregate_detail

    agg = aggregate_detail(emb, 5, 7)
    page.locator(".qkv-tabs button[data-tab='aggregate']").click()
    page.wait_for_selector(".qkv-score[data-score='previous']", timeout=10_000)
    for name, value in agg["scores"].items():
        text = page.locator(f".qkv-score[data-score='{name}']").inner_text()
        assert float(text.split()[1]) == pytest.approx(value, abs=6e-4), (name, text)
    reply = page.evaluate("""async () => { const r = await globalThis.qkvizStatic.model.fetchDetail(
        {kind: "aggregate", layer: 5, head: 7});
        return {pos: Array.from(r.by_position), off: Array.from(r.by_offset), offsets: Array.from(r.offsets),
                count: Array.from(r.count), note: r.note ?? null}; }""")
    # 12 bits over [min, max] (export.COMPACT_BITS): within 1/8190 of the range
    np.testing.assert_allclose(reply["pos"], agg["by_position"].ravel(), atol=1.3e-4)
    np.testing.assert_allclose(reply["off"], agg["by_offset"], atol=1.3e-4)
    assert reply["offsets"] == agg["offsets"].tolist() and reply["count"] == agg["count"].ravel().tolist()
    assert not reply["note"]  # exact and whole: nothing to warn about
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-aggregate.png"))
    page.locator(".qkv-tabs button[data-tab='sentence']").click()

    # colour: the toolbar recolours the points from the embedded token table
    draws = int(root.get_attribute("data-qk-draws"))
    page.locator(".qk-color").select_option("position")
    page.wait_for_function(f"Number(document.querySelector('.qk-root').dataset.qkDraws) > {draws}")
    assert "position" in page.locator(".qk-legend").inner_text()

    # search: typing in the box highlights the same tokens Python would match
    expected = int(qkviz.QKViz(emb).state.match_tokens("the", False).sum())
    page.locator(".qk-search").fill("the")
    page.wait_for_function(f"document.querySelector('.qk-root').dataset.qkSearchCount === '{expected}'")
    assert page.locator(".qk-count").inner_text() == f"{expected} matches"
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-search.png"))

    # and nothing left the page
    assert page.qk_external == []
    assert [e for e in page.qk_errors if "GPU stall" not in e] == []


def test_file_has_no_remote_references(page_file):
    text = page_file.read_bytes().decode("latin-1")
    for needle in ('src="http', "src='http", 'href="http', "@import url(http", 'import("http', 'from"http'):
        assert needle not in text


def test_widget_save_html_delegates_to_the_exporter(tmp_path):
    from qkviz import Embedding
    from qkviz.widget import QKViz

    rng = np.random.default_rng(0)
    tokens = pd.DataFrame(
        {
            "seq": np.repeat([0, 1], 4).astype("int32"),
            "pos": np.tile(np.arange(4), 2).astype("int32"),
            "token": list("abcdefgh"),
            "display": list("abcdefgh"),
            "special": [False] * 8,
        }
    )
    coords = {(0, h): rng.uniform(-1, 1, (16, 2)).astype("float32") for h in range(2)}
    viz = QKViz(Embedding.from_coords(coords, tokens))
    out = viz.save_html(tmp_path / "w.html", top_k=0)
    text = out.path.read_bytes().decode("latin-1")
    assert out.path == tmp_path / "w.html" and "<html" in text.lower() and out.size == len(text)
    # licence comments in the bundle mention URLs; nothing may be *loaded* from one
    for needle in ('src="http', "src='http", 'href="http', 'from"http', 'from "http', 'import("http'):
        assert needle not in text
