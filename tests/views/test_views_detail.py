"""Unit tests of qkviz.analysis against hand computations on stand-ins with known attention."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from qkviz import analysis, attention
from qkviz.errors import InputError, WidgetDataError

from ._fakes import image_embedding, text_embedding


@pytest.fixture(scope="module")
def emb():
    return text_embedding()


def test_sequence_detail_returns_the_sequence_in_position_order(emb):
    d = analysis.sequence_detail(emb, 0, 0, 1)
    rows = np.flatnonzero(emb.tokens["seq"].to_numpy() == 1)
    assert d["token"].dtype == np.uint32 and d["token"].tolist() == rows.tolist()
    assert d["display"] == emb.tokens["display"].iloc[rows].tolist()
    assert d["special"].tolist() == [1, 0, 0, 0, 0, 0, 1]
    np.testing.assert_array_equal(d["raw"], emb.attention(0, 0, 1))
    np.testing.assert_allclose(d["attention"], d["raw"], atol=1e-6)  # nothing hidden: unchanged


def test_hiding_a_key_renormalises_rows_like_the_hand_formula(emb):
    raw = emb.attention(0, 0, 0).astype(np.float64)
    d = analysis.sequence_detail(emb, 0, 0, 0, hide_keys=[2])
    # AttentionViz: a_ij / (1 - sum_hidden a_ih), hidden column zero
    expected = raw / (1.0 - raw[:, [2]])
    expected[:, 2] = 0.0
    np.testing.assert_allclose(d["attention"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d["attention"].sum(1), 1.0, atol=1e-5)
    assert d["hidden_keys"].tolist() == [0, 0, 1, 0, 0]


def test_hiding_a_query_zeroes_only_its_row(emb):
    d = analysis.sequence_detail(emb, 0, 0, 0, hide_queries=[3])
    assert d["attention"].shape == (5, 5)  # shape never changes with a flag
    assert not d["attention"][3].any()
    np.testing.assert_allclose(np.delete(d["attention"], 3, 0), np.delete(d["raw"], 3, 0), atol=1e-6)


def test_hide_special_and_first_hide_the_right_positions(emb):
    d = analysis.sequence_detail(emb, 0, 0, 1, hide_special=True)
    assert d["hidden_keys"].tolist() == [1, 0, 0, 0, 0, 0, 1]
    assert d["hidden_queries"].tolist() == [1, 0, 0, 0, 0, 0, 1]
    assert not d["attention"][:, [0, 6]].any() and not d["attention"][[0, 6]].any()
    np.testing.assert_allclose(d["attention"][1:6].sum(1), 1.0, atol=1e-5)
    f = analysis.sequence_detail(emb, 0, 0, 1, hide_first=True)
    assert f["hidden_keys"].tolist() == [1, 0, 0, 0, 0, 0, 0]


def test_value_weighting_is_a_times_norm_row_renormalised(emb):
    d = analysis.sequence_detail(emb, 0, 0, 2, value_weighted=True)
    rows = d["token"].astype(int)
    norms = np.linalg.norm(emb.capture.v(0, 0)[rows].astype(np.float64), axis=1)
    np.testing.assert_allclose(d["value_norms"], norms, rtol=1e-6)
    w = d["raw"] * norms[None, :]
    np.testing.assert_allclose(d["attention"], w / w.sum(1, keepdims=True), rtol=1e-5)
    # weighting then hiding = one renormalisation over both factors
    both = analysis.sequence_detail(emb, 0, 0, 2, value_weighted=True, hide_keys=[1])
    w[:, 1] = 0
    np.testing.assert_allclose(both["attention"], w / w.sum(1, keepdims=True), rtol=1e-5)


def test_value_weighting_without_values_says_how_to_capture_them():
    emb = text_embedding(values=False)
    with pytest.raises(WidgetDataError, match="values=True"):
        analysis.sequence_detail(emb, 0, 0, 0, value_weighted=True)
    assert analysis.sequence_detail(emb, 0, 0, 0)["value_norms"] is None


def test_a_row_with_every_visible_key_hidden_stays_zero_not_nan():
    a = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    out = attention.renormalize(a, hidden_keys=[0])
    assert np.isfinite(out).all() and out[0].tolist() == [0.0, 0.0] and out[1].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(seq=9), "seq 9"), (dict(hide_keys=[5]), "hidden key"), (dict(layer=3), "layer 3"), (dict(head=7), "head 7")],
)
def test_bad_requests_raise_typed_errors(emb, kwargs, match):
    args = dict(layer=0, head=0, seq=0) | kwargs
    with pytest.raises(InputError, match=match):
        analysis.sequence_detail(emb, args.pop("layer"), args.pop("head"), args.pop("seq"), **args)


def test_aggregate_shows_the_previous_token_peak_at_offset_minus_one(emb):
    agg = analysis.aggregate_detail(emb, 0, 1)
    offsets = agg["offsets"].tolist()
    assert offsets[0] == -6 and offsets[-1] == 6
    assert offsets[int(np.argmax(agg["by_offset"]))] == -1
    np.testing.assert_allclose(agg["by_offset"].sum(), 1.0, atol=1e-5)
    assert agg["scores"]["previous"] > 0.7 > agg["scores"]["self"]
    # by position: row i (i >= 1) peaks at column i - 1
    bp = agg["by_position"]
    assert bp.shape == (7, 7)
    assert [int(np.argmax(bp[i])) for i in range(1, 7)] == list(range(0, 6))
    np.testing.assert_allclose(bp.sum(1), 1.0, atol=1e-5)
    assert agg["count"][0, 0] == 3 and agg["count"][6, 6] == 1  # only one sequence has 7 tokens


def test_aggregate_by_position_is_the_mean_over_sequences_that_have_both_positions(emb):
    agg = analysis.aggregate_detail(emb, 0, 0)
    a = [emb.attention(0, 0, s).astype(np.float64) for s in range(3)]
    # cell (1, 2) exists in all three sequences; (5, 5) only in the 7-token one
    mean = np.zeros((7, 7))
    cnt = np.zeros((7, 7))
    for m in a:
        n = len(m)
        mean[:n, :n] += m
        cnt[:n, :n] += 1
    mean /= np.maximum(cnt, 1)
    mean /= mean.sum(1, keepdims=True)
    np.testing.assert_allclose(agg["by_position"], mean, rtol=1e-5)
    # offset means by hand at offset +2
    vals = [m[i, i + 2] for m in a for i in range(len(m) - 2)]
    k = agg["offsets"].tolist().index(2)
    np.testing.assert_allclose(agg["by_offset_mean"][k], np.mean(vals), rtol=1e-5)


def test_aggregate_first_token_score_finds_the_sink_head(emb):
    assert analysis.aggregate_detail(emb, 0, 2)["scores"]["first"] > 0.85
    assert analysis.aggregate_detail(emb, 0, 1)["scores"]["first"] < 0.5


def test_image_detail_lays_the_row_of_the_clicked_patch_on_the_grid():
    emb, _ = image_embedding()
    att = emb.attention(0, 0, 1)
    patch = 1 + 2 * 4 + 1  # row 2, col 1
    d = analysis.image_detail(emb, 0, 0, 1, patch)
    assert d["grid"] == [3, 4] and (d["patch_row"], d["patch_col"]) == (2, 1)
    np.testing.assert_allclose(d["heat"].ravel(), att[patch, 1:], rtol=1e-6)
    np.testing.assert_allclose(d["to_special"], att[patch, [0]])
    np.testing.assert_allclose(d["cls_heat"].ravel(), att[0, 1:], rtol=1e-6)
    # overlay: brightest at the argmax patch, darkest at the argmin patch, in [0, 1]
    s = d["strength"]
    assert np.unravel_index(s.argmax(), s.shape) == np.unravel_index(d["heat"].argmax(), s.shape)
    assert np.unravel_index(s.argmin(), s.shape) == np.unravel_index(d["heat"].argmin(), s.shape)
    assert s.max() == pytest.approx(1.0) and 0 <= s.min() < 1
    assert d["argmax"].tolist() == att.argmax(1).tolist()
    assert d["image"].shape == (18, 24, 3)
    key = analysis.image_detail(emb, 0, 0, 1, patch, kind="key")
    np.testing.assert_allclose(key["heat"].ravel(), att[1:, patch], rtol=1e-6)


def test_overlay_strength_matches_attentionviz_formula():
    a = np.array([0.1, 0.2, 0.4])
    b = a - 0.25 * 0.1
    np.testing.assert_allclose(attention.overlay_strength(a), np.sqrt(b / b.max()), rtol=1e-6)


def test_image_detail_rejects_text_and_bad_patches(emb):
    with pytest.raises(WidgetDataError, match="row"):
        analysis.image_detail(emb, 0, 0, 0, 1)
    img, _ = image_embedding()
    with pytest.raises(InputError, match="out of range"):
        analysis.image_detail(img, 0, 0, 0, 99)
    with pytest.raises(InputError, match="kind"):
        analysis.image_detail(img, 0, 0, 0, 1, kind="value")


def test_patch_atlas_uv_points_at_each_patch_pixels():
    emb, colours = image_embedding(n_images=3)
    atlas, uv = analysis.patch_atlas(emb.capture, thumb=4)
    assert atlas.dtype == np.uint8 and atlas.shape[2] == 4
    tokens = emb.tokens
    assert (uv[tokens["row"].to_numpy() < 0] == -1).all()
    h, w = atlas.shape[:2]
    for t in np.flatnonzero(tokens["row"].to_numpy() >= 0):
        u0, v0, u1, v1 = uv[t]
        assert (u1 - u0) * w == pytest.approx(4) and (v1 - v0) * h == pytest.approx(4)
        cell = atlas[round(v0 * h) : round(v1 * h), round(u0 * w) : round(u1 * w)]
        s, r, c = tokens.loc[t, ["seq", "row", "col"]]
        assert (np.abs(cell[..., :3].astype(int) - colours[s, r, c]) <= 1).all()
        assert (cell[..., 3] == 255).all()


def test_patch_atlas_default_thumb_fits_limits():
    emb, _ = image_embedding(n_images=5, grid=(16, 16), px=2)
    atlas, _uv = analysis.patch_atlas(emb.capture, max_side=512, max_bytes=1 << 20)
    assert max(atlas.shape[:2]) <= 512 and atlas.nbytes <= 1 << 20


def test_patch_colors_are_the_patch_means():
    emb, colours = image_embedding()
    cols = analysis.patch_colors(emb.capture)
    tokens = emb.tokens
    t = int(np.flatnonzero((tokens["seq"] == 1) & (tokens["row"] == 2) & (tokens["col"] == 3))[0])
    rgb = colours[1, 2, 3] / 255.0
    assert (cols["mean_r"][t], cols["mean_g"][t], cols["mean_b"][t]) == pytest.approx(tuple(rgb), abs=1e-6)
    assert cols["brightness"][t] == pytest.approx(float(rgb @ [0.299, 0.587, 0.114]), abs=1e-6)
    hsv = colorsys.rgb_to_hsv(*rgb)
    assert cols["hue"][t] == pytest.approx(hsv[0], abs=1e-5)
    assert cols["saturation"][t] == pytest.approx(hsv[1], abs=1e-5)
    assert np.isnan(cols["brightness"][0])  # CLS


def test_value_weighting_on_a_real_capture_uses_its_value_vectors(tiny_capture):
    seq = 1
    d = analysis.sequence_detail(tiny_capture, 0, 1, seq, value_weighted=True)
    rows = d["token"].astype(int)
    norms = np.linalg.norm(tiny_capture.v(0, 1)[rows].astype(np.float64), axis=1)
    w = tiny_capture.attention(0, 1, seq).astype(np.float64) * norms[None, :]
    np.testing.assert_allclose(d["attention"], w / w.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert d["modality"] == "text" and d["display"][0] == "[CLS]"


def test_request_handlers_answer_through_the_command_router():
    """The side panel's one request for a sequence: its exact attention and, with ``detail``, the
    patch grid and pixels its views are computed from in the browser."""
    from qkviz.widget._commands import HANDLERS, dispatch
    from qkviz.wire import WidgetState, binary_to_array

    emb, _ = image_embedding()
    widget = WidgetState.from_embedding(emb)

    def array(msg, buffers, name):
        w = msg[name]
        return binary_to_array({"view": buffers[w["$buffer"]], "dtype": w["dtype"], "shape": w["shape"]})

    msg, buffers = dispatch(widget, {"kind": "attention", "layer": 0, "head": 0, "seq": 1, "detail": True})
    assert "error" not in msg
    np.testing.assert_array_equal(array(msg, buffers, "weights"), emb.attention(0, 0, 1))
    d = analysis.image_detail(emb, 0, 0, 1, 5)
    np.testing.assert_array_equal(array(msg, buffers, "row"), d["row"])
    np.testing.assert_array_equal(array(msg, buffers, "col"), d["col"])
    np.testing.assert_array_equal(array(msg, buffers, "image"), d["image"])
    assert msg["image_size"] == d["image_size"] and msg["value_norms"] is None  # no values captured
    # the lines ask without detail: the weights alone
    msg, _ = dispatch(widget, {"kind": "attention", "layer": 0, "head": 0, "seq": 1})
    assert set(msg) == {"layer", "head", "seq", "weights"}
    msg, _ = dispatch(widget, {"kind": "atlas"})
    assert msg["atlas_shape"][2] == 4 and set(msg["colors"]) >= {"brightness", "hue"}
    msg, _ = dispatch(widget, {"kind": "attention", "layer": 0, "head": 0, "seq": 7, "detail": True})
    assert "seq 7" in msg["error"]  # a typed error travels back as text, never hangs the page
    # one backend per kind: per-sequence views are the browser's; only global kinds are asked for
    assert set(HANDLERS) == {"points", "sample", "points_at", "attention", "aggregate", "atlas"}
    msg, _ = dispatch(widget, {"kind": "image", "layer": 0, "head": 0, "seq": 1, "patch": 5})
    assert "unknown request kind 'image'" in msg["error"]


def test_attention_detail_carries_value_norms_of_a_capture_with_values(tiny_capture):
    seq = 1
    ctx = analysis.attention_context(tiny_capture, 0, 1, seq)
    rows = np.flatnonzero(tiny_capture.tokens["seq"].to_numpy() == seq)
    rows = rows[np.argsort(tiny_capture.tokens["pos"].to_numpy()[rows], kind="stable")]
    np.testing.assert_allclose(ctx["value_norms"], np.linalg.norm(tiny_capture.v(0, 1)[rows], axis=1), rtol=1e-6)
    assert "row" not in ctx  # a text capture has no patch grid
