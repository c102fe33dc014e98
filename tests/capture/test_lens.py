"""TransformerLens models as inputs: the capture reproduces the model's own attention (its
``hook_pattern``) and, for a bridge over a transformers model, equals the capture of that model.

TransformerLens 4 (``TransformerBridge``: over a transformers model, or native) is what
``qkviz[lens]`` installs; ``HookedTransformer`` exists in TransformerLens 2-3 only, so its tests run
where that version is installed and skip with that reason elsewhere (the native-model tests skip
under 3.x the same way). To run them beside 4.x (3.9 works with the same transformers)::

    pip download transformer-lens==3.9.0 --no-deps -d /tmp/tl3
    pip install --no-deps --target /tmp/tl3/site /tmp/tl3/*.whl better-abc fancy-einsum
    PYTHONPATH=src:/tmp/tl3/site python -m pytest tests/capture/test_lens.py

``make test`` does this (``make lens3``), with ``QKVIZ_TEST_TL_MAJOR=3`` so that a run which picked up
the wrong TransformerLens fails instead of skipping every ``HookedTransformer`` test.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import types
import warnings

import numpy as np
import pytest

from qkviz import capture
from qkviz.errors import ModelLoadError, UnsupportedModelError

from ._zoo import VOCAB, optional, tokenizer

optional("transformer_lens", "lens")  # skipped only where it is absent; a broken install fails

ATOL = 1e-4
TL_MAJOR = int(importlib.metadata.version("transformer-lens").split(".")[0])
if os.environ.get("QKVIZ_TEST_TL_MAJOR", str(TL_MAJOR)) != str(TL_MAJOR):
    raise RuntimeError(
        f"QKVIZ_TEST_TL_MAJOR={os.environ['QKVIZ_TEST_TL_MAJOR']} but TransformerLens {TL_MAJOR} imported"
    )
TEXTS = [
    "The cat sat on the mat.",
    "A dog barked loudly at the mailman today and again yesterday.",
    "Hi",
    "Colourless green ideas sleep furiously.",
]


def _tok():
    return tokenizer()


def _hooked_transformer():
    if TL_MAJOR >= 4:
        pytest.skip("HookedTransformer is TransformerLens 2-3 only (transformer-lens 4 installed)")
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    return HookedTransformer, HookedTransformerConfig


def _bridge_class():
    try:
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.model_bridge.sources import transformers as _  # noqa: F401 - attaches boot_transformers
    except ImportError:
        pytest.skip("TransformerBridge is TransformerLens 4 only")
    return TransformerBridge


def _alone_patterns(lens, text):
    """The model's own attention of ``text`` run alone (no padding): ``[layer][head, q, k]``."""
    import torch

    ids = torch.tensor([_tok()(text)["input_ids"]])
    _, cache = lens.run_with_cache(ids)
    return [cache[f"blocks.{layer}.attn.hook_pattern"][0].float().numpy() for layer in range(lens.cfg.n_layers)]


def _max_error_vs_alone(cap, lens):
    worst = 0.0
    for s, text in enumerate(TEXTS):
        ref = _alone_patterns(lens, text)
        for layer in cap.layers:
            for h in cap.heads:
                worst = max(worst, float(np.abs(cap.attention(layer, h, s) - ref[layer][h]).max()))
    return worst


def _max_error(a, b):
    return max(
        float(np.abs(a.attention(layer, h, s) - b.attention(layer, h, s)).max())
        for layer in a.layers
        for h in a.heads
        for s in range(len(a.sequences))
    )


# --------------------------------------------------------------------------------------------
# TransformerLens 4: TransformerBridge over a transformers model
# --------------------------------------------------------------------------------------------

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _hf(name):
    import transformers as tf

    return {
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=VOCAB, num_key_value_heads=2, **SMALL)),
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4)),
        "gemma2": lambda: tf.Gemma2ForCausalLM(
            tf.Gemma2Config(
                vocab_size=VOCAB,
                num_key_value_heads=2,
                head_dim=8,
                sliding_window=4,
                attn_logit_softcapping=2.0,
                query_pre_attn_scalar=8,
                initializer_range=0.5,
                **SMALL,
            )
        ),
        "bloom": lambda: tf.BloomForCausalLM(tf.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4)),
        "bert": lambda: tf.BertForMaskedLM(tf.BertConfig(vocab_size=VOCAB, **SMALL)),
    }[name]()


