"""Sparse affinities for the neighbour-embedding layouts: kNN, in-sequence score links, q→k links.

All return symmetric ``scipy.sparse.csr_matrix [point, point]`` matrices summing to 1, over a head's
joint cloud (rows ``0..n-1`` its queries, ``n..2n-1`` its keys), ready to be mixed with weights and
handed to openTSNE (``PrecomputedAffinities``) or to the torch optimiser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..attention import ScoreFunction, scores, sequence_slices, visible
from ..errors import EmbeddingError
from ._knn import neighbours

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["knn_affinities", "sequence_links", "query_key_links", "mix"]


def _normalised(p: sp.spmatrix) -> sp.csr_matrix:
    p = (p + p.T).tocsr()
    total = p.sum()
    return p / total if total > 0 else p


def knn_affinities(
    x: np.ndarray,
    *,
    n_neighbors: int = 15,
    perplexity: float | None = None,
    metric: str = "euclidean",
    backend: str = "auto",
    n_jobs: int = 1,
) -> sp.csr_matrix:
    """Neighbour affinities of a cloud: uniform over ``n_neighbors``, or perplexity-calibrated.

    Parameters
    ----------
    x : float array [point, d]
    n_neighbors : int
        Neighbours per point of the uniform kernel (used when ``perplexity`` is ``None``).
    perplexity : float, optional
        Gaussian kernels calibrated to this perplexity over ``3 × perplexity`` neighbours (openTSNE's
        ``PerplexityBasedNN``); lowered to ``(point − 1) / 3`` for small clouds.
    metric, backend
        See :func:`qkviz.project._knn.neighbours`.

    Returns
    -------
    scipy.sparse.csr_matrix [point, point]
        Symmetric, summing to 1.
    """
    import scipy.sparse as sp
    from openTSNE.affinity import joint_probabilities_nn

    n = len(x)
    if perplexity is None:
        k = max(1, min(int(n_neighbors), n - 1))
        g = neighbours(x, k, metric=metric, backend=backend)
        rows = np.repeat(np.arange(n), k)
        p = sp.csr_matrix((np.ones(n * k), (rows, g.indices.ravel())), shape=(n, n))
        return _normalised(p)
    perp = min(float(perplexity), (n - 1) / 3.0)
    k = max(1, min(n - 1, int(3 * perp)))
    g = neighbours(x, k, metric=metric, backend=backend)
    p = joint_probabilities_nn(g.indices, g.distances, [perp], symmetrize=True, n_jobs=n_jobs)
    return p.tocsr() / p.sum()


def sequence_links(
    q: np.ndarray,
    k: np.ndarray,
    seq: np.ndarray,
    score: float | ScoreFunction,
    m: int,
    *,
    causal: bool = False,
    window: int | None = None,
    pos: np.ndarray | None = None,
    kseq: np.ndarray | None = None,
) -> sp.csr_matrix:
    """Links from every query to the ``m`` keys of its own sequence it scores highest.

    The score is the model's own (:func:`qkviz.attention.scores`: ``scaling · q·k`` plus any
    position term and soft-cap), over the keys the query sees (causal mask, sliding window), so the
    ranking is exactly the ranking of the head's attention, computed from the vectors without any
    softmax. Linear in tokens × sequence length.

    Parameters
    ----------
    q : float array [query, d_head]
    k : float array [key, d_head]
        The head's queries and keys as captured (the score function is defined on them).
    seq : int array [query]
        Sequence of each query (contiguous runs); also of each key unless ``kseq`` is given.
    score : float or ScoreFunction
    m : int
        Keys per query (fewer when the query sees fewer).
    causal, window
        The head's mask (self-attention only).
    pos : int array [query], optional
        Token positions (default ``0..len - 1`` within each sequence); they matter for position
        terms (self-attention only).
    kseq : int array [key], optional
        Sequence of each key, for cross-attention (queries and keys from different token streams):
        a query then ranks the keys with its own sequence id.

    Returns
    -------
    scipy.sparse.csr_matrix [point, point]
        Symmetric (a key is also linked to the queries that rank it highly), uniform weights,
        summing to 1; ``point = query + key``, queries first.
    """
    import scipy.sparse as sp

    nq, nk = len(q), len(k)
    cross = kseq is not None
    if len(seq) != nq or (kseq is None and nk != nq) or (kseq is not None and len(kseq) != nk):
        raise EmbeddingError(
            f"seq must give one sequence id per query and key, got {len(seq)} ids for {nq} queries and {nk} keys."
        )
    m = int(m)
    if m < 1:
        raise EmbeddingError(f"seq_keys must be >= 1, got {m}.")
    if kseq is not None:
        kslices = {int(kseq[sl.start]): sl for sl in sequence_slices(kseq)}
    rows, cols = [], []
    for qs in sequence_slices(seq):
        ks = kslices.get(int(seq[qs.start])) if cross else qs
        if ks is None:  # no keys of this sequence (cross-attention without encoder tokens)
            continue
        p = None if pos is None or cross else pos[qs]
        s = scores(q[qs], k[ks], score, p, p)
        if not cross and (causal or window):
            ok = visible(qs.stop - qs.start, causal, window) if p is None else _visible_at(p, causal, window)
            s = np.where(ok, s, -np.inf)
        keep = min(m, ks.stop - ks.start)
        top = np.argpartition(-s, keep - 1, axis=1)[:, :keep]
        r = np.repeat(np.arange(qs.stop - qs.start), keep)
        c = top.ravel()
        seen = np.isfinite(s[r, c])  # a causal query near the start sees fewer than m keys
        rows.append(r[seen] + qs.start)
        cols.append(c[seen] + ks.start)
    r_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c_all = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    n = nq + nk
    p = sp.csr_matrix((np.ones(len(r_all)), (r_all, c_all + nq)), shape=(n, n))
    return _normalised(p)


def _visible_at(pos: np.ndarray, causal: bool, window: int | None) -> np.ndarray:
    diff = pos[:, None] - pos[None, :]
    ok = np.ones(diff.shape, bool)
    if causal:
        ok &= diff >= 0
    if window:
        ok &= diff < window
    return ok


def query_key_links(X: np.ndarray, m: int) -> sp.csr_matrix:
    """Links from each query to its ``m`` highest-dot-product keys over the whole corpus.

    Parameters
    ----------
    X : float array [point, d]
        Queries stacked over keys (``point = 2n``). With the dot lift, ``q̃·k̃ ∝ q·k / ‖q‖``,
        which orders each query's keys exactly as ``q·k`` does.
    m : int
        Keys per query.

    Returns
    -------
    scipy.sparse.csr_matrix [point, point]
        Symmetric, summing to 1.

    Notes
    -----
    Exact and quadratic in tokens (one ``[4096, token]`` block of products at a time). On heads
    whose every query scores a few high-norm "sink" keys highest, all links land on those keys.
    """
    import scipy.sparse as sp
    import torch

    from ._knn import device

    n = len(X) // 2
    m = max(1, min(int(m), n))
    dev = device()
    q = torch.as_tensor(np.asarray(X[:n], np.float32), device=dev)
    k = torch.as_tensor(np.asarray(X[n:], np.float32), device=dev)
    cols = np.empty((n, m), np.int64)
    for start in range(0, n, 4096):  # bounded memory: [block, n] scores at a time
        s = q[start : start + 4096] @ k.T
        cols[start : start + 4096] = torch.topk(s, m, dim=1).indices.cpu().numpy()
    rows = np.repeat(np.arange(n), m)
    p = sp.csr_matrix((np.ones(n * m), (rows, cols.ravel() + n)), shape=(2 * n, 2 * n))
    return _normalised(p)


def mix(parts: list[tuple[float, sp.csr_matrix]]) -> sp.csr_matrix:
    """``Σ wᵢ Pᵢ`` over the parts with positive weight, renormalised to sum 1."""
    used = [(float(w), p) for w, p in parts if w > 0]
    if not used:
        raise EmbeddingError("the affinity weights are all zero: nothing to lay out.")
    total = sum(w for w, _ in used)
    out = used[0][1] * (used[0][0] / total)
    for w, p in used[1:]:
        out = out + p * (w / total)
    return out.tocsr()
