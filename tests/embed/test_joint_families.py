"""The joint transform preserves attention for every score family, with the rule each family needs.

* plain and relative heads: translate + scale the (content) vectors; the position term is taken from
  the captured vectors and positions, never from the layout;
* ALiBi heads: translate + scale the augmented vectors ``[q, 1/c]``, ``[k, m·p_j]``;
* sink heads: translate + scale, with the sink moved like a key (:meth:`JointTransform.sink_logits`);
* soft-capped heads: scale only (``embed`` turns translation off for them and records it).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkviz.attention import ScoreFunction, attention_rows, score_terms
from qkviz.joint import normalize


def _head(seed: int, n: int = 9, d: int = 5):
    rng = np.random.default_rng(seed)
    q = (rng.normal(size=(n, d)) * 2).astype(np.float32)
    k = (rng.normal(size=(n, d)) * 3 + 1.5).astype(np.float32)  # key cloud away from the queries
    return rng, q, k


def _softmax(s, causal):
    n = len(s)
    if causal:
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), causal=st.booleans())
def test_alibi_heads_keep_every_row_through_the_augmented_vectors(seed, causal):
    rng, q, k = _head(seed)
    c, m = 0.4, float(rng.uniform(0.05, 0.8))
    pos = np.arange(len(q))
    truth = attention_rows(q, k, ScoreFunction(scaling=c, alibi=m), causal)
    qa = np.c_[q, np.full(len(q), 1 / c)]
    ka = np.c_[k, m * pos]
    qn, kn, t = normalize(qa, ka)
    assert np.abs(t.shift).max() > 0.1  # the translation really moved the keys
    np.testing.assert_allclose(attention_rows(qn, kn, c, causal), truth, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), family=st.sampled_from(["offset_bias", "disentangled"]))
def test_relative_heads_keep_every_row_when_the_position_term_comes_from_the_capture(seed, family):
    rng, q, k = _head(seed)
    c, n = 0.4, len(q)
    if family == "offset_bias":
        f = ScoreFunction(scaling=c, offset_bias=rng.normal(size=2 * n - 1) * 2)
    else:
        f = ScoreFunction(
            scaling=c,
            rel_index=rng.integers(0, 4, size=2 * n - 1),
            pos_key=rng.normal(size=(4, q.shape[1])),
            pos_query=rng.normal(size=(4, q.shape[1])),
        )
    truth = attention_rows(q, k, f)
    _, position = score_terms(q, k, f)  # from the captured vectors
    qn, kn, _ = normalize(q, k)
    np.testing.assert_allclose(_softmax(c * qn.astype(np.float64) @ kn.T + position, False), truth, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), causal=st.booleans())
def test_sink_heads_keep_every_row_and_sink_share_with_the_sink_moved_like_a_key(seed, causal):
    rng, q, k = _head(seed)
    c, sigma = 0.4, float(rng.normal() * 2)
    truth, truth_sink = attention_rows(q, k, ScoreFunction(scaling=c, sink=sigma), causal, sink_share=True)
    qn, kn, t = normalize(q, k)
    s = c * qn.astype(np.float64) @ kn.T
    if causal:
        s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
    col = t.sink_logits(qn, sigma, c)[:, None]
    top = np.maximum(s.max(1, keepdims=True), col)
    e, es = np.exp(s - top), np.exp(col - top)
    total = e.sum(1, keepdims=True) + es
    np.testing.assert_allclose(e / total, truth, atol=1e-5)
    np.testing.assert_allclose((es / total)[:, 0], truth_sink, atol=1e-5)


def test_plain_translation_alone_would_move_the_sink_share():
    """Why sink_logits exists: without it the sink's share changes."""
    _, q, k = _head(0)
    c, sigma = 0.4, 1.0
    _, truth_sink = attention_rows(q, k, ScoreFunction(scaling=c, sink=sigma), sink_share=True)
    qn, kn, _ = normalize(q, k)
    _, naive = attention_rows(qn, kn, ScoreFunction(scaling=c, sink=sigma), sink_share=True)
    assert np.abs(naive - truth_sink).max() > 0.05


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), causal=st.booleans())
def test_soft_capped_heads_keep_every_row_under_norm_scaling(seed, causal):
    rng, q, k = _head(seed)
    f = ScoreFunction(scaling=0.6, softcap=1.5)
    truth = attention_rows(q, k, f, causal)
    qn, kn, t = normalize(q, k, translate=False)
    assert not t.translate and not t.shift.any()
    np.testing.assert_allclose(attention_rows(qn, kn, f, causal), truth, atol=1e-5)


def test_a_translation_would_change_a_soft_capped_head():
    """Why embed turns translation off for soft-capped heads."""
    _, q, k = _head(1)
    f = ScoreFunction(scaling=0.6, softcap=1.0)
    qn, kn, _ = normalize(q, k)
    assert np.abs(attention_rows(qn, kn, f) - attention_rows(q, k, f)).max() > 0.05


@pytest.fixture(scope="module")
def gemma_capture():
    import qkviz
    from _fakes import capture_from_arrays

    rng = np.random.default_rng(0)
    seq = np.repeat(np.arange(4), [9, 7, 11, 8])
    shape = (1, 2, len(seq), 6)
    cap = capture_from_arrays(rng.normal(size=shape) * 2, rng.normal(size=shape) * 2 + 2, seq, causal=True)
    g = qkviz.HeadGeometry(**{**vars(cap.geometry), "softcap": {0: 1.5}})
    return qkviz.Capture.from_arrays(
        {(0, h): cap.q(0, h) for h in (0, 1)}, {(0, h): cap.k(0, h) for h in (0, 1)}, cap.tokens, g
    )


def test_embed_keeps_soft_capped_keys_in_place_and_says_why(gemma_capture):
    import qkviz

    emb = qkviz.embed(gemma_capture, method="pca", executor="serial", cache=False, progress=False)
    assert all(not t.translate and not t.shift.any() for t in emb.transforms.values())
    assert emb.params["translate_off"]["heads"] == [[0, 0], [0, 1]]
    assert "soft-capped" in emb.params["translate_off"]["reason"]
    # recall is measured against the head's true (capped) attention
    df = emb.faithfulness(k=3)
    assert df["recall"].between(0, 1).all()
