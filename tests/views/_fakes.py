"""Embeddings whose exact attention is known, for the side-panel tests.

Real ``Capture`` and ``Embedding`` objects (``tests/_fakes.py`` builds the capture so that its
attention is exactly the pattern given), so the tests pin the arithmetic of the analyses on the
same objects users pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from _fakes import capture_with_attention, softmax
from qkviz import Embedding


def _embedding(capture, seed: int) -> Embedding:
    n = len(capture.tokens)
    rng = np.random.default_rng(seed)
    xy = {key: rng.uniform(-1, 1, size=(2 * n, 2)) for key in [(la, h) for la in capture.layers for h in capture.heads]}
    return Embedding.from_coords(xy, capture.tokens, capture.sequences, capture=capture)


def text_embedding(lengths=(5, 7, 4), seed=0, values=True):
    """Random softmax attention (layer 0 head 0), a previous-token head (0, 1), a sink head (0, 2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, n in enumerate(lengths):
        for p in range(n):
            special = p == 0 or p == n - 1
            tok = "[CLS]" if p == 0 else "[SEP]" if p == n - 1 else f"w{s}_{p}"
            rows.append(dict(seq=s, pos=p, token=tok, display=tok, special=special))
    tokens = pd.DataFrame(rows).astype({"seq": "int32", "pos": "int32", "special": bool})
    attn = {}
    for s, n in enumerate(lengths):
        attn[(0, 0, s)] = softmax(rng.normal(size=(n, n)) * 2).astype(np.float32)
        prev = np.full((n, n), 0.02 / max(n - 1, 1))
        for i in range(n):
            prev[i, max(i - 1, 0)] += 0.98
        attn[(0, 1, s)] = (prev / prev.sum(1, keepdims=True)).astype(np.float32)
        sink = np.full((n, n), 0.1 / max(n - 1, 1))
        sink[:, 0] = 0.9
        attn[(0, 2, s)] = (sink / sink.sum(1, keepdims=True)).astype(np.float32)
    v = None
    if values:
        v = {(0, h): rng.normal(size=(len(tokens), 4)).astype(np.float32) for h in range(3)}
    return _embedding(capture_with_attention(tokens, attn, values=v), seed)


def image_embedding(n_images=2, grid=(3, 4), px=6, seed=1):
    """CLS + rows×cols patches per image, random attention, images whose patches have known colours."""
    rng = np.random.default_rng(seed)
    gr, gc = grid
    rows = []
    for s in range(n_images):
        rows.append(dict(seq=s, pos=0, token="[CLS]", display="[CLS]", special=True, row=-1, col=-1))
        for r in range(gr):
            for c in range(gc):
                rows.append(
                    dict(
                        seq=s,
                        pos=1 + r * gc + c,
                        token=f"patch {r},{c}",
                        display=f"{r},{c}",
                        special=False,
                        row=r,
                        col=c,
                    )
                )
    tokens = pd.DataFrame(rows).astype({"seq": "int32", "pos": "int32", "row": "int16", "col": "int16"})
    n = 1 + gr * gc
    attn = {(0, 0, s): softmax(rng.normal(size=(n, n)) * 3).astype(np.float32) for s in range(n_images)}
    colours = rng.integers(0, 256, size=(n_images, gr, gc, 3)).astype(np.uint8)
    images = np.repeat(np.repeat(colours, px, axis=1), px, axis=2)  # flat-coloured patches
    return _embedding(capture_with_attention(tokens, attn, images=images), seed), colours
