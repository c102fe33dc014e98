"""A notebook saved with its outputs, shown without a kernel: what nbconvert's HTML (and so nbviewer)
shows of a QKViz output, opened in headless Chromium with every network request blocked.

The notebook is executed by nbclient and saved the way JupyterLab and Notebook 7 save by default
(no widget state: "Save Widget State Automatically" is off), then converted by nbconvert's HTML
exporter (lab template). nbconvert skips the widget view when the notebook holds no state for its
model and takes the next type of the bundle (``WidgetsDataTypeFilter``), so the page shows qkviz's
fallbacks: the picture (``image/png``) and, with ``fallback="page"``, the interactive standalone page.

With widget state saved (nbclient's own default, or JupyterLab's setting turned on) nbconvert shows
the widget view instead, which needs html-manager from a CDN: that case is checked without a
browser below, to keep docs/environments.md honest.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from .conftest import ARTIFACTS, TESTS

pytestmark = pytest.mark.browser

SETUP = """import os, sys
sys.path.insert(0, os.environ["QK_TESTS"])
from environments._kernel import HEAD, LAYER, small_embedding
import qkviz
emb = small_embedding()"""
PICTURE = "viz = qkviz.QKViz(emb, layer=LAYER, head=HEAD, height=420)\nviz"
PAGE = 'page = qkviz.QKViz(emb, fallback="page", height=420)\npage'
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _execute(tmp_path: pathlib.Path, store_widget_state: bool):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (SETUP, PICTURE, PAGE)]
    os.environ["QK_TESTS"] = str(TESTS)  # the kernel inherits it
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=store_widget_state,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    return nb


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The notebook as JupyterLab saves it by default, and its nbconvert HTML file."""
    from nbconvert import HTMLExporter

    tmp = tmp_path_factory.mktemp("saved")
    nb = _execute(tmp, store_widget_state=False)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html = tmp / "saved.html"
    html.write_text(body, encoding="utf-8")
    return {"nb": nb, "html": html, "body": body}


def _outputs(nb, cell):
    return [o for o in nb.cells[cell].outputs if o.get("output_type") in ("display_data", "execute_result")]


def test_the_saved_outputs_carry_the_fallbacks(saved):
    nb = saved["nb"]
    assert "widgets" not in nb.metadata  # as JupyterLab saves by default
    (pic,) = _outputs(nb, 1)
    assert {WIDGET_VIEW, "image/png", "text/plain"} <= set(pic["data"]) and "text/html" not in pic["data"]
    (page,) = _outputs(nb, 2)
    html = page["data"]["text/html"]
    assert html.startswith('<img class="qkviz-picture"') and "<iframe" in html and "image/png" in page["data"]
    # nbconvert took the fallbacks (no widget state for these models), not the widget views
    assert WIDGET_VIEW not in saved["body"]
    assert saved["body"].count("data:image/png;base64,") >= 1 and "srcdoc=" in saved["body"]


def _ink(rgba: list[int]) -> dict[str, int]:
    px = np.asarray(rgba, np.int32).reshape(-1, 4)[:, :3]
    r, g, b = px.T
    return {"query": int(((g > r + 30) & (g > b + 10)).sum()), "key": int(((r > g + 40) & (r > b + 10)).sum())}


def test_nbconvert_html_shows_the_layout_offline(saved, page):
    external: list[str] = []

    def route(r):
        if r.request.url.startswith(("file://", "data:", "blob:", "about:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(saved["html"].as_uri())
    # 1. the picture: the matrix of all heads and the focused head, in query green and key pink
    img = page.locator("img[src^='data:image/png']").first
    img.wait_for(state="visible", timeout=30_000)
    rgba = page.evaluate(
        """(img) => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0); return Array.from(g.getImageData(0, 0, c.width, c.height).data); }""",
        img.element_handle(),
    )
    ink = _ink(rgba)
    assert ink["query"] > 500 and ink["key"] > 500, ink
    img.scroll_into_view_if_needed()
    img.screenshot(path=str(ARTIFACTS / "saved-notebook-picture.png"))
    # 2. fallback="page": the standalone page inside the notebook page, drawing with no kernel
    frame = page.frame_locator("iframe.qkviz-page")
    frame.locator("#qkviz-root[data-qk-static='ready'] .qk-root[data-qk-ready='1']").wait_for(timeout=60_000)
    frame.locator("canvas.qk-canvas").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    canvas_ink = frame.locator("canvas.qk-canvas").evaluate(
        """(c) => { const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const x = g.getContext('2d'); x.drawImage(c, 0, 0); return Array.from(x.getImageData(0, 0, g.width, g.height).data); }"""
    )
    assert sum(_ink(canvas_ink).values()) > 200
    assert frame.locator(".qk-cell").count() == 8  # 2 layers x 4 heads
    # where the page runs, it replaced the picture that sanitised viewers keep
    assert page.locator("img.qkviz-picture").count() == 0
    page.locator("iframe.qkviz-page").screenshot(path=str(ARTIFACTS / "saved-notebook-page.png"))
    # nothing of qkviz's left the machine (nbconvert's own page may ask for MathJax and fonts)
    assert not [u for u in external if "qkviz" in u or "anywidget" in u], external
    assert page.qk_errors == []


def test_with_saved_widget_state_nbconvert_shows_the_cdn_widget(tmp_path):
    """nbclient's default keeps widget state: nbconvert then emits the widget view (html-manager from
    unpkg, anywidget from a CDN), which shows nothing offline; the state holds the picture, which the
    front end shows when it runs there without a kernel (js/src/lifecycle.js)."""
    from nbconvert import HTMLExporter

    nb = _execute(tmp_path, store_widget_state=True)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    (pic,) = _outputs(nb, 1)
    model = state[pic["data"][WIDGET_VIEW]["model_id"]]
    assert model["model_module"] == "anywidget" and "_esm" in model["state"]
    assert any(b["path"] == ["_picture", "view"] for b in model.get("buffers", []))
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert (
        f'"model_id": "{pic["data"][WIDGET_VIEW]["model_id"]}"' in body or pic["data"][WIDGET_VIEW]["model_id"] in body
    )
    assert "html-manager" in body


def test_notebook7_shows_the_picture_of_an_untrusted_saved_notebook(saved, notebook7, page):
    """Someone else's notebook (not signed by this server: untrusted) opened in Notebook 7, whose output
    area is JupyterLab's: the widget renderer is unsafe, so the output shows the safe ``image/png``."""
    import nbformat

    root = notebook7["home"] / "root"
    nbformat.write(saved["nb"], root / "saved.ipynb")
    page.goto(notebook7["url"] + "/notebooks/saved.ipynb", wait_until="domcontentloaded")
    img = page.locator(".jp-OutputArea-output img[src^='data:image/png']").first
    img.wait_for(state="visible", timeout=60_000)
    # both outputs: the first as image/png, the second's text/html sanitised down to its picture
    assert page.locator(".jp-OutputArea-output img[src^='data:image/png']").count() >= 2
    assert page.evaluate("(img) => img.naturalWidth", img.element_handle()) > 300
    assert page.locator("iframe.qkviz-page").count() == 0  # no standalone page in an untrusted notebook
    img.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "saved-notebook-notebook7-untrusted.png"))
