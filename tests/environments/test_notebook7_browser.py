"""The widget in a real Jupyter Notebook 7 (server, kernel, headless Chromium).

The notebook (``notebook7.ipynb``) builds a QKViz of a small real capture focused on one head; the
test checks that it draws, that a click and a lasso reach the kernel (read back by executing the
notebook's second cell, which prints ``viz.selected``), and that the side panel's sentence view,
answered by the kernel through anywidget's command messages, shows the clicked point's sequence.
"""

from __future__ import annotations

import json
import time

import pytest

from ._drive import (
    check_panel,
    click_isolated_query,
    ink,
    lasso_rectangle,
    parse_report,
    shot,
    wait_ready,
)
from ._kernel import CELL

pytestmark = pytest.mark.browser

_APP = "window.jupyterapp.shell.currentWidget"


def _run_cell(page, i: int) -> None:
    page.evaluate(f"() => {{ {_APP}.content.activeCellIndex = {i}; }}")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")


def _read_selection(page, pred, timeout=30.0) -> dict:
    """Execute the report cell until its printed selection satisfies ``pred``; returns the report."""
    t0, last = time.time(), None
    cell = f"{_APP}.content.widgets[1].model"
    while time.time() - t0 < timeout:
        before = page.evaluate(f"() => {cell}.executionCount ?? 0")
        _run_cell(page, 1)
        page.wait_for_function(
            f"""(n) => {{ const c = {cell};
            return (c.executionCount ?? 0) > n && JSON.stringify(c.outputs.toJSON()).includes('QK-SELECTED'); }}""",
            arg=before,
            timeout=30_000,
        )
        outputs = page.evaluate(f"() => {cell}.outputs.toJSON()")
        text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
        last = parse_report(text)
        if pred(last):
            return last
        page.wait_for_timeout(300)
    raise AssertionError(f"the kernel never reported the expected selection; last={last}")


def test_notebook7_end_to_end(notebook7, page):
    t0 = time.time()
    page.goto(notebook7["url"] + "/notebooks/notebook7.ipynb", wait_until="domcontentloaded")
    page.wait_for_function(
        f"""() => {{ const w = window.jupyterapp && {_APP};
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return k && k.status === 'idle'; }}""",
        timeout=60_000,
    )
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"  # Notebook 7, not Lab
    _run_cell(page, 0)
    wait_ready(page)
    page.locator("canvas.qk-canvas").scroll_into_view_if_needed()
    page.wait_for_timeout(300)

    # it draws: query (green) and key (pink) points on the white background
    counts = ink(page)
    assert counts["green"] > 150 and counts["pink"] > 150, counts
    shot(page, "env-notebook7-grid.png")

    # click a query: attention lines (exact attention from the kernel), selection in Python, sentence view
    p = click_isolated_query(page)
    page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=30_000)
    lines = json.loads(page.locator(".qk-root").get_attribute("data-qk-lines"))
    n_points = len(page.locator(".qk-root").evaluate("(r) => Array.from(r.qkScreenPositions())")) // 2
    expected = CELL * n_points + p
    assert lines["from"] == expected and len(lines["to"]) == 5
    report = _read_selection(page, lambda r: r["index"] != [])
    assert report["index"] == [expected]
    check_panel(page, report)
    page.mouse.move(5, 5)  # hide the tooltip for the picture
    shot(page, "env-notebook7-panel.png")

    # lasso: exactly the points inside the rectangle reach the kernel
    sure, edge = lasso_rectangle(page)
    assert len(sure) > 10
    report = _read_selection(page, lambda r: len(r["index"]) > 1)
    got = set(report["index"])
    assert sure <= got <= sure | edge, (sorted(sure ^ got), sorted(edge))
    page.wait_for_timeout(200)
    shot(page, "env-notebook7-lasso.png")
    assert page.qk_errors == []
    print(f"\n[timing] notebook7: page to last check {time.time() - t0:.1f} s")  # about 15-35 s here
