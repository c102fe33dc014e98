"""Small stand-ins for Capture/Embedding with known attention, for the detail tests.

They implement exactly the contract of docs/internals.md that `qkviz._detail` uses (``tokens``,
``layers``, ``heads``, ``attention(layer, head, seq)``, ``capture.v``, ``capture.images``), so the
tests pin the arithmetic independently of the real capture code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


class FakeCapture:
    causal = False

    def __init__(self, tokens, attn, values=None, images=None):
        self.tokens = tokens
        self._attn = attn  # (layer, head, seq) -> float32 [query_pos, key_pos]
        self._values = values  # (layer, head) -> float32 [token, d_head]
        self.images = images
        self.layers = tuple(sorted({k[0] for k in attn}))
        self.heads = tuple(sorted({k[1] for k in attn}))

    def attention(self, layer, head, seq):
        return self._attn[(layer, head, seq)]

    def v(self, layer, head):
        if self._values is None:
            raise KeyError("no values captured")
        return self._values[(layer, head)]

    def q(self, layer, head):  # only so _capture_of recognises a bare capture
        raise NotImplementedError

    k = q


class FakeEmbedding:
    def __init__(self, capture):
        self.capture = capture
        self.tokens = capture.tokens
        self.layers = capture.layers
        self.heads = capture.heads

    def attention(self, layer, head, seq):
        return self.capture.attention(layer, head, seq)


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
    return FakeEmbedding(FakeCapture(tokens, attn, v))


def image_embedding(n_images=2, grid=(3, 4), px=6, seed=1):
    """CLS + rows×cols patches per image, random attention, images whose patches have known colours."""
    rng = np.random.default_rng(seed)
    gr, gc = grid
    rows = []
    for s in range(n_images):
        rows.append(dict(seq=s, pos=0, token="[CLS]", display="[CLS]", special=True, row=-1, col=-1))
        for r in range(gr):
            for c in range(gc):
                rows.append(dict(seq=s, pos=1 + r * gc + c, token=f"patch {r},{c}", display=f"{r},{c}",
                                 special=False, row=r, col=c))
    tokens = pd.DataFrame(rows).astype({"seq": "int32", "pos": "int32", "row": "int16", "col": "int16"})
    n = 1 + gr * gc
    attn = {(0, 0, s): softmax(rng.normal(size=(n, n)) * 3).astype(np.float32) for s in range(n_images)}
    colours = rng.integers(0, 256, size=(n_images, gr, gc, 3)).astype(np.uint8)
    images = np.repeat(np.repeat(colours, px, axis=1), px, axis=2)  # flat-coloured patches
    return FakeEmbedding(FakeCapture(tokens, attn, None, images)), colours
