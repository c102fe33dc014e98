"""``qkviz.attention`` is the one definition of attention; the capture stage's torch twin agrees with it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkviz.attention import attention_rows, renormalize, visible


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
