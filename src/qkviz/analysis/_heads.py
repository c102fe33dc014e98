"""The head atlas: what each head does, as scores pooled over every query of a capture.

Every score is a mean over the *queries* of the whole capture (each query row counts once, so a
long sequence weighs more than a short one: never a mean of per-sequence means), computed from the
head's exact attention ``A`` as the source returns it (:meth:`qkviz.Capture.attention`, so the
scores stay exact for every score function the capture knows). For query ``i`` of a sequence and
its keys ``j`` (positions within the sequence):

==================  ===============================================================  ==================
score               per query ``i``                                                  queries counted
==================  ===============================================================  ==================
``previous_token``  ``A[i, i-1]``                                                    ``i >= 1``
``first_token``     ``A[i, 0]`` (the attention sink)                                 all
``self``            ``A[i, i]``                                                      all
``special``         ``Σ_{j special} A[i, j]``                                        all
``entropy``         ``-Σ_j A[i, j] ln A[i, j]`` (nats; ``0 ln 0 = 0``)               all
``mean_distance``   ``Σ_j A[i, j] |i - j|`` (positions)                              all
``induction``       ``Σ_{j < i, t_j = t_i} A[i, j+1]``                               those with an
                                                                                     earlier copy
==================  ===============================================================  ==================

``t`` is the token id (the token string where the table has no ``token_id``). On the standard
induction probe (:func:`qkviz.data.induction_inputs`: a random span repeated once) each query of
the repeat has exactly one earlier copy, so ``induction`` is the mean of ``A[i, j+1]`` over those
pairs; on natural text it is the attention *mass* a query puts on the tokens that followed earlier
copies of itself. ``special`` is ``nan`` when the token table has no ``special`` column;
``induction`` is ``nan`` when no query has an earlier copy (e.g. images).

With value vectors captured, each score also comes **value-weighted** (columns ending ``_vw``): the
same formula on ``A'[i, j] = A[i, j] ‖v_j‖ / Σ_j' A[i, j'] ‖v_j'‖``
(:func:`qkviz.attention.renormalize`), which discounts keys that are attended to but write little
(Kobayashi et al. 2020: the first token of decoders is the classic case).

Two heads are compared by the **Jensen–Shannon divergence** between their attention rows for the
same query, in bits (so in ``[0, 1]``), averaged over queries: :func:`head_distances` (heads of one
capture, for the similar-heads map) and :func:`compare_heads` (the same head in two captures of the
same texts).

Examples
--------
A previous-token head over one 4-token sequence:

>>> import numpy as np, pandas as pd
>>> class Source:
...     tokens = pd.DataFrame({"seq": [0, 0, 0, 0], "pos": [0, 1, 2, 3]})
...     def attention(self, layer, head, seq):
...         a = np.eye(4, k=-1) * 0.9 + np.eye(4) * 0.1
...         a[0, 0] = 1.0
...         return a
>>> df = head_scores(Source(), cells=[(0, 0)])
>>> round(float(df["previous_token"][0]), 3), round(float(df["first_token"][0]), 3)
(0.9, 0.475)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..attention import renormalize, sequence_slices
from ..errors import InputError
from ._panel import AttentionSource

__all__ = [
    "SCORES",
    "head_scores",
    "js_divergence",
    "head_distances",
    "similar_heads_map",
    "compare_heads",
    "match_sequences",
]

#: The head scores, in the order of :func:`head_scores`' columns (see the module docstring).
SCORES = ("previous_token", "first_token", "self", "special", "entropy", "mean_distance", "induction")

#: Attention entries gathered into one buffer at a time (bounds memory: 8 bytes each, plus the
#: index arrays of one chunk of sequences).
CHUNK_ENTRIES = 1 << 22

_LN2 = math.log(2.0)

HeadKey = tuple[int, int]


# --------------------------------------------------------------------------------------------------
# the structure of a capture's sequences: which attention entries each score reads


@dataclass
class _Chunk:
    """Consecutive sequences whose attention matrices, raveled and concatenated, form one buffer.

    Every index is into that buffer; ``dist`` holds ``|i - j|`` of every entry.
    """

    seqs: list[int]
    rows: list[slice]  # token rows of each sequence
    size: int  # Σ n²
    prev: np.ndarray
    diag: np.ndarray
    first: np.ndarray
    special: np.ndarray
    induction: np.ndarray
    dist: np.ndarray


@dataclass
class _Layout:
    """How a token table splits into sequences and score entries (shared by every head)."""

    slices: list[slice]
    seq_ids: list[int]
    n_queries: int
    n_prev: int
    n_induction: int
    has_special: bool
    chunk_bounds: list[tuple[int, int]]  # [first, stop) sequence indices of each chunk
    tokens: pd.DataFrame
    _cache: list[_Chunk] | None = None

    def chunks(self) -> Iterable[_Chunk]:
        """The chunks, built once and kept when they are small, else rebuilt on every pass."""
        if self._cache is not None:
            return self._cache
        built = (self._build(a, b) for a, b in self.chunk_bounds)
        if sum((s.stop - s.start) ** 2 for s in self.slices) <= 4 * CHUNK_ENTRIES:
            self._cache = list(built)  # at most ~100 MB of index arrays: keep them for every head
            return self._cache
        return built

    def _build(self, a: int, b: int) -> _Chunk:
        slices = self.slices[a:b]
        special_col = self.tokens["special"].to_numpy(bool) if self.has_special else None
        ids = _token_ids(self.tokens)
        prev, diag, first, spec, ind, dist = [], [], [], [], [], []
        off = 0
        for sl in slices:
            n = sl.stop - sl.start
            i = np.arange(n, dtype=np.int64)
            base = off + i * n  # flat index of (i, 0)
            prev.append(base[1:] + i[:-1])
            diag.append(base + i)
            first.append(base)
            if special_col is not None:
                cols = np.flatnonzero(special_col[sl])
                spec.append((base[:, None] + cols[None, :]).ravel())
            qi, kj = _earlier_copies(ids[sl])
            ind.append(off + qi * n + kj + 1)
            dist.append(np.abs(i[:, None] - i[None, :]).astype(np.float32).ravel())
            off += n * n

        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        return _Chunk(
            seqs=self.seq_ids[a:b],
            rows=slices,
            size=off,
            prev=cat(prev),
            diag=cat(diag),
            first=cat(first),
            special=cat(spec),
            induction=cat(ind),
            dist=cat(dist).astype(np.float32),
        )


def _token_ids(tokens: pd.DataFrame) -> np.ndarray:
    """What "the same token" means for induction: the token id, else the token string."""
    if "token_id" in tokens:
        return tokens["token_id"].to_numpy(np.int64)
    if "token" in tokens:
        return pd.factorize(tokens["token"].astype(str))[0].astype(np.int64)
    return np.arange(len(tokens), dtype=np.int64)  # no token identity: nothing repeats


def _earlier_copies(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``j < i``, of positions holding the same token: int64 [pair] each."""
    n = len(ids)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty
    order = np.argsort(ids, kind="stable")  # equal ids become runs, positions ascending within
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    sizes = np.diff(np.r_[starts, n])
    qs, ks = [], []
    for s, m in zip(starts[sizes > 1], sizes[sizes > 1]):
        pos = order[s : s + m]
        a, b = np.triu_indices(m, k=1)  # a < b: pos[a] is earlier than pos[b]
        qs.append(pos[b])
        ks.append(pos[a])
    if not qs:
        empty = np.zeros(0, np.int64)
        return empty, empty
    return np.concatenate(qs).astype(np.int64), np.concatenate(ks).astype(np.int64)


