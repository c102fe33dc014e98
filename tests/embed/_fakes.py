"""A small in-memory stand-in for ``qkviz.store.Capture`` (the contract in docs/internals.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qkviz.metrics import attention_rows


class ArrayCapture:
    """Holds q/k arrays ``[layer, head, token, d_head]`` and the token/sequence tables."""

    def __init__(self, q, k, seq, *, scaling=None, causal=False):
        self._q = np.asarray(q, np.float32)
        self._k = np.asarray(k, np.float32)
        n_layers, n_heads, n_tok, d = self._q.shape
        seq = np.asarray(seq, np.int32)
        pos = np.concatenate([np.arange(c) for c in np.bincount(seq)]).astype(np.int32)
        self.tokens = pd.DataFrame({"seq": seq, "pos": pos, "token": [f"t{i}" for i in range(n_tok)]})
        ids, off, cnt = np.unique(seq, return_index=True, return_counts=True)
        self.sequences = pd.DataFrame({"seq": ids, "text": [""] * len(ids), "n_tokens": cnt,
                                       "offset": off, "truncated": False})
        self.layers = tuple(range(n_layers))
        self.heads = tuple(range(n_heads))
        self.n_heads = self.n_kv_heads = n_heads
        self.d_head = d
        self.causal = causal
        self.scaling = {l: float(d**-0.5 if scaling is None else scaling) for l in self.layers}
        self.sliding_window = {}

    def q(self, layer, head):
        return self._q[layer, head]

    def k(self, layer, head):
        return self._k[layer, head]

    def attention(self, layer, head, seq):
        m = self.tokens["seq"].to_numpy() == seq
        return attention_rows(self.q(layer, head)[m], self.k(layer, head)[m], self.scaling[layer],
                              self.causal).astype(np.float32)


def synthetic_capture(n_layers=2, n_heads=3, lens=(12, 9, 15, 10), d=8, seed=0, causal=False):
    """Heads with structure: a shared token signal, a per-head rotation and a q/k offset."""
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(len(lens)), lens)
    n = len(seq)
    base = rng.normal(size=(n, d))
    q = np.empty((n_layers, n_heads, n, d))
    k = np.empty_like(q)
    for l in range(n_layers):
        for h in range(n_heads):
            r = np.linalg.qr(rng.normal(size=(d, d)))[0]
            q[l, h] = base @ r + 0.3 * rng.normal(size=(n, d))
            k[l, h] = 1.5 * (base @ r) + 2.0 + 0.3 * rng.normal(size=(n, d))
    return ArrayCapture(q, k, seq, causal=causal)
