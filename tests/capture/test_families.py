"""Score families (issue 12): soft-capping, sinks, ALiBi, relative-position terms, legacy attention code.

Each family is captured from padded batches of unequal lengths and compared, every layer and head,
with the model's own eager attention of each input run alone (``_reference``). A second comparison
drops the family's extra terms and must fail by far: it proves that the terms are what makes the
capture exact, and that the tiny configs exercise them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qkviz._capture._run import capture
from qkviz.data import demo_sentences
from qkviz.errors import UnsupportedModelError

from . import _zoo
from ._reference import max_error_texts

TOL = 1e-4

# family -> what the capture must have recorded
EXPECTED = {
    "gemma2": "soft-capped",
    "gpt_oss": "sink",
    "bloom": "alibi",
    "mpt": "alibi",
    "falcon": "plain",
    "falcon_new": "plain",
    "deberta_v2": "disentangled",
    "deberta_v2_unshared": "disentangled",
    "mpnet_big": "relative",
}


@pytest.fixture(scope="module")
def texts():
    t = demo_sentences(5) + ["Short one.", "Tiny."]
    assert len({len(x.split()) for x in t}) > 4  # unequal lengths in every batch of 4
    return t


@pytest.fixture(scope="module")
def captured(texts):
    out = {}

    def get(name):
        if name not in out:
            model, tok = _zoo.build(name)
            out[name] = (capture((model, tok), texts, batch_size=4, progress=False), model, tok)
        return out[name]

    return get


def _without_terms(cap):
    """The same vectors, scored as plain ``scaling · q·k``."""
    g = dataclasses.replace(cap.geometry, terms={}, softcap={})
    return dataclasses.replace(cap, attns={"self": g}, terms={})


@pytest.mark.parametrize("name", _zoo.FAMILIES)
def test_every_family_is_exact(name, captured, texts):
    cap, model, tok = captured(name)
    assert {cap.geometry.family(layer) for layer in cap.layers} == {EXPECTED[name]}
    assert max_error_texts(cap, model, tok, texts) < TOL
    if EXPECTED[name] != "plain":
        assert max_error_texts(_without_terms(cap), model, tok, texts) > 100 * TOL


def test_gemma2_soft_caps_and_keeps_its_sliding_window_layers(captured):
    cap, _, _ = captured("gemma2")
    assert cap.sliding_window == {0: 4, 1: None}  # sliding, then full attention
    assert cap.geometry.softcap == {0: 2.0, 1: 2.0}
    assert cap.score(0, 0).softcap == 2.0
    a = cap.attention(0, 0, 0)
    assert a.shape[0] > 4
    i, j = np.nonzero(a > 0)
    assert ((i - j) < 4).all() and ((i - j) >= 0).all()


def test_sink_share_completes_every_row(captured):
    cap, model, _ = captured("gpt_oss")
    for layer in cap.layers:
        sinks = next(m.sinks for i, m in enumerate(x for x in model.modules() if hasattr(x, "sinks")) if i == layer)
        np.testing.assert_allclose(cap.terms[f"sink.{layer}"], sinks.detach().numpy(), rtol=1e-6)
        for seq in range(3):
            a, s = cap.attention(layer, 1, seq), cap.sink_share(layer, 1, seq)
            np.testing.assert_allclose(a.sum(axis=1) + s, 1.0, atol=1e-5)
            assert (s > 0).all()


def test_alibi_slopes_are_the_models_and_the_augmented_vectors_score_exactly(captured):
    import math

    cap, _, _ = captured("bloom")
    # BLOOM's slopes for 4 heads: 2**(-8/4 · (h+1))
    np.testing.assert_allclose(cap.terms["alibi.0"], [2 ** (-2.0 * (h + 1)) for h in range(4)], rtol=1e-6)
    qa, ka = cap.layout_vectors(1, 2)
    assert qa.shape[1] == ka.shape[1] == cap.d_head + 1
    off, n = int(cap.sequences["offset"][0]), int(cap.sequences["n_tokens"][0])
    c = cap.scaling[1]
    s = c * qa[off : off + n] @ ka[off : off + n].T
    s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    e = np.exp(s - s.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), cap.attention(1, 2, 0), atol=1e-5)
    assert math.isclose(float(qa[0, -1]), 1 / c, rel_tol=1e-6)


def test_relative_terms_split_into_content_and_position(captured):
    for name in ("mpnet_big", "deberta_v2"):
        cap, _, _ = captured(name)
        content, position = cap.score_terms(1, 0, 0)
        off, n = int(cap.sequences["offset"][0]), int(cap.sequences["n_tokens"][0])
        q, k = cap.q(1, 0)[off : off + n], cap.k(1, 0)[off : off + n]
        np.testing.assert_allclose(content, cap.scaling[1] * q @ k.T, rtol=1e-4, atol=1e-5)
        assert np.abs(position).max() > 0.1
        effect = cap.position_effect(1, 0, 0)
        assert effect.shape == (n,) and (effect >= 0).all() and (effect <= 1).all() and effect.max() > 0.01


def test_streamed_capture_grows_its_offset_tables(tmp_path, texts):
    """Batches of different lengths extend the relative tables; the store equals the in-memory capture."""
    model, tok = _zoo.build("mpnet_big")
    order = sorted(texts, key=len)  # short batch first, then longer ones: the table must grow
    mem = capture((model, tok), order, batch_size=2, progress=False)
    disk = capture((model, tok), order, batch_size=2, progress=False, out=tmp_path / "run")
    longest = int(mem.sequences["n_tokens"].max())
    assert mem.terms["offset_bias.0"].shape == (4, 2 * longest - 1)
    for key, a in mem.terms.items():
        np.testing.assert_array_equal(disk.terms[key], a)
    for seq in range(len(order)):
        np.testing.assert_array_equal(disk.attention(1, 3, seq), mem.attention(1, 3, seq))


def test_saved_terms_round_trip(tmp_path, captured):
    import qkviz

    cap, _, _ = captured("deberta_v2")
    back = qkviz.load(cap.save(tmp_path / "deberta"))
    assert back.geometry == cap.geometry
    assert set(back.terms) == set(cap.terms)
    np.testing.assert_array_equal(back.attention(0, 2, 1), cap.attention(0, 2, 1))


# ---- refusals ---------------------------------------------------------------------------------


def test_falcon_alibi_is_refused_by_name():
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.FalconConfig(
        vocab_size=_zoo.VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        alibi=True,
        new_decoder_architecture=False,
        multi_query=True,
    )
    with pytest.raises(UnsupportedModelError, match="ALiBi") as e:
        capture((tf.FalconModel(cfg).eval(), _zoo.tokenizer()), ["A sentence."], progress=False)
    assert e.value.model_type == "falcon"


def test_a_bias_that_is_not_a_function_of_the_offset_is_refused():
    import torch

    from qkviz._capture._terms import LayerTerms, RawTerms

    good = torch.arange(-4, 5, dtype=torch.float32)[torch.arange(5)[None, :] - torch.arange(5)[:, None] + 4]
    t = LayerTerms()
    assert t.update(RawTerms(pair_bias=good[None, None]), None) == []
    bad = good.clone()
    bad[2, 3] += 1.0
    assert "offset" in LayerTerms().update(RawTerms(pair_bias=bad[None, None]), None)[0]


def test_an_alibi_bias_that_is_not_linear_in_the_key_is_refused():
    import torch

    from qkviz._capture._terms import LayerTerms, RawTerms

    j = torch.arange(6, dtype=torch.float32)
    assert LayerTerms().update(RawTerms(key_bias=(0.5 * j)[None, None]), None) == []
    problems = LayerTerms().update(RawTerms(key_bias=(0.5 * j**2)[None, None]), None)
    assert "not linear" in problems[0]


def test_terms_that_change_between_batches_are_refused():
    import torch

    from qkviz._capture._terms import LayerTerms, RawTerms

    t = LayerTerms()
    assert t.update(RawTerms(sink=torch.tensor([1.0, 2.0])), None) == []
    assert "changed" in t.update(RawTerms(sink=torch.tensor([1.0, 2.5])), None)[0]
