"""The 3-D single view (``dim=3``) with the 2-D view's interactions, in the real widget front end.

* a lasso (shift-drag, or a drag in lasso mode) selects exactly the points whose projection through
  the current camera (computed here in numpy, independently of the JS) falls inside the polygon, and
  the page writes them as the same global indices a 2-D lasso writes (``viz.selected``);
* selection, search and colour-by look the same in 3-D as in the hidden 2-D scatter below it
  (pixels of the same points compared): selected points opaque, the others dimmed; size by norm and
  point sizes match on a devicePixelRatio-2 page;
* in the 3-D matrix, lasso mode lassos instead of turning the shared camera;
* leaving the 3-D single view loses its WebGL context and removes its canvas; scenes opened and
  closed in a row never push another context past Chromium's cap.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from _browser import click_at, pointer_to
from _wire import SELECTION_JS
from qkviz.export._snapshot import snapshot

from .conftest import open_widget
from .test_widget_images_3d import DEFAULT_CAMERA, project

pytestmark = pytest.mark.browser

LAYER, HEAD = 1, 2
ROOT = "document.querySelector('.qk-root')"
SENT = f"() => ({SELECTION_JS})(window.model.get('_selection'))"


@pytest.fixture(scope="module")
def emb3(tiny_capture):
    from qkviz import Embedding

    n = len(tiny_capture.tokens)
    rng = np.random.default_rng(5)
    coords = {(la, h): rng.normal(size=(2 * n, 3)) for la in tiny_capture.layers for h in tiny_capture.heads}
    return Embedding.from_coords(coords, tiny_capture.tokens, capture=tiny_capture)


def _open(chromium_browser, views_server, emb3, **kw):
    from qkviz.widget import QKViz

    viz = QKViz(emb3, layer=LAYER, head=HEAD, theme="light", **kw)
    page, errors = open_widget(chromium_browser, views_server, viz, "single")
    scene = page.locator(".qk-3d canvas.qkv-3d")
    scene.wait_for(timeout=10_000)
    page.wait_for_timeout(200)
    return viz, page, errors, scene


def _screen(emb, camera, box):
    """CSS px (from the 3-D canvas' top-left) of the focused head's points through ``camera``."""
    ndc = project(emb.coords(LAYER, HEAD), **{**DEFAULT_CAMERA, **camera})
    return np.stack([(ndc[:, 0] + 1) / 2 * box["width"], (1 - ndc[:, 1]) / 2 * box["height"]], axis=1)


def _inside(xy, poly):
    """Even-odd point-in-polygon (numpy), ``xy [n, 2]``, ``poly [m, 2]`` -> bool [n]."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    xa, ya = poly[:, 0], poly[:, 1]
    xb, yb = np.roll(xa, 1), np.roll(ya, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = ((ya > y) != (yb > y)) & (x < xa + (y - ya) / (yb - ya) * (xb - xa))
    return cross.sum(1) % 2 == 1


def _edge_distance(xy, poly):
    """Distance (px) of every point to the nearest polygon edge, [n]."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((xy[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    return np.linalg.norm(xy[:, None] - (a + t[..., None] * ab), axis=-1).min(1)


def _polygon(xy, centre, radius, corners):
    """A regular polygon around ``centre`` with integer vertices whose edges pass at least 0.3 px from
    every point (a float32/float64 difference cannot move a point across it)."""
    for scale in (1.0, 0.93, 1.07, 0.86, 1.14):
        for turn in np.linspace(0, 1, 30, endpoint=False):
            ang = 2 * math.pi * (np.arange(corners) + turn) / corners
            r = radius * scale
            poly = np.round(np.stack([centre[0] + r * np.cos(ang), centre[1] + r * np.sin(ang)], 1))
            if _edge_distance(xy, poly).min() > 0.3:
                return poly
    raise AssertionError("no polygon clear of the points: change the seed")


def _draw_lasso(page, box, poly, shift, shot=None):
    """Drag the lasso along ``poly`` (px from the canvas' top-left); ``shot``: a screenshot path taken
    before the lasso closes (the stroke must show)."""
    x0, y0 = box["x"], box["y"]
    if shift:
        page.keyboard.down("Shift")
    pointer_to(page, x0 + poly[0, 0], y0 + poly[0, 1])
    page.mouse.down()
    for k, (vx, vy) in enumerate([*poly[1:], poly[0]]):
        page.mouse.move(x0 + vx, y0 + vy, steps=8)
        if shot and k == len(poly) - 2:
            page.locator(".qk-root").screenshot(path=str(shot))
            stroke = np.abs(_pixels(page, "canvas.qkv-3d-lasso", rgba=True) - [38, 99, 235, 255]).max(-1) < 30
            assert stroke.sum() > 100, "the lasso is not drawn while dragging"
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def _isolated(xy, candidates, gap):
    """Candidates at least ``gap`` px from every other point in each of the screen layouts ``xy``."""
    ok = []
    for i in candidates:
        if all(np.sqrt(((s - s[i]) ** 2).sum(1))[np.arange(len(s)) != i].min() > gap for s in xy):
            ok.append(i)
    return ok


def _pixels(page, selector, rgba=False):
    """RGB of a canvas (a WebGL canvas is read as drawn, preserveDrawingBuffer) composed on white, or
    its own RGBA."""
    import base64

    w, h, b64 = page.evaluate(
        """([sel, rgba]) => { const c = document.querySelector(sel);
        const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const x = g.getContext('2d'); if (!rgba) { x.fillStyle = '#fff'; x.fillRect(0, 0, c.width, c.height); }
        x.drawImage(c, 0, 0);
        const d = x.getImageData(0, 0, c.width, c.height).data; let s = '';
        for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
        return [c.width, c.height, btoa(s)]; }""",
        [selector, rgba],
    )
    px = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4).astype(int)
    return px if rgba else px[..., :3]


def _centre(px, xy):
    """Mean RGB of the 3x3 pixels at each of the positions ``xy [k, 2]``: [k, 3]."""
    out = []
    for x, y in np.round(xy).astype(int):
        out.append(px[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(0))
    return np.array(out)


# ---- lasso ------------------------------------------------------------------------------------------


def test_3d_shift_lasso_selects_the_projected_points_inside(
    chromium_browser, views_server, widget_site, emb3, artifacts_dir
):
    viz, page, errors, scene = _open(chromium_browser, views_server, emb3)
    box = scene.bounding_box()
    # turn the camera first: the lasso must use the camera the view shows, not the default one
    pointer_to(page, box["x"] + 200, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 240, box["y"] + 215, steps=4)
    page.mouse.up()
    camera = json.loads(page.locator(".qk-root").get_attribute("data-qk-camera"))
    assert camera["theta"] == pytest.approx(DEFAULT_CAMERA["theta"] - 0.4, abs=1e-6)
    xy = _screen(emb3, camera, box)
    poly = _polygon(xy, (box["width"] * 0.58, box["height"] * 0.45), box["width"] * 0.1, corners=5)
    want = np.flatnonzero(_inside(xy, poly))
    assert 10 < want.size < len(xy) // 2, want.size

    _draw_lasso(page, box, poly, shift=True, shot=artifacts_dir / "widget_3d_lasso_drawing.png")
    page.wait_for_function(f"+{ROOT}.dataset.qkSelected > 0", timeout=5_000)
    after = json.loads(page.locator(".qk-root").get_attribute("data-qk-camera"))
    assert after == camera, "a shift-drag must lasso, not orbit"
    per = 2 * len(emb3.tokens)
    cell = viz.state.cell_index(viz.layer, viz.head)
    sent = page.evaluate(SENT)
    assert sent == (cell * per + want).tolist()
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_lasso.png"))

    # what the page wrote reaches Python as viz.selected, the same rows as a 2-D lasso's
    from qkviz.wire import array_to_binary

    viz._selection = array_to_binary(np.array(sent, np.uint32), "uint32")
    sel = viz.selected
    assert sel.index.tolist() == sent
    n = len(emb3.tokens)
    assert sel["kind"].tolist() == ["query" if p < n else "key" for p in want]
    assert sel["token"].tolist() == emb3.tokens["token"].to_numpy()[want % n].tolist()

    # Escape empties it again, as in 2-D
    page.keyboard.press("Escape")
    page.wait_for_function(f"{ROOT}.dataset.qkSelected === '0'")
    assert page.evaluate(SENT) == []
    assert errors == []
    page.close()


def test_3d_lasso_mode_and_selection_look_like_2d(chromium_browser, views_server, widget_site, emb3, artifacts_dir):
    viz, page, errors, scene = _open(chromium_browser, views_server, emb3)
    box = scene.bounding_box()
    page.locator(".qk-lasso").click()  # lasso mode: a plain drag lassos
    xy = _screen(emb3, DEFAULT_CAMERA, box)
    poly = _polygon(xy, (box["width"] * 0.55, box["height"] * 0.45), box["width"] * 0.2, corners=3)
    want = np.flatnonzero(_inside(xy, poly))
    assert want.size > 5
    _draw_lasso(page, box, poly, shift=False)
    page.wait_for_function(f"+{ROOT}.dataset.qkSelected > 0", timeout=5_000)
    assert page.locator(".qk-root").get_attribute("data-qk-camera") is None, "lasso mode must not orbit"
    per = 2 * len(emb3.tokens)
    assert page.evaluate(SENT) == (viz.state.cell_index(viz.layer, viz.head) * per + want).tolist()
    page.wait_for_timeout(300)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_lasso_mode.png"))

    # pixels: selected points opaque in their colour, the others faded — as the 2-D scatter draws them
    flat = np.array(page.evaluate(f"Array.from({ROOT}.qkScreenPositions())")).reshape(-1, 2)
    three = _pixels(page, ".qk-3d canvas.qkv-3d")
    two = _pixels(page, "canvas.qk-canvas")
    inside = set(want.tolist())
    ok = [
        i
        for i in _isolated([xy, flat], range(len(xy)), 9)
        if 8 < xy[i, 0] < box["width"] - 8 and 8 < xy[i, 1] < box["height"] - 8
    ]
    chosen = [i for i in ok if i in inside]
    others = [i for i in ok if i not in inside]
    assert chosen and len(others) > 5
    c3, c2 = _centre(three, xy[chosen]), _centre(two, flat[chosen])
    o3, o2 = _centre(three, xy[others]), _centre(two, flat[others])
    # selected: far from white; others: close to white (dimmed)
    assert (765 - c3.sum(1)).min() > 150, c3
    assert (765 - o3.sum(1)).max() < (765 - c3.sum(1)).min(), (o3, c3)
    np.testing.assert_allclose(c3, c2, atol=30)
    np.testing.assert_allclose(o3, o2, atol=30)

    # selected points are drawn bigger than the others (2-D: pointSizeSelected)
    def ink(p):
        x, y = int(p[0]), int(p[1])
        return (np.abs(three[y - 6 : y + 7, x - 6 : x + 7] - 255).sum(-1) > 60).sum()

    assert np.mean([ink(xy[i]) for i in chosen]) > np.mean([ink(xy[i]) for i in others])

    # still in lasso mode, a click picks one point (as the 2-D scatter does) and selects only it
    q = others[0]
    click_at(page, box["x"] + xy[q, 0], box["y"] + xy[q, 1])
    page.wait_for_function(f"{ROOT}.dataset.qkSelected === '1'")
    assert page.evaluate(SENT) == [viz.state.cell_index(viz.layer, viz.head) * per + q]
    # the clear button empties the selection and the 3-D view shows every point undimmed again
    page.locator(".qk-clear").click()
    page.wait_for_function(f"{ROOT}.dataset.qkSelected === '0'")
    assert page.evaluate(SENT) == []
    page.wait_for_timeout(200)
    o3 = _centre(_pixels(page, ".qk-3d canvas.qkv-3d"), xy[others])
    o2 = _centre(_pixels(page, "canvas.qk-canvas"), flat[others])
    assert (765 - o3.sum(1)).min() > 150, o3
    np.testing.assert_allclose(o3, o2, atol=30)
    assert errors == []
    page.close()


@pytest.mark.parametrize("color", ["kind", "sequence", "position"])
def test_3d_search_and_colour_by_look_like_2d(chromium_browser, views_server, widget_site, emb3, artifacts_dir, color):
    viz, page, errors, scene = _open(chromium_browser, views_server, emb3, color=color)
    box = scene.bounding_box()
    query = "the"
    matches = viz.search(query)
    assert 0 < matches < len(emb3.tokens) // 3
    draws = int(page.locator(".qk-root").get_attribute("data-qk-draws"))
    page.evaluate(f"window.model.set('search_query', '{query}')")
    page.wait_for_function(f"+{ROOT}.dataset.qkDraws > {draws}")
    page.wait_for_timeout(300)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / f"widget_3d_search_{color}.png"))
    xy = _screen(emb3, DEFAULT_CAMERA, box)
    flat = np.array(page.evaluate(f"Array.from({ROOT}.qkScreenPositions())")).reshape(-1, 2)
    three = _pixels(page, ".qk-3d canvas.qkv-3d")
    two = _pixels(page, "canvas.qk-canvas")
    n = len(emb3.tokens)
    hit = emb3.tokens["display"].str.lower().str.contains(query, regex=False).to_numpy()
    ok = [
        i
        for i in _isolated([xy, flat], range(2 * n), 9)
        if 8 < xy[i, 0] < box["width"] - 8 and 8 < xy[i, 1] < box["height"] - 8
    ]
    bright = [i for i in ok if hit[i % n]]
    dim = [i for i in ok if not hit[i % n]]
    assert bright and dim
    b3, b2 = _centre(three, xy[bright]), _centre(two, flat[bright])
    d3, d2 = _centre(three, xy[dim]), _centre(two, flat[dim])
    np.testing.assert_allclose(b3, b2, atol=30)  # the same colour as the 2-D point, colour-by included
    np.testing.assert_allclose(d3, d2, atol=30)
    assert (765 - d3.sum(1)).max() < (765 - b3.sum(1)).min()
    assert errors == []
    page.close()


# ---- WebGL context ------------------------------------------------------------------------------------


def test_leaving_3d_loses_its_webgl_context(chromium_browser, views_server, widget_site, emb3):
    _, page, errors, _ = _open(chromium_browser, views_server, emb3)
    page.evaluate("window._scene = document.querySelector('.qk-3d canvas.qkv-3d')")
    assert page.evaluate("window._scene.getContext('webgl').isContextLost()") is False
    page.locator(".qk-back").click()
    page.wait_for_selector(".qk-root[data-qk-mode='matrix']")
    assert page.evaluate("window._scene.isConnected") is False
    assert page.evaluate("window._scene.getContext('webgl').isContextLost()") is True
    assert page.locator("canvas.qkv-3d").count() == 0
    assert page.locator("canvas.qk-canvas").evaluate("c => getComputedStyle(c).visibility") == "visible"
    # back in: a fresh context that draws the head
    page.locator(f".qk-cell[data-layer='{LAYER}'][data-head='{HEAD}']").click(force=True)
    page.wait_for_selector(".qk-root[data-qk-mode='single']")
    page.locator(".qk-3d canvas.qkv-3d").wait_for()
    page.wait_for_timeout(200)
    assert page.evaluate("document.querySelector('.qk-3d canvas.qkv-3d') !== window._scene")
    px = _pixels(page, ".qk-3d canvas.qkv-3d")
    assert ((np.abs(px - 255).sum(-1)) > 60).sum() > 500
    assert errors == []
    page.close()


# ---- point sizes ----------------------------------------------------------------------------------------


def _open_hidpi(browser, server, viz):
    """As conftest.open_widget, on a page with devicePixelRatio 2."""
    from _wire import wire_json

    url, state = server
    state.widget = viz
    page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=2)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/widget.html")
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("(s) => mountWidget(s)", wire_json(snapshot(viz.state, viz.view())["state"]))
    page.wait_for_selector(".qk-root[data-qk-mode='single']", timeout=30_000)
    page.locator(".qk-3d canvas.qkv-3d").wait_for(timeout=10_000)
    page.wait_for_timeout(300)
    return page, errors


def test_3d_point_sizes_follow_norm_and_match_2d_on_hidpi(
    chromium_browser, views_server, widget_site, emb3, artifacts_dir
):
    from qkviz.widget import QKViz

    viz = QKViz(emb3, layer=LAYER, head=HEAD, theme="light", size_by_norm=True)
    page, errors = _open_hidpi(chromium_browser, views_server, viz)
    assert page.evaluate("devicePixelRatio") == 2
    scene = page.locator(".qk-3d canvas.qkv-3d")
    box = scene.bounding_box()
    # the canvas is in device pixels, shown at its CSS size
    assert page.evaluate("(c) => [c.width, c.height]", scene.element_handle()) == [2 * box["width"], 2 * box["height"]]
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_size_by_norm_hidpi.png"))
    xy = _screen(emb3, DEFAULT_CAMERA, box) * 2  # device px
    flat = np.array(page.evaluate(f"Array.from({ROOT}.qkScreenPositions())")).reshape(-1, 2) * 2
    three = _pixels(page, ".qk-3d canvas.qkv-3d")
    two = _pixels(page, "canvas.qk-canvas")
    assert two.shape == three.shape
    ok = [
        i
        for i in _isolated([xy / 2, flat / 2], range(len(xy)), 14)
        if 20 < xy[i, 0] < 2 * box["width"] - 20 and 20 < xy[i, 1] < 2 * box["height"] - 20
    ]
    assert len(ok) > 10

    def ink(px, p):
        x, y = np.round(p).astype(int)
        return int(((np.abs(px[y - 12 : y + 13, x - 12 : x + 13] - 255).sum(-1)) > 40).sum())

    a3 = np.array([ink(three, xy[i]) for i in ok])
    a2 = np.array([ink(two, flat[i]) for i in ok])
    # the same disc as the 2-D point (area within 25 %: the rims are antialiased differently)
    np.testing.assert_allclose(a3, a2, rtol=0.25)
    # and size by norm: the largest-norm points are drawn bigger than the smallest-norm ones
    norms = emb3.norms(LAYER, HEAD)[ok]
    lo, hi = np.argsort(norms)[:3], np.argsort(norms)[-3:]
    assert a3[hi].mean() > 2 * a3[lo].mean(), (a3[hi], a3[lo])
    assert errors == []
    page.close()


def test_3d_lasso_without_the_widget_publishes_global_selection(harness):
    """mount3D on its own (no onSelect): the lasso publishes "selection" with global indices."""
    page, _ = harness
    rng = np.random.default_rng(8)
    n_tok = 40
    coords = rng.uniform(-0.8, 0.8, size=(2 * n_tok, 3)).astype(np.float32)
    page.evaluate(
        "([c, t]) => window.mount3DHarness(c, t)",
        [coords.ravel().tolist(), {"seq": [0] * n_tok, "pos": list(range(n_tok))}],
    )
    page.evaluate(
        """() => { window.sel = []; window.qkv.bus.subscribe('selection', (p) => window.sel.push(Array.from(p.points))); }"""
    )
    box = page.locator("canvas.qkv-3d").bounding_box()
    camera = page.evaluate(
        "() => { const c = window.scene.camera(); return {theta: c.theta, phi: c.phi, distance: c.distance, fov: c.fov}; }"
    )
    ndc = project(coords, **camera)
    xy = np.stack([(ndc[:, 0] + 1) / 2 * 320, (1 - ndc[:, 1]) / 2 * 320], axis=1)
    poly = _polygon(xy, (150, 170), 70, corners=6)
    want = np.flatnonzero(_inside(xy, poly))
    assert 5 < want.size < len(xy) - 5
    _draw_lasso(page, box, poly, shift=True)
    got = page.evaluate("window.sel")
    assert got == [want.tolist()]  # cell 0: global = local
    assert page.evaluate("window.qkv.events.filter((e) => e.ev === 'point:click').length") == 0  # no pick
    assert page.evaluate("window.qkv.events.filter((e) => e.ev === 'camera:change').length") == 0  # no orbit


def test_3d_scenes_torn_down_never_push_out_other_contexts(harness):
    """Chromium keeps at most 16 live WebGL contexts and then loses the oldest: 24 scenes opened and
    closed one after another (a user walking in and out of 3-D heads, or many widgets) must not cost
    an older context (here a sentinel made first) its drawing."""
    page, _ = harness
    coords = np.random.default_rng(2).uniform(-1, 1, size=(60, 3)).astype(np.float32).ravel().tolist()
    lost = page.evaluate(
        """(c) => {
        const sentinel = document.createElement('canvas').getContext('webgl');
        const host = document.getElementById('scene');
        for (let k = 0; k < 24; k++) {
          const scene = window.qkv.views.mount3D(host, {bus: window.qkv.bus,
            getPoints: () => ({coords3: Float32Array.from(c), tokens: {seq: [], pos: []}})}, {size: 64});
          scene();
        }
        return [sentinel.isContextLost(), host.querySelectorAll('canvas').length];
      }""",
        coords,
    )
    assert lost == [False, 0]


def test_3d_matrix_in_lasso_mode_lassos_instead_of_turning(
    chromium_browser, views_server, widget_site, emb3, artifacts_dir
):
    from qkviz.widget import QKViz

    viz = QKViz(emb3, theme="light")
    page, errors = open_widget(chromium_browser, views_server, viz, "matrix")
    page.wait_for_timeout(200)
    canvas = page.locator("canvas.qk-canvas")
    box = canvas.bounding_box()
    page.locator(".qk-lasso").click()
    # a rectangle over the middle of the grid
    fx0, fy0, fx1, fy1 = 0.3, 0.3, 0.7, 0.7
    poly = np.array(
        [
            [fx0 * box["width"], fy0 * box["height"]],
            [fx1 * box["width"], fy0 * box["height"]],
            [fx1 * box["width"], fy1 * box["height"]],
            [fx0 * box["width"], fy1 * box["height"]],
        ]
    ).round()
    _draw_lasso(page, box, poly, shift=False)
    page.wait_for_function(f"+{ROOT}.dataset.qkSelected > 0", timeout=5_000)
    assert page.locator(".qk-root").get_attribute("data-qk-camera") is None, "the lasso turned the camera"
    assert page.locator(".qk-root").get_attribute("data-qk-mode") == "matrix"
    xy = np.array(page.evaluate(f"Array.from({ROOT}.qkScreenPositions())")).reshape(-1, 2)
    sent = np.array(page.evaluate(SENT))
    # the scatter's own lasso (regl-scatterplot) on the projected grid: up to its ~2 px path tolerance
    clear = _edge_distance(xy, poly) > 2
    assert (_inside(xy[sent], poly) | ~clear[sent]).all()
    assert set(np.flatnonzero(_inside(xy, poly) & clear)) <= set(sent.tolist())
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_matrix_lasso.png"))
    assert errors == []
    page.close()