def _layout(tokens: pd.DataFrame, seqs: Sequence[int] | None = None) -> _Layout:
    if "seq" not in tokens:
        raise InputError("the token table needs a 'seq' column (one row per token).")
    slices = sequence_slices(tokens["seq"].to_numpy())
    seq_col = tokens["seq"].to_numpy()
    seq_ids = [int(seq_col[s.start]) for s in slices]
    if seqs is not None:
        keep = set(int(s) for s in seqs)
        pairs = [(sl, s) for sl, s in zip(slices, seq_ids) if s in keep]
        slices, seq_ids = [p[0] for p in pairs], [p[1] for p in pairs]
    if not slices:
        raise InputError("no tokens to score: the capture holds no sequences (or none was chosen).")
    ids = _token_ids(tokens)
    n_ind = 0
    for sl in slices:
        qi, _ = _earlier_copies(ids[sl])
        n_ind += len(np.unique(qi))
    bounds, start, acc = [], 0, 0
    for idx, sl in enumerate(slices):
        size = (sl.stop - sl.start) ** 2
        if acc and acc + size > CHUNK_ENTRIES:
            bounds.append((start, idx))
            start, acc = idx, 0
        acc += size
    bounds.append((start, len(slices)))
    lengths = [s.stop - s.start for s in slices]
    return _Layout(
        slices=slices,
        seq_ids=seq_ids,
        n_queries=int(sum(lengths)),
        n_prev=int(sum(n - 1 for n in lengths)),
        n_induction=int(n_ind),
        has_special="special" in tokens,
        chunk_bounds=bounds,
        tokens=tokens,
    )


