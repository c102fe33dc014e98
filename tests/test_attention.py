"""``qkviz.attention`` is the one definition of attention; the capture stage's torch twin agrees with it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkviz.attention import attention_rows, renormalize, visible
from qkviz.errors import InputError


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 8),
    causal=st.booleans(),
    window=st.one_of(st.none(), st.integers(1, 6)),
    scaling=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**16),
)
def test_torch_twin_matches_the_numpy_definition(n, d, causal, window, scaling, seed):
    import torch

    from qkviz._capture._hook import attention_t, visible_t

    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(2, n, d)) * 3, rng.normal(size=(2, n, d)) * 3  # two heads
    np.testing.assert_array_equal(visible_t(n, causal, window).numpy(), visible(n, causal, window))
    got = attention_t(torch.from_numpy(q), torch.from_numpy(k), scaling, causal, window).numpy()
    for h in range(2):
        np.testing.assert_allclose(got[h], attention_rows(q[h], k[h], scaling, causal, window), atol=1e-12)


@pytest.mark.parametrize("causal, window", [(False, None), (True, None), (True, 3), (False, 2)])
def test_rows_are_probabilities_over_exactly_the_visible_keys(causal, window):
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    a = attention_rows(q, k, 0.5, causal, window)
    ok = visible(7, causal, window)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert (a[~ok] == 0).all() and (a[ok] > 0).all()


def test_renormalize_hides_and_weights_as_documented():
    a = np.array([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    w = np.array([1.0, 2.0, 4.0])
    out = renormalize(a, key_weights=w, hidden_keys=[1], hidden_queries=[2])
    expect = a * w * np.array([1, 0, 1])
    expect = expect / expect.sum(axis=1, keepdims=True)
    expect[2] = 0
    np.testing.assert_allclose(out, expect, rtol=1e-6)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 10),
    causal=st.booleans(),
    window=st.one_of(st.none(), st.integers(1, 6)),
    family=st.sampled_from(["softcap", "sink", "alibi", "offset_bias", "c2p", "p2c", "c2p+p2c", "sink+softcap"]),
    seed=st.integers(0, 2**16),
)
def test_torch_twin_matches_every_score_family(n, causal, window, family, seed):
    """The capture checks' torch twin and ``qkviz.attention`` compute the same attention for every term."""
    import torch

    from qkviz._capture._hook import attention_t
    from qkviz.attention import ScoreFunction

    rng = np.random.default_rng(seed)
    heads, d, length, rows = 3, 4, 12, 5
    q, k = rng.normal(size=(heads, n, d)) * 2, rng.normal(size=(heads, n, d)) * 2
    terms: dict[str, np.ndarray] = {}
    softcap = None
    if "softcap" in family:
        softcap = 1.5
    if "sink" in family:
        terms["sink"] = rng.normal(size=heads) * 2
    if family == "alibi":
        terms["alibi"] = rng.uniform(0.01, 0.5, size=heads)
    if family == "offset_bias":
        terms["offset_bias"] = rng.normal(size=(heads, 2 * length - 1))
    if "2" in family:
        terms["rel_index"] = rng.integers(0, rows, size=2 * length - 1)
        if "c2p" in family:
            terms["pos_key"] = rng.normal(size=(heads, rows, d))
        if "p2c" in family:
            terms["pos_query"] = rng.normal(size=(heads, rows, d))
    got = attention_t(torch.from_numpy(q), torch.from_numpy(k), 0.5, causal, window, terms, softcap).numpy()
    for h in range(heads):
        f = ScoreFunction(
            scaling=0.5,
            softcap=softcap,
            **{
                name: (a if name == "rel_index" else (float(a[h]) if a.ndim == 1 else a[h]))
                for name, a in terms.items()
            },
        )
        np.testing.assert_allclose(got[h], attention_rows(q[h], k[h], f, causal, window), atol=1e-10)


def test_score_terms_add_up_to_the_scores_before_the_cap():
    from qkviz.attention import ScoreFunction, score_terms, scores

    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    f = ScoreFunction(
        scaling=0.5,
        rel_index=rng.integers(0, 4, size=11),
        pos_key=rng.normal(size=(4, 4)),
        pos_query=rng.normal(size=(4, 4)),
    )
    content, position = score_terms(q, k, f)
    np.testing.assert_allclose(content + position, scores(q, k, f))
    capped = ScoreFunction(scaling=0.5, softcap=0.7, alibi=0.3)
    c, p = score_terms(q, k, capped)
    np.testing.assert_allclose(0.7 * np.tanh((c + p) / 0.7), scores(q, k, capped))


def test_a_sink_takes_its_share_and_the_rest_keeps_its_proportions():
    from qkviz.attention import ScoreFunction

    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    plain = attention_rows(q, k, 0.7, causal=True)
    a, sink = attention_rows(q, k, ScoreFunction(scaling=0.7, sink=0.5), causal=True, sink_share=True)
    np.testing.assert_allclose(a.sum(1) + sink, 1.0)
    np.testing.assert_allclose(a / a.sum(1, keepdims=True), plain, atol=1e-12)
    assert (sink > 0).all() and (sink < 1).all()


def test_position_tables_refuse_positions_they_do_not_cover():
    from qkviz.attention import ScoreFunction, score_terms
    from qkviz.errors import InputError

    f = ScoreFunction(scaling=1.0, offset_bias=np.zeros(5))  # offsets -2..2: sequences up to 3 tokens
    score_terms(np.zeros((3, 2)), np.zeros((3, 2)), f)
    with pytest.raises(InputError, match="covers offsets up to 2"):
        score_terms(np.zeros((4, 2)), np.zeros((4, 2)), f)


def test_padded_sequences_match_one_at_a_time():
    """``lengths``: several right-padded sequences in one call give each sequence's own attention."""
    from qkviz.attention import ScoreFunction

    rng = np.random.default_rng(3)
    lengths = np.array([1, 5, 3, 7])
    t = int(lengths.max())
    q, k = rng.normal(size=(4, t, 6)) * 3, rng.normal(size=(4, t, 6)) * 3
    for score in (0.4, ScoreFunction(scaling=0.4, softcap=2.0), ScoreFunction(scaling=0.4, sink=0.5)):
        for causal, window in ((False, None), (True, None), (True, 2), (False, 3)):
            a, sink = attention_rows(q, k, score, causal, window, lengths=lengths, sink_share=True)
            assert np.isfinite(a).all()
            for s, n in enumerate(lengths):
                one, one_sink = attention_rows(q[s, :n], k[s, :n], score, causal, window, sink_share=True)
                np.testing.assert_allclose(a[s, :n, :n], one)
                np.testing.assert_allclose(sink[s, :n], one_sink)
                assert not a[s, n:].any() and not a[s, :, n:].any() and not sink[s, n:].any()
    with pytest.raises(InputError, match="position term"):
        attention_rows(q, k, ScoreFunction(scaling=0.4, alibi=0.1), lengths=lengths)
