"""The one definition of attention from stored vectors (numpy).

For one head, query ``i`` and key ``j`` of the same sequence score ``s_ij = scaling · q_i·k_j``;
the model's attention is ``softmax_j(s_ij + mask_ij)``, where the mask hides keys after the query
(causal models) and keys further back than the sliding window. Some families score differently —
soft-capping (Gemma 2), a sink logit (gpt-oss), ALiBi (BLOOM, MPT), relative-position terms (T5,
MPNet, DeBERTa): a :class:`ScoreFunction` holds everything needed to recompute any of them
exactly, and every function here takes one where a plain ``scaling`` would do. Everything in qkviz that needs
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
from dataclasses import dataclass, field, replace
from typing import Literal, overload

import numpy as np

from .errors import EmbeddingError, InputError

__all__ = [
    "ScoreFunction",
    "visible",
    "score_terms",
    "scores",
    "attention_rows",
    "position_effect",
    "sequence_slices",
    "renormalize",
    "overlay_strength",
    "check_positions",
]


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


@dataclass(frozen=True, eq=False)
class ScoreFunction:
    """How one head turns its query and key vectors into attention: everything needed to recompute it.

    For query ``i`` and key ``j`` of one sequence (positions ``p_i``, ``p_j``)::

        z_ij = c · q_i·k_j                                        content (every family)
             + m · p_j                                            ALiBi (BLOOM, MPT)
             + B[p_j − p_i]                                       relative buckets (T5, MPNet)
             + c · (q_i·PK[r(p_i − p_j)] + k_j·PQ[r(p_i − p_j)])  DeBERTa's c2p and p2c terms
        s_ij = cap · tanh(z_ij / cap)                             soft-capping (Gemma 2), else z_ij
        a_ij = exp(s_ij) / (Σ_j' exp(s_ij') + exp(σ))             with a sink (gpt-oss), else softmax

    the sums running over the keys the query sees. ALiBi's textbook ``−m·p_i`` is the same for every
    key of a row, and softmax ignores a constant added to a whole row, so it is left out (a model
    may add any such per-row constant: MPT adds ``−m·(T − 1)`` for the padded length ``T``).

    Attributes
    ----------
    scaling : float
        ``c``, the model's factor on ``q·k``.
    softcap : float or None
        ``cap``.
    sink : float or None
        ``σ``: a learned logit every row competes with, then dropped; rows sum to ``1 − sink share``.
    alibi : float or None
        ``m``, the head's ALiBi slope.
    offset_bias : float array [2L − 1] or None
        ``B``, indexed by ``p_j − p_i + L − 1`` (``L`` = the longest sequence the table covers).
    rel_index : int array [2L − 1] or None
        ``r``: the row of ``pos_key`` / ``pos_query`` for each offset ``p_i − p_j``, at ``p_i − p_j + L − 1``.
    pos_key, pos_query : float array [R, d_head] or None
        DeBERTa's position keys (content → position) and position queries (position → content).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> q, k = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    >>> f = ScoreFunction(scaling=0.5, alibi=0.25)
    >>> f.family, f.has_position_term
    ('alibi', True)
    >>> content, position = score_terms(q, k, f)
    >>> position[0].tolist()                      # + m·p_j: the same for every query
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> a, sink = attention_rows(q, k, ScoreFunction(scaling=0.5, sink=1.0), causal=True, sink_share=True)
    >>> bool(np.allclose(a.sum(axis=1) + sink, 1.0))
    True
    """

    scaling: float
    softcap: float | None = None
    sink: float | None = None
    alibi: float | None = None
    offset_bias: np.ndarray | None = field(default=None, repr=False)
    rel_index: np.ndarray | None = field(default=None, repr=False)
    pos_key: np.ndarray | None = field(default=None, repr=False)
    pos_query: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.softcap is not None and not self.softcap > 0:
            raise InputError(f"softcap must be positive, got {self.softcap!r}")
        if (self.pos_key is not None or self.pos_query is not None) and self.rel_index is None:
            raise InputError("pos_key / pos_query need rel_index (which table row each offset uses)")

    @property
    def family(self) -> str:
        """``"plain"``, ``"soft-capped"``, ``"sink"``, ``"alibi"``, ``"relative"`` or ``"disentangled"``."""
        if self.pos_key is not None or self.pos_query is not None:
            return "disentangled"
        if self.offset_bias is not None:
            return "relative"
        if self.alibi is not None:
            return "alibi"
        if self.sink is not None:
            return "sink"
        if self.softcap is not None:
            return "soft-capped"
        return "plain"

    @property
    def has_position_term(self) -> bool:
        """Whether the scores add something that depends on positions (ALiBi, relative, DeBERTa)."""
        return self.alibi is not None or self.offset_bias is not None or self.rel_index is not None

    @property
    def is_plain(self) -> bool:
        """``scaling · q·k`` and nothing else."""
        return self.family == "plain"


def _as_score(score: float | ScoreFunction) -> ScoreFunction:
    return score if isinstance(score, ScoreFunction) else ScoreFunction(scaling=float(score))


def _positions(pos: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if pos is None else np.asarray(pos, np.int64).reshape(-1)


def _table_length(table: np.ndarray, what: str, top: int) -> int:
    length = (len(table) + 1) // 2
    if top >= length:
        raise InputError(
            f"the {what} table covers offsets up to {length - 1}, but positions up to {top} were asked for"
        )
    return length


def score_terms(
    q: np.ndarray,
    k: np.ndarray,
    score: float | ScoreFunction,
    qpos: np.ndarray | None = None,
    kpos: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The two parts of one head's scores over one sequence, before the cap and the mask.

    Parameters
    ----------
    q : float array [query_pos, d_head]
    k : float array [key_pos, d_head]
    score : float or ScoreFunction
        A float is the plain ``scaling · q·k``.
    qpos, kpos : int array, optional
        Positions of the queries and keys (default ``0..n-1``).

    Returns
    -------
    content, position : float64 array [query_pos, key_pos]
        ``c · q·k`` and the position term (zeros for families without one).
    """
    f = _as_score(score)
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    qp, kp = _positions(qpos, len(q)), _positions(kpos, len(k))
    c = float(f.scaling)
    content = (q @ k.T) * c
    position = np.zeros_like(content)
    top = int(max(qp.max(initial=0), kp.max(initial=0)))
    if f.alibi is not None:
        position += float(f.alibi) * kp[None, :].astype(np.float64)
    if f.offset_bias is not None:
        table = np.asarray(f.offset_bias, np.float64)
        length = _table_length(table, "offset bias", top)
        position += table[kp[None, :] - qp[:, None] + length - 1]
    if f.rel_index is not None:
        lut = np.asarray(f.rel_index, np.int64)
        length = _table_length(lut, "relative index", top)
        r = lut[qp[:, None] - kp[None, :] + length - 1]  # [query, key]: table row of each pair
        if f.pos_key is not None:  # content -> position: q_i · PK[r_ij]
            position += c * np.take_along_axis(q @ np.asarray(f.pos_key, np.float64).T, r, axis=1)
        if f.pos_query is not None:  # position -> content: k_j · PQ[r_ij]
            kq = k @ np.asarray(f.pos_query, np.float64).T  # [key, R]
            position += c * kq[np.arange(len(k))[None, :], r]
    return content, position


