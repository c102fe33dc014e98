"""Key translation and norm scaling leave every attention row unchanged (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qkviz.attention import attention_rows
from qkviz.errors import EmbeddingError
from qkviz.joint import JointTransform, fit_transform_params, normalize

finite = st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def heads(draw):
    """One head: q, k [token, d_head] (float32), sequence lengths, scaling, causal flag."""
    lens = draw(st.lists(st.integers(1, 9), min_size=1, max_size=4))
    n, d = sum(lens), draw(st.integers(1, 8))
    q = draw(arrays(np.float32, (n, d), elements=finite))
    # keys with their own offset and scale, as in real heads (k clouds sit away from q clouds)
    k = draw(arrays(np.float32, (n, d), elements=finite)) * draw(st.floats(0.1, 5)) + draw(st.floats(-5, 5))
    return q, k.astype(np.float32), lens, draw(st.floats(0.05, 1.0)), draw(st.booleans())


def _rows(q, k, lens, scaling, causal):
    out, start = [], 0
    for m in lens:
        out.append(attention_rows(q[start : start + m], k[start : start + m], scaling, causal))
        start += m
    return out


def _padded_batch(q, k, lens, scaling, causal):
    """Attention of a right-padded batch [seq, T, T]: padding keys masked, padding rows dropped."""
    T, d = max(lens), q.shape[1]
    out, start = [], 0
    for m in lens:
        qb, kb = np.zeros((T, d)), np.full((T, d), 7.0)  # padding vectors are arbitrary
        qb[:m], kb[:m] = q[start : start + m], k[start : start + m]
        s = qb @ kb.T * scaling
        mask = np.zeros((T, T), bool)
        mask[:, :m] = True
        if causal:
            mask &= np.tri(T, T, dtype=bool)
        s = np.where(mask, s, -np.inf)[:m]
        e = np.exp(s - s.max(1, keepdims=True))
        out.append(e / e.sum(1, keepdims=True))
        start += m
    return out


@settings(max_examples=60, deadline=None)
@given(heads(), st.sampled_from(["translate", "scale", "both"]))
def test_normalisation_preserves_every_attention_row(head, which):
    q, k, lens, scaling, causal = head
    qn, kn, _ = normalize(q, k, translate=which != "scale", scale="auto" if which != "translate" else None)
    for a, b in zip(_rows(q, k, lens, scaling, causal), _rows(qn, kn, lens, scaling, causal)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(heads(), st.floats(0.2, 5.0))
def test_padded_batches_unchanged_with_fixed_scale(head, a):
    # translation fitted on the real tokens only (padding is never a point), applied to the batch
    q, k, lens, scaling, causal = head
    qn, kn, _ = normalize(q, k, translate=True, scale=a)
    for x, y in zip(_padded_batch(q, k, lens, scaling, causal), _padded_batch(qn, kn, lens, scaling, causal)):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_translation_moves_key_centroid_onto_query_centroid_and_inverts():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(50, 6)), rng.normal(size=(50, 6)) * 3 + 4
    qn, kn, t = normalize(q, k)
    np.testing.assert_allclose(kn.mean(0) / t.scale, qn.mean(0) * t.scale, atol=1e-4)
    nq, nk = np.linalg.norm(qn, axis=1).mean(), np.linalg.norm(kn, axis=1).mean()
    assert nq == pytest.approx(nk, rel=1e-4)
    q2, k2 = t.invert(qn, kn)
    np.testing.assert_allclose(q2, q, atol=1e-4)
    np.testing.assert_allclose(k2, k, atol=1e-4)
    assert JointTransform.from_dict(t.to_dict()).scale == t.scale


def test_cosine_geometry_ignores_scaling():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 1
    q1, k1, _ = normalize(q, k, scale=None)
    q2, k2, t = normalize(q, k, scale="auto")
    assert t.scale != pytest.approx(1.0)

    def cos(x):
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        return u @ u.T

    np.testing.assert_allclose(cos(np.vstack([q1, k1])), cos(np.vstack([q2, k2])), atol=1e-5)


def test_off_switches_are_identity():
    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(10, 4)).astype(np.float32), rng.normal(size=(10, 4)).astype(np.float32)
    qn, kn, t = normalize(q, k, translate=False, scale=None)
    np.testing.assert_array_equal(qn, q)
    np.testing.assert_array_equal(kn, k)
    assert t.scale == 1.0 and not t.shift.any()


@pytest.mark.parametrize("bad", ["median", -1.0, 0.0, float("nan"), True])
def test_bad_scale_is_a_typed_error(bad):
    with pytest.raises(EmbeddingError, match="scale"):
        fit_transform_params(np.ones((3, 2)), np.ones((3, 2)), scale=bad)


def test_shape_mismatch_is_a_typed_error():
    with pytest.raises(EmbeddingError, match="token, d_head"):
        normalize(np.ones((3, 2)), np.ones((3, 3)))


def test_cross_attention_clouds_may_differ_in_size():
    """Decoder queries and encoder keys: the translation still preserves every row."""
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(3, 4)), rng.normal(size=(7, 4)) + 2
    qn, kn, t = normalize(q, k)
    np.testing.assert_allclose(kn.mean(0) / t.scale, qn.mean(0) * t.scale, atol=1e-5)
    np.testing.assert_allclose(attention_rows(qn, kn, 0.5), attention_rows(q, k, 0.5), atol=1e-6)
