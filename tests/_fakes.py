"""The one fake capture every test folder shares: real ``Capture`` objects made with ``from_arrays``.

* :func:`capture_from_arrays` wraps given q/k arrays ``[layer, head, token, d_head]``;
* :func:`capture_with_attention` builds a capture whose exact attention is any pattern a test
  wants: query ``i`` is the one-hot vector of its position and key ``j`` holds ``log A[:, j]``, so
  ``softmax(q_i·k_j) = A[i, j] / Σ_j A[i, j] = A[i, j]`` for row-stochastic ``A``;
* :func:`make_tokens` is a small text token table.

A module, not conftest: conftest names clash between test folders.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from qkviz import Capture, HeadGeometry

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "them", "other", "house"]


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def make_tokens(lengths=(6, 5, 4)) -> pd.DataFrame:
    """Text tokens: ``[CLS]`` first, ``.`` last, words between (``seq``, ``pos``, ``token``,
    ``display``, ``special``)."""
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


def _tokens_for(seq: np.ndarray) -> pd.DataFrame:
    seq = np.asarray(seq, np.int32)
    pos = np.concatenate([np.arange(c) for c in np.bincount(seq)]).astype(np.int32)
    return pd.DataFrame({"seq": seq, "pos": pos, "token": [f"t{i}" for i in range(len(seq))]})


def capture_from_arrays(q, k, seq=None, *, tokens=None, v=None, scaling=None, causal=False, images=None) -> Capture:
    """A ``Capture`` over arrays ``q``, ``k`` (and ``v``) of shape ``[layer, head, token, d_head]``.

    ``seq`` (int [token]) or a full ``tokens`` table says which tokens share a sequence.
    """
    q = np.asarray(q, np.float32)
    k = np.asarray(k, np.float32)
    n_layers, n_heads, _, d = q.shape
    if tokens is None:
        tokens = _tokens_for(seq)
    geometry = HeadGeometry(
        layers=tuple(range(n_layers)),
        heads=tuple(range(n_heads)),
        n_heads=n_heads,
        n_kv_heads=n_heads,
        d_head=d,
        causal=causal,
        scaling={la: float(d**-0.5 if scaling is None else scaling) for la in range(n_layers)},
    )
    cells = [(la, h) for la in range(n_layers) for h in range(n_heads)]
    return Capture.from_arrays(
        {c: q[c] for c in cells},
        {c: k[c] for c in cells},
        tokens,
        geometry,
        v=None if v is None else {c: np.asarray(v, np.float32)[c] for c in cells},
        model={"name": "fake", "modality": "image" if "row" in tokens else "text"},
        images=images,
    )


def capture_with_attention(
    tokens: pd.DataFrame,
    attention: Mapping[tuple[int, int, int], np.ndarray],
    *,
    values: Mapping[tuple[int, int], np.ndarray] | None = None,
    images: np.ndarray | None = None,
) -> Capture:
    """A ``Capture`` whose exact attention of (layer, head, seq) is ``attention[(layer, head, seq)]``.

    Every matrix must be row-stochastic with positive entries. ``values`` (layer, head) ->
    ``[token, d]`` become the value vectors (zero-padded to ``d_head``: norms unchanged).
    """
    layers = sorted({key[0] for key in attention})
    heads = sorted({key[1] for key in attention})
    seqs = tokens["seq"].to_numpy()
    pos = tokens["pos"].to_numpy()
    n, d = len(tokens), int(np.bincount(seqs).max())
    q = np.zeros((len(layers), len(heads), n, d), np.float32)
    k = np.zeros_like(q)
    for (la, h, s), a in attention.items():
        rows = np.flatnonzero(seqs == s)
        a = np.asarray(a, np.float64)
        assert a.shape == (len(rows), len(rows)) and (a > 0).all(), "need a positive [pos, pos] matrix"
        li, hi = layers.index(la), heads.index(h)
        q[li, hi, rows, pos[rows]] = 1.0  # one-hot queries
        k[li, hi, rows, : len(rows)] = np.log(a).T  # key j holds column j of log A
    v = None
    if values is not None:
        v = np.zeros((len(layers), len(heads), n, d), np.float32)
        for (la, h), val in values.items():
            val = np.asarray(val, np.float32)
            v[layers.index(la), heads.index(h), :, : val.shape[1]] = val
    return capture_from_arrays(q, k, tokens=tokens, v=v, scaling=1.0, images=images)


def random_capture(tokens: pd.DataFrame, n_layers: int, n_heads: int, d_head: int = 4, seed: int = 0) -> Capture:
    """Seeded random q/k (scaled by 2) for every head: attention ``softmax(q kᵀ / sqrt(d))``."""
    rng = np.random.default_rng(seed)
    shape = (n_layers, n_heads, len(tokens), d_head)
    return capture_from_arrays(rng.normal(size=shape) * 2, rng.normal(size=shape) * 2, tokens=tokens)


def synthetic_capture(n_layers=2, n_heads=3, lens=(12, 9, 15, 10), d=8, seed=0, causal=False) -> Capture:
    """Heads with structure: a shared token signal, a per-head rotation and a q/k offset."""
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(len(lens)), lens)
    n = len(seq)
    base = rng.normal(size=(n, d))
    q = np.empty((n_layers, n_heads, n, d))
    k = np.empty_like(q)
    for la in range(n_layers):
        for h in range(n_heads):
            r = np.linalg.qr(rng.normal(size=(d, d)))[0]
            q[la, h] = base @ r + 0.3 * rng.normal(size=(n, d))
            k[la, h] = 1.5 * (base @ r) + 2.0 + 0.3 * rng.normal(size=(n, d))
    return capture_from_arrays(q, k, seq, causal=causal)
