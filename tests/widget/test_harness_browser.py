"""The bundled front end in headless Chromium (WebGL2 via SwiftShader), without Jupyter.

A fake model carries the traits of a real ``QKViz`` and answers requests from
``QKViz._static_state()``, the same path a standalone page takes.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from _browser import click_at, drag_rectangle, settled
from _wire import SELECTION_JS, wire_json
from qkviz.export._snapshot import snapshot
from qkviz.widget import QKViz
from qkviz.wire import SINGLE_SCALE

from ._fakes import make_embedding
from .conftest import ARTIFACTS

pytestmark = pytest.mark.browser


def mount(page, url, viz, top_k=8, wid="w0", first=True):
    if first:
        page.goto(url)
        page.wait_for_function("window.harnessReady === true")
    page.evaluate("([p, id]) => mount(p, id)", [wire_json(snapshot(viz.state, viz.view(), top_k)), wid])
    root = page.locator(f"#{wid} .qk-root")
    page.wait_for_selector(f"#{wid} .qk-root[data-qk-ready='1']", state="attached", timeout=30_000)
    settled(page, f"#{wid} canvas.qk-canvas")
    return root


def canvas_pixels(page, wid="w0", selector=None):
    """RGBA pixels of the view's canvas as a numpy array [h, w, 4] (sent as base64: fast)."""
    sel = selector or f"#{wid} canvas.qk-canvas"
    w, h, b64 = page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
        const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const ctx = g.getContext('2d'); ctx.drawImage(c, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data; let s = '';
        for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
        return [c.width, c.height, btoa(s)]; }""",
        sel,
    )
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)


def non_background(px):
    """Drawn pixels: opaque enough and away from the white background."""
    return (px[..., 3] > 40) & (np.abs(px[..., :3].astype(int) - 255).sum(axis=2) > 60)


def test_grid_renders_every_cell(page, harness_url):
    emb = make_embedding(n_layers=2, n_heads=3)
    viz = QKViz(emb, faithfulness=False)
    root = mount(page, harness_url, viz)
    assert root.get_attribute("data-qk-mode") == "matrix"
    page.wait_for_function("document.querySelector('#w0 .qk-root').dataset.qkDraws >= '1'")
    page.wait_for_timeout(300)
    px = canvas_pixels(page)
    ink = non_background(px)
    h, w = ink.shape
    # the matrix canvas has the grid's aspect (3 heads : 2 layers), cells are square
    assert abs(w / h - 1.5) < 0.02
    for r in range(2):
        for c in range(3):
            cell = ink[
                int((r + 0.15) * h / 2) : int((r + 0.85) * h / 2), int((c + 0.15) * w / 3) : int((c + 0.85) * w / 3)
            ]
            assert cell.sum() > 20, f"cell ({r}, {c}) is blank"
            # margins between cells stay empty (each layout fills 84% of its cell)
            assert ink[int((r + 0.5) * h / 2), int(c * w / 3) + 1] == 0
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "harness-grid.png"))
    labels = page.locator("#w0 .qk-cell-label").all_inner_texts()
    assert labels == [f"L{la} H{he}" for la in range(2) for he in range(3)]
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "harness-grid.png"))
    assert page.qk_errors == []


def test_click_cell_focuses_and_arrows_step(page, harness_url):
    viz = QKViz(make_embedding(n_layers=2, n_heads=3))
    mount(page, harness_url, viz)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    # centre of cell (layer 1, head 2): column 2 of 3, row 1 of 2
    click_at(page, box["x"] + box["width"] * (2.5 / 3), box["y"] + box["height"] * (1.5 / 2))
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='single']")
    assert page.evaluate("[models.w0.get('layer'), models.w0.get('head')]") == [1, 2]
    page.locator("#w0 .qk-step[data-dir='←']").click()
    page.wait_for_selector("#w0 .qk-root[data-qk-head='1']")
    page.locator("#w0 .qk-root").focus()
    page.keyboard.press("ArrowUp")
    page.wait_for_selector("#w0 .qk-root[data-qk-layer='0']")
    page.locator("#w0 .qk-back").click()
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='matrix']")
    assert page.evaluate("models.w0.get('layer')") is None


def _isolated_point(xy, candidates):
    """The candidate with the largest distance to its nearest neighbour (safe to click)."""
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return max(candidates, key=lambda i: d[i].min())


def to_screen(box, x, y):
    s = SINGLE_SCALE
    return float(box["x"] + (x * s + 1) / 2 * box["width"]), float(box["y"] + (1 - y * s) / 2 * box["height"])


@pytest.mark.parametrize("kind", ["query", "key"])
def test_click_point_draws_topk_lines(page, harness_url, kind):
    emb = make_embedding(n_layers=1, n_heads=2, lengths=(9, 7))
    viz = QKViz(emb, layer=0, head=1, lines_k=3)
    mount(page, harness_url, viz)
    n = emb.n_tokens
    xy = emb.coords(0, 1)
    cands = range(0, n) if kind == "query" else range(n, 2 * n)
    p = _isolated_point(xy, cands)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    click_at(page, *to_screen(box, *xy[p]))
    page.wait_for_function("document.querySelector('#w0 .qk-root').dataset.qkLines !== ''")
    lines = json.loads(page.locator("#w0 .qk-root").get_attribute("data-qk-lines"))
    cell = 1  # (layer 0, head 1)
    assert lines["from"] == cell * 2 * n + p and lines["kind"] == kind
    tok = p % n
    seq = int(emb.tokens.seq[tok])
    first = int(np.flatnonzero(emb.tokens.seq.to_numpy() == seq)[0])
    a = emb.attention(0, 1, seq)
    pos = tok - first
    w = a[pos] if kind == "query" else a[:, pos]
    if kind == "query":
        order = np.argsort(-w, kind="stable")[:3]
        expected = [cell * 2 * n + n + first + j for j in order]
        assert lines["to"] == expected
    else:
        # The static page knows only each query's embedded top-8, so a key's lines come from the
        # queries whose top-8 holds it: with top_k >= seq length that is every query.
        order = np.argsort(-w, kind="stable")[:3]
        assert lines["to"] == [cell * 2 * n + first + j for j in order]
    np.testing.assert_allclose(lines["weights"], w[order], rtol=1e-6)
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / f"harness-lines-{kind}.png"))


def test_lasso_selects_points_inside(page, harness_url):
    emb = make_embedding(n_layers=1, n_heads=2, lengths=(30, 30, 30), seed=3)
    viz = QKViz(emb, layer=0, head=0)
    mount(page, harness_url, viz)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    page.locator("#w0 .qk-lasso").click()
    fx0, fy0, fx1, fy1 = 0.2, 0.25, 0.65, 0.7
    x0, y0 = round(box["x"] + fx0 * box["width"]), round(box["y"] + fy0 * box["height"])
    x1, y1 = round(box["x"] + fx1 * box["width"]), round(box["y"] + fy1 * box["height"])
    drag_rectangle(page, x0, y0, x1, y1)
    page.wait_for_function("Number(document.querySelector('#w0 .qk-root').dataset.qkSelected) > 0")
    # independent expectation: screen rectangle -> layout units
    s = SINGLE_SCALE
    lx = lambda px: ((px - box["x"]) / box["width"] * 2 - 1) / s  # noqa: E731
    ly = lambda py: (1 - (py - box["y"]) / box["height"] * 2) / s  # noqa: E731
    xy = emb.coords(0, 0)
    inside = (xy[:, 0] > lx(x0)) & (xy[:, 0] < lx(x1)) & (xy[:, 1] < ly(y0)) & (xy[:, 1] > ly(y1))
    wire = page.evaluate(f"() => ({SELECTION_JS})(models.w0.get('_selection'))")
    assert sorted(wire) == np.flatnonzero(inside).tolist()
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "harness-lasso.png"))


def test_search_count_and_two_widgets(page, harness_url):
    emb = make_embedding(n_layers=2, n_heads=2)
    viz = QKViz(emb)
    expected = viz.search("th")  # "the", "them", "other"
    mount(page, harness_url, viz)
    assert page.locator("#w0 .qk-root").get_attribute("data-qk-search-count") == str(expected)
    assert page.locator("#w0 .qk-count").inner_text() == f"{expected} matches"
    viz2 = QKViz(make_embedding(n_layers=1, n_heads=1, lengths=(1,)), theme="dark")
    mount(page, harness_url, viz2, wid="w1", first=False)
    page.wait_for_timeout(300)
    # both canvases have ink: one shared WebGL context serves both views
    assert non_background(canvas_pixels(page, "w0")).sum() > 50
    assert page.evaluate("document.querySelector('#w1 .qk-root').dataset.qkTheme") == "dark"
    page.evaluate("models.w0.set('search_query', 'cat')")
    assert page.locator("#w0 .qk-root").get_attribute("data-qk-search-count") == str(viz.search("cat"))


def test_search_dims_the_other_points(page, harness_url):
    emb = make_embedding(n_layers=1, n_heads=1, lengths=(40, 40), seed=2)
    viz = QKViz(emb, layer=0, head=0)
    root = mount(page, harness_url, viz)
    page.wait_for_timeout(200)
    # what is on screen (the canvas composited on the page): dimmed points are pale, not transparent
    ink = lambda: int((np.abs(_screenshot_pixels(page).astype(int) - 255).sum(axis=2) > 60).sum())  # noqa: E731
    ink_all = ink()
    draws = int(root.get_attribute("data-qk-draws"))
    page.evaluate("models.w0.set('search_query', 'cat')")
    page.wait_for_function(f"Number(document.querySelector('#w0 .qk-root').dataset.qkDraws) > {draws}")
    page.wait_for_timeout(200)
    ink_search = ink()
    share = viz.search("cat") / emb.n_tokens
    assert 0 < share < 0.3
    # matches stay as they were, the rest fade (dimmed, still drawn: not hidden)
    assert ink_search < ink_all * (share + 0.25), (ink_search, ink_all, share)
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "harness-search.png"))
    assert page.qk_errors == []


def test_empty_state_and_theme_and_colour(page, harness_url):
    page.goto(harness_url)
    page.wait_for_function("window.harnessReady === true")
    # a page with no data at all (e.g. a truncated export) renders a message, never throws
    page.evaluate("([p, id]) => mount(p, id)", [{"state": {}, "points": [], "topk": None}, "w9"])
    page.wait_for_selector("#w9 .qk-root[data-qk-mode='empty']", state="attached")
    viz = QKViz(make_embedding(n_layers=1, n_heads=2), layer=0, head=0)
    mount(page, harness_url, viz, first=False)
    root = page.locator("#w0 .qk-root")
    assert root.get_attribute("data-qk-theme") == "light"
    page.evaluate("document.body.dataset.jpThemeLight = 'false'")  # JupyterLab switched to dark
    page.wait_for_selector("#w0 .qk-root[data-qk-theme='dark']")
    page.evaluate("document.body.dataset.jpThemeLight = 'true'")
    page.wait_for_selector("#w0 .qk-root[data-qk-theme='light']")
    before = canvas_pixels(page)
    draws = int(root.get_attribute("data-qk-draws"))
    page.evaluate("models.w0.set('color', 'position')")  # as if Python called viz.color_by
    page.wait_for_function(f"Number(document.querySelector('#w0 .qk-root').dataset.qkDraws) > {draws}")
    page.wait_for_timeout(200)
    assert page.locator("#w0 .qk-legend-title").inner_text() == "normalised position"
    assert page.locator("#w0 .qk-color").input_value() == "position"
    assert (canvas_pixels(page) != before).any()
    # Python -> page selection: the page counts it, and no event bounces back as a change
    n = viz.state.n_tokens
    page.evaluate(
        """(idx) => models.w0.set('_selection',
        {view: new DataView(new Uint32Array(idx).buffer), dtype: 'uint32', shape: [idx.length]})""",
        [1, n + 2],
    )
    assert root.get_attribute("data-qk-selected") == "2"
    page.locator("#w0 .qk-color").select_option("category")
    assert page.evaluate("models.w0.get('color')") == "category"
    assert page.qk_errors == []


def test_wheel_zooms_the_matrix_then_opens_the_head(page, harness_url):
    viz = QKViz(make_embedding(n_layers=2, n_heads=2))
    mount(page, harness_url, viz)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    page.mouse.wheel(0, -60)  # the matrix zooms around the pointer (cells grow, outlines follow)
    page.wait_for_function("document.querySelector('#w0 .qk-cells').style.transform.includes('scale(1.')")
    assert page.locator("#w0 .qk-root").get_attribute("data-qk-mode") == "matrix"
    for _ in range(30):  # until the cell under the pointer is big: then the wheel opens its head
        page.mouse.wheel(0, -60)
        page.wait_for_timeout(60)
        if page.locator("#w0 .qk-root").get_attribute("data-qk-mode") == "single":
            break
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='single']")
    assert page.evaluate("[models.w0.get('layer'), models.w0.get('head')]") == [1, 0]


# ---- the view holds still and says what it shows (issue 15, items 15-17 and 19) ----------------------


def _canvas_y(page, wid="w0"):
    return page.locator(f"#{wid} canvas.qk-canvas").bounding_box()["y"]


@pytest.mark.parametrize("width", [900, 1100, 1200, 1400])
def test_typing_a_search_never_moves_the_canvas(page, harness_url, width):
    page.set_viewport_size({"width": width + 40, "height": 900})
    page.goto(harness_url)
    page.wait_for_function("window.harnessReady === true")
    page.evaluate(f"document.getElementById('root').style.width = '{width}px'")
    viz = QKViz(make_embedding(n_layers=2, n_heads=3, lengths=(9, 7, 8)))
    mount(page, harness_url, viz, first=False)
    page.wait_for_timeout(200)
    y0 = _canvas_y(page)
    box = page.locator("#w0 .qk-search")
    for query in ("t", "the", "[cls]", "zzz-no-match", ""):
        box.fill(query)
        expected = "" if not query else str(viz.search(query))
        page.wait_for_function(f"document.querySelector('#w0 .qk-root').dataset.qkSearchCount === '{expected}'")
        page.wait_for_timeout(50)
        assert _canvas_y(page) == y0, (width, query)
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / f"harness-search-still-{width}.png"))


def _darkness(px, x, y, r=2):
    """How far the pixels around (x, y) are from the white background (the most distant one)."""
    x, y = round(x), round(y)
    patch = px[y - r : y + r + 1, x - r : x + r + 1, :3].astype(int)
    return int(np.abs(patch - 255).sum(axis=2).max())


def _screenshot_pixels(page, wid="w0"):
    import io

    from PIL import Image

    png = page.locator(f"#{wid} canvas.qk-canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_a_stack_of_dimmed_points_never_outshines_a_match(page, harness_url):
    """27 non-matching queries on one spot, dimmed by a search, stay fainter than the one match."""
    from qkviz import Embedding

    from ._fakes import make_tokens

    tokens = make_tokens([3] * 27)
    tokens.loc[1, ["token", "display"]] = "zebra"  # seq 0, pos 1: the one match
    n = len(tokens)
    rng = np.random.default_rng(0)
    xy = np.column_stack([rng.uniform(-0.9, 0.9, 2 * n), rng.choice([-0.9, 0.9], 2 * n)])
    cls = np.flatnonzero(tokens["pos"].to_numpy() == 0)
    xy[cls] = (-0.5, 0.0)  # every [CLS] query on one spot
    xy[1] = (0.5, 0.0)  # the match, alone
    emb = Embedding.from_coords({(0, 0): xy}, tokens)
    viz = QKViz(emb, layer=0, head=0)
    assert viz.search("zebra") == 1
    mount(page, harness_url, viz)
    assert page.locator("#w0 .qk-root").get_attribute("data-qk-search-count") == "1"
    page.wait_for_timeout(300)
    px = _screenshot_pixels(page)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    c = emb.coords(0, 0)
    scale = px.shape[1] / box["width"]
    to_px = lambda p: [v * scale - o * scale for v, o in zip(to_screen(box, *c[p]), (box["x"], box["y"]))]  # noqa: E731
    stack, match = _darkness(px, *to_px(cls[0])), _darkness(px, *to_px(1))
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "harness-search-stack.png"))
    assert match > 150, match  # the match is drawn in full colour
    assert stack < 0.5 * match, (stack, match)


def test_a_lasso_that_replaces_the_clicked_point_clears_its_lines(page, harness_url):
    emb = make_embedding(n_layers=1, n_heads=2, lengths=(30, 30, 30), seed=3)
    viz = QKViz(emb, layer=0, head=0, lines_k=4)
    mount(page, harness_url, viz)
    xy = emb.coords(0, 0)
    s = SINGLE_SCALE
    # the clicked point: an isolated query in the right half; the lasso: a rectangle in the left half
    p = _isolated_point(xy, [i for i in range(emb.n_tokens) if xy[i, 0] * s > 0.3])
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    click_at(page, *to_screen(box, *xy[p]))
    page.wait_for_function("document.querySelector('#w0 .qk-root').dataset.qkLines !== ''")
    page.locator("#w0 .qk-lasso").click()
    x0, y0 = round(box["x"] + 0.1 * box["width"]), round(box["y"] + 0.2 * box["height"])
    x1, y1 = round(box["x"] + 0.5 * box["width"]), round(box["y"] + 0.8 * box["height"])
    drag_rectangle(page, x0, y0, x1, y1)
    page.wait_for_function("Number(document.querySelector('#w0 .qk-root').dataset.qkSelected) > 1")
    page.wait_for_timeout(200)
    root = page.locator("#w0 .qk-root")
    root.screenshot(path=str(ARTIFACTS / "harness-lasso-after-click.png"))
    wire = page.evaluate(f"() => ({SELECTION_JS})(models.w0.get('_selection'))")
    assert p not in wire
    assert root.get_attribute("data-qk-lines") == ""
    # and a selection from Python that drops the clicked point clears them too
    click_at(page, *to_screen(box, *xy[p]))  # lasso mode: a click still picks a point
    page.locator("#w0 .qk-lasso").click()
    click_at(page, *to_screen(box, *xy[p]))
    page.wait_for_function("document.querySelector('#w0 .qk-root').dataset.qkLines !== ''")
    page.evaluate(
        """(idx) => models.w0.set('_selection',
        {view: new DataView(new Uint32Array(idx).buffer), dtype: 'uint32', shape: [idx.length]})""",
        [0 if p else 1],
    )
    page.wait_for_function("document.querySelector('#w0 .qk-root').dataset.qkLines === ''")
    assert page.qk_errors == []


def test_the_matrix_names_no_head_in_its_dropdowns(page, harness_url):
    viz = QKViz(make_embedding(n_layers=2, n_heads=3))
    mount(page, harness_url, viz)
    layer, head = page.locator("#w0 .qk-layer"), page.locator("#w0 .qk-head")
    shown = "(s) => s.selectedOptions[0].textContent"
    assert layer.evaluate(shown) == "layer –" and head.evaluate(shown) == "head –"
    layer.select_option("1")  # from the matrix: that layer's first head
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='single']")
    assert page.evaluate("[models.w0.get('layer'), models.w0.get('head')]") == [1, 0]
    assert layer.evaluate(shown) == "layer 1" and head.evaluate(shown) == "head 0"
    page.locator("#w0 .qk-back").click()
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='matrix']")
    assert layer.evaluate(shown) == "layer –" and head.evaluate(shown) == "head –"


def test_the_sequence_legend_counts_sequences(page, harness_url):
    emb = make_embedding(n_layers=1, n_heads=1, lengths=(3,) * 30)
    viz = QKViz(emb, color="sequence")
    mount(page, harness_url, viz)
    items = page.locator("#w0 .qk-legend-item").all_inner_texts()
    assert items[:12] == [f"seq {i}" for i in range(12)]
    assert items[12] == "+18 more sequences"
    assert "colours repeat every 20" in page.locator("#w0 .qk-legend").inner_text()
