"""The research lens end to end in a real JupyterLab with a kernel (``lens.ipynb``).

A tiny random BERT captured with value vectors: the head atlas (tint, top-N filter, ranking, the
similar-heads map), the live probe typed into the widget (captured by the kernel with the same
model, placed in every head, drawn with its lines), the value-norm colour field and the value-
weighted heatmap beside the raw one, and ``qkviz.compare``'s two linked widgets. Screenshots go to
``test-artifacts/lens-*.png``.
"""

from __future__ import annotations

import pytest

from _browser import click_at

from .conftest import ARTIFACTS
from .test_lab_browser import read_state, run_cell

pytestmark = pytest.mark.browser


def _open(page, jupyter):
    page.goto(jupyter["url"] + "/lab/tree/lens.ipynb?reset", wait_until="domcontentloaded")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=60_000)
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
        const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
        return k && k.status === 'idle'; }""",
        timeout=60_000,
    )


def test_lens_in_jupyterlab(jupyter, page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    state = jupyter["state"]
    _open(page, jupyter)
    run_cell(page, 0)
    root = page.locator(".qk-root").first
    page.wait_for_selector(".qk-root[data-qk-ready='1']", state="attached", timeout=120_000)
    read_state(state, lambda s: s.get("probe_wire") == 0 and "right" not in s)
    root.scroll_into_view_if_needed()

    # ---- the atlas: tint by a score, keep the top 3, rank --------------------------------------
    assert page.locator(".qk-atlas-score option").count() >= 8  # — + 7 scores (+ the _vw ones)
    page.locator(".qk-atlas-score").select_option("entropy")
    page.locator(".qk-atlas-top").fill("3")
    page.locator(".qk-atlas-top").dispatch_event("change")
    page.wait_for_selector(".qk-root[data-qk-atlas='entropy:3:desc']")
    cells = page.locator(".qk-cell")
    n_cells = cells.count()
    assert n_cells == 8  # 2 layers x 4 heads
    kept = [i for i in range(n_cells) if cells.nth(i).get_attribute("data-out") != "true"]
    assert len(kept) == 3
    values = [float(cells.nth(i).get_attribute("data-score")) for i in range(n_cells)]
    assert sorted(kept) == sorted(sorted(range(n_cells), key=lambda i: -values[i])[:3])
    assert page.locator(".qk-simmap-dot").count() == n_cells
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    root.screenshot(path=str(ARTIFACTS / "lens-atlas.png"))

    # ---- the probe, typed into the widget and placed by the kernel ------------------------------
    page.locator(".qk-probe-text").fill("The cat sat on the mat.")
    page.locator(".qk-probe-text").press("Enter")
    st = read_state(state, lambda s: s.get("probed"), timeout=60)
    page.wait_for_selector(f".qk-root[data-qk-probe='{st['probed']}']", timeout=30_000)
    assert st["probe_wire"] == st["probed"] == 9  # [CLS] the cat sat on the mat . [SEP]
    page.wait_for_timeout(300)
    root.screenshot(path=str(ARTIFACTS / "lens-probe-matrix.png"))
    # open the best-ranked head from the list: the probe's points and attention lines there
    first_row = page.locator(".qk-atlas-row").first
    target = first_row.locator("span").first.inner_text()  # "L1 H2"
    first_row.click()
    layer, head = (int(x[1:]) for x in target.split())
    read_state(state, lambda s: (s["layer"], s["head"]) == (layer, head))
    page.wait_for_function("Number(document.querySelector('.qk-root').dataset.qkProbeLines) > 0", timeout=30_000)
    assert page.locator(".qk-atlas-kv").count() >= 7
    page.wait_for_timeout(300)
    root.screenshot(path=str(ARTIFACTS / "lens-probe-head.png"))

    # ---- values: colour by ‖v‖, and the value-weighted heatmap beside the raw one ---------------
    page.locator(".qk-color").select_option("value_norm")
    read_state(state, lambda s: s["color"] == "value_norm")
    page.locator(".qk-probe-clear").click()
    read_state(state, lambda s: s.get("probed") is None)
    box = page.locator("canvas.qk-canvas").first.bounding_box()
    # click the centre of the view, then pick whatever point the scatter selected
    click_at(page, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.locator("button[data-tab='heatmap']").first.click()
    page.wait_for_selector("[data-name='heat-other']:not([hidden])", timeout=30_000)
    assert page.locator(".qkv-heat-pair canvas.qkv-heat").count() == 2
    page.wait_for_timeout(300)
    root.screenshot(path=str(ARTIFACTS / "lens-values.png"))

    # ---- compare: two linked widgets --------------------------------------------------------------
    run_cell(page, 1)
    page.wait_for_function("document.querySelectorAll(\".qk-root[data-qk-ready='1']\").length === 3", timeout=120_000)
    left = page.locator(".qk-root").nth(1)
    right = page.locator(".qk-root").nth(2)
    left.scroll_into_view_if_needed()
    read_state(state, lambda s: "right" in s)
    left.locator(".qk-cell").nth(5).evaluate("(e) => e.dispatchEvent(new MouseEvent('mousemove', {bubbles: true}))")
    # open a head in the left widget: the right one follows (jslink in the browser)
    # aim at the cell itself: the matrix chooses its orientation by the widget's aspect
    cbox = left.locator(".qk-cell[data-layer='1'][data-head='1']").bounding_box()
    click_at(page, cbox["x"] + cbox["width"] / 2, cbox["y"] + cbox["height"] / 2)
    st = read_state(state, lambda s: s["left"] == [1, 1] and s["right"] == [1, 1], timeout=30)
    assert st["right"] == [1, 1]
    page.wait_for_function("document.querySelectorAll('.qk-root')[2].dataset.qkMode === 'single'", timeout=30_000)
    # hovering points in the left widget rings the same token in the right one
    lbox = left.locator("canvas.qk-canvas").bounding_box()
    ringed = False
    for fx in (0.3, 0.4, 0.5, 0.6, 0.7):
        for fy in (0.3, 0.45, 0.6, 0.7):
            page.mouse.move(lbox["x"] + fx * lbox["width"], lbox["y"] + fy * lbox["height"])
            page.wait_for_timeout(80)
            if right.get_attribute("data-qk-hover-ring"):
                ringed = True
                break
        if ringed:
            break
    assert ringed, "no hover reached the right widget"
    page.wait_for_timeout(200)
    page.locator(".widget-hbox").first.screenshot(path=str(ARTIFACTS / "lens-compare.png"))
    assert page.qk_errors == []
