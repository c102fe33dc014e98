"""Level of detail through the kernel's own request handlers (``qkviz.widget._commands.dispatch``).

The whole front end asks the test server, which answers with a real ``QKViz``'s state: the matrix
pulls only the sample of every head ("sample"), the focused head is pulled whole ("points"),
searched and selected points outside the sample come by index ("sample" with points,
"points_at"), and a lasso on a 3-D matrix selects from every point of the cells it crosses.
"""

from __future__ import annotations

import numpy as np
import pytest

from _browser import drag_rectangle
from _wire import SELECTION_JS
from qkviz.wire import _lod

from .conftest import open_widget

pytestmark = pytest.mark.browser

ROOT = "document.querySelector('.qk-root')"


@pytest.fixture
def kinds(monkeypatch):
    """The kinds of the requests the page sent, in order."""
    from qkviz.widget import _commands

    seen = []
    real = _commands.dispatch

    def spy(state, request):
        seen.append(request.get("kind"))
        return real(state, request)

    monkeypatch.setattr(_commands, "dispatch", spy)
    return seen


@pytest.fixture
def grid(tiny_capture, monkeypatch):
    from qkviz import Embedding

    cells = len(tiny_capture.layers) * len(tiny_capture.heads)
    monkeypatch.setattr(_lod, "MATRIX_POINTS", cells * 12)  # 12 points of each head on the matrix
    monkeypatch.setattr(_lod, "CELL_MIN", 4)
    n = len(tiny_capture.tokens)
    rng = np.random.default_rng(8)
    coords = {(la, h): rng.uniform(-1, 1, (2 * n, 2)) for la in tiny_capture.layers for h in tiny_capture.heads}
    return Embedding.from_coords(coords, tiny_capture.tokens, capture=tiny_capture)


def drawn(page):
    return int(page.locator(".qk-root").get_attribute("data-qk-drawn"))


def test_the_kernel_sends_the_sample_then_the_focused_head_whole(
    chromium_browser, views_server, widget_site, grid, kinds, artifacts_dir
):
    from qkviz.widget import QKViz

    viz = QKViz(grid)
    st = viz.state
    per, cells = 2 * st.n_tokens, len(st.cells)
    assert st.sample_points == 12 < per
    page, errors = open_widget(chromium_browser, views_server, viz, "matrix")
    assert drawn(page) == cells * 12
    assert "points" not in kinds and "sample" in kinds  # never the whole grid
    # search: the matches outside the sample come from the kernel, for every head
    kinds.clear()
    match = st.match_tokens("the", False)
    pts = np.flatnonzero(np.concatenate([match, match]))
    extra = np.setdiff1d(pts, st.order[:12])
    page.evaluate("model.set('search_query', 'the')")
    page.wait_for_function(f"+{ROOT}.dataset.qkDrawn === {cells * (12 + len(extra))}")
    assert kinds == ["sample"]
    # a selection from Python outside what is drawn: asked for by index
    kinds.clear()
    last = [int(p) for p in st.order[::-1] if not match[p % st.n_tokens]][:2]  # neither sampled nor searched
    far = [last[0], per + last[1]]
    page.evaluate(
        """(idx) => model.set('_selection',
        {view: new DataView(new Uint32Array(idx).buffer), dtype: 'uint32', shape: [idx.length]})""",
        far,
    )
    page.wait_for_function(f"+{ROOT}.dataset.qkDrawn === {cells * (12 + len(extra)) + 2}")
    assert kinds == ["points_at"]
    # the focused head: every point
    kinds.clear()
    page.locator(".qk-cell[data-layer='1'][data-head='2']").click(force=True)
    page.wait_for_selector(".qk-root[data-qk-mode='single']")
    assert drawn(page) == per and kinds[0] == "points"
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "lod_kernel_single.png"))
    assert errors == []
    page.close()


def test_3d_matrix_lasso_selects_from_every_point(
    chromium_browser, views_server, widget_site, tiny_capture, monkeypatch
):
    from qkviz import Embedding
    from qkviz.widget import QKViz

    cells = len(tiny_capture.layers) * len(tiny_capture.heads)
    monkeypatch.setattr(_lod, "MATRIX_POINTS", cells * 10)
    monkeypatch.setattr(_lod, "CELL_MIN", 4)
    n = len(tiny_capture.tokens)
    rng = np.random.default_rng(5)
    coords = {(la, h): rng.normal(size=(2 * n, 3)) for la in tiny_capture.layers for h in tiny_capture.heads}
    emb = Embedding.from_coords(coords, tiny_capture.tokens, capture=tiny_capture)
    viz = QKViz(emb, theme="light")
    page, errors = open_widget(chromium_browser, views_server, viz, "matrix")
    assert drawn(page) == cells * 10
    box = page.locator("canvas.qk-canvas").bounding_box()
    page.locator(".qk-lasso").click()
    x0, y0 = box["x"] + 0.05 * box["width"], box["y"] + 0.05 * box["height"]
    x1, y1 = box["x"] + 0.6 * box["width"], box["y"] + 0.6 * box["height"]
    drag_rectangle(page, x0, y0, x1, y1, steps=10)
    page.wait_for_function(f"+{ROOT}.dataset.qkSelected > 0 && !{ROOT}.dataset.qkLasso")
    sent = np.array(page.evaluate(f"() => ({SELECTION_JS})(window.model.get('_selection'))"))
    per = 2 * n
    in_sample = np.isin(sent % per, viz.state.order[:10])
    assert (~in_sample).sum() > 0, "the lasso kept to the drawn sample"
    # after the lasso every selected point is drawn (forced into the matrix) and lies inside it
    page.wait_for_function(f"+{ROOT}.dataset.qkDrawn >= {cells * 10 + int((~in_sample).sum())}")
    xy = np.array([np.nan if v is None else v for v in page.evaluate(f"Array.from({ROOT}.qkScreenPositions())")])
    xy = xy.reshape(-1, 2)[sent]
    assert np.isfinite(xy).all()
    sx, sy = xy[:, 0] + box["x"], xy[:, 1] + box["y"]
    assert ((sx > x0 - 2) & (sx < x1 + 2) & (sy > y0 - 2) & (sy < y1 + 2)).all()
    assert errors == []
    page.close()
