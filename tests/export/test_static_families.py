"""Standalone pages of encoder-decoder and score-family embeddings, in a real browser (offline).

The attention selector switches the grid between encoder self-, decoder self- and cross-attention;
a decoder query's lines in cross-attention go to the encoder's tokens of its pair; the side panel
shows decoder queries against encoder keys, a sink head's ∅ column, and an ALiBi head's position
term. Screenshots go to test-artifacts/ (look at them).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import qkviz
from _browser import click_canvas
from capture import _zoo
from qkviz import export
from qkviz._capture._run import capture
from qkviz.data import demo_sentences
from qkviz.wire import SINGLE_SCALE

pytestmark = [pytest.mark.browser]

TARGETS = ["Le chat dort.", "Un chien aboie fort.", "Il pleut beaucoup aujourd'hui.", "Bonjour tout le monde."]


def _page(emb, path):
    export.save_html(qkviz.QKViz(emb), path)
    return path


def _open(page, path):
    page.goto(path.as_uri())
    page.wait_for_selector(".qk-root[data-qk-ready='1']", state="attached", timeout=30_000)
    page.wait_for_function("Number(document.querySelector('.qk-root').dataset.qkDraws) >= 1", timeout=30_000)


def _focus(page, layer, head):
    page.evaluate(
        f"""() => {{ const m = globalThis.qkvizStatic.model; m.set("layer", {layer}); m.set("head", {head});
        m.save_changes(); }}"""
    )
    page.wait_for_selector(".qk-root[data-qk-mode='single']", timeout=10_000)


def _click_point(page, head_xy, p, done):
    """Click point ``p`` of the focused head (layout ``head_xy``) once the single view holds it
    whole (absent points parked), until the JS condition ``done`` holds. The page must draw the
    point where the layout puts it (within 1 px): a compact page quantises the layout."""
    whole = f"[data-qk-mode='single'][data-qk-drawn='{len(head_xy)}']"
    page.wait_for_selector(f".qk-root{whole}", state="attached", timeout=30_000)
    box = page.locator("canvas.qk-canvas").bounding_box()
    x, y = (float(v) for v in head_xy[p] * SINGLE_SCALE)
    at = ((x + 1) / 2 * box["width"], (1 - y) / 2 * box["height"])
    drawn = page.locator(".qk-root").evaluate(f"(r) => Array.from(r.qkScreenPositions().slice({2 * p}, {2 * p + 2}))")
    assert np.hypot(drawn[0] - at[0], drawn[1] - at[1]) < 1, f"point {p} drawn at {drawn} px, its layout says {at}"
    click_canvas(page, at, done)


def _isolated(xy, candidates):
    """The candidate point farthest from every other drawn point (a click hits it, not a neighbour)."""
    ok = np.isfinite(xy).all(axis=1)
    d = np.sqrt(((xy[candidates, None, :] - xy[None, ok, :]) ** 2).sum(-1))
    d[d == 0] = np.inf
    return int(candidates[np.argmax(d.min(axis=1))])


@pytest.fixture(scope="module")
def t5_emb():
    model, tok = _zoo.build("t5")
    cap = capture((model, tok), demo_sentences(4), targets=TARGETS, batch_size=4, progress=False)
    return qkviz.embed(cap, method="pca", layers=[1], executor="serial", cache=False, progress=False)


def test_attention_selector_and_cross_attention_lines(offline_page, t5_emb, tmp_path, artifacts):
    emb, page = t5_emb, offline_page
    _open(page, _page(emb, tmp_path / "t5.html"))
    root = page.locator(".qk-root")
    sel = page.locator("select.qk-attn")
    assert sel.locator("option").all_inner_texts() == ["encoder self", "decoder self", "cross (decoder → encoder)"]
    assert sel.input_value() == "cross"  # the default: cross-attention
    assert "cross-attention" in page.locator(".qk-status").inner_text()
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-cross-matrix.png"))

    # another attention: its own grid
    sel.select_option("encoder")
    page.wait_for_function("document.querySelector('.qk-status').textContent.includes('encoder self-attention')")
    assert page.locator(".qk-cell-label").all_inner_texts() in (
        [f"L1 H{h}" for h in range(4)],
        [f"1.{h}" for h in range(4)],
    )
    page.locator("select.qk-attn").select_option("cross")
    page.wait_for_function("document.querySelector('.qk-status').textContent.includes('cross-attention')")

    # a decoder token's query: lines to the encoder tokens of its pair, the strongest first
    _focus(page, 1, 2)
    n = emb.n_tokens
    stream = emb.tokens["stream"].to_numpy()
    xy = emb.coords(1, 2, "cross")
    p = _isolated(xy, np.flatnonzero(stream == 1))  # decoder tokens' queries
    _click_point(page, xy, p, "document.querySelector('.qk-root').dataset.qkLines !== ''")
    lines = json.loads(root.get_attribute("data-qk-lines"))
    seq = int(emb.tokens["seq"][p])
    enc = np.flatnonzero((emb.tokens["seq"].to_numpy() == seq) & (stream == 0))
    dec = np.flatnonzero((emb.tokens["seq"].to_numpy() == seq) & (stream == 1))
    a = emb.attention(1, 2, seq, "cross")[int(np.flatnonzero(dec == p)[0])]
    k = len(lines["to"])
    offset = emb.cells.index(("cross", 1, 2)) * 2 * n
    assert lines["kind"] == "query" and lines["from"] == offset + p
    assert sorted(lines["to"]) == sorted(offset + n + enc[np.argsort(-a, kind="stable")[:k]])

    # the panel: the pair's decoder tokens as queries, its encoder tokens as keys
    page.wait_for_function("document.querySelector('.qkv-title').textContent.includes('sequence')", timeout=10_000)
    disp = emb.tokens["display"].to_numpy()
    assert page.locator(".qkv-col-q .qkv-tok-text").all_inner_texts() == disp[dec].tolist()
    assert page.locator(".qkv-col-k .qkv-tok-text").all_inner_texts() == disp[enc].tolist()
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-cross-lines.png"))
    assert page.qk_external == [] and page.qk_errors == []


@pytest.mark.parametrize("name", ["gpt_oss", "bloom"])
def test_sink_share_and_position_term_in_the_panel(offline_page, name, tmp_path, artifacts):
    model, tok = _zoo.build(name)
    cap = capture((model, tok), demo_sentences(4), batch_size=4, progress=False)
    emb = qkviz.embed(cap, method="pca", executor="serial", cache=False, progress=False)
    page = offline_page
    _open(page, _page(emb, tmp_path / f"{name}.html"))
    _focus(page, 1, 1)
    xy = emb.coords(1, 1)
    p = _isolated(xy, np.arange(emb.n_tokens))
    _click_point(page, xy, p, "document.querySelector('.qkv-title').textContent.includes('sequence')")
    page.locator(".qkv-tabs button[data-tab='heatmap']").click()
    panel = page.locator(".qkv-panel")
    seq = int(emb.tokens["seq"][p])
    if name == "gpt_oss":
        assert panel.get_attribute("data-family") == "sink"
        assert page.locator(".qkv-family").inner_text().startswith("Sink head")
        # each query's sink share, from the page's 8-bit copy
        shares = [
            float(x) for x in page.locator(".qkv-col-q .qkv-tok").evaluate_all("els => els.map(e => e.dataset.sink)")
        ]
        np.testing.assert_allclose(shares, cap.sink_share(1, 1, seq), atol=5e-3)
    else:
        assert panel.get_attribute("data-family") == "alibi"
        assert "ALiBi" in page.locator(".qkv-family").inner_text()
        page.locator("select.qkv-heat-mode").select_option("position")
        page.wait_for_function("document.querySelector('.qkv-panel').dataset.heatMode === 'position'")
    page.locator(".qk-root").screenshot(path=str(artifacts / f"static-{name}-panel.png"))
    assert page.qk_external == [] and page.qk_errors == []
