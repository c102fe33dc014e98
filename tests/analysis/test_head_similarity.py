"""Jensen–Shannon head distances, the similar-heads map and the comparison of two captures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _fakes import capture_with_attention, make_tokens
from qkviz import InputError
from qkviz.analysis import (
    classical_mds,
    compare_heads,
    head_distances,
    js_divergence,
    match_sequences,
    similar_heads_map,
)

LENGTHS = (6, 9, 4, 7)


def _rows(rng, n, peak):
    a = rng.random((n, n)) ** peak + 1e-4
    return a / a.sum(1, keepdims=True)


def _capture(seed=0, heads=4, copy=None, tokens=None):
    """Heads 0..heads-1 with random rows; head ``copy[1]`` repeats head ``copy[0]`` exactly."""
    rng = np.random.default_rng(seed)
    tokens = make_tokens(LENGTHS) if tokens is None else tokens
    lens = tokens.groupby("seq").size().tolist()
    att = {}
    for h in range(heads):
        for s, n in enumerate(lens):
            att[(0, h, s)] = _rows(rng, n, 1 + 3 * h)
    if copy is not None:
        for s in range(len(lens)):
            att[(0, copy[1], s)] = att[(0, copy[0], s)]
    return att, capture_with_attention(tokens, att)


def test_js_divergence_basics():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert js_divergence(p, p).tolist() == [0.0, 0.0]
    assert float(js_divergence(np.array([1.0, 0]), np.array([0, 1.0]))) == pytest.approx(1.0)
    q = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    np.testing.assert_allclose(js_divergence(p, q), js_divergence(q, p))
    from scipy.spatial.distance import jensenshannon

    np.testing.assert_allclose(js_divergence(p, q), [jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q)], rtol=1e-9)


def test_head_distances_are_the_mean_row_divergence():
    att, cap = _capture(copy=(1, 3))
    cells, d = head_distances(cap)
    assert cells == [(0, 0), (0, 1), (0, 2), (0, 3)]
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_allclose(np.diag(d), 0.0)
    assert d[1, 3] == pytest.approx(0.0, abs=1e-6)  # an exact copy
    for a, b in ((0, 1), (0, 2), (1, 2)):
        ref = np.concatenate([js_divergence(att[(0, a, s)], att[(0, b, s)]) for s in range(len(LENGTHS))]).mean()
        assert d[a, b] == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_head_distances_sample_whole_sequences():
    _, cap = _capture()
    cells, small = head_distances(cap, max_queries=5, seed=0)
    _, again = head_distances(cap, max_queries=5, seed=0)
    np.testing.assert_array_equal(small, again)
    _, full = head_distances(cap, max_queries=10_000)
    assert not np.allclose(small, full)  # a sample of sequences, not all


def test_map_puts_identical_heads_together_and_names_the_nearest():
    _, cap = _capture(heads=5, copy=(0, 4))
    m = similar_heads_map(cap)
    assert list(m.columns) == ["layer", "head", "x", "y", "nearest_layer", "nearest_head", "nearest_js"]
    xy = m[["x", "y"]].to_numpy()
    assert np.linalg.norm(xy[0] - xy[4]) < 1e-6
    assert m.loc[0, "nearest_head"] == 4 and m.loc[4, "nearest_head"] == 0
    assert m.loc[0, "nearest_js"] == pytest.approx(0.0, abs=1e-6)


def test_classical_mds_recovers_a_planar_configuration():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(12, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    y = classical_mds(d, 2)
    np.testing.assert_allclose(np.linalg.norm(y[:, None] - y[None], axis=2), d, atol=1e-8)
    np.testing.assert_array_equal(y, classical_mds(d, 2))  # deterministic signs


def test_compare_same_texts_scores_the_row_divergence():
    att_a, a = _capture(seed=0, heads=3)
    att_b, b = _capture(seed=1, heads=3)
    df = compare_heads(a, b)
    assert df.attrs["n_matched_sequences"] == len(LENGTHS)
    assert df.attrs["n_matched_queries"] == sum(LENGTHS)
    for h in range(3):
        ref = np.concatenate([js_divergence(att_a[(0, h, s)], att_b[(0, h, s)]) for s in range(len(LENGTHS))]).mean()
        assert df.loc[h, "js"] == pytest.approx(ref, rel=1e-4)
        delta = df.attrs["scores_b"].loc[h, "entropy"] - df.attrs["scores_a"].loc[h, "entropy"]
        assert df.loc[h, "delta_entropy"] == pytest.approx(delta)
    same = compare_heads(a, a, scores=False)
    np.testing.assert_allclose(same["js"], 0.0, atol=1e-6)
    assert "delta_entropy" not in same


def test_compare_two_corpora_has_no_row_divergence_but_score_changes():
    _, a = _capture(seed=0, heads=2)
    other = make_tokens((5, 8, 3))
    other["token"] = [f"w{i}" for i in range(len(other))]
    _, b = _capture(seed=1, heads=2, tokens=other)
    b.sequences["text"] = ["x", "y", "z"]
    a.sequences["text"] = ["p", "q", "r", "s"]
    assert match_sequences(a, b) == []
    df = compare_heads(a, b)
    assert df["js"].isna().all() and df.attrs["n_matched_queries"] == 0
    assert np.isfinite(df["delta_first_token"]).all()


def test_match_sequences_needs_the_same_tokens():
    tok = make_tokens((4, 4, 4))
    _, a = _capture(tokens=tok, heads=1)
    # b holds the same texts in reverse order, and tokenises "two" differently
    parts = [tok[tok["seq"] == s].copy() for s in (2, 1, 0)]
    parts[1]["token"] = "zz"
    tok_b = pd.concat(parts, ignore_index=True)
    tok_b["seq"] = np.repeat([0, 1, 2], 4).astype("int32")
    _, b = _capture(tokens=tok_b, heads=1)
    a.sequences["text"] = ["one", "two", "three"]
    b.sequences["text"] = ["three", "two", "one"]
    assert match_sequences(a, b) == [(0, 2), (2, 0)]  # by text, and only where the tokens agree


def test_compare_needs_shared_heads():
    _, a = _capture(heads=2)

    class OtherGrid:  # an attention source whose grid has no head in common with a's
        tokens, sequences, cells = a.tokens, a.sequences, [(7, 7)]
        attention = a.attention

    with pytest.raises(InputError, match="share no"):
        compare_heads(a, OtherGrid())


def test_scores_frame_types():
    _, cap = _capture(heads=2)
    m = similar_heads_map(cap)
    assert m["layer"].dtype.kind == "i" and isinstance(m.attrs["distances"], np.ndarray)
    assert isinstance(compare_heads(cap, cap, scores=False), pd.DataFrame)
