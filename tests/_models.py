"""Tiny models shared by several test folders (a module, not conftest: conftest names clash)."""

from __future__ import annotations


def tiny_bert(seed: int = 0, **overrides):
    """A tiny random BERT with MiniLM's (packaged) tokenizer: ``(model, tokenizer)``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from qkviz.models._offline import minilm_dir as _minilm_dir

    torch.manual_seed(seed)
    defaults = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    }
    cfg = BertConfig(**{**defaults, **overrides})  # overrides may change any default (layers, heads...)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    return model, AutoTokenizer.from_pretrained(_minilm_dir())