# --------------------------------------------------------------------------------------------------
# head scores


def _cells(source: Any, cells: Iterable[HeadKey] | None) -> list[HeadKey]:
    if cells is not None:
        out = [(int(la), int(h)) for la, h in cells]
    elif hasattr(source, "cells"):
        out = [(int(la), int(h)) for la, h in source.cells]
    else:
        out = [(int(la), int(h)) for la in source.layers for h in source.heads]
    if not out:
        raise InputError("no heads to score: cells is empty.")
    return out


def _value_norms(source: Any, layer: int, head: int) -> np.ndarray:
    return np.linalg.norm(np.asarray(source.v(layer, head), np.float64), axis=1)


def _has_values(source: Any) -> bool:
    try:
        return bool(getattr(source, "has_values", False)) and callable(getattr(source, "v", None))
    except (AttributeError, LookupError, ValueError):
        return False


def _scores_of(buf: np.ndarray, ch: _Chunk) -> np.ndarray:
    """Sums (not yet means) of every score over one chunk's buffer: float64 [score]."""
    from scipy.special import xlogy

    return np.array(
        [
            buf[ch.prev].sum(),
            buf[ch.first].sum(),
            buf[ch.diag].sum(),
            buf[ch.special].sum(),
            -xlogy(buf, buf).sum(),
            (buf * ch.dist).sum(),  # not buf @ dist: a mixed-dtype matmul skips BLAS (1000x slower)
            buf[ch.induction].sum(),
        ]
    )


