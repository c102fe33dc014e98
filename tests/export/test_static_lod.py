"""A sampled standalone page (over its size budget) in headless Chromium, from file://, offline.

The page holds the queries and keys of a sample of whole sequences in most heads and every point
of the heads named in ``full=``. It must draw, say what it holds, open a sampled head with only the
held points on screen, draw a held query's lines to held keys with the embedded top-k weights, and
open a full head with every point.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_static_widget import ink, open_page

import qkviz
from _browser import click_at
from qkviz import export
from qkviz.data import demo_sentences
from qkviz.wire import SINGLE_SCALE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAYERS = (0, 5)
FULL = (0, 3)


@pytest.fixture(scope="module")
def emb():
    cap = qkviz.capture("minilm", demo_sentences(120), layers=list(LAYERS), progress=False)
    return qkviz.embed(cap, method="pca", progress=False, cache=False)


@pytest.fixture(scope="module")
def page(emb, tmp_path_factory):
    out = tmp_path_factory.mktemp("static-lod") / "sampled.html"
    whole = export.save_html(emb, out, max_bytes=None)
    saved = export.save_html(emb, out, max_bytes=int(0.6 * whole.size), full=[FULL])
    assert saved.sampled and saved.size <= 0.6 * whole.size
    return saved


def _open_head(page, canvas, row, col):
    box = canvas.bounding_box()
    cell = 2 / 12
    y0 = 1 - (12 - len(LAYERS)) * cell / 2
    cx, cy = -1 + (col + 0.5) * cell, y0 - (row + 0.5) * cell
    draws = int(page.locator(".qk-root").get_attribute("data-qk-draws"))
    click_at(page, box["x"] + (cx + 1) / 2 * box["width"], box["y"] + (1 - cy) / 2 * box["height"])
    page.wait_for_selector(".qk-root[data-qk-mode='single']", timeout=10_000)
    page.wait_for_function(f"Number(document.querySelector('.qk-root').dataset.qkDraws) > {draws}")


def _on_canvas(page, canvas):
    """bool [point]: which points of the focused head are drawn inside the canvas."""
    xy = np.array(page.evaluate("Array.from(document.querySelector('.qk-root').qkScreenPositions())")).reshape(-1, 2)
    box = canvas.bounding_box()
    return (xy[:, 0] >= 0) & (xy[:, 0] <= box["width"]) & (xy[:, 1] >= 0) & (xy[:, 1] <= box["height"])


def test_sampled_page_draws_what_it_holds(offline_page, page, emb, artifacts):
    p = offline_page
    canvas = open_page(p, page.path)
    assert p.locator(".qkviz-page-note").inner_text() == page.note
    assert ink(p) > 1000
    p.locator(".qk-root").screenshot(path=str(artifacts / "static-lod-matrix.png"))

    n = emb.n_tokens
    held = np.zeros(n, bool)
    tokens = page.tokens_per_sampled_head
    # a sampled head (layer 5, head 7): exactly its held tokens' queries and keys are on screen
    _open_head(p, canvas, 1, 7)
    shown = _on_canvas(p, canvas)
    assert shown[:n].sum() == tokens and shown[n:].sum() == tokens
    held = shown[:n]
    np.testing.assert_array_equal(held, shown[n:])  # whole tokens: query and key together
    seqs = emb.tokens["seq"].to_numpy()
    for s in np.unique(seqs[held]):  # whole sequences
        assert held[seqs == s].all()

    # a held query's lines go to held keys of its sequence, with the embedded top-k weights
    xy = emb.coords(5, 7)
    d = np.sqrt(((xy[:n, None, :] - xy[None, :, :]) ** 2)[:, np.r_[held, held]].sum(-1))
    d[np.flatnonzero(held), np.arange(held.sum())] = np.inf
    isolation = np.where(held, d.min(axis=1), -1)
    q = int(np.argmax(isolation))
    box = canvas.bounding_box()
    x, y = (float(v) for v in xy[q] * SINGLE_SCALE)
    click_at(p, box["x"] + (x + 1) / 2 * box["width"], box["y"] + (1 - y) / 2 * box["height"])
    p.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=30_000)
    lines = json.loads(p.locator(".qk-root").get_attribute("data-qk-lines"))
    cell_offset = (1 * 12 + 7) * 2 * n
    assert lines["from"] == cell_offset + q
    to = np.array(lines["to"], np.int64) - cell_offset - n
    assert len(to) >= 1 and held[to].all()
    s = int(seqs[q])
    first = int(emb.sequences["offset"].iloc[s])
    a = emb.attention(5, 7, s)[q - first]
    top = first + np.argsort(-a, kind="stable")[: len(to)]
    assert sorted(to.tolist()) == sorted(top.tolist())
    np.testing.assert_allclose(np.sort(lines["weights"]), np.sort(a[top - first]), atol=2.5e-3)
    p.locator(".qk-root").screenshot(path=str(artifacts / "static-lod-head.png"))

    # back to the matrix, then the full head: every point on screen
    p.locator(".qk-back").click()
    p.wait_for_selector(".qk-root[data-qk-mode='matrix']", timeout=10_000)
    _open_head(p, canvas, 0, FULL[1])
    assert _on_canvas(p, canvas).all()
    assert p.qk_external == []
    assert [e for e in p.qk_errors if "GPU stall" not in e] == []
