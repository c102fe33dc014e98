"""The side-panel views on real models (MiniLM, DINOv2 ViT-S/14): pixel checks and screenshots.

Screenshots go to test-artifacts/views/ for a human to look at.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from qkviz import analysis

from .conftest import mount_panel
from .test_views_browser import _check_overlay, _click_point

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# MiniLM layer 0 head 2 is a previous-token head (by_offset share at -1 ≈ 0.97 on the demo sentences)
PREV_HEAD = (0, 2)


def test_minilm_previous_token_head_peaks_at_offset_minus_one(minilm_capture):
    agg = analysis.aggregate_detail(minilm_capture, *PREV_HEAD)
    assert agg["offsets"][int(np.argmax(agg["by_offset"]))] == -1
    assert agg["scores"]["previous"] > 0.8


def test_minilm_views_render(harness, minilm_capture, artifacts_dir):
    page, state = harness
    cap = minilm_capture
    mount_panel(page, state, cap)
    lengths = cap.sequences["n_tokens"].to_numpy()
    seq = int(np.flatnonzero((lengths >= 10) & (lengths <= 16))[0])
    _click_point(page, cap, seq=seq, pos=3, layer=2, head=0)
    panel = page.locator(".qkv-panel")
    panel.screenshot(path=str(artifacts_dir / "minilm_sentence.png"))
    page.locator(".qkv-col-q .qkv-tok[data-pos='3']").hover()
    panel.screenshot(path=str(artifacts_dir / "minilm_sentence_hover.png"))
    page.locator("[data-name='hide-special']").check()
    js = np.array(page.evaluate("Array.from(window.panel.state.weights)")).reshape(lengths[seq], -1)
    py = analysis.sequence_detail(cap, 2, 0, seq, hide_special=True)["attention"]
    np.testing.assert_allclose(js, py, atol=1e-6)
    panel.screenshot(path=str(artifacts_dir / "minilm_sentence_hide_special.png"))
    page.locator("button[data-tab='heatmap']").click()
    panel.screenshot(path=str(artifacts_dir / "minilm_heatmap.png"))
    _click_point(page, cap, seq=seq, pos=3, layer=PREV_HEAD[0], head=PREV_HEAD[1])
    page.locator("button[data-tab='aggregate']").click()
    page.wait_for_selector(".qkv-score[data-score='previous']")
    page.wait_for_function("document.querySelector('.qkv-panel').dataset.loading === '0'")
    panel.screenshot(path=str(artifacts_dir / "minilm_aggregate_prev_token_head.png"))


def test_vit_image_view_and_thumbnails(harness, vit_capture, artifacts_dir):
    page, state = harness
    cap = vit_capture
    mount_panel(page, state, cap)
    layer, head, seq = 9, 0, 0
    # a patch near the image centre (row 8, col 8)
    tokens = cap.tokens
    pos = int(
        tokens["pos"][
            np.flatnonzero(((tokens["seq"] == seq) & (tokens["row"] == 8) & (tokens["col"] == 8)).to_numpy())[0]
        ]
    )
    _click_point(page, cap, seq=seq, pos=pos, layer=layer, head=head)
    page.wait_for_selector("canvas.qkv-image-overlay")
    d = analysis.image_detail(cap, layer, head, seq, pos)
    _check_overlay(page, d)
    panel = page.locator(".qkv-panel")
    panel.screenshot(path=str(artifacts_dir / "vit_image.png"))
    page.locator("[data-name='arrows']").check()
    panel.screenshot(path=str(artifacts_dir / "vit_image_arrows.png"))
    page.locator("button[data-tab='heatmap']").click()
    panel.screenshot(path=str(artifacts_dir / "vit_heatmap.png"))

    # thumbnails at a real layout: the first two principal components of this head's q and k
    q, k = cap.q(layer, head), cap.k(layer, head)
    x = np.concatenate([q, k]).astype(np.float64)
    x -= x.mean(0)
    xy = x @ np.linalg.svd(x, full_matrices=False)[2][:2].T
    xy = 20 + (xy - xy.min(0)) / (xy.max(0) - xy.min(0)) * 280
    n = len(tokens)
    kinds = [0] * n + [1] * n
    page.evaluate(
        """async ([xy, toks, kinds]) => {
             const d = await window.qkv.fetchDetail({kind: 'atlas'});
             const g = document.getElementById('thumbs').getContext('2d');
             g.fillStyle = '#fff'; g.fillRect(0, 0, 320, 320);
             window.qkv.views.drawThumbnails(g, window.qkv.views.atlasCanvas(d), d.uv, xy, {tokens: toks, kinds, size: 10, border: 1});
           }""",
        [xy.ravel().tolist(), list(range(n)) * 2, kinds],
    )
    canvas = page.locator("#thumbs")
    canvas.screenshot(path=str(artifacts_dir / "vit_thumbnails.png"))
    # the last-drawn thumbnail (the key of the last token, a patch) shows that patch's pixels
    atlas, uv = analysis.patch_atlas(cap, max_bytes=3 << 20)
    t = n - 1
    cx, cy = xy[2 * n - 1]
    px = page.evaluate(
        "([x, y]) => Array.from(document.getElementById('thumbs').getContext('2d').getImageData(x, y, 1, 1).data)",
        [int(round(cx)), int(round(cy))],
    )
    h, w = atlas.shape[:2]
    u0, v0, u1, v1 = uv[t]
    patch = atlas[int(v0 * h) : int(v1 * h), int(u0 * w) : int(u1 * w), :3].astype(int)
    # the screen pixel is a resampled patch pixel: within the patch's colour range
    assert (np.array(px[:3]) >= patch.min((0, 1)) - 8).all() and (np.array(px[:3]) <= patch.max((0, 1)) + 8).all()


def test_minilm_3d_view_renders_and_picks(harness, minilm_capture, artifacts_dir):
    page, state = harness
    cap = minilm_capture
    state.widget = types.SimpleNamespace(embedding=cap)
    q, k = cap.q(2, 0), cap.k(2, 0)
    x = np.concatenate([q, k]).astype(np.float64)
    x -= x.mean(0)
    xyz = x @ np.linalg.svd(x, full_matrices=False)[2][:3].T
    xyz /= np.abs(xyz).max()
    n = len(cap.tokens)
    tokens = {"seq": cap.tokens["seq"].tolist(), "pos": cap.tokens["pos"].tolist()}
    page.evaluate("([c, t]) => window.mount3DHarness(c, t)", [xyz.ravel().tolist(), tokens])
    page.locator(".qkv-3d-box").screenshot(path=str(artifacts_dir / "minilm_3d.png"))
    # highlighting a sequence's tokens enlarges their points (the linking path the panel uses)
    seq_tokens = np.flatnonzero(cap.tokens["seq"].to_numpy() == 0).tolist()
    page.evaluate("(t) => window.qkv.bus.publish('highlight:tokens', {tokens: Uint32Array.from(t)})", seq_tokens)
    page.locator(".qkv-3d-box").screenshot(path=str(artifacts_dir / "minilm_3d_highlight.png"))
    assert page.evaluate("window.scene.camera().distance") > 0 and 2 * n == len(xyz)