def head_scores(
    source: AttentionSource,
    cells: Iterable[HeadKey] | None = None,
    *,
    value_weighted: bool | None = None,
    seqs: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The head atlas: one row per (layer, head) with every score of :data:`SCORES`.

    Parameters
    ----------
    source : Capture or Embedding with its capture
        Anything with a token table and ``attention(layer, head, seq)``.
    cells : iterable of (layer, head), optional
        Which heads (default: every captured head, or every head of an embedding's grid).
    value_weighted : bool, optional
        Add the value-weighted scores (columns ``<score>_vw``); default: when the capture holds
        value vectors.
    seqs : sequence of int, optional
        Score only these sequences (default: all).

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``head``, the scores (see the module docstring for each definition), and the
        ``_vw`` columns when value-weighted; ``df.attrs`` holds the query counts
        (``n_queries``, ``n_previous``, ``n_induction``).

    Raises
    ------
    InputError
        No heads or no tokens, or ``value_weighted=True`` without value vectors.
    """
    cells_ = _cells(source, cells)
    tokens = source.tokens
    lay = _layout(tokens, seqs)
    with_values = _has_values(source) if value_weighted is None else bool(value_weighted)
    if with_values and not _has_values(source):
        raise InputError(
            "value-weighted scores need value vectors; capture again with qkviz.capture(..., values=True)."
        )
    denom = np.array(
        [lay.n_prev, lay.n_queries, lay.n_queries, lay.n_queries, lay.n_queries, lay.n_queries, lay.n_induction],
        np.float64,
    )
    rows = []
    for layer, head in cells_:
        sums = np.zeros(len(SCORES))
        sums_vw = np.zeros(len(SCORES))
        vnorm = _value_norms(source, layer, head) if with_values else None
        for ch in lay.chunks():
            buf = np.empty(ch.size, np.float64)
            buf_vw = np.empty(ch.size, np.float64) if vnorm is not None else None
            off = 0
            for s, sl in zip(ch.seqs, ch.rows):
                a = np.asarray(source.attention(layer, head, s), np.float64)
                n = sl.stop - sl.start
                if a.shape != (n, n):
                    raise InputError(f"attention of (layer {layer}, head {head}, seq {s}) is {a.shape}, not {(n, n)}")
                buf[off : off + n * n] = a.ravel()
                if buf_vw is not None and vnorm is not None:
                    buf_vw[off : off + n * n] = renormalize(a, key_weights=vnorm[sl]).ravel()
                off += n * n
            sums += _scores_of(buf, ch)
            if buf_vw is not None:
                sums_vw += _scores_of(buf_vw, ch)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / denom
            means_vw = sums_vw / denom
        row: dict[str, Any] = {"layer": layer, "head": head}
        for name, v in zip(SCORES, means):
            row[name] = float(v)
        if not lay.has_special:
            row["special"] = float("nan")
        if with_values:
            for name, v in zip(SCORES, means_vw):
                row[f"{name}_vw"] = float(v) if (name != "special" or lay.has_special) else float("nan")
        rows.append(row)
    columns = ["layer", "head", *SCORES, *([f"{s}_vw" for s in SCORES] if with_values else [])]
    df = pd.DataFrame(rows, columns=columns)
    df["layer"] = df["layer"].astype(np.int64)
    df["head"] = df["head"].astype(np.int64)
    df.attrs.update(n_queries=lay.n_queries, n_previous=lay.n_prev, n_induction=lay.n_induction)
    return df


# --------------------------------------------------------------------------------------------------
# Jensen-Shannon divergence between attention rows


def js_divergence(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Jensen–Shannon divergence in bits between distributions along ``axis``.

    ``JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m)`` with ``m = (p + q) / 2``; in ``[0, 1]``, 0 exactly
    when ``p = q``; its square root is a metric (Endres & Schindelin 2003).

    Examples
    --------
    >>> float(js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])))
    1.0
    """
    from scipy.special import xlogy

    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    m = 0.5 * (p + q)
    js = 0.5 * (xlogy(p, p).sum(axis) + xlogy(q, q).sum(axis)) - xlogy(m, m).sum(axis)
    return np.clip(js / _LN2, 0.0, 1.0)


def _sample_seqs(lay: _Layout, max_queries: int, seed: int) -> list[int]:
    """Sequences in a seeded random order until they hold ``max_queries`` queries (all if fewer)."""
    order = np.random.default_rng(seed).permutation(len(lay.slices))
    chosen, total = [], 0
    for i in order:
        if total >= max_queries:
            break
        chosen.append(int(i))
        total += lay.slices[i].stop - lay.slices[i].start
    return sorted(chosen)


def head_distances(
    source: AttentionSource,
    cells: Iterable[HeadKey] | None = None,
    *,
    max_queries: int = 2048,
    seed: int = 0,
) -> tuple[list[HeadKey], np.ndarray]:
    """How differently every two heads attend: mean Jensen–Shannon divergence over the same queries.

    For heads ``a`` and ``b``, ``D[a, b]`` is the mean over query rows ``i`` of
    ``JS(A_a[i], A_b[i])`` (bits): two heads that send every query to the same keys score 0, heads
    with disjoint attention 1. The rows are those of a seeded random sample of whole sequences
    holding about ``max_queries`` queries (every sequence when the capture is smaller), the same
    sample for every head.

    Parameters
    ----------
    source : Capture or Embedding with its capture
    cells : iterable of (layer, head), optional
    max_queries : int
        Query rows to compare on (memory: ``heads × Σ n²`` floats of the sample).
    seed : int
        Which sequences are sampled.

    Returns
    -------
    cells : list of (layer, head)
    distances : float64 array [head, head]
        Symmetric, zero diagonal, in ``[0, 1]``.
    """
    cells_ = _cells(source, cells)
    lay = _layout(source.tokens)
    picked = _sample_seqs(lay, max(1, int(max_queries)), seed)
    rows = [lay.slices[i] for i in picked]
    seqs = [lay.seq_ids[i] for i in picked]
    n_rows = sum(s.stop - s.start for s in rows)
    size = sum((s.stop - s.start) ** 2 for s in rows)
    stack = np.empty((len(cells_), size), np.float32)
    for c, (layer, head) in enumerate(cells_):
        off = 0
        for s, sl in zip(seqs, rows):
            n = sl.stop - sl.start
            stack[c, off : off + n * n] = np.asarray(source.attention(layer, head, s), np.float32).ravel()
            off += n * n
    return cells_, _pairwise_js(stack, n_rows)


def _plogp(m: np.ndarray) -> np.ndarray:
    """``Σ m ln m`` along the last axis in float32 arithmetic (4x faster than ``xlogy``), summed in
    float64; ``0 ln 0 = 0`` since ``0 · ln(tiny)`` is 0."""
    m = np.asarray(m, np.float32)
    return (m * np.log(np.maximum(m, np.finfo(np.float32).tiny))).sum(axis=-1, dtype=np.float64)


def _pairwise_js(stack: np.ndarray, n_rows: int) -> np.ndarray:
    """Mean row JS (bits) between every two heads' concatenated rows: ``stack`` is [head, entry].

    ``Σ_rows JS = ½ Σ p ln p + ½ Σ q ln q − Σ m ln m``: the first two terms are per head, only the
    last is per pair.
    """
    h = stack.shape[0]
    self_term = np.array([_plogp(r) for r in stack]) if h else np.zeros(0)
    out = np.zeros((h, h))
    block = max(1, int(CHUNK_ENTRIES // max(stack.shape[1], 1)))
    for a in range(h):
        for b0 in range(a + 1, h, block):
            m = 0.5 * (stack[a][None, :] + stack[b0 : b0 + block])
            out[a, b0 : b0 + block] = 0.5 * (self_term[a] + self_term[b0 : b0 + block]) - _plogp(m)
    out = out + out.T
    return np.clip(out / (_LN2 * max(n_rows, 1)), 0.0, 1.0)


def similar_heads_map(
    source: AttentionSource,
    cells: Iterable[HeadKey] | None = None,
    *,
    max_queries: int = 2048,
    seed: int = 0,
    distances: tuple[list[HeadKey], np.ndarray] | None = None,
) -> pd.DataFrame:
    """A 2-D map of heads in which heads that attend alike sit together.

    Classical multidimensional scaling of the Jensen–Shannon *distances* ``sqrt(D)`` between heads
    (:func:`head_distances`; the square root of the divergence is a metric, so the map is the
    best 2-D Euclidean picture of it in the least-squares sense of Torgerson's MDS).

    Parameters
    ----------
    source, cells, max_queries, seed
        See :func:`head_distances`.
    distances : (cells, matrix), optional
        A result of :func:`head_distances` to reuse.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``head``, ``x``, ``y``, and ``nearest_layer`` / ``nearest_head`` / ``nearest_js``:
        the most similar other head. ``df.attrs["distances"]`` is the divergence matrix.
    """
    cells_, d = (
        distances if distances is not None else head_distances(source, cells, max_queries=max_queries, seed=seed)
    )
    xy = classical_mds(np.sqrt(d), 2)
    h = len(cells_)
    masked = d + np.diag(np.full(h, np.inf)) if h > 1 else d
    near = masked.argmin(axis=1) if h > 1 else np.zeros(h, int)
    df = pd.DataFrame(
        {
            "layer": [c[0] for c in cells_],
            "head": [c[1] for c in cells_],
            "x": xy[:, 0],
            "y": xy[:, 1],
            "nearest_layer": [cells_[j][0] for j in near],
            "nearest_head": [cells_[j][1] for j in near],
            "nearest_js": [float(d[i, j]) if h > 1 else float("nan") for i, j in enumerate(near)],
        }
    )
    df.attrs["distances"] = d
    return df


def classical_mds(dist: np.ndarray, dim: int = 2) -> np.ndarray:
    """Torgerson's classical MDS: coordinates whose Euclidean distances best match ``dist``.

    Signs are fixed (the largest-magnitude coordinate of each axis is positive), so the result is
    deterministic. Returns float64 [point, dim] (zeros where the data has fewer dimensions).
    """
    d = np.asarray(dist, np.float64)
    n = d.shape[0]
    out = np.zeros((n, dim))
    if n < 2:
        return out
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh(b)
    order = np.argsort(vals)[::-1][:dim]
    for c, k in enumerate(order):
        if vals[k] <= 1e-12:
            continue
        v = vecs[:, k] * math.sqrt(vals[k])
        if v[np.argmax(np.abs(v))] < 0:
            v = -v
        out[:, c] = v
    return out


# --------------------------------------------------------------------------------------------------
# two captures of the same texts


def match_sequences(a: AttentionSource, b: AttentionSource) -> list[tuple[int, int]]:
    """Pairs ``(seq_a, seq_b)`` of sequences that hold the same tokens in both sources.

    Sequences are paired by text (the ``sequences`` tables' ``text``, first occurrence each), or by
    index when a source has no sequence texts; a pair counts only when both tokenise it to the same
    tokens (token ids, else token strings), position for position.
    """
    ta, tb = a.tokens, b.tokens
    sa, sb = sequence_slices(ta["seq"].to_numpy()), sequence_slices(tb["seq"].to_numpy())
    ida, idb = ta["seq"].to_numpy(), tb["seq"].to_numpy()
    seq_a = {int(ida[s.start]): s for s in sa}
    seq_b = {int(idb[s.start]): s for s in sb}
    texts_a = _texts(a, seq_a)
    texts_b = _texts(b, seq_b)
    where_b: dict[str, int] = {}
    for s, text in texts_b.items():
        where_b.setdefault(text, s)
    col = "token_id" if "token_id" in ta and "token_id" in tb else "token" if "token" in ta and "token" in tb else None
    pairs = []
    for s, text in texts_a.items():
        t = where_b.get(text)
        if t is None:
            continue
        ra, rb = seq_a[s], seq_b[t]
        if ra.stop - ra.start != rb.stop - rb.start:
            continue
        if col is not None and not np.array_equal(ta[col].to_numpy()[ra], tb[col].to_numpy()[rb]):
            continue
        pairs.append((s, t))
    return pairs


def _texts(source: Any, seqs: dict[int, slice]) -> dict[int, str]:
    table = getattr(source, "sequences", None)
    if table is not None and "text" in table and (table["text"].astype(str) != "").any():
        lookup = dict(zip(table["seq"].astype(int), table["text"].astype(str)))
        return {s: lookup.get(s, f"\x00{s}") for s in seqs}
    return {s: f"\x00{s}" for s in seqs}  # no texts: pair by index


def compare_heads(
    a: AttentionSource,
    b: AttentionSource,
    cells: Iterable[HeadKey] | None = None,
    *,
    scores: bool = True,
) -> pd.DataFrame:
    """Per head, how differently two captures attend: ``js`` plus the change of every head score.

    ``js`` is the mean over query rows of ``JS(A_a[i], A_b[i])`` (bits), pooled over the queries of
    every sequence both captures hold with identical tokens (:func:`match_sequences`): two
    checkpoints of one model, or base and fine-tuned, over the same texts. ``nan`` when no sequence
    matches (two different corpora): then compare the scores.

    Parameters
    ----------
    a, b : Capture or Embedding with its capture
    cells : iterable of (layer, head), optional
        Default: every head both have.
    scores : bool
        Also compute both captures' :func:`head_scores` and report ``delta_<score>`` = b − a.

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``head``, ``js``, and ``delta_<score>`` for every score of :data:`SCORES`;
        ``df.attrs``: ``n_matched_sequences``, ``n_matched_queries``, and (with ``scores``) the two
        score tables ``scores_a`` and ``scores_b``.
    """
    if cells is None:
        cb = set(_cells(b, None))
        cells_ = [c for c in _cells(a, None) if c in cb]
        if not cells_:
            raise InputError("the two sources share no (layer, head); compare captures of the same architecture.")
    else:
        cells_ = _cells(a, cells)
    pairs = match_sequences(a, b)
    ta_slices = {int(a.tokens["seq"].to_numpy()[s.start]): s for s in sequence_slices(a.tokens["seq"].to_numpy())}
    n_rows = sum(ta_slices[s].stop - ta_slices[s].start for s, _ in pairs)
    js = np.full(len(cells_), np.nan)
    if pairs:
        from scipy.special import xlogy

        for c, (layer, head) in enumerate(cells_):
            total = 0.0
            for sa, sb in pairs:
                p = np.asarray(a.attention(layer, head, sa), np.float64)
                q = np.asarray(b.attention(layer, head, sb), np.float64)
                m = 0.5 * (p + q)
                total += 0.5 * (xlogy(p, p).sum() + xlogy(q, q).sum()) - xlogy(m, m).sum()
            js[c] = max(0.0, total / (_LN2 * n_rows))
    df = pd.DataFrame({"layer": [c[0] for c in cells_], "head": [c[1] for c in cells_], "js": js})
    df.attrs.update(n_matched_sequences=len(pairs), n_matched_queries=int(n_rows))
    if scores:
        sa_df = head_scores(a, cells_, value_weighted=False)
        sb_df = head_scores(b, cells_, value_weighted=False)
        for name in SCORES:
            df[f"delta_{name}"] = sb_df[name].to_numpy() - sa_df[name].to_numpy()
        df.attrs.update(scores_a=sa_df, scores_b=sb_df)
    return df
