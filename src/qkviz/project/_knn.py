"""Exact k-nearest neighbours by blocked matrix products (torch; on CUDA when present).

In 32-128 dimensions and up to ~50k points, exact kNN through BLAS is faster than building an
approximate index (Annoy, NN-descent) and has no JIT warm-up, so t-SNE's affinities and the
attention map's q–q / k–k neighbourhoods are built from it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exact_knn", "knn_query", "device"]


def device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def exact_knn(x: np.ndarray, k: int, *, metric: str = "euclidean", block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row of ``x``.

    Parameters
    ----------
    x : float array [point, d]
        The points.
    k : int
        Neighbours per point (``1 <= k < point``).
    metric : {"euclidean", "cosine"}
        Distance: Euclidean, or cosine distance ``1 - cos``.
    block : int
        Rows per distance block (bounds memory at ``block * point`` floats).

    Returns
    -------
    indices : int64 array [point, k]
        Neighbours by increasing distance, never the point itself.
    distances : float64 array [point, k]
        The matching distances.
    """
    import torch

    n = x.shape[0]
    dev = device()
    t = torch.as_tensor(np.asarray(x, np.float32), device=dev)
    if metric == "cosine":
        t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    elif metric != "euclidean":
        raise ValueError(f"exact_knn supports 'euclidean' and 'cosine', not {metric!r}")
    sq = (t * t).sum(1)
    idx_out = np.empty((n, k), np.int64)
    dist_out = np.empty((n, k), np.float64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = torch.arange(stop - start, device=dev)
        # Rank by a score that needs one fused pass over the block (the block's distance matrix is
        # the whole cost here): cosine similarity, or |b|^2 - 2 a.b (|a|^2 is the same along a row).
        if metric == "cosine":
            score = t[start:stop] @ t.T
            score[rows, rows + start] = float("-inf")  # never one's own neighbour
            vals, idx = torch.topk(score, k, dim=1, largest=True, sorted=True)
            vals = (1.0 - vals).clamp_min(0)  # cosine distance 1 - cos
        else:
            score = torch.addmm(sq[None, :], t[start:stop], t.T, alpha=-2.0)
            score[rows, rows + start] = float("inf")
            vals, idx = torch.topk(score, k, dim=1, largest=False, sorted=True)
            vals = (vals + sq[start:stop, None]).clamp_min(0).sqrt()
        idx_out[start:stop] = idx.cpu().numpy()
        dist_out[start:stop] = vals.double().cpu().numpy()
    return idx_out, dist_out


def knn_query(
    ref: np.ndarray,
    new: np.ndarray,
    k: int,
    *,
    metric: str = "euclidean",
    candidates: np.ndarray | None = None,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of every new row (exact, by blocked matrix products).

    Unlike :func:`exact_knn`, the new rows are not part of the reference: a new row equal to a
    reference row finds it at distance 0. Used to place new points into a fitted layout.

    Parameters
    ----------
    ref : float array [point, d]
        The reference points.
    new : float array [new_point, d]
        The points to look up.
    k : int
        Neighbours per new point (at most the number of candidates).
    metric : {"euclidean", "cosine"}
    candidates : int array [candidate], optional
        Only these reference rows may be neighbours (default: all); returned indices are still rows
        of ``ref``.
    block : int
        New rows per distance block.

    Returns
    -------
    indices : int64 array [new_point, k]
        Reference rows by increasing distance.
    distances : float64 array [new_point, k]
    """
    import torch

    dev = device()
    r = torch.as_tensor(np.asarray(ref, np.float32), device=dev)
    cand = None
    if candidates is not None:
        cand = torch.as_tensor(np.asarray(candidates, np.int64), device=dev)
        r = r[cand]
    x = torch.as_tensor(np.asarray(new, np.float32), device=dev)
    k = int(min(k, r.shape[0]))
    if metric == "cosine":
        r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    elif metric != "euclidean":
        raise ValueError(f"knn_query supports 'euclidean' and 'cosine', not {metric!r}")
    sq = (r * r).sum(1)
    idx_out = np.empty((x.shape[0], k), np.int64)
    dist_out = np.empty((x.shape[0], k), np.float64)
    for start in range(0, x.shape[0], block):
        xb = x[start : start + block]
        if metric == "cosine":
            vals, idx = torch.topk(xb @ r.T, k, dim=1, largest=True, sorted=True)
            vals = (1.0 - vals).clamp_min(0)
        else:
            score = torch.addmm(sq[None, :], xb, r.T, alpha=-2.0)
            vals, idx = torch.topk(score, k, dim=1, largest=False, sorted=True)
            vals = (vals + (xb * xb).sum(1, keepdim=True)).clamp_min(0).sqrt()
        if cand is not None:
            idx = cand[idx]
        idx_out[start : start + block] = idx.cpu().numpy()
        dist_out[start : start + block] = vals.double().cpu().numpy()
    return idx_out, dist_out
