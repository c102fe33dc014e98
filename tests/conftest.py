"""Shared session fixtures: real and tiny captures that every test module can reuse.

* ``minilm_capture``: the real MiniLM (packaged offline weights) over the first 84 demo sentences
  (about 2,400 tokens, 6 layers x 12 heads, d_head 32); a few seconds, once per session.
* ``tiny_capture``: a tiny randomly initialised BERT (2 layers x 4 heads, d_head 8) over 6 demo
  sentences, with value vectors; well under a second.
* ``vit_capture``: the converted ViT-S/14 (``"vit-s14"``) over 3 demo images (257 tokens each:
  [CLS] + 16x16 patches; 12 layers x 6 heads, d_head 64), with thumbnails in ``images``.

qkviz's caches (converted models, cached layouts) live under ``QKVIZ_CACHE_DIR``, set here to a
per-machine folder in the temporary directory unless already set, so test runs share the one-off
conversions and never touch the user's own cache.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

import pytest

from _models import tiny_bert

os.environ.setdefault("QKVIZ_CACHE_DIR", str(pathlib.Path(tempfile.gettempdir()) / "qkviz-test-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# nnsight (0.8) adds a `save` method to `object` when imported; marimo's config dataclasses imported
# after that see `save` as a field default and fail ("non-default argument 'server' follows default
# argument"). The nnsight tests and the marimo tests share this process, so marimo goes first.
with contextlib.suppress(ImportError):
    import marimo  # noqa: F401


@pytest.fixture(scope="session")
def demo_texts():
    from qkviz.data import demo_sentences

    return demo_sentences(84)


@pytest.fixture(scope="session")
def minilm_capture(demo_texts):
    from qkviz import capture

    return capture("minilm", demo_texts, batch_size=16, progress=False)


@pytest.fixture(scope="session")
def tiny_capture():
    from qkviz import capture
    from qkviz.data import demo_sentences

    return capture(tiny_bert(), demo_sentences(6), values=True, progress=False)


@pytest.fixture(scope="session")
def vit_images():
    from qkviz.data import demo_images

    return demo_images(3)


@pytest.fixture(scope="session")
def vit_capture(vit_images):
    from qkviz import capture

    return capture("vit-s14", vit_images, batch_size=3, progress=False)