def scores(
    q: np.ndarray,
    k: np.ndarray,
    score: float | ScoreFunction,
    qpos: np.ndarray | None = None,
    kpos: np.ndarray | None = None,
) -> np.ndarray:
    """One head's scores over one sequence before the mask: content + position, then the cap.

    Returns
    -------
    float64 array [query_pos, key_pos]
    """
    f = _as_score(score)
    content, position = score_terms(q, k, f, qpos, kpos)
    z = content + position
    return _cap(z, f)


def _cap(z: np.ndarray, f: ScoreFunction) -> np.ndarray:
    """Soft-capping ``cap · tanh(z / cap)`` (Gemma 2), or ``z`` unchanged."""
    if f.softcap is not None:
        return float(f.softcap) * np.tanh(z / float(f.softcap))
    return z


def _softmax_rows(s: np.ndarray, ok: np.ndarray | None, sink: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Masked softmax of each row; without a mask ``s`` (scores made for this call) is overwritten."""
    if ok is not None:
        s = np.where(ok, s, -np.inf)
    return _softmax_inplace(s, sink)


def _softmax_inplace(s: np.ndarray, sink: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of each row of ``s`` (masked entries already ``-inf``), overwriting ``s``.

    In place: the same operations, in the same order, as on fresh arrays (so the same bits), without
    allocating one array per step (the static export runs this for every block of every head).
    """
    top = s.max(axis=-1, keepdims=True)
    if sink is not None:
        top = np.maximum(top, float(sink))  # as gpt-oss does: the sink joins the row maximum
    e = np.exp(np.subtract(s, top, out=s), out=s)
    total = e.sum(axis=-1, keepdims=True)
    if sink is None:
        return np.divide(e, total, out=e), np.zeros(s.shape[:-1])
    es = np.exp(float(sink) - top)
    total = total + es
    return np.divide(e, total, out=e), (es / total)[..., 0]


@overload
def attention_rows(
    q: np.ndarray,
    k: np.ndarray,
    scaling: float | ScoreFunction,
    causal: bool = ...,
    window: int | None = ...,
    *,
    qpos: np.ndarray | None = ...,
    kpos: np.ndarray | None = ...,
    sink_share: Literal[False] = ...,
    lengths: np.ndarray | None = ...,
) -> np.ndarray: ...


@overload
def attention_rows(
    q: np.ndarray,
    k: np.ndarray,
    scaling: float | ScoreFunction,
    causal: bool = ...,
    window: int | None = ...,
    *,
    qpos: np.ndarray | None = ...,
    kpos: np.ndarray | None = ...,
    sink_share: Literal[True],
    lengths: np.ndarray | None = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


def attention_rows(
    q: np.ndarray,
    k: np.ndarray,
    scaling: float | ScoreFunction,
    causal: bool = False,
    window: int | None = None,
    *,
    qpos: np.ndarray | None = None,
    kpos: np.ndarray | None = None,
    sink_share: bool = False,
    lengths: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Attention probabilities of one sequence, as the model computes them.

    ``softmax(scaling · q kᵀ + mask)`` for a plain head (``scaling`` a float); any
    :class:`ScoreFunction` for the other families. Computed in float64, so the result is exact to
    float32 precision whatever the score range.

    Parameters
    ----------
    q, k : float array [pos, d_head]
        Queries and keys of one sequence.
    scaling : float or ScoreFunction
        The model's score factor, or the head's whole score function.
    causal : bool
        Mask keys after each query's position.
    window : int, optional
        Sliding window: query ``i`` sees only keys ``j > i - window``.
    qpos, kpos : int array, optional
        Positions of the queries and keys (default ``0..n-1``); they matter for position terms.
    sink_share : bool
        Also return each row's share taken by the head's sink.
    lengths : int array [seq], optional
        Several sequences at once: ``q``, ``k`` are ``[seq, pos, d_head]``, right-padded to one
        length, and ``lengths`` their real tokens (the same formula, vectorised:
        :meth:`qkviz.Capture.attention_blocks`). Padded keys get no attention and padded query rows
        come back as zeros. Not for heads with a position term (compute those one sequence at a
        time).

    Returns
    -------
    float64 array [query_pos, key_pos] (or [seq, query_pos, key_pos])
        Masked entries are 0; rows sum to 1 (to ``1 − sink share`` with a sink).
    float64 array [query_pos]
        With ``sink_share=True``: the sink's share of each row (zeros without a sink).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> q, k = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    >>> a = attention_rows(q, k, 0.5, causal=True, lengths=np.array([3, 2]))
    >>> bool(np.allclose(a[1, :2, :2], attention_rows(q[1, :2], k[1, :2], 0.5, causal=True)))
    True
    >>> a[1, 2].tolist(), a[1, :, 2].tolist()   # the padding: no row, no column
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    """
    f = _as_score(scaling)
    if lengths is not None:
        a, sink = _padded_rows(q, k, f, causal, window, np.asarray(lengths))
        return (a, sink) if sink_share else a
    if f.is_plain and qpos is None and kpos is None:
        s = (np.asarray(q, np.float64) @ np.asarray(k, np.float64).T) * float(f.scaling)
    else:
        s = scores(q, k, f, qpos, kpos)
    ok = None
    if causal or window:
        if qpos is None and kpos is None and len(q) == len(k):
            ok = visible(len(q), causal, window)
        else:
            diff = _positions(qpos, len(q))[:, None] - _positions(kpos, len(k))[None, :]
            ok = np.ones(s.shape, bool)
            if causal:
                ok &= diff >= 0
            if window:
                ok &= diff < window
    a, sink = _softmax_rows(s, ok, f.sink)
    return (a, sink) if sink_share else a


def _padded_rows(
    q: np.ndarray, k: np.ndarray, f: ScoreFunction, causal: bool, window: int | None, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`attention_rows` of right-padded sequences ``[seq, pos, d_head]`` (``lengths=``)."""
    if f.has_position_term:
        raise InputError(
            f"padded sequences (lengths=) take heads without a position term; this head is {f.family!r}: "
            "compute it one sequence at a time"
        )
    s = np.asarray(q, np.float64) @ np.swapaxes(np.asarray(k, np.float64), -1, -2)  # a fresh array: ours
    s *= float(f.scaling)
    s = _cap(s, f)
    n = s.shape[-1]
    real = np.arange(n) < lengths[:, None]  # [seq, pos]
    ok = visible(n, causal, window)
    # padded keys are hidden; padded query rows see everything (finite), then become 0
    ok = (ok & real[:, None, :]) | ~real[:, :, None]
    np.copyto(s, -np.inf, where=~ok)
    a, sink = _softmax_inplace(s, f.sink)
    a *= real[:, :, None]
    return a, sink * real


def position_effect(
    q: np.ndarray,
    k: np.ndarray,
    score: ScoreFunction,
    causal: bool = False,
    window: int | None = None,
    *,
    qpos: np.ndarray | None = None,
    kpos: np.ndarray | None = None,
) -> np.ndarray:
    """How much each query's attention owes to the position term: 0 (none) to 1 (all of it).

    The total-variation distance ``½ Σ_j |a_ij − a'_ij|`` between the head's attention ``a`` and the
    attention ``a'`` it would have without its position term (ALiBi, relative buckets, DeBERTa's
    c2p/p2c); zeros for heads without one.

    Returns
    -------
    float64 array [query_pos]
    """
    a = attention_rows(q, k, score, causal, window, qpos=qpos, kpos=kpos)
    if not score.has_position_term:
        return np.zeros(len(a))
    bare = replace(score, alibi=None, offset_bias=None, rel_index=None, pos_key=None, pos_query=None)
    b = attention_rows(q, k, bare, causal, window, qpos=qpos, kpos=kpos)
    return 0.5 * np.abs(a - b).sum(axis=1)


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
