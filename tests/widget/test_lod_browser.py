"""Level of detail and the matrix layout in headless Chromium (the static transport's harness).

The matrix draws the sample of every head, plus searched and selected points; the focused head
draws all its points; a lasso on the matrix selects from every point of the cells it crosses; the
matrix fits grids of 72 to 1,024 heads. The budget is shrunk so that small grids are sampled.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from _browser import drag_rectangle
from _wire import SELECTION_JS
from qkviz.widget import QKViz
from qkviz.wire import CELL_FILL, _lod

from ._fakes import make_embedding
from .conftest import ARTIFACTS
from .test_harness_browser import mount

pytestmark = pytest.mark.browser

M = 40  # points per cell on the matrix in these tests


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setattr(_lod, "MATRIX_POINTS", 6 * M)
    monkeypatch.setattr(_lod, "CELL_MIN", 16)


def positions(page, wid="w0"):
    """The widget's screen positions (canvas CSS px): [grid point, 2] on the matrix (NaN: not drawn),
    [head point, 2] in the single view."""
    flat = page.evaluate(f"Array.from(document.querySelector('#{wid} .qk-root').qkScreenPositions())")
    return np.array([np.nan if v is None else v for v in flat], float).reshape(-1, 2)


def drawn(page, wid="w0"):
    return int(page.locator(f"#{wid} .qk-root").get_attribute("data-qk-drawn"))


def grid_embedding():
    return make_embedding(n_layers=2, n_heads=3, lengths=(40, 35, 45, 40), seed=4)  # 160 tokens, 320 points a head


def test_matrix_draws_the_sample_and_a_head_draws_everything(page, harness_url, small_budget):
    emb = grid_embedding()
    viz = QKViz(emb)
    per, order = 2 * emb.n_tokens, viz.state.order
    assert viz.state.sample_points == M < per
    mount(page, harness_url, viz)
    assert drawn(page) == 6 * M
    xy = positions(page)
    shown = np.flatnonzero(~np.isnan(xy[:, 0]))
    expected = np.sort(np.concatenate([c * per + order[:M] for c in range(6)]))
    np.testing.assert_array_equal(shown, expected)
    # each drawn point sits in its own cell, where its layout puts it
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    w, h = box["width"] / 3, box["height"] / 2
    for c in range(6):
        r, col = divmod(c, 3)
        pts = c * per + order[:M]
        want = np.stack(
            [
                (col + 0.5) * w + emb.coords(r, col)[order[:M], 0] * CELL_FILL * w / 2,
                (r + 0.5) * h - emb.coords(r, col)[order[:M], 1] * CELL_FILL * h / 2,
            ],
            1,
        )
        assert np.abs(xy[pts] - want).max() < 1.0
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "lod-matrix-sample.png"))
    # the focused head: every point, fetched whole
    page.locator("#w0 .qk-cell[data-layer='1'][data-head='2']").click(force=True)
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='single']")
    assert drawn(page) == per
    assert np.isfinite(positions(page)).all()
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "lod-single-whole.png"))
    assert page.qk_errors == []


def test_search_and_selection_are_drawn_beyond_the_sample(page, harness_url, small_budget):
    emb = grid_embedding()
    viz = QKViz(emb)
    per, order = 2 * emb.n_tokens, viz.state.order
    in_sample = np.zeros(per, bool)
    in_sample[order[:M]] = True
    mount(page, harness_url, viz)
    match = viz.state.match_tokens("cat", False)
    pts = np.flatnonzero(np.concatenate([match, match]))
    missing = pts[~in_sample[pts]]
    assert len(missing) > 0
    page.evaluate("models.w0.set('search_query', 'cat')")
    page.wait_for_function(
        f"Number(document.querySelector('#w0 .qk-root').dataset.qkDrawn) === {6 * (M + len(missing))}"
    )
    xy = positions(page)
    for c in range(6):  # every match, in every head, is on screen
        assert np.isfinite(xy[c * per + pts]).all()
    # a selection from Python, far down the draw order (never sampled): drawn and marked
    last = [int(p) for p in order[::-1] if not match[p % emb.n_tokens]][:2]  # neither sampled nor searched
    far = [4 * per + last[0], 1 * per + last[1]]
    page.evaluate(
        """(idx) => models.w0.set('_selection',
        {view: new DataView(new Uint32Array(idx).buffer), dtype: 'uint32', shape: [idx.length]})""",
        far,
    )
    page.wait_for_function(
        f"Number(document.querySelector('#w0 .qk-root').dataset.qkDrawn) === {6 * (M + len(missing)) + 2}"
    )
    assert np.isfinite(positions(page)[far]).all()
    assert page.locator("#w0 .qk-root").get_attribute("data-qk-selected") == "2"
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "lod-search-selection.png"))
    assert page.qk_errors == []


def test_lasso_on_the_matrix_selects_from_every_point(page, harness_url, small_budget):
    emb = grid_embedding()
    viz = QKViz(emb)
    per = 2 * emb.n_tokens
    mount(page, harness_url, viz)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    page.locator("#w0 .qk-lasso").click()
    # a rectangle over the right half of cell (0, 0) and the left half of cell (0, 1)
    fx0, fy0, fx1, fy1 = 0.2, 0.1, 0.45, 0.4
    x0, y0 = round(box["x"] + fx0 * box["width"]), round(box["y"] + fy0 * box["height"])
    x1, y1 = round(box["x"] + fx1 * box["width"]), round(box["y"] + fy1 * box["height"])
    drag_rectangle(page, x0, y0, x1, y1)
    page.wait_for_function("Number(document.querySelector('#w0 .qk-root').dataset.qkSelected) > 0")
    page.wait_for_function("!document.querySelector('#w0 .qk-root').dataset.qkLasso")
    # independent expectation over the FULL layouts of both cells (not only the drawn sample)
    w, h = box["width"] / 3, box["height"] / 2
    want = []
    for col in (0, 1):
        xy = emb.coords(0, col)
        px = box["x"] + (col + 0.5) * w + xy[:, 0] * CELL_FILL * w / 2
        py = box["y"] + 0.5 * h - xy[:, 1] * CELL_FILL * h / 2
        inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
        want += (col * per + np.flatnonzero(inside)).tolist()
    wire = page.evaluate(f"() => ({SELECTION_JS})(models.w0.get('_selection'))")
    assert sorted(wire) == sorted(want)
    page.wait_for_timeout(200)
    assert page.locator("#w0 .qk-root").get_attribute("data-qk-mode") == "matrix"  # the mouse-up opened no head
    in_sample = np.isin(np.array(want) % per, viz.state.order[:M])
    assert (~in_sample).sum() > in_sample.sum()  # most of them were never drawn on the matrix
    assert len(viz.state.selected(np.array(wire))) == len(want)
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / "lod-matrix-lasso.png"))
    assert page.qk_errors == []


def test_zooming_in_draws_the_cells_in_view_whole(page, harness_url, small_budget):
    emb = grid_embedding()
    viz = QKViz(emb)
    per, m = 2 * emb.n_tokens, viz.state.sample_points
    mount(page, harness_url, viz)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.25)
    root = page.locator("#w0 .qk-root")
    for _ in range(20):  # zoom around cell (0, 1): the cells in view are drawn whole
        page.mouse.wheel(0, -40)
        page.wait_for_timeout(350)
        if root.get_attribute("data-qk-whole"):
            break
    whole = [int(c) for c in root.get_attribute("data-qk-whole").split(",")]
    assert 1 in whole and root.get_attribute("data-qk-mode") == "matrix"
    page.wait_for_function(
        f"Number(document.querySelector('#w0 .qk-root').dataset.qkDrawn) === {6 * m + len(whole) * (per - m)}"
    )
    page.locator("#w0 .qk-fit").click()  # back to every head: the sample again
    page.wait_for_function(f"Number(document.querySelector('#w0 .qk-root').dataset.qkDrawn) === {6 * m}")
    assert page.qk_errors == []


def synthetic_grid(n_layers, n_heads, lengths=(12, 9)):
    return make_embedding(n_layers=n_layers, n_heads=n_heads, lengths=lengths, capture=False)


@pytest.mark.parametrize(
    ("n_layers", "n_heads", "transposed", "labels"),
    [(6, 12, False, "cells"), (30, 9, True, "axes"), (16, 32, False, "axes"), (32, 32, False, "axes")],
)
def test_the_matrix_fits_any_grid(page, harness_url, n_layers, n_heads, transposed, labels):
    """72 (MiniLM), 270 (SmolLM2), 512 (a 1B Llama) and 1,024 heads (an 8B model) in a 1,400-px page."""
    viz = QKViz(synthetic_grid(n_layers, n_heads))
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(harness_url)
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("document.getElementById('root').style.width = '1400px'")
    root = mount(page, harness_url, viz, first=False)
    assert root.get_attribute("data-qk-transposed") in (None, str(transposed).lower())
    assert (root.get_attribute("data-qk-transposed") == "true") == transposed
    assert root.get_attribute("data-qk-labels") == labels
    canvas = page.locator("#w0 canvas.qk-canvas").bounding_box()
    rows, cols = (n_heads, n_layers) if transposed else (n_layers, n_heads)
    cell = canvas["width"] / cols
    assert abs(canvas["height"] / rows - cell) < 1.0  # square cells
    # the grid uses the room it has: the width beside the panel or the height, within a cell
    room_w, room_h = 1400 - 360 - 34, 640 - 16
    assert canvas["width"] > room_w - cols or canvas["height"] > room_h - rows
    assert cell > (25 if n_layers * n_heads <= 270 else 15)  # the 18-px cells in a 180-px column
    if labels == "axes":
        for axis in ("rows", "cols"):
            boxes = [b.bounding_box() for b in page.locator(f"#w0 .qk-axis-{axis} .qk-axis-label").all()]
            assert len(boxes) >= 3
            key, size = ("y", "height") if axis == "rows" else ("x", "width")
            boxes.sort(key=lambda b: b[key])
            gaps = [b[key] - (a[key] + a[size]) for a, b in itertools.pairwise(boxes)]
            assert min(gaps) >= 0, f"{axis} labels overlap"
    else:
        texts = page.locator("#w0 .qk-cell-label").all_inner_texts()
        assert texts[:2] == ["L0 H0", "L0 H1"] and len(texts) == n_layers * n_heads
    page.locator("#w0 .qk-root").screenshot(path=str(ARTIFACTS / f"matrix-{n_layers * n_heads}-heads.png"))
    # a click on a cell still opens that head (through the orientation)
    layer, head = n_layers - 1, 1
    page.locator(f"#w0 .qk-cell[data-layer='{layer}'][data-head='{head}']").click(force=True)
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='single']")
    assert page.evaluate("[models.w0.get('layer'), models.w0.get('head')]") == [layer, head]
    assert page.qk_errors == []


def test_hover_names_the_head_under_the_pointer_when_transposed(page, harness_url):
    viz = QKViz(synthetic_grid(30, 9))
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(harness_url)
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("document.getElementById('root').style.width = '1400px'")
    mount(page, harness_url, viz, first=False)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    # transposed: column = layer, row = head; the centre of row 4, column 17
    page.mouse.move(box["x"] + box["width"] * (17.5 / 30), box["y"] + box["height"] * (4.5 / 9))
    assert page.locator("#w0 .qk-tooltip").inner_text() == "Layer 17 · Head 4"
    assert json.loads(json.dumps(page.locator("#w0 .qk-cell[data-hover='true']").get_attribute("data-layer"))) == "17"


def test_an_encoder_decoder_matrix_draws_each_attentions_sample(page, harness_url, monkeypatch):
    """Cells numbered attention after attention: the matrix of the shown attention draws its own
    sample (cross-attention: decoder queries and encoder keys only, never a parked point)."""
    import qkviz
    from capture import _zoo
    from qkviz._capture._run import capture
    from qkviz.data import demo_sentences

    model, tok = _zoo.build("bart")
    cap = capture((model, tok), demo_sentences(3), targets=["Le chat.", "Un chien aboie.", "Il pleut."],
                  batch_size=3, progress=False)  # fmt: skip
    emb = qkviz.embed(cap, method="pca", layers=[0], heads=[1, 2], executor="serial", cache=False, progress=False)
    monkeypatch.setattr(_lod, "MATRIX_POINTS", 2 * 10)
    monkeypatch.setattr(_lod, "CELL_MIN", 4)
    viz = QKViz(emb)
    st, per = viz.state, 2 * emb.n_tokens
    mount(page, harness_url, viz)
    root = page.locator("#w0 .qk-root")
    assert page.locator("#w0 select.qk-attn").input_value() == "cross"
    assert drawn(page) == 2 * st.sample_sizes["cross"] == 20
    off = st.attns[2]["cell_offset"]
    xy = positions(page)  # the shown attention's cells, from its first
    shown = np.flatnonzero(~np.isnan(xy[:, 0]))
    want = np.sort(np.concatenate([c * per + st.orders["cross"][:10] for c in range(2)]))
    np.testing.assert_array_equal(shown, want)
    box = page.locator("#w0 canvas.qk-canvas").bounding_box()
    assert (xy[shown] >= 0).all() and (xy[shown, 0] <= box["width"]).all()  # nothing parked is drawn
    ok = emb.present("cross")
    assert ok[st.orders["cross"][:10]].all()
    # another attention: its own sample
    page.locator("#w0 select.qk-attn").select_option("encoder")
    page.wait_for_function(
        f"document.querySelector('#w0 .qk-root')?.dataset.qkDrawn === '{2 * st.sample_sizes['encoder']}'"
    )
    # a cross head opened: every point it has
    page.locator("#w0 select.qk-attn").select_option("cross")
    page.wait_for_function("document.querySelector('#w0 .qk-status').textContent.includes('cross-attention')")
    page.evaluate("models.w0.set('layer', 0); models.w0.set('head', 2); models.w0.save_changes()")
    page.wait_for_selector("#w0 .qk-root[data-qk-mode='single']")
    # the mode flips first; the head, fetched whole, is drawn once it has arrived
    page.wait_for_function(f"document.querySelector('#w0 .qk-root')?.dataset.qkDrawn === '{per}'")
    assert drawn(page) == per and root.get_attribute("data-qk-head") == "2"
    assert page.evaluate("models.w0.get('attn')") == "cross" and off == 4
    assert page.qk_errors == []
