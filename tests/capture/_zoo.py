"""Tiny randomly initialised models of many architectures (offline: MiniLM's packaged tokenizer).

These prove the capture path per architecture (fused qkv, RoPE, GQA, sliding windows, partial
rotary, CLS + patches); they cannot say anything about real weights.
"""

from __future__ import annotations

import functools

VOCAB = 30522  # MiniLM's WordPiece vocabulary, so its tokenizer drives every tiny text model


@functools.lru_cache(maxsize=1)
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
    if name in text:
        return text[name]().eval(), tokenizer()
    if name == "vit":
        m = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **small), add_pooling_layer=False)
        return m.eval(), _image_processor(32)
    if name == "clip_vision":
        m = tf.CLIPVisionModel(tf.CLIPVisionConfig(image_size=32, patch_size=8, **small))
        return m.eval(), _image_processor(32)
    raise KeyError(name)


TEXT = ["bert", "roberta", "distilbert", "gpt2", "llama", "mistral", "qwen2", "gpt_neox"]
IMAGE = ["vit", "clip_vision"]