def _bridge(name, processed):
    import torch

    bridge_cls = _bridge_class()
    torch.manual_seed(0)
    hf = _hf(name).eval()
    reference = copy.deepcopy(hf)  # the bridge replaces hf's attention modules in place
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = bridge_cls.boot_transformers(f"tiny-{name}", hf_model=hf, tokenizer=_tok())
        if processed:  # HookedTransformer's numerics: LayerNorm folded, writing weights centred
            bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge, reference


@pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma2", "bloom", "bert"])
def test_bridge_equals_the_transformers_model(name, processed):
    """GQA + RoPE (LLaMA), fused qkv (GPT-2), soft cap + sliding window (Gemma 2), ALiBi (BLOOM),
    bidirectional (BERT): the bridge's capture is the transformers model's, with and without
    TransformerLens' weight processing, and reproduces the bridge's own hook_pattern."""
    bridge, hf = _bridge(name, processed)
    if name == "bert" and TL_MAJOR < 4:  # TransformerLens 3's BERT bridge never fires hook_pattern
        with pytest.raises(UnsupportedModelError, match="never fired"):
            capture(bridge, TEXTS, batch_size=4, progress=False)
        return
    cap = capture(bridge, TEXTS, batch_size=4, progress=False)
    ref = capture((hf, _tok()), TEXTS, batch_size=4, progress=False)
    assert cap.model["source"] == "transformer_lens" and cap.model["class"] == "TransformerBridge"
    assert cap.model["model_type"] == name and cap.model["processed_weights"] is processed
    assert cap.causal == (name != "bert")
    assert _max_error(cap, ref) < ATOL
    assert {layer: cap.geometry.family(layer) for layer in cap.layers} == {
        layer: ref.geometry.family(layer) for layer in ref.layers
    }
    assert cap.sliding_window == ref.sliding_window
    assert _max_error_vs_alone(cap, bridge) < ATOL
    assert cap.verify(bridge).attrs["max"] < ATOL
    # the vectors themselves are the transformers model's, processed or not: folding LayerNorm into
    # W_Q / W_K gives the same products, and centring touches only what writes to the residual
    np.testing.assert_allclose(cap.q(1, 3), ref.q(1, 3), atol=1e-5)
    np.testing.assert_allclose(cap.k(1, 3), ref.k(1, 3), atol=1e-5)


def test_bridge_records_what_the_family_needs():
    """Dropping the soft cap or the ALiBi slopes would break the exactness above (the test can fail)."""
    from qkviz import attention

    bridge, _ = _bridge("gemma2", False)
    cap = capture(bridge, TEXTS, progress=False)
    assert cap.geometry.softcap == {0: 2.0, 1: 2.0} and cap.sliding_window[0] == 4
    ref = _alone_patterns(bridge, TEXTS[1])
    n = int(cap.sequences["n_tokens"][1])
    o = int(cap.sequences["offset"][1])
    q, k = cap.q(0, 1)[o : o + n], cap.k(0, 1)[o : o + n]
    plain = attention.attention_rows(q, k, cap.scaling[0], causal=True, window=cap.sliding_window[0])
    assert np.abs(plain - ref[0][1]).max() > 100 * ATOL  # without the cap: wrong

    bloom, _ = _bridge("bloom", False)
    cap = capture(bloom, TEXTS, progress=False)
    assert set(cap.terms) == {"alibi.0", "alibi.1"}
    assert np.all(cap.terms["alibi.0"] > 0)


def test_bridge_streams_to_a_store(tmp_path):
    bridge, _ = _bridge("llama", False)
    mem = capture(bridge, TEXTS, batch_size=2, progress=False)
    disk = capture(bridge, TEXTS, batch_size=2, progress=False, out=tmp_path / "run.qkv")
    np.testing.assert_array_equal(mem.q(1, 2), disk.q(1, 2))
    assert disk.model["source"] == "transformer_lens"


