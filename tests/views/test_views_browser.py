"""The side-panel views in headless Chromium, fed by the real request handlers (qkviz.analysis)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from _browser import click_at, pointer_to
from qkviz import analysis

from ._fakes import image_embedding, text_embedding
from .conftest import QUERY_RGB, mount_panel

pytestmark = pytest.mark.browser

TEXT = text_embedding()


def _click_point(page, emb, seq, pos, kind="query", layer=0, head=0):
    tokens = emb.tokens
    token = int(np.flatnonzero((tokens["seq"] == seq).to_numpy() & (tokens["pos"] == pos).to_numpy())[0])
    page.evaluate(
        "(p) => window.qkv.bus.publish('point:click', p)",
        dict(point=token, token=token, kind=kind, seq=seq, pos=pos, layer=layer, head=head),
    )
    page.wait_for_function("document.querySelector('.qkv-panel')?.dataset.loading === '0'")
    return token


def _events(page, name):
    page.evaluate("new Promise((r) => requestAnimationFrame(() => r()))")  # highlights go out per frame
    return page.evaluate(
        """(name) => window.qkv.events.filter((e) => e.ev === name).map((e) => e.p && ({
             ...e.p, tokens: e.p.tokens ? Array.from(e.p.tokens) : null,
             weights: e.p.weights ? Array.from(e.p.weights) : undefined }))""",
        name,
    )


def _mount(page, state, emb):
    mount_panel(page, state, emb)


def test_clicking_a_token_publishes_its_token_and_marks_it(harness):
    page, state = harness
    _mount(page, state, TEXT)
    _click_point(page, TEXT, seq=1, pos=2)
    assert page.locator(".qkv-col-q .qkv-tok").count() == 7
    page.locator(".qkv-col-k .qkv-tok[data-pos='4']").click()
    expected = int(np.flatnonzero((TEXT.tokens["seq"] == 1).to_numpy())[4])
    assert _events(page, "highlight:tokens")[-1]["tokens"] == [expected]
    # hovering a query shows its weights on the key side, equal to Python's row
    page.locator(".qkv-col-k .qkv-tok[data-pos='4']").click()  # unpin
    page.locator(".qkv-col-q .qkv-tok[data-pos='3']").hover()
    shown = page.locator(".qkv-col-k .qkv-w").all_inner_texts()
    row = TEXT.attention(0, 0, 1)[3]
    assert [float("0" + s) if s.startswith(".") else float(s) for s in shown] == pytest.approx(row, abs=6e-4)
    # the scatter hovering a token of this sequence marks it here; the clicked token stays marked
    page.evaluate("(t) => window.qkv.bus.publish('point:hover', {token: t, seq: 1, kind: 'key'})", expected)
    marked = page.locator(".qkv-col-q .qkv-tok.qkv-marked").evaluate_all("els => els.map(e => +e.dataset.pos)")
    assert marked == [2, 4]


def test_hiding_keys_renormalises_rows_like_python(harness):
    page, state = harness
    _mount(page, state, TEXT)
    _click_point(page, TEXT, seq=1, pos=1)
    page.locator(".qkv-col-k .qkv-tok[data-pos='2']").hover()
    page.locator(".qkv-col-k .qkv-tok[data-pos='2'] .qkv-hide").click()
    page.locator(".qkv-col-q .qkv-tok[data-pos='5']").hover()
    page.locator(".qkv-col-q .qkv-tok[data-pos='5'] .qkv-hide").click()
    js = np.array(_events(page, "lines:weights")[-1]["weights"]).reshape(7, 7)
    py = analysis.sequence_detail(TEXT, 0, 0, 1, hide_keys=[2], hide_queries=[5])["attention"]
    np.testing.assert_allclose(js, py, atol=1e-6)
    assert not js[:, 2].any() and not js[5].any()
    # the toggles and value weighting agree with Python too
    page.locator("[data-name='hide-special']").check()
    page.locator("[data-name='value-weighted']").check()
    js = np.array(_events(page, "lines:weights")[-1]["weights"]).reshape(7, 7)
    py = analysis.sequence_detail(
        TEXT, 0, 0, 1, hide_keys=[2], hide_queries=[5], hide_special=True, value_weighted=True
    )["attention"]
    np.testing.assert_allclose(js, py, atol=1e-6)
    # the heatmap shows the same numbers
    page.locator("button[data-tab='heatmap']").click()
    x, y = page.evaluate("window.panel.views.heatmap.cellCenter(3, 4)")
    box = page.locator("canvas.qkv-heat").first.bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    value = float(page.locator(".qkv-heatmap .qkv-status").first.get_attribute("data-value"))
    assert value == pytest.approx(float(py[3, 4]), abs=1e-6)
    assert _events(page, "highlight:tokens")[-1]["tokens"] == [
        int(np.flatnonzero((TEXT.tokens["seq"] == 1).to_numpy())[i]) for i in (3, 4)
    ]


def test_selection_from_the_scatter_marks_tokens(harness):
    page, state = harness
    _mount(page, state, TEXT)
    _click_point(page, TEXT, seq=0, pos=0)
    n = len(TEXT.tokens)
    page.evaluate("(n) => window.qkv.setPoints({nTokens: n})", n)
    # global points (cell·2n + token for a query, + n for a key): the query of token 1 and the key of
    # token 3 in the shown head (cell 0) are marked; the key of token 5 in cell 2 is another head's
    # point, and the selection replaced the click, so the clicked token 0 is no longer marked
    page.evaluate(
        "(pts) => window.qkv.bus.publish('selection', {points: Uint32Array.from(pts)})",
        [1, n + 3, 2 * (2 * n) + n + 5],
    )
    marked = page.locator(".qkv-col-q .qkv-tok.qkv-marked").evaluate_all("els => els.map(e => +e.dataset.pos)")
    assert marked == [1, 3]


def test_aggregate_view_shows_the_previous_token_head(harness):
    page, state = harness
    _mount(page, state, TEXT)
    _click_point(page, TEXT, seq=0, pos=1, head=1)
    page.locator("button[data-tab='aggregate']").click()
    page.wait_for_selector(".qkv-score[data-score='previous']")
    py = analysis.aggregate_detail(TEXT, 0, 1)["scores"]
    text = page.locator(".qkv-score[data-score='previous']").inner_text()
    assert float(text.split()[1]) == pytest.approx(py["previous"], abs=1e-3)
    assert page.locator("canvas.qkv-offset-bars").is_visible()


def _pixel(page, selector, x, y):
    return page.evaluate(
        """([sel, x, y]) => { const c = document.querySelector(sel), s = c.width / c.clientWidth;
             return Array.from(c.getContext('2d').getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data); }""",
        [selector, x, y],
    )


def _check_overlay(page, d):
    """At the most- and least-attended patches the overlay is the image times the strength."""
    heat, strength = d["heat"], d["strength"]
    for flat in (int(heat.argmax()), int(heat.argmin())):
        r, c = divmod(flat, heat.shape[1])
        x, y = page.evaluate(f"window.panel.views.image.patchCenter({r}, {c})")
        base = np.array(_pixel(page, "canvas.qkv-image-base", x, y)[:3], float)
        over = np.array(_pixel(page, "canvas.qkv-image-overlay", x, y)[:3], float)
        np.testing.assert_allclose(over, base * strength[r, c], atol=3.5)
    lo = np.unravel_index(heat.argmin(), heat.shape)
    assert strength[lo] < 0.9  # the check above is not vacuous: the darkest patch is darker


def _same_as_python(page, d):
    """The numbers the image view draws (computed in the browser from the sequence's attention)
    are Python's ``image_detail``."""
    js = page.evaluate("""() => Object.fromEntries(Object.entries(document.querySelector('.qkv-panel').qkvImage)
        .map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v) : v]))""")
    assert js["grid"] == list(d["grid"]) and (js["patch_row"], js["patch_col"]) == (d["patch_row"], d["patch_col"])
    for name in ("heat", "strength", "to_special", "cls_heat", "argmax_weight"):
        np.testing.assert_allclose(js[name], np.asarray(d[name]).ravel(), atol=1e-6, err_msg=name)
    assert js["argmax"] == d["argmax"].tolist()
    assert js["token"] == d["token"].tolist()


def test_image_overlay_shows_the_clicked_patch_attention(harness):
    page, state = harness
    emb, _colours = image_embedding(n_images=2, grid=(3, 4), px=6)
    _mount(page, state, emb)
    _click_point(page, emb, seq=1, pos=6)
    page.wait_for_selector("canvas.qkv-image-overlay")
    assert (
        page.locator("button[data-tab='image']").is_visible()
        and page.locator("button[data-tab='sentence']").is_hidden()
    )
    d = analysis.image_detail(emb, 0, 0, 1, 6)
    _same_as_python(page, d)
    _check_overlay(page, d)
    assert float(page.locator(".qkv-cls-box").get_attribute("data-value")) == pytest.approx(
        float(d["to_special"][0]), abs=1e-6
    )
    # clicking another patch re-centres the view on it
    x, y = page.evaluate("window.panel.views.image.patchCenter(0, 3)")
    page.locator("canvas.qkv-image-base").click(position={"x": x, "y": y})
    page.wait_for_function("document.querySelector('.qkv-panel').dataset.imagePatch === '4'")
    _same_as_python(page, analysis.image_detail(emb, 0, 0, 1, 4))
    _check_overlay(page, analysis.image_detail(emb, 0, 0, 1, 4))


def test_thumbnails_draw_each_patch_from_the_atlas(harness):
    page, state = harness
    emb, colours = image_embedding(n_images=2, grid=(3, 4), px=6)
    state.widget = types.SimpleNamespace(embedding=emb)
    # draw the 13 tokens of image 1 (CLS + 12 patches) at known spots, 20 px apart
    rows = np.flatnonzero((emb.tokens["seq"] == 1).to_numpy())
    xy = [v for i in range(len(rows)) for v in (20 + 24 * (i % 6), 20 + 24 * (i // 6))]
    page.evaluate(
        """async ([rows, xy]) => {
             const d = await window.qkv.fetchDetail({kind: 'atlas'});
             const atlas = window.qkv.views.atlasCanvas(d);
             const g = document.getElementById('thumbs').getContext('2d');
             window.qkv.views.drawThumbnails(g, atlas, d.uv, xy, {tokens: rows, size: 16,
                kinds: rows.map((_, i) => i % 2)});
           }""",
        [rows.tolist(), xy],
    )
    for i, t in enumerate(rows):
        r, c = int(emb.tokens["row"][t]), int(emb.tokens["col"][t])
        px = page.evaluate(
            "([x, y]) => Array.from(document.getElementById('thumbs').getContext('2d').getImageData(x, y, 1, 1).data)",
            [xy[2 * i], xy[2 * i + 1]],
        )
        if r < 0:  # CLS: the q/k marker, not an image patch
            assert px[:3] == list(QUERY_RGB)
        else:
            assert np.abs(np.array(px[:3]) - colours[1, r, c]).max() <= 2


def test_project3d_and_picking_in_3d(harness):
    page, state = harness
    # a camera on +z (theta = phi = 0) looking at the origin: (x, y, 0) -> (x·t/aspect/d, y·t/d)
    got = page.evaluate(
        "Array.from(window.qkv.views.project3D([0,0,0, 0.5,0.25,0, 0,0,5], {theta: 0, phi: 0, distance: 2, fov: Math.PI/2, aspect: 1}))"
    )
    t = 1 / np.tan(np.pi / 4)
    assert got[:4] == pytest.approx([0, 0, 0.5 * t / 2, 0.25 * t / 2], abs=1e-6)
    assert got[4] is None or np.isnan(got[4])  # behind the camera
    rng = np.random.default_rng(3)
    coords = rng.uniform(-0.8, 0.8, size=(2 * 20, 3)).astype(np.float32)
    page.evaluate(
        "([c, t]) => window.mount3DHarness(c, t)", [coords.ravel().tolist(), {"seq": [0] * 20, "pos": list(range(20))}]
    )
    lit = page.evaluate("""() => { const c = document.querySelector('canvas.qkv-3d');
        const g = document.createElement('canvas'); g.width = c.width; g.height = c.height;
        const x = g.getContext('2d'); x.drawImage(c, 0, 0);
        const d = x.getImageData(0, 0, g.width, g.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 240 || d[i+1] < 240 || d[i+2] < 240) n++; return n; }""")
    assert lit > 40  # 40 points of ~4 px
    # click where point 27 (the key of token 7) projects: the pick publishes it
    ndc = page.evaluate(
        "(c) => Array.from(window.qkv.views.project3D(c, window.scene.camera()))", coords.ravel().tolist()
    )
    target = 27
    x, y = (ndc[2 * target] + 1) / 2 * 320, (1 - ndc[2 * target + 1]) / 2 * 320
    near = [
        i for i in range(40) if ((ndc[2 * i] + 1) / 2 * 320 - x) ** 2 + ((1 - ndc[2 * i + 1]) / 2 * 320 - y) ** 2 < 64
    ]
    assert near == [target], "test layout has overlapping points; change the seed"
    box = page.locator("canvas.qkv-3d").bounding_box()
    click_at(page, box["x"] + x, box["y"] + y)
    click = _events(page, "point:click")[-1]
    assert (click["point"], click["token"], click["kind"], click["pos"]) == (27, 7, "key", 7)
    # dragging orbits the camera
    before = page.evaluate("window.scene.camera().theta")
    pointer_to(page, box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, box["y"] + 110, steps=4)
    page.mouse.up()
    assert page.evaluate("window.scene.camera().theta") != pytest.approx(before)


def test_thumbnail_overlay_follows_view_points(harness):
    page, state = harness
    emb, colours = image_embedding(n_images=2, grid=(3, 4), px=6)
    state.widget = types.SimpleNamespace(embedding=emb)
    n = len(emb.tokens)
    # queries on a 24 px grid, keys off screen (NaN): only the query thumbnails are drawn
    xy = [float(v) for i in range(n) for v in (16 + 24 * (i % 12), 16 + 24 * (i // 12))] + [float("nan")] * (2 * n)
    page.evaluate("window.mountThumbsHarness()")
    page.evaluate("(xy) => window.qkv.bus.publish('view:points', {xy: Float32Array.from(xy), size: 14})", xy)
    page.wait_for_selector("canvas.qkv-thumbs[data-drawn]")
    for t in range(n):
        r, c, s = (int(emb.tokens[k][t]) for k in ("row", "col", "seq"))
        px = page.evaluate(
            """([x, y]) => { const c = document.querySelector('canvas.qkv-thumbs'), d = c.width / c.clientWidth;
                 return Array.from(c.getContext('2d').getImageData(Math.round(x * d), Math.round(y * d), 1, 1).data); }""",
            [xy[2 * t], xy[2 * t + 1]],
        )
        expected = list(QUERY_RGB) if r < 0 else colours[s, r, c].tolist()  # CLS: query-coloured marker
        assert np.abs(np.array(px[:3]) - expected).max() <= 2, (t, px, expected)
    page.evaluate("window.qkv.bus.publish('view:points', null)")
    assert (
        page.evaluate(
            "document.querySelector('canvas.qkv-thumbs').getContext('2d')"
            ".getImageData(0, 0, 320, 320).data.some((v, i) => i % 4 === 3 && v > 0)"
        )
        is False
    )
