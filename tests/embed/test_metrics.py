"""recall@k / Spearman / chance against layouts whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from qkviz.attention import attention_rows, sequence_slices
from qkviz.errors import EmbeddingError
from qkviz.metrics import head_faithfulness


def _circle_head(lens=(20, 16, 25), seed=0):
    """2-D queries and unit-norm keys: distance order == dot-product order == attention order."""
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(len(lens)), lens)
    ang = rng.uniform(0, 2 * np.pi, len(seq))
    k = np.stack([np.cos(ang), np.sin(ang)], 1)
    q = rng.normal(size=(len(seq), 2)) * 2
    return q, k, seq


def test_perfect_layout_scores_one_and_reversed_scores_zero():
    q, k, seq = _circle_head()
    f = head_faithfulness(np.vstack([q, k]), q, k, seq, scaling=3.0, k=5)
    assert f.recall == pytest.approx(1.0)
    assert f.spearman == pytest.approx(1.0)
    r = head_faithfulness(np.vstack([q, -k]), q, k, seq, scaling=3.0, k=5)
    assert r.recall == pytest.approx(0.0)
    assert r.spearman == pytest.approx(-1.0)


def test_chance_is_k_over_n_and_a_random_layout_matches_it():
    q, k, seq = _circle_head(lens=(30, 40, 25, 35), seed=1)
    rng = np.random.default_rng(0)
    recalls = [head_faithfulness(rng.normal(size=(2 * len(seq), 2)), q, k, seq, 1.0, k=5).recall for _ in range(30)]
    f = head_faithfulness(rng.normal(size=(2 * len(seq), 2)), q, k, seq, 1.0, k=5)
    expected = np.mean(np.concatenate([np.full(n, 5 / n) for n in (30, 40, 25, 35)]))
    assert f.chance_recall == pytest.approx(expected)
    assert np.mean(recalls) == pytest.approx(expected, abs=0.02)


def test_causal_rows_only_see_the_past():
    q, k, seq = _circle_head(lens=(12,), seed=2)
    f = head_faithfulness(np.vstack([q, k]), q, k, seq, scaling=3.0, causal=True, k=3)
    # rows 0..2 see <= 3 keys (skipped); rows 3..11 are scored with chance 3 / (i + 1)
    assert f.n_rows == 9
    assert f.chance_recall == pytest.approx(np.mean([3 / (i + 1) for i in range(3, 12)]))
    assert f.recall == pytest.approx(1.0)


def test_layout_of_other_sequences_is_ignored():
    q, k, seq = _circle_head()
    y = np.vstack([q, k])
    moved = y.copy()
    n = len(seq)
    moved[np.flatnonzero(seq == 1)] += 100.0  # move sequence 1's queries far away...
    moved[n + np.flatnonzero(seq == 1)] += 100.0  # ...with its keys: nothing changes within it
    a = head_faithfulness(y, q, k, seq, 3.0)
    b = head_faithfulness(moved, q, k, seq, 3.0)
    assert a == b


def test_attention_rows_match_softmax_and_mask():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    a = attention_rows(q, k, 0.5, causal=True)
    np.testing.assert_allclose(a.sum(1), 1.0)
    assert np.all(np.triu(a, 1) == 0)
    s = q[2] @ k[:3].T * 0.5
    np.testing.assert_allclose(a[2, :3], np.exp(s) / np.exp(s).sum())


def test_bad_inputs():
    q, k, seq = _circle_head()
    with pytest.raises(EmbeddingError, match="point="):
        head_faithfulness(np.zeros((3, 2)), q, k, seq, 1.0)
    with pytest.raises(EmbeddingError, match="contiguous"):
        sequence_slices(np.array([0, 1, 0]))
