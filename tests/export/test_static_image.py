"""A standalone HTML export of an image capture (ViT), opened from file:// with the network blocked.

The page must draw patch thumbnails over the focused head, and for a clicked patch the image view:
the image (cut out of the embedded JPEG atlas), the attention overlay from the embedded top-k, the
CLS map (exact) and the arrows; it must say that the overlay is a top-k cut. Pixels are compared
with what Python computes from the capture. Nothing may leave the page.
"""

from __future__ import annotations

import numpy as np
import pytest

import qkviz
from _browser import click_at
from qkviz import analysis, export

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAYER, HEAD = 10, 2


@pytest.fixture(scope="module")
def emb(vit_capture):
    return qkviz.embed(vit_capture, layers=[9, LAYER], method="pca", progress=False, cache=False)


@pytest.fixture(scope="module")
def page_file(emb, tmp_path_factory):
    out = tmp_path_factory.mktemp("static-image") / "vit.html"
    export.save_html(qkviz.QKViz(emb, layer=LAYER, head=HEAD), out)
    return out


def pixel(page, selector, x, y):
    """RGBA of the canvas at CSS pixel (x, y)."""
    return page.evaluate(
        """([sel, x, y]) => { const c = document.querySelector(sel);
        const s = c.width / c.clientWidth;
        return Array.from(c.getContext('2d').getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data); }""",
        [selector, x, y],
    )