def test_capture_keeps_a_link_to_the_lens_model():
    """``Embedding.place`` finds the model through the capture's weak link: it must stay alive
    as long as the user's TransformerLens model does."""
    import gc

    bridge, _ = _bridge("gpt2", False)
    cap = capture(bridge, TEXTS[:2], progress=False)
    gc.collect()
    lm = cap._model_handle.get()
    assert lm is not None and lm.model.lens is bridge


def test_native_bridge_is_exact():
    """TransformerLens 4's own transformer (``boot_native``): rotary (applied by the module, whose
    rot hooks never fire), grouped-query keys, a soft cap."""
    _bridge_class()
    import torch

    try:
        from transformer_lens.model_bridge.sources.native import boot as boot_native
    except ImportError:
        pytest.skip("native TransformerLens models (boot_native) are TransformerLens 4 only")

    base = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_vocab=VOCAB, act_fn="gelu", d_mlp=64)
    for extra in (
        dict(positional_embedding_type="rotary", n_key_value_heads=2, normalization_type="RMS"),
        dict(attn_scores_soft_cap=1.0),
    ):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lens = boot_native({**base, **extra}, tokenizer=_tok())
        cap = capture(lens, TEXTS, batch_size=4, progress=False)
        assert _max_error_vs_alone(cap, lens) < ATOL, extra
        assert cap.verify(lens).attrs["max"] < ATOL


def test_bridge_whose_rotation_is_hidden_is_refused_even_unchecked():
    """GPT-NeoX's bridge registers hook_rot_q / hook_rot_k but rotates elsewhere: hook_q / hook_k
    are the vectors before the rotation. Refused by the recorder itself, so even check=False (no
    first-batch comparison against the model's attention) cannot give a wrong capture."""
    import transformers as tf

    bridge_cls = _bridge_class()
    import torch

    torch.manual_seed(0)
    hf = tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=VOCAB, **SMALL)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = bridge_cls.boot_transformers("tiny-neox", hf_model=hf, tokenizer=_tok())
    for check in (True, False):
        with pytest.raises(UnsupportedModelError, match="hook_rot_q / hook_rot_k never fired"):
            capture(bridge, TEXTS, batch_size=4, progress=False, check=check)


def test_native_attention_only_is_exact():
    """attn_only (no MLPs) changes nothing the capture reads: exact like any other."""
    _bridge_class()
    import torch

    try:
        from transformer_lens.model_bridge.sources.native import boot as boot_native
    except ImportError:
        pytest.skip("native TransformerLens models (boot_native) are TransformerLens 4 only")
    torch.manual_seed(0)
    cfg = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_vocab=VOCAB, act_fn="gelu", attn_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lens = boot_native(cfg, tokenizer=_tok())
    cap = capture(lens, TEXTS, batch_size=4, progress=False)
    assert _max_error_vs_alone(cap, lens) < ATOL


def test_other_transformer_lens_classes_are_refused_by_name():
    """A TransformerLens model class qkviz does not read (HookedEncoderDecoder, HookedSAE...) is
    refused naming the class, not run."""
    fake = types.new_class("HookedEncoderDecoder")
    fake.__module__ = "transformer_lens.HookedEncoderDecoder"
    model = fake()
    model.cfg = types.SimpleNamespace(n_layers=2, n_heads=4, n_ctx=64)
    model.hook_dict = {}
    with pytest.raises(UnsupportedModelError, match="TransformerLens HookedEncoderDecoder is not supported"):
        capture(model, TEXTS, progress=False)


def test_lens_refusals():
    bridge, _ = _bridge("gpt2", False)
    bridge.cfg.use_logn_attn = True  # Qwen-1's log-n query scaling happens after the hook points
    try:
        with pytest.raises(UnsupportedModelError, match="use_logn_attn"):
            capture(bridge, TEXTS, progress=False)
    finally:
        bridge.cfg.use_logn_attn = False
    tokenizer = bridge.tokenizer
    bridge.tokenizer = None
    try:
        with pytest.raises(ModelLoadError, match="tokenizer="):
            capture(bridge, TEXTS, progress=False)
    finally:
        bridge.tokenizer = tokenizer


