"""Attention recomputed from captured q/k equals the model's own eager attention (1e-4, fp32).

Captures always use padded batches of unequal lengths; references run each input alone.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from qkviz import capture
from qkviz.data import demo_sentences
from qkviz.errors import UnsupportedModelError

from . import _zoo
from ._reference import max_error_images, max_error_texts

TOL = 1e-4


@pytest.fixture(scope="module")
def texts():
    # unequal lengths in every batch of 4 (the capture below pads them)
    t = demo_sentences(7) + ["Short one.", "Tiny."]
    lengths = [len(x.split()) for x in t]
    assert len(set(lengths)) > 4
    return t


@pytest.mark.parametrize("name", _zoo.TEXT)
def test_tiny_text_models_exact(name, texts):
    model, tok = _zoo.build(name)
    cap = capture((model, tok), texts, batch_size=4, progress=False)
    assert max_error_texts(cap, model, tok, texts) < TOL
    # padding never becomes a point: the rows are exactly the real tokens
    assert len(cap.tokens) == sum(len(tok(t)["input_ids"]) for t in texts)
    assert cap.q(0, 0).shape == (len(cap.tokens), cap.d_head)


@pytest.mark.parametrize("name", _zoo.IMAGE)
def test_tiny_image_models_exact(name, vit_images):
    model, proc = _zoo.build(name)
    images = list(vit_images.values())
    cap = capture((model, proc), images, batch_size=2, progress=False)
    assert max_error_images(cap, model, proc, images) < TOL
    assert len(cap.tokens) == 3 * (1 + 4 * 4)


def test_gqa_keys_stored_once_per_kv_head(texts):
    model, tok = _zoo.build("llama")  # 4 query heads, 2 kv heads
    cap = capture((model, tok), texts[:3], progress=False)
    assert (cap.n_heads, cap.n_kv_heads) == (4, 2)
    assert [cap.kv_head(h) for h in range(4)] == [0, 0, 1, 1]
    assert cap.kv_heads == (0, 1)
    np.testing.assert_array_equal(cap.k(0, 0), cap.k(0, 1))
    assert not np.array_equal(cap.k(0, 1), cap.k(0, 2))


def test_sliding_window_is_reproduced(texts):
    model, tok = _zoo.build("mistral")  # window 5, sentences are longer
    cap = capture((model, tok), texts[:2], progress=False)
    assert cap.sliding_window[0] == 5 and cap.causal
    a = cap.attention(1, 0, 0)
    assert a.shape[0] > 5
    i, j = np.nonzero(a > 0)
    assert ((i - j) < 5).all() and ((i - j) >= 0).all()


def test_head_and_layer_subset_matches_full(tiny_capture):
    from _models import tiny_bert

    model, tok = tiny_bert()
    texts = list(tiny_capture.sequences["text"])
    sub = capture((model, tok), texts, layers=[1], heads=[2, 3], progress=False)
    assert sub.layers == (1,) and sub.heads == (2, 3)
    np.testing.assert_allclose(sub.q(1, 3), tiny_capture.q(1, 3), atol=1e-6)
    np.testing.assert_allclose(sub.k(1, 2), tiny_capture.k(1, 2), atol=1e-6)


def test_values_recorded(tiny_capture):
    v = tiny_capture.v(0, 1)
    assert v.dtype == np.float32 and v.shape == (len(tiny_capture.tokens), tiny_capture.d_head)
    assert tiny_capture.has_values


def test_verify_reports_per_head_errors(tiny_capture):
    from _models import tiny_bert

    df = tiny_capture.verify(tiny_bert())
    assert set(df.columns) == {"layer", "head", "max_abs_error"}
    assert len(df) == 2 * 4 and df.attrs["max"] < TOL
    # and it notices a different model (another random init)
    assert tiny_capture.verify(tiny_bert(seed=1)).attrs["max"] > 10 * TOL


# ---- real packaged models --------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_exact(minilm_capture, demo_texts):
    from qkviz.models import load_model

    lm = load_model("minilm", device="cpu")
    assert (minilm_capture.n_heads, len(minilm_capture.layers), minilm_capture.d_head) == (12, 6, 32)
    assert max_error_texts(minilm_capture, lm.model, lm.tokenizer, demo_texts[:24]) < TOL
    assert minilm_capture.verify(lm, seqs=range(24, 84), batch_size=20).attrs["max"] < TOL


@pytest.mark.slow
def test_vit_and_dinov2_exact(vit_capture, vit_images):
    from qkviz.models import load_model

    images = list(vit_images.values())
    lm = load_model("vit-s14", device="cpu")
    assert max_error_images(vit_capture, lm.model, lm.processor, images) < TOL
    dino = load_model("dinov2-s14", device="cpu")
    cap = capture(dino, images[:2], batch_size=2, progress=False)
    assert max_error_images(cap, dino.model, dino.processor, images[:2]) < TOL
    # the plain ViT is DINOv2 with LayerScale folded in: identical queries and keys at 224 px
    np.testing.assert_allclose(cap.q(5, 2), vit_capture.q(5, 2)[: len(cap.tokens)], atol=1e-4)


@pytest.fixture(scope="session")
def smollm2():
    from qkviz.models import load_model

    return load_model("smollm2", device="cpu")


@pytest.mark.slow
def test_smollm2_exact(smollm2, texts):
    cap = capture(smollm2, texts[-4:], batch_size=4, progress=False)
    assert (cap.n_heads, cap.n_kv_heads, len(cap.layers), cap.d_head) == (9, 3, 30, 64)
    assert cap.causal
    assert max_error_texts(cap, smollm2.model, smollm2.tokenizer, texts[-4:]) < TOL


# ---- models whose scores are not q.k ------------------------------------------------------------


def _deberta_v1():
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.DebertaConfig(
        vocab_size=_zoo.VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        max_relative_positions=16,
    )
    return tf.DebertaModel(cfg).eval(), _zoo.tokenizer()


def test_relative_position_model_without_hooks_is_refused():
    model, tok = _deberta_v1()
    with pytest.raises(UnsupportedModelError, match="disentangled") as e:
        capture((model, tok), ["A sentence."], progress=False)
    assert e.value.model_type == "deberta"


def test_bias_model_refused_even_when_not_listed(monkeypatch):
    """Without the named list, the generic checks still refuse DeBERTa v1: its attention bypasses the
    interface and no module hook reads it (v2's adapter must not match v1's same-named class)."""
    import qkviz._capture._checks as checks

    monkeypatch.setattr(checks, "UNSUPPORTED", {})
    model, tok = _deberta_v1()
    with pytest.raises(UnsupportedModelError, match="AttentionInterface"):
        capture((model, tok), ["A sentence."], progress=False)


def test_bert_relative_key_refused():
    model, tok = _zoo.build("bert")
    model.config.position_embedding_type = "relative_key"
    with pytest.raises(UnsupportedModelError, match="relative"):
        capture((model, tok), ["A sentence."], progress=False)


def _bypassing(model):
    """Replace every self-attention forward by hand-written attention that never calls the interface."""
    import torch

    def forward(self, hidden_states, attention_mask=None, **kw):
        b, t, _ = hidden_states.shape
        shape = (b, t, self.num_attention_heads, self.attention_head_size)
        q, k, v = (f(hidden_states).view(shape).transpose(1, 2) for f in (self.query, self.key, self.value))
        p = torch.softmax(q @ k.transpose(-1, -2) * self.scaling, -1)
        return (p @ v).transpose(1, 2).reshape(b, t, -1), None

    for m in model.modules():
        if type(m).__name__ == "BertSelfAttention":
            m.forward = types.MethodType(forward, m)
    return model


def test_code_bypassing_the_interface_is_refused():
    model, tok = _zoo.build("bert")
    with pytest.raises(UnsupportedModelError, match="never called") as e:
        capture((_bypassing(model), tok), ["A sentence.", "Another one here."], progress=False)
    assert e.value.reason == "bypasses the attention interface"


def test_additive_bias_through_the_interface_is_refused():
    """A model that hides a bias in the mask it hands the interface is caught on the first batch."""
    import torch

    model, tok = _zoo.build("bert")
    for m in model.modules():
        if type(m).__name__ == "BertSelfAttention":
            orig = m.forward

            def forward(hidden_states, attention_mask=None, _orig=orig, **kw):
                t = hidden_states.shape[1]
                bias = torch.arange(t, dtype=hidden_states.dtype)[None, None, None, :] * 0.3
                mask = bias if attention_mask is None else attention_mask.float() + bias
                return _orig(hidden_states, attention_mask=mask, **kw)

            m.forward = forward
    with pytest.raises(UnsupportedModelError, match=r"bias|differs"):
        capture((model, tok), ["A sentence.", "Another one here."], progress=False)
