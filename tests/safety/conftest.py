"""Fixtures of the data-safety tests: a tiny model folder the CLI can load, tiny saved stores.

Everything here is tiny (a 2-layer, 4-head random BERT with MiniLM's tokenizer), so the tests that
drive the command line end to end take seconds.
"""

from __future__ import annotations

import hashlib
import pathlib

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random BERT saved as a model folder (``qkviz capture <folder> ...``)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from qkviz.models._offline import minilm_dir

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    d = tmp_path_factory.mktemp("tiny-model") / "tiny-bert"
    BertModel(cfg).eval().save_pretrained(d)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(d)
    return d


@pytest.fixture
def texts_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("The cat sat on the mat.\nA dog barked at the postman.\n")
    return f


@pytest.fixture(scope="session")
def tiny_pca(tiny_capture):
    import qkviz

    return qkviz.embed(tiny_capture, method="pca", progress=False, cache=False)


def snapshot(root: pathlib.Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (folders as ``"<dir>"``)."""
    root = pathlib.Path(root)
    out = {}
    for f in sorted(root.rglob("*")):
        rel = str(f.relative_to(root))
        out[rel] = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "<dir>"
    return out
