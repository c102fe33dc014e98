"""Demo data comes from installed packages, reproducibly, with a stdlib fallback for texts."""

from __future__ import annotations

import importlib.util

import pytest

from qkviz import data
from qkviz.errors import InputError


def test_lee_sentences():
    s = data.demo_sentences()
    assert len(s) == 2768
    assert data.demo_sentences(3) == s[:3]
    assert all(len(x.split()) >= 4 for x in s)
    assert "Lee news corpus" in data.sentences_source()


def test_stdlib_fallback(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gensim" else real(n, *a))
    data._all_sentences.cache_clear()
    try:
        s = data.demo_sentences()
        assert len(s) > 1500 and "pydoc_data" in data.sentences_source()
    finally:
        data._all_sentences.cache_clear()


def test_demo_images_are_rgb():
    imgs = data.demo_images(4)
    assert list(imgs) == ["astronaut", "chelsea", "coffee", "rocket"]
    assert all(im.mode == "RGB" for im in imgs.values())


@pytest.mark.slow
def test_all_demo_images():
    imgs = data.demo_images()
    assert len(imgs) == 25 and all(im.mode == "RGB" for im in imgs.values())


@pytest.mark.parametrize("n", [-1, 1.5, "3"])
def test_bad_n(n):
    with pytest.raises(InputError):
        data.demo_sentences(n)
    with pytest.raises(InputError):
        data.demo_images(n)


def test_python_docs_corpus_is_another_genre():
    from qkviz import InputError
    from qkviz.data import demo_sentences, sentences_source

    docs = demo_sentences(20, corpus="python-docs")
    assert len(docs) == 20 and all(6 <= len(s.split()) <= 40 for s in docs)
    assert "pydoc_data" in sentences_source("python-docs")
    with pytest.raises(InputError, match="corpus"):
        demo_sentences(3, corpus="poetry")
