"""The one definition of attention from stored vectors (numpy).

For one head, query ``i`` and key ``j`` of the same sequence score ``s_ij = scaling · q_i·k_j``;
the model's attention is ``softmax_j(s_ij + mask_ij)``, where the mask hides keys after the query
(causal models) and keys further back than the sliding window. Everything in qkviz that needs
attention (``Capture.attention``, the faithfulness metrics, the attention-guided layout, the side
panel) calls this module; the capture stage's torch twin (``qkviz._capture._checks``) is tested
against it.

Also here, because they are part of reading attention rather than computing layouts:
:func:`renormalize` (hide keys or queries, weight keys by value norms, renormalise each row; the
side panel's formula, with a JS twin in ``js/src/panel/``) and :func:`overlay_strength`
(AttentionViz's darkening of image patches).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> q, k = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
>>> a = attention_rows(q, k, scaling=8 ** -0.5, causal=True)
>>> bool(np.allclose(a.sum(axis=1), 1.0)), float(a[0, 1])       # rows sum to 1; no peeking ahead
(True, 0.0)
>>> visible(3, causal=True).astype(int).tolist()
[[1, 0, 0], [1, 1, 0], [1, 1, 1]]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import EmbeddingError, InputError

__all__ = ["visible", "attention_rows", "sequence_slices", "renormalize", "overlay_strength", "check_positions"]


def visible(n: int, causal: bool = False, window: int | None = None) -> np.ndarray:
    """Which keys each query of an ``n``-token sequence sees.

    Parameters
    ----------
    n : int
        Tokens in the sequence.
    causal : bool
        Query ``i`` sees only keys ``j <= i``.
    window : int, optional
        Sliding window: query ``i`` sees only keys ``j > i - window``.

    Returns
    -------
    bool array [query_pos, key_pos]
    """
    pos = np.arange(n)
    diff = pos[:, None] - pos[None, :]  # query_pos - key_pos
    ok = np.ones((n, n), bool)
    if causal:
        ok &= diff >= 0
    if window:
        ok &= diff < window
    return ok


def attention_rows(
    q: np.ndarray, k: np.ndarray, scaling: float, causal: bool = False, window: int | None = None
) -> np.ndarray:
    """Attention probabilities of one sequence: ``softmax(scaling · q kᵀ + mask)``.

    Computed in float64, so the result is exact to float32 precision whatever the score range.

    Parameters
    ----------
    q, k : float array [pos, d_head]
        Queries and keys of one sequence.
    scaling : float
        The model's score factor.
    causal : bool
        Mask keys after each query's position.
    window : int, optional
        Sliding window: query ``i`` sees only keys ``j > i - window``.

    Returns
    -------
    float64 array [query_pos, key_pos]
        Each row sums to 1; masked entries are 0.
    """
    s = (np.asarray(q, np.float64) @ np.asarray(k, np.float64).T) * float(scaling)
    if causal or window:
        s = np.where(visible(len(q), causal, window), s, -np.inf)
    s -= s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def sequence_slices(seq: np.ndarray) -> list[slice]:
    """Contiguous token ranges of each sequence (attention never crosses them).

    Parameters
    ----------
    seq : int array [token]
        Sequence id of every token; tokens of one sequence must be contiguous (as in a capture's
        token table).

    Returns
    -------
    list of slice
        One slice per sequence, in token order.
    """
    seq = np.asarray(seq)
    if seq.ndim != 1:
        raise EmbeddingError(f"seq must be 1-D [token], got shape {seq.shape}.")
    if seq.size == 0:
        return []
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    if len(np.unique(seq[starts])) != len(starts):
        raise EmbeddingError(
            "tokens of one sequence must be contiguous in the token table; sort the tokens by (seq, pos) first."
        )
    ends = np.r_[starts[1:], seq.size]
    return [slice(int(a), int(b)) for a, b in zip(starts, ends)]


def check_positions(values: Iterable[int] | None, n: int, what: str) -> np.ndarray:
    """Validated position indices as int64 [k]."""
    idx = np.asarray(list(values) if values is not None else [], dtype=np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise InputError(f"{what} positions {bad.tolist()} are out of range for a sequence of {n} tokens.")
    return idx


def renormalize(
    attention: np.ndarray,
    *,
    key_weights: np.ndarray | None = None,
    hidden_keys: Iterable[int] = (),
    hidden_queries: Iterable[int] = (),
) -> np.ndarray:
    """Reweight keys, hide keys/queries, and renormalise each row.

    ``a'[i, j] = a[i, j] · w[j] · m[j] / Σ_j' a[i, j'] · w[j'] · m[j']`` with ``w`` the key weights
    (value-vector norms for Kobayashi-style weighting, or ones) and ``m`` 0 for hidden keys; hidden
    queries get a zero row (the shape never changes, so ``query_pos`` stays an index into the
    sequence). A row whose visible weight is zero stays zero rather than dividing by zero.

    Parameters
    ----------
    attention : float array [query_pos, key_pos]
        Row-stochastic attention of one sequence.
    key_weights : float array [key_pos], optional
        Multiplier per key; ``None`` = ones.
    hidden_keys, hidden_queries : iterable of int
        Positions to hide.

    Returns
    -------
    float32 array [query_pos, key_pos]
        Rows sum to 1 (or 0 where nothing visible is left).

    Examples
    --------
    >>> a = np.array([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]], np.float32)
    >>> renormalize(a, hidden_keys=[0]).round(3).tolist()[0]
    [0.0, 0.5, 0.5]
    """
    a = np.asarray(attention, dtype=np.float64)
    n_q, n_k = a.shape
    mask = np.ones(n_k)
    mask[check_positions(hidden_keys, n_k, "hidden key")] = 0.0
    if key_weights is not None:
        w = np.asarray(key_weights, dtype=np.float64).reshape(-1)
        if w.shape != (n_k,):
            raise InputError(f"key_weights must have one weight per key ({n_k}); got shape {w.shape}.")
        mask = mask * w
    out = a * mask[None, :]
    total = out.sum(axis=1, keepdims=True)
    out = np.divide(out, total, out=np.zeros_like(out), where=total > 0)
    out[check_positions(hidden_queries, n_q, "hidden query")] = 0.0
    return out.astype(np.float32)


def overlay_strength(heat: np.ndarray) -> np.ndarray:
    """AttentionViz's darkening factor per patch: ``((a − 0.25·min) / max(a − 0.25·min)) ** 0.5``.

    Parameters
    ----------
    heat : float array [...]
        Attention weights (any shape).

    Returns
    -------
    float32 array [...]
        In [0, 1]; 1 at the most-attended patch. Multiply the patch's pixels by it.
    """
    a = np.asarray(heat, dtype=np.float64)
    if a.size == 0:
        return a.astype(np.float32)
    a = a - 0.25 * a.min()
    top = a.max()
    a = a / top if top > 0 else np.zeros_like(a)
    return np.sqrt(np.clip(a, 0.0, 1.0)).astype(np.float32)
