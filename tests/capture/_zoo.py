"""Tiny randomly initialised models of many architectures (offline: MiniLM's packaged tokenizer).

These prove the capture path per architecture (fused qkv, RoPE, GQA, sliding windows, partial
rotary, CLS + patches); they cannot say anything about real weights.
"""

from __future__ import annotations

import functools

VOCAB = 30522  # MiniLM's WordPiece vocabulary, so its tokenizer drives every tiny text model


@functools.lru_cache(maxsize=1)
def optional(module: str, extra: str):
    """Import an optional package, skipping the test only where it is not installed at all.

    ``pytest.importorskip`` also skips when an installed package fails to import (e.g. one of its
    own dependencies is missing); CI installs every extra, so such a break must fail, not skip.
    """
    import importlib
    import importlib.util

    import pytest

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install 'qkviz[{extra}]'", allow_module_level=True)
    return importlib.import_module(module)


def tokenizer():
    from transformers import AutoTokenizer

    from qkviz.models._offline import minilm_dir as _minilm_dir

    return AutoTokenizer.from_pretrained(_minilm_dir())


def _image_processor(size: int):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size}, do_resize=True, do_normalize=True)


def build(name: str, seed: int = 0):
    """``(model, tokenizer_or_processor)`` for a tiny config of architecture ``name``."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    text = {
        "bert": lambda: tf.BertModel(tf.BertConfig(vocab_size=VOCAB, **small), add_pooling_layer=False),
        "roberta": lambda: tf.RobertaModel(tf.RobertaConfig(vocab_size=VOCAB, **small), add_pooling_layer=False),
        "distilbert": lambda: tf.DistilBertModel(
            tf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
        ),
        "gpt2": lambda: tf.GPT2Model(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4)),
        "llama": lambda: tf.LlamaModel(tf.LlamaConfig(vocab_size=VOCAB, num_key_value_heads=2, **small)),
        "mistral": lambda: tf.MistralModel(
            tf.MistralConfig(vocab_size=VOCAB, num_key_value_heads=2, sliding_window=5, **small)
        ),
        "qwen2": lambda: tf.Qwen2Model(tf.Qwen2Config(vocab_size=VOCAB, num_key_value_heads=1, **small)),
        "gpt_neox": lambda: tf.GPTNeoXModel(tf.GPTNeoXConfig(vocab_size=VOCAB, rotary_pct=0.5, **small)),
        "mpnet": lambda: tf.MPNetModel(tf.MPNetConfig(vocab_size=VOCAB, **small), add_pooling_layer=False),
    }
    # Score families (issue 12). Initialisations are large enough that every extra term moves the
    # attention far beyond the 1e-4 tolerance, so dropping a term fails the exactness tests.
    families = {
        "gemma2": lambda: tf.Gemma2Model(
            tf.Gemma2Config(
                vocab_size=VOCAB,
                num_key_value_heads=2,
                head_dim=8,
                sliding_window=4,
                attn_logit_softcapping=2.0,
                query_pre_attn_scalar=8,
                initializer_range=0.5,
                **small,
            )
        ),
        "gpt_oss": lambda: _with_sinks(
            tf.GptOssModel(
                tf.GptOssConfig(
                    vocab_size=VOCAB,
                    num_key_value_heads=2,
                    head_dim=8,
                    sliding_window=4,
                    num_local_experts=2,
                    num_experts_per_tok=1,
                    **small,
                )
            )
        ),
        "bloom": lambda: tf.BloomModel(tf.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4)),
        "mpt": lambda: tf.MptModel(
            tf.MptConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, max_seq_len=128, expansion_ratio=2)
        ),
        "falcon": lambda: tf.FalconModel(
            tf.FalconConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                new_decoder_architecture=False,
                multi_query=True,
                alibi=False,
            )
        ),
        "falcon_new": lambda: tf.FalconModel(
            tf.FalconConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_kv_heads=2,
                new_decoder_architecture=True,
                alibi=False,
            )
        ),
        "deberta_v2": lambda: tf.DebertaV2Model(
            tf.DebertaV2Config(
                vocab_size=VOCAB,
                relative_attention=True,
                pos_att_type=["p2c", "c2p"],
                position_buckets=8,
                max_relative_positions=-1,
                share_att_key=True,
                position_biased_input=False,
                norm_rel_ebd="layer_norm",
                max_position_embeddings=128,
                initializer_range=0.3,
                **small,
            )
        ),
        "deberta_v2_unshared": lambda: tf.DebertaV2Model(
            tf.DebertaV2Config(
                vocab_size=VOCAB,
                relative_attention=True,
                pos_att_type=["c2p"],
                max_relative_positions=16,
                share_att_key=False,
                max_position_embeddings=128,
                initializer_range=0.3,
                **small,
            )
        ),
        "mpnet_big": lambda: tf.MPNetModel(
            tf.MPNetConfig(vocab_size=VOCAB, initializer_range=0.5, **small), add_pooling_layer=False
        ),
    }
    if name in families:
        return families[name]().eval(), tokenizer()
    seq2seq = {
        "t5": lambda: tf.T5Model(
            tf.T5Config(
                vocab_size=VOCAB,
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_decoder_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                relative_attention_max_distance=16,
                decoder_start_token_id=0,
            )
        ),
        "bart": lambda: tf.BartModel(
            tf.BartConfig(
                vocab_size=VOCAB,
                d_model=32,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                max_position_embeddings=128,
                decoder_start_token_id=2,
                pad_token_id=0,
            )
        ),
    }
    if name in seq2seq:
        return seq2seq[name]().eval(), tokenizer()
    if name == "whisper":
        m = tf.WhisperModel(
            tf.WhisperConfig(
                vocab_size=VOCAB,
                d_model=32,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=4,
                decoder_attention_heads=4,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                num_mel_bins=80,
                max_source_positions=50,
                max_target_positions=64,
                decoder_start_token_id=101,
                pad_token_id=0,
                bos_token_id=101,
                eos_token_id=102,
            )
        )
        # one second of audio at 16 kHz -> 100 mel frames -> 50 encoder frames
        fe = tf.WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=1)
        return m.eval(), fe
    if name in text:
        return text[name]().eval(), tokenizer()
    if name == "vit":
        m = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **small), add_pooling_layer=False)
        return m.eval(), _image_processor(32)
    if name == "clip_vision":
        m = tf.CLIPVisionModel(tf.CLIPVisionConfig(image_size=32, patch_size=8, **small))
        return m.eval(), _image_processor(32)
    raise KeyError(name)


def _with_sinks(model):
    """gpt-oss starts its sinks near zero; spread them so they take a real share of every row."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "sinks"):
                m.sinks.normal_(0.0, 2.0)
    return model


# every family of issue 12 that has one attention kind (self-attention)
FAMILIES = [
    "gemma2",
    "gpt_oss",
    "bloom",
    "mpt",
    "falcon",
    "falcon_new",
    "deberta_v2",
    "deberta_v2_unshared",
    "mpnet_big",
]

# encoder-decoder models: encoder self-, decoder self- and cross-attention
SEQ2SEQ = ["t5", "bart"]

TEXT = ["bert", "roberta", "distilbert", "gpt2", "llama", "mistral", "qwen2", "gpt_neox"]
IMAGE = ["vit", "clip_vision"]
