"""Patch thumbnails in the 3-D single view of an image capture (real widget front end).

The layout is built so that pairs of points lie almost on one ray from the default camera: their
thumbnails overlap, and the nearer one (numpy's projection, independent of the JS) must cover the
farther one, whichever of the two has the lower index. After an orbit the thumbnails follow the
new projection.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from _browser import click_at, pointer_to

from ._fakes import image_embedding
from .conftest import open_widget
from .test_widget_images_3d import DEFAULT_CAMERA, project

pytestmark = pytest.mark.browser

THUMB = 14  # js/src/canvas/thumbnails.js THUMB_SIZE


def _camera_basis(theta, phi, distance, **_):
    eye = distance * np.array([math.cos(phi) * math.sin(theta), math.sin(phi), math.cos(phi) * math.cos(theta)])
    f = -eye / np.linalg.norm(eye)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    return eye, r, np.cross(r, f)


@pytest.fixture(scope="module")
def image_viz3():
    """Two 3x4-patch images; every patch query paired with the next patch's key on one camera ray,
    the query in front for even pairs and behind for odd ones."""
    from qkviz import Embedding
    from qkviz.widget import QKViz

    fake, colours = image_embedding(n_images=2, grid=(3, 4), px=6)
    tok = fake.tokens
    n = len(tok)
    patches = np.flatnonzero(tok["row"].to_numpy() >= 0)
    cls = np.flatnonzero(tok["row"].to_numpy() < 0)
    eye, r, u = _camera_basis(**DEFAULT_CAMERA)
    y = np.zeros((2 * n, 3))
    y[cls[0]], y[cls[1]] = (-1, -1, -1), (1, 1, 1)  # the box corners: to_box keeps the layout as is
    y[n + cls[0]], y[n + cls[1]] = 0.8 * r - 0.6 * u, -0.8 * r - 0.6 * u
    for k, t in enumerate(patches):
        gx, gy = k % 6, k // 6
        anchor = (gx - 2.5) * 0.26 * r + (gy - 1.5) * 0.26 * u
        ray = (eye - anchor) / np.linalg.norm(eye - anchor)
        step = 0.3 if k % 2 == 0 else -0.3
        y[t] = anchor + step * ray  # the query, nearer for even k
        y[n + patches[(k + 1) % len(patches)]] = anchor + 0.012 * r  # the next patch's key, about 3 px away
    assert np.abs(y).max() <= 1
    emb = Embedding.from_coords({(0, 0): y}, tok, norms={(0, 0): np.ones(2 * n)}, capture=fake.capture)
    np.testing.assert_allclose(emb.coords(0, 0), y, atol=1e-6)
    return QKViz(emb, layer=0, head=0, theme="light"), colours


def _shot(locator):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def test_3d_thumbnails_nearer_patch_covers_farther(
    chromium_browser, views_server, widget_site, image_viz3, artifacts_dir
):
    viz, colours = image_viz3
    emb = viz.embedding
    page, errors = open_widget(chromium_browser, views_server, viz, "single")
    thumbs = page.locator("canvas.qkv-3d-thumbs")
    page.wait_for_selector("canvas.qkv-3d-thumbs[data-drawn]", state="attached", timeout=10_000)
    page.wait_for_timeout(200)
    tok = emb.tokens
    n = len(tok)
    assert thumbs.get_attribute("data-drawn") == str(2 * n)
    # the 2-D overlay stays empty in 3-D (no second set of thumbnails at the hidden scatter's places)
    assert page.locator(".qk-overlay canvas.qkv-thumbs").get_attribute("data-drawn") is None
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_thumbnails.png"))
    box = page.locator(".qk-3d canvas.qkv-3d").bounding_box()
    shot = _shot(page.locator(".qk-3d canvas.qkv-3d"))

    def screen(camera):
        ndc = project(emb.coords(0, 0), **{**DEFAULT_CAMERA, **camera})
        return np.stack([(ndc[:, 0] + 1) / 2 * box["width"], (1 - ndc[:, 1]) / 2 * box["height"]], axis=1)

    xy = screen({})
    row, col, seq = (tok[k].to_numpy() for k in ("row", "col", "seq"))

    def colour(p):
        return colours[seq[p % n], row[p % n], col[p % n]].astype(int)

    eye, _, _ = _camera_basis(**DEFAULT_CAMERA)
    depth = np.linalg.norm(emb.coords(0, 0) - eye, axis=1)
    patches = np.flatnonzero(row >= 0)
    checked = {"query": 0, "key": 0}
    for k, t in enumerate(patches):
        a, b = t, n + patches[(k + 1) % len(patches)]
        gap = np.abs(xy[a] - xy[b]).max()
        others = np.delete(np.arange(2 * n), [a, b])
        alone = np.sqrt(((xy[others] - xy[a]) ** 2).sum(1)).min() > 2 * THUMB
        if not (1.5 < gap < 5 and alone and np.abs(colour(a) - colour(b)).max() > 60):
            continue
        near, far = (a, b) if depth[a] < depth[b] else (b, a)
        mx, my = np.round((xy[a] + xy[b]) / 2).astype(int)
        seen = shot[my - 1 : my + 2, mx - 1 : mx + 2].reshape(-1, 3).mean(0)
        assert np.abs(seen - colour(near)).max() <= 12, (near, far, seen, colour(near), colour(far))
        checked["query" if near < n else "key"] += 1
    # both orders occur: drawing by index alone would fail one of them
    assert checked["query"] >= 2 and checked["key"] >= 2, checked

    # orbit: the thumbnails follow the new projection
    pointer_to(page, box["x"] + 300, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 360, box["y"] + 320, steps=4)
    page.mouse.up()
    page.wait_for_timeout(200)
    camera = json.loads(page.locator(".qk-root").get_attribute("data-qk-camera"))
    xy2 = screen(camera)
    assert np.abs(xy2 - xy).max() > 20
    shot2 = _shot(page.locator(".qk-3d canvas.qkv-3d"))
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_3d_thumbnails_turned.png"))
    d = np.sqrt(((xy2[:, None] - xy2[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    inside = (xy2 > 10).all(1) & (xy2[:, 0] < box["width"] - 10) & (xy2[:, 1] < box["height"] - 10)
    lone = [p for p in range(2 * n) if row[p % n] >= 0 and inside[p] and d[p].min() > THUMB + 2]
    assert len(lone) >= 3
    for p in lone:
        x, y = np.round(xy2[p]).astype(int)
        seen = shot2[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(0)
        assert np.abs(seen - colour(p)).max() <= 12, (p, seen, colour(p))

    # hovering a patch shows it in the tooltip (the 3-D view's atlas: the 2-D overlay never loaded one)
    p = lone[0]
    page.mouse.move(box["x"] + xy2[p, 0], box["y"] + xy2[p, 1])
    tip = page.locator(".qk-tooltip canvas.qk-tip-thumb")
    tip.wait_for(timeout=5_000)
    rgb = page.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(32, 32, 1, 1).data.slice(0, 3))", tip.element_handle()
    )
    assert np.abs(np.array(rgb) - colour(p)).max() <= 2, (rgb, colour(p))

    # thumbnails off: only the dots remain
    page.locator("input.qk-thumbs").uncheck()
    page.wait_for_function("!document.querySelector('canvas.qkv-3d-thumbs').dataset.drawn")
    assert errors == []
    page.close()


# ---- real model (screenshots to look at) ---------------------------------------------------------------


@pytest.mark.slow
def test_vit_3d_thumbnails_and_lines(chromium_browser, views_server, widget_site, vit_capture, artifacts_dir):
    from qkviz import embed
    from qkviz.widget import QKViz

    emb = embed(vit_capture, "pca", dim=3, layers=[5], heads=[1], cache=False, progress=False)
    viz = QKViz(emb, layer=5, head=1, theme="dark", lines_k=6)
    page, errors = open_widget(chromium_browser, views_server, viz, "single")
    page.wait_for_selector("canvas.qkv-3d-thumbs[data-drawn]", state="attached", timeout=20_000)
    page.wait_for_timeout(300)
    n = len(emb.tokens)
    assert page.locator("canvas.qkv-3d-thumbs").get_attribute("data-drawn") == str(2 * n)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_vit_3d_thumbnails_dark.png"))
    # click the nearest patch query on screen: attention lines are drawn over the thumbnails
    box = page.locator(".qk-3d canvas.qkv-3d").bounding_box()
    ndc = project(emb.coords(5, 1), **DEFAULT_CAMERA)
    xy = np.stack([(ndc[:, 0] + 1) / 2 * box["width"], (1 - ndc[:, 1]) / 2 * box["height"]], axis=1)
    eye, _, _ = _camera_basis(**DEFAULT_CAMERA)
    depth = np.linalg.norm(emb.coords(5, 1) - eye, axis=1)
    row = emb.tokens["row"].to_numpy()
    ok = [i for i in range(n) if row[i] >= 0 and (xy[i] > 20).all() and (xy[i] < box["width"] - 20).all()]
    q = min(ok, key=lambda i: depth[i])
    click_at(page, box["x"] + xy[q, 0], box["y"] + xy[q, 1])
    page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=20_000)
    page.wait_for_timeout(500)
    page.locator(".qk-root").screenshot(path=str(artifacts_dir / "widget_vit_3d_thumbnails_lines_dark.png"))
    thumbs = _shot(page.locator(".qk-3d"))
    orange = (np.abs(thumbs - np.array([232, 89, 13])).max(-1) < 40).sum()
    assert orange > 50, "no attention lines over the 3-D thumbnails"
    assert errors == []
    page.close()
