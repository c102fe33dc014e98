"""End to end in a real JupyterLab with a kernel: the page acts, Python sees it (and vice versa).

The notebook (``lab.ipynb``) shows a QKViz of a seeded test embedding; an observer writes the
Python-side state to a JSON file after every change, which this test polls.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from _browser import click_at, drag_rectangle
from qkviz.wire import SINGLE_SCALE

from ._fakes import make_embedding
from .conftest import ARTIFACTS
from .test_harness_browser import _isolated_point, canvas_pixels, non_background, to_screen

pytestmark = pytest.mark.browser

EMB = dict(n_layers=2, n_heads=3, lengths=(12, 10, 9), seed=1)  # same as lab.ipynb


def read_state(path, pred, timeout=30):
    t0, last = time.time(), None
    while time.time() - t0 < timeout:
        if path.exists():
            last = json.loads(path.read_text())
            if pred(last):
                return last
        time.sleep(0.1)
    raise AssertionError(f"python state never matched; last={last}")


def run_cell(page, i):
    page.evaluate(f"() => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = {i}; }}")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")


def test_lab_end_to_end(jupyter, page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    emb = make_embedding(**EMB)
    n = emb.n_tokens
    page.goto(jupyter["url"] + "/lab/tree/lab.ipynb?reset", wait_until="domcontentloaded")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=60_000)
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return k && k.status === 'idle'; }""",
        timeout=60_000,
    )
    run_cell(page, 0)
    page.wait_for_selector(".qk-root[data-qk-ready='1']", state="attached", timeout=60_000)
    canvas = page.locator("canvas.qk-canvas")
    canvas.scroll_into_view_if_needed()
    state = jupyter["state"]
    read_state(state, lambda s: s["layer"] is None)

    # the grid renders: ink in each of the 2 x 3 cells
    page.wait_for_timeout(300)
    ink = non_background(canvas_pixels_lab(page))
    h, w = ink.shape
    for r in range(2):
        for c in range(3):
            cell = ink[
                int((r + 0.15) * h / 2) : int((r + 0.85) * h / 2), int((c + 0.15) * w / 3) : int((c + 0.85) * w / 3)
            ]
            assert cell.sum() > 20, (r, c)
    page.screenshot(path=str(ARTIFACTS / "lab-grid.png"))

    # click a cell -> Python sees layer/head
    box = canvas.bounding_box()
    click_at(page, box["x"] + box["width"] * (2.5 / 3), box["y"] + box["height"] * (1.5 / 2))
    read_state(state, lambda s: (s["layer"], s["head"]) == (1, 2))
    page.wait_for_selector(".qk-root[data-qk-mode='single'][data-qk-head='2']")
    # the head is fetched whole from the kernel, then drawn: click once every point is on screen
    page.wait_for_selector(f".qk-root[data-qk-mode='single'][data-qk-drawn='{2 * n}']", state="attached")

    # click a query -> lines to exactly its top-k keys (exact attention, fetched from the kernel)
    page.wait_for_timeout(100)
    xy = emb.coords(1, 2)
    p = _isolated_point(xy, range(n))
    canvas.scroll_into_view_if_needed()  # the square single view may reach below the fold
    box = canvas.bounding_box()
    click_at(page, *to_screen(box, *xy[p]))
    page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=30_000)
    lines = json.loads(page.locator(".qk-root").get_attribute("data-qk-lines"))
    cell = 1 * 3 + 2
    seq = int(emb.tokens.seq[p])
    first = int(np.flatnonzero(emb.tokens.seq.to_numpy() == seq)[0])
    a = emb.attention(1, 2, seq)[p - first]
    top = np.argsort(-a, kind="stable")[:3]
    assert lines["from"] == cell * 2 * n + p
    assert lines["to"] == [cell * 2 * n + n + first + j for j in top]
    np.testing.assert_allclose(lines["weights"], a[top], rtol=1e-6)
    page.mouse.move(box["x"] + 2, box["y"] + 2)  # hide the tooltip for the picture
    page.screenshot(path=str(ARTIFACTS / "lab-lines.png"))

    read_state(state, lambda s: s["selection"] == [cell * 2 * n + p])
    # lasso a rectangle -> exactly the points inside reach Python, and viz.selected has them
    page.locator(".qk-lasso").click()
    x0, y0 = round(box["x"] + 0.15 * box["width"]), round(box["y"] + 0.2 * box["height"])
    x1, y1 = round(box["x"] + 0.6 * box["width"]), round(box["y"] + 0.75 * box["height"])
    drag_rectangle(page, x0, y0, x1, y1)
    lx = lambda v: ((v - box["x"]) / box["width"] * 2 - 1) / SINGLE_SCALE  # noqa: E731
    ly = lambda v: (1 - (v - box["y"]) / box["height"] * 2) / SINGLE_SCALE  # noqa: E731
    inside = (xy[:, 0] > lx(x0)) & (xy[:, 0] < lx(x1)) & (xy[:, 1] < ly(y0)) & (xy[:, 1] > ly(y1))
    expected = (cell * 2 * n + np.flatnonzero(inside)).tolist()
    assert expected, "the test rectangle should hold points"
    clicked = [cell * 2 * n + p]  # the query click above selected that one point
    st = read_state(state, lambda s: s["selection"] not in ([], clicked))
    assert st["selection"] == expected
    assert st["selected_index"] == expected
    assert st["selected_kind"] == ["query" if (i % (2 * n)) < n else "key" for i in expected]
    page.wait_for_timeout(200)
    page.screenshot(path=str(ARTIFACTS / "lab-selection.png"))

    # Python -> page: focus, search, colour
    run_cell(page, 1)
    page.wait_for_selector(".qk-root[data-qk-layer='0'][data-qk-head='1']", timeout=30_000)
    run_cell(page, 2)
    out = page.locator(".jp-OutputArea-output:has-text('SEARCH')")
    out.wait_for(timeout=30_000)
    count = int(out.inner_text().split()[-1])
    assert count == int(emb.tokens["display"].str.lower().str.contains("th").sum())
    page.wait_for_selector(f".qk-root[data-qk-search-count='{count}']", timeout=30_000)
    run_cell(page, 3)
    page.wait_for_function("document.querySelector('.qk-color').value === 'position'", timeout=30_000)
    # page -> Python: colour picked in the widget
    page.locator(".qk-color").select_option("sequence")
    read_state(state, lambda s: s["color"] == "sequence")
    assert page.qk_errors == []


def canvas_pixels_lab(page):
    return canvas_pixels(page, selector="canvas.qk-canvas")