# --------------------------------------------------------------------------------------------
# TransformerLens 2-3: HookedTransformer
# --------------------------------------------------------------------------------------------

HT_BASE = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, act_fn="gelu", d_mlp=64)
HT_CONFIGS = {
    "rotary-gqa": dict(positional_embedding_type="rotary", n_key_value_heads=2, normalization_type="RMS"),
    "standard": dict(normalization_type="LN"),
    "alibi": dict(positional_embedding_type="alibi"),
    "local-window": dict(use_local_attn=True, attn_types=["local", "global"], window_size=3),
    "soft-capped": dict(attn_scores_soft_cap=1.0, initializer_range=0.5),
    "inverse-layer-scale": dict(scale_attn_by_inverse_layer_idx=True, initializer_range=0.3),
    "attention-only": dict(attn_only=True),
    "qk-norm-rotary": dict(positional_embedding_type="rotary", use_qk_norm=True, normalization_type="RMS"),
}


@pytest.mark.parametrize("name", list(HT_CONFIGS))
def test_hooked_transformer_is_exact(name):
    hooked, config = _hooked_transformer()
    import torch

    torch.manual_seed(0)
    lens = hooked(config(**HT_BASE, d_vocab=VOCAB, **HT_CONFIGS[name]), tokenizer=_tok())
    cap = capture(lens, TEXTS, batch_size=4, progress=False)
    assert cap.model["class"] == "HookedTransformer"
    assert _max_error_vs_alone(cap, lens) < ATOL
    assert cap.verify(lens).attrs["max"] < ATOL
    if name == "alibi":
        assert cap.geometry.family(0) == "alibi"
    if name == "local-window":
        assert cap.sliding_window == {0: 3, 1: None}
    if name == "soft-capped":
        assert cap.geometry.softcap == {0: 1.0, 1: 1.0}


@pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
def test_hooked_transformer_from_a_transformers_gpt2(processed):
    """A transformers GPT-2 converted offline with TransformerLens' own weight conversion, with and
    without its processing (LayerNorm folding, weight centring): the same attention."""
    hooked, config = _hooked_transformer()
    import torch
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    torch.manual_seed(0)
    hf = _hf("gpt2").eval()
    cfg = config(
        n_layers=2, d_model=32, n_ctx=1024, d_head=8, n_heads=4, d_vocab=VOCAB, act_fn="gelu_new", d_mlp=128,
        normalization_type="LN", eps=1e-5,
    )  # fmt: skip
    lens = hooked(cfg, tokenizer=_tok())
    lens.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg), fold_ln=processed, center_writing_weights=processed, center_unembed=processed
    )
    cap = capture(lens, TEXTS, progress=False)
    ref = capture((hf, _tok()), TEXTS, progress=False)
    assert _max_error(cap, ref) < ATOL


@pytest.mark.parametrize("extra", [dict(use_qk_norm=True), dict(clip_qkv=0.5)], ids=["qk-norm", "clip-qkv"])
def test_hooked_transformer_steps_after_the_hooks_are_refused(extra):
    """Without rotary, q and k are read at hook_q / hook_k, before a qk-norm or a clamp: refused
    by name. (With rotary, hook_rot_q / hook_rot_k come after both: exact, above.)"""
    hooked, config = _hooked_transformer()
    lens = hooked(config(**HT_BASE, d_vocab=VOCAB, normalization_type="RMS", **extra), tokenizer=_tok())
    with pytest.raises(UnsupportedModelError, match=next(iter(extra))):
        capture(lens, TEXTS, progress=False)


def test_hooked_transformer_bidirectional_padding_is_refused():
    """HookedTransformer applies attention_mask only in its causal mask: a padded bidirectional
    batch would attend to padding. Refused with what to do; one text per batch is exact."""
    hooked, config = _hooked_transformer()

    lens = hooked(config(**HT_BASE, d_vocab=VOCAB, attention_dir="bidirectional"), tokenizer=_tok())
    with pytest.raises(UnsupportedModelError, match="batch_size=1"):
        capture(lens, TEXTS, progress=False)
    cap = capture(lens, TEXTS, batch_size=1, progress=False)
    assert _max_error_vs_alone(cap, lens) < ATOL
