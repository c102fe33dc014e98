"""The side panel inside the real widget front end, answered by the real request handlers.

A click on a scatter point fills the panel; a token clicked in the sentence view dims the other
points in the scatter (the panel's "highlight:tokens" reached the canvas).
"""

from __future__ import annotations

import numpy as np
import pytest

from _browser import click_at, drag_rectangle
from _wire import wire_json as _wire

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def tiny_embedding(tiny_capture):
    from qkviz import Embedding

    n = len(tiny_capture.tokens)
    rng = np.random.default_rng(5)
    coords = {(la, h): rng.uniform(-1, 1, size=(2 * n, 2)) for la in tiny_capture.layers for h in tiny_capture.heads}
    return Embedding.from_coords(coords, tiny_capture.tokens, capture=tiny_capture)


def _ink(page):
    """Strongly coloured pixels of the scatter as shown (dimmed points fade towards the background).

    Read from a screenshot, not the canvas: the scatter's canvas is drawn by a shared renderer and
    its pixels read back with drawImage can lag behind what is on screen.
    """
    import io

    from PIL import Image

    png = page.locator("canvas.qk-canvas").screenshot()
    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((np.abs(px[..., 0] - px[..., 1]) + np.abs(px[..., 1] - px[..., 2])) > 120).sum())


def _mount_widget(chromium_browser, views_server, tiny_embedding):
    from qkviz.export._snapshot import snapshot
    from qkviz.widget import QKViz
    from qkviz.wire import SINGLE_SCALE

    url, state = views_server
    viz = QKViz(tiny_embedding, layer=1, head=2)
    state.widget = viz
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/widget.html")
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("(s) => mountWidget(s)", _wire(snapshot(viz.state, viz.view())["state"]))
    page.wait_for_selector(".qk-root[data-qk-ready='1']", state="attached", timeout=30_000)
    page.wait_for_selector(".qk-root[data-qk-mode='single']")
    page.wait_for_timeout(300)
    emb = tiny_embedding
    n = len(emb.tokens)
    xy = emb.coords(1, 2)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    p = max(range(n), key=lambda i: d[i].min())  # the most isolated query: safe to click
    box = page.locator("canvas.qk-canvas").bounding_box()
    x, y = xy[p]
    click_at(
        page,
        float(box["x"] + (x * SINGLE_SCALE + 1) / 2 * box["width"]),
        float(box["y"] + (1 - y * SINGLE_SCALE) / 2 * box["height"]),
    )
    seq = int(emb.tokens["seq"][p])
    length = int((emb.tokens["seq"] == seq).sum())
    page.wait_for_function(f"document.querySelectorAll('.qkv-col-q .qkv-tok').length === {length}")
    return page, errors, seq, p


def test_scatter_click_fills_the_panel(chromium_browser, views_server, widget_site, tiny_embedding, artifacts_dir):
    page, errors, seq, p = _mount_widget(chromium_browser, views_server, tiny_embedding)
    assert page.locator(".qkv-title").inner_text().startswith(f"layer 1 head 2 · sequence {seq}")
    pos = int(tiny_embedding.tokens["pos"][p])
    page.locator(f".qkv-col-q .qkv-tok[data-pos='{pos}'] .qkv-tok-text").hover()
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_with_panel.png"))
    assert errors == []
    page.close()


def test_panel_click_dims_the_scatter(chromium_browser, views_server, widget_site, tiny_embedding):
    page, errors, _seq, _p = _mount_widget(chromium_browser, views_server, tiny_embedding)
    # clear the scatter's own selection (it dims too), then pin one key token in the panel
    page.locator("canvas.qk-canvas").focus()
    page.keyboard.press("Escape")
    page.wait_for_timeout(300)
    before = _ink(page)
    draws = int(page.locator(".qk-root").get_attribute("data-qk-draws"))
    page.locator(".qkv-col-k .qkv-tok[data-pos='1'] .qkv-tok-text").click()
    page.wait_for_function(f"+document.querySelector('.qk-root').dataset.qkDraws > {draws}", timeout=5_000)
    after = _ink(page)
    assert after < 0.7 * before, (before, after)  # everything but that token's two points dimmed
    page.locator(".qkv-col-k .qkv-tok[data-pos='1'] .qkv-tok-text").click()  # unpin: highlight cleared
    page.wait_for_timeout(300)
    assert _ink(page) > 0.9 * before
    assert errors == []
    page.close()


def _marked(page):
    """Positions the sentence view marks (on the query side; marks hold for both columns)."""
    return sorted(
        int(p)
        for p in page.eval_on_selector_all(".qkv-col-q .qkv-tok.qkv-marked", "els => els.map(e => e.dataset.pos)")
    )


def test_the_clicked_token_stays_marked_and_marks_follow_the_focused_head(
    chromium_browser, views_server, widget_site, tiny_embedding, artifacts_dir
):
    """Issue 15 item 18: the clicked token is marked once the pointer leaves the canvas; a lasso's
    marks belong to its head, so focusing another head (as ``viz.focus`` does) clears them."""
    page, errors, seq, p = _mount_widget(chromium_browser, views_server, tiny_embedding)
    pos = int(tiny_embedding.tokens["pos"][p])
    page.mouse.move(2, 890)  # the pointer leaves the scatter ("point:hover" null)
    page.wait_for_timeout(300)
    assert _marked(page) == [pos]
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_clicked_token_marked.png"))
    # a lasso over the whole head replaces the click: the sequence's tokens in it are marked
    box = page.locator("canvas.qk-canvas").bounding_box()
    page.locator(".qk-lasso").click()
    x0, y0, x1, y1 = (round(box["x"] + 2), round(box["y"] + 2), round(box["x"] + box["width"] - 2),
                      round(box["y"] + box["height"] - 2))  # fmt: skip
    drag_rectangle(page, x0, y0, x1, y1)
    page.wait_for_function("Number(document.querySelector('.qk-root').dataset.qkSelected) > 1")
    page.mouse.move(2, 890)
    page.wait_for_timeout(300)
    length = int((tiny_embedding.tokens["seq"] == seq).sum())
    assert len(_marked(page)) > length // 2, _marked(page)
    # Python focuses another head: the lasso was on head 2, nothing of it is in head 3
    page.evaluate("window.model.set('layer', 1); window.model.set('head', 3)")
    page.wait_for_function("document.querySelector('.qkv-title').textContent.startsWith('layer 1 head 3')")
    page.wait_for_timeout(300)
    assert _marked(page) == []
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_marks_after_focus.png"))
    assert errors == []
    page.close()