def test_image_view_thumbnails_and_overlay_offline(offline_page, page_file, emb, vit_capture, artifacts):
    page = offline_page
    page.goto(page_file.as_uri())
    page.wait_for_selector("#qkviz-root[data-qk-static='ready']", state="attached", timeout=30_000)
    page.wait_for_selector(".qk-root[data-qk-mode='single']", state="attached", timeout=30_000)
    # an image capture offers the image tab, not the sentence tab, before any click
    page.wait_for_selector(".qkv-tabs", state="attached")
    assert page.locator(".qkv-tabs button[data-tab='sentence']").is_hidden()
    assert page.locator(".qkv-tabs button[data-tab='image']").is_visible()
    # thumbnails: one per point of the focused head, from the embedded atlas
    n = emb.n_tokens
    page.wait_for_function(f"Number(document.querySelector('.qkv-thumbs')?.dataset.drawn) >= {n}", timeout=30_000)
    page.locator(".qk-root").screenshot(path=str(artifacts / "static-image-thumbs.png"))

    # click an isolated patch query of image 1
    tok = emb.tokens
    xy = emb.coords(LAYER, HEAD)
    d = np.sqrt(((xy[:n, None, :] - xy[None, :, :]) ** 2).sum(-1))
    d[np.arange(n), np.arange(n)] = np.inf
    isolation = d.min(axis=1)
    isolation[(tok["seq"].to_numpy() != 1) | (tok["row"].to_numpy() < 0)] = -1
    p = int(np.argmax(isolation))
    sx, sy = page.evaluate(
        f"() => Array.from(document.querySelector('.qk-root').qkScreenPositions().slice({2 * p}, {2 * p + 2}))"
    )
    box = page.locator("canvas.qk-canvas").bounding_box()
    click_at(page, box["x"] + sx, box["y"] + sy)
    page.wait_for_function("document.querySelector('.qkv-panel')?.dataset.imagePatch !== undefined", timeout=15_000)
    pos = int(tok["pos"][p])
    assert page.locator(".qkv-panel").get_attribute("data-image-patch") == str(pos)
    assert page.locator(".qkv-panel").get_attribute("data-active-tab") == "image"
    note = page.locator(".qk-static-note").inner_text()
    assert note.startswith(f"Static page: top 5 of {vit_capture.sequences.n_tokens[1]} keys embedded per query")

    # Python's numbers for this patch: its attention row, the top-5 the page holds, the image
    a = vit_capture.attention(LAYER, HEAD, 1)[pos]
    top = np.argsort(-a, kind="stable")[:5]
    rows = np.flatnonzero(tok["seq"].to_numpy() == 1)
    r, c = tok["row"].to_numpy()[rows], tok["col"].to_numpy()[rows]
    geom = page.evaluate("""() => { const c = document.querySelector('.qkv-image-overlay');
        return [c.clientWidth, c.clientHeight]; }""")
    R, C = int(r.max()) + 1, int(c.max()) + 1
    pw, ph = geom[0] / C, geom[1] / R

    def centre(q):
        return (c[q] + 0.5) * pw, (r[q] + 0.5) * ph

    # the strongest patch keeps its pixels in the overlay; a patch outside the top-5 is black
    best = next(int(q) for q in top if r[q] >= 0)
    weak = next(int(q) for q in np.argsort(a) if r[q] >= 0 and q not in top)
    bright = pixel(page, ".qkv-image-overlay", *centre(best))
    base = pixel(page, ".qkv-image-base", *centre(best))
    dark = pixel(page, ".qkv-image-overlay", *centre(weak))
    assert max(dark[:3]) <= 12, dark
    np.testing.assert_allclose(bright[:3], base[:3], atol=12)

    # the base image is the capture's own image (through the JPEG atlas): compare patch means
    colours = analysis.patch_colors(vit_capture)
    means = page.evaluate(
        """([pw, ph, cells]) => { const c = document.querySelector('.qkv-image-base');
        const s = c.width / c.clientWidth, g = c.getContext('2d');
        return cells.map(([r, col]) => { const d = g.getImageData(Math.round((col + 0.3) * pw * s),
            Math.round((r + 0.3) * ph * s), Math.max(1, Math.round(0.4 * pw * s)), Math.max(1, Math.round(0.4 * ph * s))).data;
          const m = [0, 0, 0]; for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) m[k] += d[i + k];
          return m.map((v) => v / (d.length / 4) / 255); }); }""",
        [pw, ph, [[int(r[q]), int(c[q])] for q in range(0, len(rows), 23) if r[q] >= 0]],
    )
    want = [[colours[k][rows[q]] for k in ("mean_r", "mean_g", "mean_b")] for q in range(0, len(rows), 23) if r[q] >= 0]
    # the centre 40 % of a patch against the whole patch's mean: close, not equal
    assert np.abs(np.array(means) - np.array(want)).mean() < 0.06

    # CLS box: the patch's weight on CLS (position 0) when CLS is in its top-5, else 0
    cls_value = float(page.locator(".qkv-cls-box").get_attribute("data-value"))
    assert cls_value == pytest.approx(a[0] if 0 in top else 0.0, abs=3e-3)
    # the CLS map is exact (the CLS row is embedded whole): its brightest cell is CLS's argmax
    cls_row = vit_capture.attention(LAYER, HEAD, 1)[0]
    arg = int(np.argmax(np.where(r >= 0, cls_row, -1)))
    # (the image view's numbers, computed in the page from the embedded attention: panel/detail.js)
    reply = page.evaluate("""() => { const d = document.querySelector('.qkv-panel').qkvImage;
        return {cls: Array.from(d.cls_heat), argmax: Array.from(d.argmax), grid: d.grid, patch: d.patch}; }""")
    assert reply["patch"] == pos
    assert reply["grid"] == [R, C]
    cls_heat = np.zeros((R, C))
    cls_heat[r[r >= 0], c[r >= 0]] = cls_row[r >= 0]
    np.testing.assert_allclose(reply["cls"], cls_heat.ravel(), atol=2.5e-3)
    assert int(np.argmax(reply["cls"])) == r[arg] * C + c[arg]
    # arrows go to each patch's argmax (the strongest of its embedded top-k; 8-bit weights may
    # tie two keys within 0.002, so compare the weights of the chosen keys)
    full = vit_capture.attention(LAYER, HEAD, 1)
    chosen = full[np.arange(len(full)), reply["argmax"]]
    np.testing.assert_allclose(chosen, full.max(axis=1), atol=4e-3)
    assert np.mean(np.array(reply["argmax"]) == full.argmax(axis=1)) > 0.9

    page.locator("[data-name='arrows']").check()
    page.locator(".qkv-panel").screenshot(path=str(artifacts / "static-image-view.png"))

    # the aggregate view: by position cut to what the page embeds (257² per head is too much), and it says so
    from qkviz.export._snapshot import _AGGREGATE_VALUES

    shown = int(np.sqrt(_AGGREGATE_VALUES // 12))  # 2 layers x 6 heads
    page.locator(".qkv-tabs button[data-tab='aggregate']").click()
    page.wait_for_selector(".qkv-score[data-score='first']", timeout=10_000)
    agg = analysis.aggregate_detail(emb, LAYER, HEAD, max_pos=shown)
    text = page.locator(".qkv-score[data-score='first']").inner_text()
    assert float(text.split()[1]) == pytest.approx(agg["scores"]["first"], abs=6e-4)
    lines = page.locator(".qk-static-note").inner_text().splitlines()
    assert lines[0].startswith("Static page: top 5 of 257 keys")  # the image view's note stays
    assert lines[1] == f"Aggregate by position: the first {shown} of 257 positions embedded (by offset: all)."
    page.locator(".qkv-panel").screenshot(path=str(artifacts / "static-image-aggregate.png"))

    # the patch colour field works from the embedded columns
    page.locator(".qk-color").select_option("patch_color")
    page.wait_for_function("document.querySelector('.qk-legend').textContent.includes('patch')", timeout=10_000)
    assert page.qk_external == []
    assert [e for e in page.qk_errors if "GPU stall" not in e] == []
