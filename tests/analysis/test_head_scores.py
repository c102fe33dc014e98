"""The head atlas on captures whose attention is known exactly (``capture_with_attention``).

Each score is checked against a plain per-query reference written from its definition in
``docs/concepts/head-scores.md``, pooled over every qualifying query (never a mean of per-sequence
means), and on patterns whose scores are known in closed form.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _fakes import capture_with_attention, make_tokens
from qkviz import InputError
from qkviz.analysis import SCORES, head_scores
from qkviz.attention import renormalize

LENGTHS = (7, 3, 11, 5)


def _random_rows(rng, n, causal=False):
    a = rng.random((n, n)) ** 4 + 1e-3  # peaky rows
    if causal:
        a = np.where(np.tri(n, dtype=bool), a, 1e-9)
    return a / a.sum(1, keepdims=True)


def _reference(matrices, tokens):
    """Every score from its definition, one query at a time."""
    ids = tokens["token_id"].to_numpy() if "token_id" in tokens else tokens["token"].to_numpy()
    special = tokens["special"].to_numpy(bool)
    prev, first, self_, spec, ent, dist, ind = [], [], [], [], [], [], []
    off = 0
    for a in matrices:
        n = len(a)
        t = ids[off : off + n]
        sp = special[off : off + n]
        for i in range(n):
            if i >= 1:
                prev.append(a[i, i - 1])
            first.append(a[i, 0])
            self_.append(a[i, i])
            spec.append(a[i, sp].sum())
            row = a[i][a[i] > 0]
            ent.append(-(row * np.log(row)).sum())
            dist.append(sum(a[i, j] * abs(i - j) for j in range(n)))
            copies = [j for j in range(i) if t[j] == t[i]]
            if copies:
                ind.append(sum(a[i, j + 1] for j in copies))
        off += n
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return dict(zip(SCORES, map(mean, (prev, first, self_, spec, ent, dist, ind))))


@pytest.fixture
def known():
    rng = np.random.default_rng(0)
    tokens = make_tokens(LENGTHS)
    tokens["token_id"] = pd.factorize(tokens["token"])[0]  # the fake's words repeat: induction has queries
    att = {}
    for la in (0, 1):
        for h in (0, 1, 2):
            for s, n in enumerate(LENGTHS):
                att[(la, h, s)] = _random_rows(rng, n)
    return tokens, att, capture_with_attention(tokens, att)


def test_every_score_matches_its_definition_pooled_over_queries(known):
    tokens, att, cap = known
    df = cap.head_scores()
    assert list(df.columns) == ["layer", "head", *SCORES]
    assert len(df) == 6
    for _, row in df.iterrows():
        ref = _reference([att[(int(row["layer"]), int(row["head"]), s)] for s in range(len(LENGTHS))], tokens)
        for name in SCORES:
            assert row[name] == pytest.approx(ref[name], rel=1e-5, abs=1e-7), name
    assert df.attrs["n_queries"] == sum(LENGTHS)
    assert df.attrs["n_previous"] == sum(LENGTHS) - len(LENGTHS)


def test_pooled_over_queries_not_a_mean_of_sequence_means():
    """A long sequence weighs by its queries: pooled and per-sequence means differ here."""
    tokens = make_tokens((2, 10))
    a_short = np.array([[0.5, 0.5], [0.99, 0.01]])  # first_token 0.745
    a_long = np.full((10, 10), 0.01)
    a_long[:, 1] = 0.91  # first_token 0.01
    cap = capture_with_attention(tokens, {(0, 0, 0): a_short, (0, 0, 1): a_long})
    got = float(cap.head_scores()["first_token"].iloc[0])
    pooled = (0.5 + 0.99 + 10 * 0.01) / 12
    assert got == pytest.approx(pooled, rel=1e-5)
    assert abs(got - (0.745 + 0.01) / 2) > 0.2


def test_closed_form_patterns():
    tokens = make_tokens(LENGTHS)
    eps = 1e-7
    att = {}
    for s, n in enumerate(LENGTHS):
        prev = np.full((n, n), eps)
        prev[np.arange(1, n), np.arange(n - 1)] = 1.0
        prev[0, 0] = 1.0
        sink = np.full((n, n), eps)
        sink[:, 0] = 1.0
        att[(0, 0, s)] = prev / prev.sum(1, keepdims=True)
        att[(0, 1, s)] = sink / sink.sum(1, keepdims=True)
        att[(0, 2, s)] = np.full((n, n), 1.0 / n)
    df = capture_with_attention(tokens, att).head_scores().set_index("head")
    n_q = sum(LENGTHS)
    # previous-token head: all mass one step back; position 0 looks at itself
    assert df.loc[0, "previous_token"] == pytest.approx(1.0, abs=1e-5)
    assert df.loc[0, "mean_distance"] == pytest.approx((n_q - len(LENGTHS)) / n_q, abs=1e-4)
    assert df.loc[0, "entropy"] == pytest.approx(0.0, abs=1e-4)
    # sink head: everything on the first token, which is [CLS] (special) in the fake's table
    assert df.loc[1, "first_token"] == pytest.approx(1.0, abs=1e-5)
    assert df.loc[1, "special"] == pytest.approx(1.0, abs=1e-5)
    assert df.loc[1, "mean_distance"] == pytest.approx(sum(n * (n - 1) / 2 for n in LENGTHS) / n_q, rel=1e-4)
    # uniform head: entropy ln n, first/self 1/n, distance (n²-1)/3n per query
    assert df.loc[2, "entropy"] == pytest.approx(sum(n * np.log(n) for n in LENGTHS) / n_q, rel=1e-5)
    assert df.loc[2, "self"] == pytest.approx(len(LENGTHS) / n_q, rel=1e-5)
    assert df.loc[2, "mean_distance"] == pytest.approx(sum((n * n - 1) / 3 for n in LENGTHS) / n_q, rel=1e-5)


def test_induction_on_a_repeated_span():
    """A query in the repeat attends to the token after its earlier copy: induction 1."""
    span = 6
    n = 1 + 2 * span
    ids = np.r_[100, np.arange(span), np.arange(span)]
    tokens = pd.DataFrame(
        {"seq": 0, "pos": np.arange(n), "token": [str(i) for i in ids], "token_id": ids, "special": ids == 100}
    )
    ind = np.full((n, n), 1e-8)
    ind[np.arange(n), 0] = 1.0
    for i in range(1 + span, n):
        ind[i] = 1e-8
        ind[i, i - span + 1] = 1.0  # j = i - span is the earlier copy; attend to j + 1
    ind /= ind.sum(1, keepdims=True)
    cap = capture_with_attention(tokens, {(0, 0, 0): ind, (0, 1, 0): np.full((n, n), 1.0 / n)})
    df = cap.head_scores().set_index("head")
    assert df.attrs["n_induction"] == span
    assert df.loc[0, "induction"] == pytest.approx(1.0, abs=1e-5)
    assert df.loc[1, "induction"] == pytest.approx(1.0 / n, rel=1e-5)


def test_value_weighted_scores_follow_the_renormalised_rows(known):
    tokens, att, _ = known
    rng = np.random.default_rng(1)
    values = {
        (la, h): rng.normal(size=(len(tokens), 3)) * rng.random((len(tokens), 1)) * 3
        for la in (0, 1)
        for h in (0, 1, 2)
    }
    cap = capture_with_attention(tokens, att, values=values)
    df = cap.head_scores()
    assert [c for c in df.columns if c.endswith("_vw")] == [f"{s}_vw" for s in SCORES]
    for _, row in df.iterrows():
        la, h = int(row["layer"]), int(row["head"])
        w = np.linalg.norm(values[(la, h)], axis=1)
        weighted, off = [], 0
        for s, n in enumerate(LENGTHS):
            weighted.append(renormalize(att[(la, h, s)], key_weights=w[off : off + n]).astype(np.float64))
            off += n
        ref = _reference(weighted, tokens)
        for name in SCORES:
            assert row[f"{name}_vw"] == pytest.approx(ref[name], rel=1e-4, abs=1e-6), name
    assert "previous_token_vw" not in cap.head_scores(value_weighted=False)


def test_chunked_buffers_give_the_same_scores(known, monkeypatch):
    """Memory is bounded by gathering a few sequences at a time; the chunk size changes nothing."""
    _, _, cap = known
    whole = cap.head_scores()
    from qkviz.analysis import _heads

    monkeypatch.setattr(_heads, "CHUNK_ENTRIES", 40)  # one or two sequences per chunk, never cached
    chunked = cap.head_scores()
    pd.testing.assert_frame_equal(whole, chunked, rtol=1e-9)


def test_missing_columns_give_nan_not_a_wrong_number():
    tokens = make_tokens((4, 4)).drop(columns=["special"])
    tokens["token"] = [f"u{i}" for i in range(8)]  # nothing repeats
    rng = np.random.default_rng(2)
    cap = capture_with_attention(tokens, {(0, 0, s): _random_rows(rng, 4) for s in (0, 1)})
    df = cap.head_scores()
    assert np.isnan(df["special"].iloc[0]) and np.isnan(df["induction"].iloc[0])
    assert np.isfinite(df["previous_token"].iloc[0])


def test_subsets_and_errors(known):
    tokens, att, cap = known
    df = cap.head_scores([(1, 2)], seqs=[0, 2])
    ref = _reference([att[(1, 2, 0)], att[(1, 2, 2)]], tokens.iloc[list(range(7)) + list(range(10, 21))])
    assert df["entropy"].iloc[0] == pytest.approx(ref["entropy"], rel=1e-5)
    with pytest.raises(InputError, match="values=True"):
        cap.head_scores(value_weighted=True)
    with pytest.raises(InputError, match="no heads"):
        head_scores(cap, [])


def test_causal_rows_score_only_visible_keys():
    tokens = make_tokens((6, 4))
    rng = np.random.default_rng(3)
    att = {(0, 0, s): _random_rows(rng, n, causal=True) for s, n in enumerate((6, 4))}
    cap = capture_with_attention(tokens, att)
    row = cap.head_scores().iloc[0]
    ref = _reference([att[(0, 0, 0)], att[(0, 0, 1)]], tokens)
    assert row["entropy"] == pytest.approx(ref["entropy"], rel=1e-4)
    assert row["mean_distance"] == pytest.approx(ref["mean_distance"], rel=1e-5)


def test_induction_inputs_build_the_repeated_span_probe():
    from transformers import AutoTokenizer

    from qkviz.data import induction_inputs
    from qkviz.models._offline import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    texts = induction_inputs(tok, n=4, length=9, seed=3)
    assert len(texts) == 4 and texts == induction_inputs(tok, n=4, length=9, seed=3)
    assert texts != induction_inputs(tok, n=4, length=9, seed=4)
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert ids[:9] == ids[9:] and len(set(ids[:9])) == 9
    for bad in (dict(n=0), dict(length=1), dict(n=2.5)):
        with pytest.raises(InputError):
            induction_inputs(tok, **{"n": 2, "length": 5, **bad})
    with pytest.raises(InputError, match="tokenizer"):
        induction_inputs("minilm")
