"""Small, exact test inputs for the widget: a real ``Embedding`` over a fake capture.

The fake capture computes attention as softmax(q k^T / sqrt(d)) from seeded random vectors, so
tests know the exact top-k keys without torch or a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qkviz.embedding import Embedding

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "them", "other", "house"]


class FakeCapture:
    """Just enough of ``qkviz.store.Capture`` for the widget: q, k and exact attention."""

    def __init__(self, tokens: pd.DataFrame, layers, heads, d_head=4, seed=0):
        rng = np.random.default_rng(seed)
        n = len(tokens)
        self.tokens = tokens
        self.causal = False
        self.scaling = {la: 1.0 / np.sqrt(d_head) for la in layers}
        self._q = {(la, h): rng.normal(size=(n, d_head)).astype(np.float32) * 2 for la in layers for h in heads}
        self._k = {(la, h): rng.normal(size=(n, d_head)).astype(np.float32) * 2 for la in layers for h in heads}

    def q(self, layer, head):
        return self._q[(layer, head)]

    def k(self, layer, head):
        return self._k[(layer, head)]

    def attention(self, layer, head, seq):
        rows = np.flatnonzero(self.tokens["seq"].to_numpy() == seq)
        s = self.q(layer, head)[rows] @ self.k(layer, head)[rows].T * self.scaling[layer]
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def make_tokens(lengths=(6, 5, 4)) -> pd.DataFrame:
    rows = []
    for s, length in enumerate(lengths):
        for p in range(length):
            if p == 0:
                tok, special = "[CLS]", True
            elif p == length - 1:
                tok, special = ".", False
            else:
                tok, special = WORDS[(s * 7 + p * 3) % len(WORDS)], False
            rows.append({"seq": s, "pos": p, "token": tok, "display": tok, "special": special})
    df = pd.DataFrame(rows)
    df["seq"] = df["seq"].astype("int32")
    df["pos"] = df["pos"].astype("int32")
    return df


def make_embedding(n_layers=2, n_heads=3, lengths=(6, 5, 4), seed=0, capture=True, coords=None) -> Embedding:
    """A real Embedding with random layouts (or ``coords(layer, head) -> [point, 2]``)."""
    tokens = make_tokens(lengths)
    n = len(tokens)
    layers, heads = range(n_layers), range(n_heads)
    rng = np.random.default_rng(seed)
    xy = {(la, h): (coords(la, h) if coords else rng.uniform(-1, 1, size=(2 * n, 2))) for la in layers for h in heads}
    norms = {k: rng.uniform(0.5, 3.0, size=2 * n).astype(np.float32) for k in xy}
    cap = FakeCapture(tokens, layers, heads, seed=seed) if capture else None
    emb = Embedding.from_coords(xy, tokens, norms=norms, capture=cap) if not coords else Embedding(
        {k: np.asarray(v, np.float32) for k, v in xy.items()}, tokens, norms=norms, capture=cap)
    return emb
