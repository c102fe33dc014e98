"""Patch thumbnails and 3-D layouts inside the real widget front end (real request handlers).

* an image capture draws one thumbnail per point of the focused head, cut from the atlas, at the
  point's screen position (pixels compared with the known flat patch colours), CLS as a marker;
* a ``dim=3`` embedding shows the focused head as an orbitable 3-D cloud: a click at a point's
  projected position (computed here, independently of the JS) picks it and draws lines to exactly
  Python's top-k keys;
* the matrix of a 3-D embedding draws every head through one shared camera and re-projects when a
  drag turns it (positions compared with the projection computed here).
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from _browser import click_at, pointer_to
from _wire import SELECTION_JS

from ._fakes import image_embedding
from .conftest import KEY_RGB, QUERY_RGB, open_widget

pytestmark = pytest.mark.browser

THUMB = 14  # js/src/canvas/thumbnails.js THUMB_SIZE
DEFAULT_CAMERA = {"theta": 0.6, "phi": 0.35, "distance": 3.2, "fov": math.pi / 4}  # views/scene3d.js


def project(xyz, theta, phi, distance, fov, **_):
    """Orbit camera (look-at the origin, y up) + perspective: NDC ``[point, 2]`` of ``xyz [point, 3]``."""
    eye = distance * np.array([math.cos(phi) * math.sin(theta), math.sin(phi), math.cos(phi) * math.cos(theta)])
    f = -eye / np.linalg.norm(eye)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    rel = np.asarray(xyz, np.float64) - eye
    depth = rel @ f
    t = 1 / math.tan(fov / 2)
    return np.stack([t * (rel @ r) / depth, t * (rel @ u) / depth], axis=1)


def _screenshot_rgb(locator):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def _isolated(xy, candidates):
    """The candidate whose nearest other point (on screen) is farthest away, and that distance."""
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    best = max(candidates, key=lambda i: d[i].min())
    return best, d[best].min()


# ---- thumbnails ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_viz():
    from qkviz import Embedding
    from qkviz.widget import QKViz

    fake, colours = image_embedding(n_images=2, grid=(3, 4), px=6)
    n = len(fake.tokens)
    xy = np.random.default_rng(3).uniform(-1, 1, size=(2 * n, 2))
    emb = Embedding.from_coords({(0, 0): xy}, fake.tokens, norms={(0, 0): np.ones(2 * n)}, capture=fake.capture)
    return QKViz(emb, layer=0, head=0, theme="light"), colours


def test_image_capture_adds_patch_colour_fields(image_viz):
    viz, colours = image_viz
    tok = viz.embedding.tokens
    cols = viz._columns
    assert {"row", "col", "mean_r", "mean_g", "mean_b", "brightness", "hue", "saturation"} <= set(cols)
    viz.color_by("brightness")  # accepted like any user column
    viz.color_by("patch_color")
    from qkviz.wire import binary_to_array

    bright = binary_to_array(cols["brightness"]["values"])
    s, r, c = (tok[k].to_numpy() for k in ("seq", "row", "col"))
    patch = r >= 0
    expect = colours[s[patch], r[patch], c[patch]] @ np.array([0.299, 0.587, 0.114]) / 255
    np.testing.assert_allclose(bright[patch], expect, atol=1e-5)
    assert np.isnan(bright[~patch]).all()  # CLS: no patch colour (shown as missing)
    rows = binary_to_array(cols["row"]["values"])
    np.testing.assert_array_equal(rows[patch], r[patch])
    viz.color_by("kind")


def test_thumbnails_show_each_patch_at_its_point(chromium_browser, views_server, widget_site, image_viz, artifacts_dir):
    viz, colours = image_viz
    page, errors = open_widget(chromium_browser, views_server, viz, "single")
    page.wait_for_selector("canvas.qkv-thumbs[data-drawn]", state="attached", timeout=10_000)
    page.wait_for_timeout(300)
    tok = viz.embedding.tokens
    n = len(tok)
    assert page.locator("canvas.qkv-thumbs").get_attribute("data-drawn") == str(2 * n)
    xy = np.array(page.evaluate("Array.from(document.querySelector('.qk-root').qkScreenPositions())")).reshape(-1, 2)
    row, col, seq = (tok[k].to_numpy() for k in ("row", "col", "seq"))
    patches = [p for p in range(2 * n) if row[p % n] >= 0]
    p, gap = _isolated(xy, patches)
    assert gap > THUMB, "test layout too crowded to see one thumbnail alone"
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_thumbnails.png"))
    shot = _screenshot_rgb(page.locator(".qk-stage"))  # what is on screen: scatter + overlay
    x, y = (int(round(v)) for v in xy[p])
    t = p % n
    want = colours[seq[t], row[t], col[t]]
    centre = shot[y - 3 : y + 4, x - 3 : x + 4].reshape(-1, 3)
    assert np.abs(centre - want).max() <= 12, (p, want, centre.mean(0))
    # the border tells queries (green) from keys (pink)
    edge = shot[y - THUMB // 2, x - 2 : x + 3].mean(0)
    border = QUERY_RGB if p < n else KEY_RGB
    assert np.abs(edge - border).max() < 60, (edge, border)
    # CLS is a diamond in the q/k colour, not a thumbnail
    cls = [q for q in range(2 * n) if row[q % n] < 0]
    c, cgap = _isolated(xy, cls)
    if cgap > THUMB:
        cx, cy = (int(round(v)) for v in xy[c])
        fill = shot[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(0)
        want_c = QUERY_RGB if c < n else KEY_RGB
        assert np.abs(fill - want_c).max() < 25, (fill, want_c)
    # the patch colour fields are offered in the colour menu
    options = page.locator(".qk-color option").evaluate_all("os => os.map((o) => o.value)")
    assert {"row", "col", "brightness", "hue", "patch_color"} <= set(options)
    # thumbnails off + colour by patch colour: the dot itself shows the patch's mean colour
    draws = int(page.locator(".qk-root").get_attribute("data-qk-draws"))
    page.locator("input.qk-thumbs").uncheck()
    page.locator(".qk-color").select_option("patch_color")
    page.wait_for_function(f"+document.querySelector('.qk-root').dataset.qkDraws > {draws}", timeout=5_000)
    page.wait_for_timeout(300)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_patch_color_dots.png"))
    dots = _screenshot_rgb(page.locator(".qk-stage"))
    dot = dots[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
    # 6 levels per channel (±26) drawn at 0.9 opacity over white (+26 at most)
    assert np.abs(dot - want).min(0).max() <= 56, (want, dot.mean(0))
    assert errors == []
    page.close()


# ---- 3-D --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emb3(tiny_capture):
    from qkviz import Embedding

    n = len(tiny_capture.tokens)
    rng = np.random.default_rng(11)
    coords = {(la, h): rng.normal(size=(2 * n, 3)) for la in tiny_capture.layers for h in tiny_capture.heads}
    return Embedding.from_coords(coords, tiny_capture.tokens, capture=tiny_capture)


def test_3d_single_view_picks_and_draws_topk_lines(chromium_browser, views_server, widget_site, emb3, artifacts_dir):
    from qkviz.widget import QKViz

    viz = QKViz(emb3, layer=1, head=2, theme="light", lines_k=4)
    page, errors = open_widget(chromium_browser, views_server, viz, "single")
    scene = page.locator(".qk-3d canvas.qkv-3d")
    scene.wait_for(timeout=10_000)
    assert page.locator("canvas.qk-canvas").evaluate("c => getComputedStyle(c).visibility") == "hidden"
    box = scene.bounding_box()
    n = len(emb3.tokens)
    ndc = project(emb3.coords(1, 2), **DEFAULT_CAMERA)
    px = np.stack([(ndc[:, 0] + 1) / 2 * box["width"], (1 - ndc[:, 1]) / 2 * box["height"]], axis=1)
    inside = [i for i in range(n) if 10 < px[i, 0] < box["width"] - 10 and 10 < px[i, 1] < box["height"] - 10]
    q, gap = _isolated(px, inside)
    assert gap > 8
    click_at(page, box["x"] + px[q, 0], box["y"] + px[q, 1])
    page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=10_000)
    lines = json.loads(page.locator(".qk-root").get_attribute("data-qk-lines"))
    cell = viz.state.cell_index(viz.layer, viz.head)
    per = 2 * n
    seq, pos = int(emb3.tokens["seq"][q]), int(emb3.tokens["pos"][q])
    first = q - pos
    a = np.asarray(emb3.attention(1, 2, seq))[pos]
    top = np.argsort(-a, kind="stable")[:4]
    assert lines["kind"] == "query" and lines["from"] == cell * per + q
    assert lines["to"] == [int(cell * per + n + first + j) for j in top]
    np.testing.assert_allclose(lines["weights"], a[top], rtol=1e-5)
    # the pick is the selection sent to Python (the harness model keeps what the page wrote)
    sent = page.evaluate(f"() => ({SELECTION_JS})(window.model.get('_selection'))")
    assert sent == [cell * per + q]
    page.wait_for_function(f"document.querySelectorAll('.qkv-col-q .qkv-tok').length === {a.size}")
    page.wait_for_timeout(200)
    shot = _screenshot_rgb(scene)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_single_lines.png"))
    orange = (np.abs(shot - np.array([232, 89, 13])).max(-1) < 40).sum()
    assert orange > 30, "no attention lines drawn in the 3-D view"
    # the strongest line is as wide as in 2-D (4 px, js/src/canvas/lines.js), not WebGL's 1 px GL_LINES:
    # count orange pixels across it, a few pixels either side of its middle
    dpr = shot.shape[1] / box["width"]
    a_px, b_px = px[q], px[n + first + int(top[0])]
    normal = np.array([-(b_px - a_px)[1], (b_px - a_px)[0]]) / np.linalg.norm(b_px - a_px)
    widths = []
    for t in (0.35, 0.5, 0.65):
        mid = a_px + t * (b_px - a_px)
        across = [mid + o * normal for o in np.arange(-6, 6.5, 0.5)]
        hits = [np.abs(shot[int(y * dpr), int(x * dpr)] - np.array([232, 89, 13])).max() < 60 for x, y in across]
        widths.append(sum(hits) * 0.5)
    assert max(widths) >= 2.5, widths
    assert errors == []
    page.close()


def _matrix_expected(viz, emb, camera, width, height):
    """CSS px of every grid point: each head projected with the camera's angles at the default
    distance, placed in its cell like a 2-D layout (js/src/canvas/matrix.js matrixPositions3D)."""
    from qkviz.wire import CELL_FILL

    n_rows, n_cols = len(viz.state.layers), len(viz.state.heads)
    cw, ch = 2 / n_cols, 2 / n_rows
    out = []
    for c, (la, he) in enumerate(viz.state.cells):
        ndc = project(emb.coords(la, he), **{**camera, "distance": DEFAULT_CAMERA["distance"]})
        cx, cy = -1 + (c % n_cols + 0.5) * cw, 1 - (c // n_cols + 0.5) * ch
        x = cx + ndc[:, 0] * cw / 2 * CELL_FILL
        y = cy + ndc[:, 1] * ch / 2 * CELL_FILL
        out.append(np.stack([(x + 1) / 2 * width, (1 - y) / 2 * height], axis=1))
    return np.concatenate(out)


def test_3d_matrix_reprojects_when_the_shared_camera_turns(
    chromium_browser, views_server, widget_site, emb3, artifacts_dir
):
    from qkviz.widget import QKViz

    viz = QKViz(emb3, theme="light")
    page, errors = open_widget(chromium_browser, views_server, viz, "matrix")
    page.wait_for_timeout(200)
    canvas = page.locator("canvas.qk-canvas")
    box = canvas.bounding_box()
    positions = "Array.from(document.querySelector('.qk-root').qkScreenPositions())"
    before = np.array(page.evaluate(positions)).reshape(-1, 2)
    want = _matrix_expected(viz, emb3, DEFAULT_CAMERA, box["width"], box["height"])
    assert np.abs(before - want).max() < 1.5
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_matrix_before.png"))

    draws = int(page.locator(".qk-root").get_attribute("data-qk-draws"))
    x0, y0 = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    pointer_to(page, x0, y0)
    page.mouse.down()
    for k in range(1, 9):
        page.mouse.move(x0 + 10 * k, y0 + 3 * k)
        page.wait_for_timeout(20)
    page.mouse.up()
    page.wait_for_function(f"+document.querySelector('.qk-root').dataset.qkDraws > {draws}", timeout=10_000)
    page.wait_for_timeout(300)  # the last frame's re-projection
    assert page.locator(".qk-root").get_attribute("data-qk-mode") == "matrix", "a drag must not focus a head"
    camera = json.loads(page.locator(".qk-root").get_attribute("data-qk-camera"))
    assert camera["theta"] == pytest.approx(DEFAULT_CAMERA["theta"] - 0.8, abs=1e-6)
    assert camera["phi"] == pytest.approx(DEFAULT_CAMERA["phi"] + 0.24, abs=1e-6)
    after = np.array(page.evaluate(positions)).reshape(-1, 2)
    want = _matrix_expected(viz, emb3, {**DEFAULT_CAMERA, **camera}, box["width"], box["height"])
    assert np.abs(after - want).max() < 1.5
    assert np.abs(after - before).max() > 5  # the heads did turn
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_matrix_turned.png"))

    # the single view opens with the same camera: turning it there turns the matrix too
    page.locator(".qk-cell[data-layer='0'][data-head='0']").click(force=True)  # labels let clicks through
    page.wait_for_selector(".qk-root[data-qk-mode='single']")
    scene = page.locator(".qk-3d canvas.qkv-3d")
    sb = scene.bounding_box()
    pointer_to(page, sb["x"] + 100, sb["y"] + 100)
    page.mouse.down()
    page.mouse.move(sb["x"] + 130, sb["y"] + 100, steps=3)
    page.mouse.up()
    turned = json.loads(page.locator(".qk-root").get_attribute("data-qk-camera"))
    assert turned["theta"] == pytest.approx(camera["theta"] - 0.3, abs=1e-6)
    page.locator(".qk-back").click()
    page.wait_for_selector(".qk-root[data-qk-mode='matrix']")
    page.wait_for_timeout(300)
    back = np.array(page.evaluate(positions)).reshape(-1, 2)
    want = _matrix_expected(viz, emb3, {**DEFAULT_CAMERA, **turned}, box["width"], box["height"])
    assert np.abs(back - want).max() < 1.5
    assert errors == []
    page.close()


# ---- real models (screenshots to look at) -------------------------------------------------------------


@pytest.mark.slow
def test_vit_widget_thumbnails(chromium_browser, views_server, widget_site, vit_capture, artifacts_dir):
    from qkviz import embed
    from qkviz.widget import QKViz

    emb = embed(vit_capture, "pca", layers=[5], heads=[0, 1], cache=False, progress=False)
    viz = QKViz(emb, layer=5, head=1, theme="dark")
    page, errors = open_widget(chromium_browser, views_server, viz, "single")
    page.wait_for_selector("canvas.qkv-thumbs[data-drawn]", state="attached", timeout=20_000)
    page.wait_for_timeout(300)
    assert page.locator("canvas.qkv-thumbs").get_attribute("data-drawn") == str(2 * len(emb.tokens))
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_vit_thumbnails_dark.png"))
    # a patch's thumbnail, where its point is, has that patch's mean colour (thumbnails are
    # downscaled image cells, so their mean is the patch mean up to resampling)
    xy = np.array(page.evaluate("Array.from(document.querySelector('.qk-root').qkScreenPositions())")).reshape(-1, 2)
    n = len(emb.tokens)
    row = emb.tokens["row"].to_numpy()
    stage = page.locator(".qk-stage").bounding_box()
    w, hgt = stage["width"], stage["height"]
    ok = [p for p in range(2 * n) if row[p % n] >= 0 and 10 < xy[p, 0] < w - 10 and 10 < xy[p, 1] < hgt - 10]
    p, gap = _isolated(xy, ok)
    assert gap > THUMB
    from qkviz.analysis import patch_colors

    cols = patch_colors(vit_capture)
    want = np.array([cols["mean_r"][p % n], cols["mean_g"][p % n], cols["mean_b"][p % n]]) * 255
    shot = _screenshot_rgb(page.locator(".qk-stage"))
    x, y = (int(round(v)) for v in xy[p])
    inner = shot[y - 5 : y + 5, x - 5 : x + 5].reshape(-1, 3).mean(0)
    assert np.abs(inner - want).max() < 30, (inner, want)
    # the focused head's points clicked: lines over the thumbnails, panel shows the image
    click_at(page, stage["x"] + x, stage["y"] + y)
    page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=20_000)
    page.wait_for_timeout(800)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_vit_thumbnails_lines_dark.png"))
    assert errors == []
    page.close()


@pytest.mark.slow
def test_minilm_widget_3d(chromium_browser, views_server, widget_site, minilm_capture, artifacts_dir):
    from qkviz import embed
    from qkviz.widget import QKViz

    emb = embed(minilm_capture, "pca", dim=3, layers=[0, 1], heads=[0, 1, 2], cache=False, progress=False)
    viz = QKViz(emb, theme="dark", color="position")
    page, errors = open_widget(chromium_browser, views_server, viz, "matrix")
    page.wait_for_timeout(300)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_minilm_3d_matrix_dark.png"))
    page.locator(".qk-cell[data-layer='1'][data-head='2']").click(force=True)  # labels let clicks through
    page.wait_for_selector(".qk-root[data-qk-mode='single']")
    page.locator(".qk-3d canvas.qkv-3d").wait_for()
    page.wait_for_timeout(300)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_minilm_3d_single_dark.png"))
    assert errors == []
    page.close()
