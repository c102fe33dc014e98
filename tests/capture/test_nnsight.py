"""An nnsight ``LanguageModel`` is captured as the transformers model it wraps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from qkviz import capture
from qkviz.errors import ModelLoadError

from ._zoo import VOCAB, optional, tokenizer

nnsight = optional("nnsight", "nnsight")

ATOL = 1e-4
TEXTS = [
    "The cat sat on the mat.",
    "A dog barked loudly at the mailman today and again yesterday.",
    "Hi",
]
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _llama():
    import torch
    import transformers as tf

    torch.manual_seed(0)
    return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=VOCAB, num_key_value_heads=2, **SMALL)).eval()


def test_nnsight_language_model_is_its_transformers_model():
    hf = _llama()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = nnsight.LanguageModel(hf, tokenizer=tokenizer())
    cap = capture(lm, TEXTS, progress=False)
    ref = capture((hf, tokenizer()), TEXTS, progress=False)
    assert cap.model["source"] == "nnsight"
    worst = max(
        float(np.abs(cap.attention(layer, h, s) - ref.attention(layer, h, s)).max())
        for layer in cap.layers
        for h in cap.heads
        for s in range(len(TEXTS))
    )
    assert worst < ATOL
    np.testing.assert_array_equal(cap.q(1, 2), ref.q(1, 2))
    assert cap.verify(lm).attrs["max"] < ATOL
    # the nnsight model still traces afterwards (qkviz restored everything it changed)
    with lm.trace("hello"):
        out = lm.model.layers[0].output.save()
    assert out is not None


def test_nnsight_model_without_weights_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = nnsight.LanguageModel(_llama(), tokenizer=tokenizer())
    lm.__dict__["dispatched"] = False  # what a LanguageModel("hub/id") is until its first trace
    with pytest.raises(ModelLoadError, match="dispatch"):
        capture(lm, TEXTS, progress=False)


def test_nnsight_around_a_transformer_lens_model_reads_its_hooks():
    """``NNsight(bridge)``: unwrapped, then read at TransformerLens' hook points like the bridge."""
    optional("transformer_lens", "lens")
    try:
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.model_bridge.sources import transformers as _  # noqa: F401 - boot_transformers
    except ImportError:
        pytest.skip("TransformerBridge is TransformerLens 4 only")
    import copy

    hf = _llama()
    reference = copy.deepcopy(hf)  # the bridge replaces hf's attention modules in place
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tokenizer())
        wrapped = nnsight.NNsight(bridge)
    cap = capture(wrapped, TEXTS, tokenizer=tokenizer(), progress=False)
    ref = capture((reference, tokenizer()), TEXTS, progress=False)
    assert cap.model["source"] == "transformer_lens"
    worst = max(
        float(np.abs(cap.attention(layer, h, s) - ref.attention(layer, h, s)).max())
        for layer in cap.layers
        for h in cap.heads
        for s in range(len(TEXTS))
    )
    assert worst < ATOL
