"""k-nearest neighbours of a head's cloud: one function, exact where that is faster, approximate above.

Every layout that needs a neighbour graph (t-SNE's affinities, UMAP, the attention map's q–q and
k–k neighbourhoods) asks :func:`neighbours`, which picks the backend by size and device:

* **exact** (:func:`exact_knn`): blocked matrix products through torch — BLAS on the CPU, and on
  CUDA when torch sees a GPU (at every size there: the device does the N² products faster than the
  layout's optimiser runs);
* **IVF** (:func:`ivf_knn`): faiss's inverted-file index over k-means cells of a fixed size (256
  points, 4 cells searched per point), so its cost grows about 2× per doubling of points. On a
  joint q/k cloud it finds 92–97 % of the exact 15 nearest neighbours; the layouts made from it
  score the same recall@5 as from exact kNN (within 0.002 on MiniLM and SmolLM2 heads).

Measured on MiniLM heads (one thread, CPU seconds), exact kNN takes 0.03 s at 2,000 points and
14 s at 48,000; faiss IVF 0.04 s and 0.54 s (2.9 s at 192,000): they cross near 3,000 points
(:data:`EXACT_BELOW`). Searching 8 cells instead of 4 finds 97–99 % of the neighbours at 1.6–1.8×
the cost and the same layout. faiss HNSW was 1.6–2× slower than IVF at equal recall, openTSNE's
Annoy slower still, and pynndescent pays an 18–26 s numba compile in every new process.

The last few graphs are kept in memory (keyed by the cloud's bytes, the metric and the backend),
so a second request for the same cloud with the same or fewer neighbours is served by slicing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from ..errors import EmbeddingError

__all__ = [
    "exact_knn",
    "knn_query",
    "ivf_knn",
    "neighbours",
    "Neighbours",
    "device",
    "threads",
    "knn_backend",
    "EXACT_BELOW",
    "BACKENDS",
]

log = logging.getLogger(__name__)

#: Below this many points exact kNN beats building an approximate index (CPU).
EXACT_BELOW = 3000

#: The backends :func:`neighbours` accepts.
BACKENDS = ("auto", "exact", "ivf")

_IVF_LIST = 256  # points per k-means cell
_IVF_PROBE = 4  # cells searched per point
_BLOCK_ELEMENTS = 1 << 26  # rows × points of one block of exact distances


def threads() -> int:
    """Threads a head may use in this process: torch's count (the driver sets it per pool worker)."""
    import torch

    return max(1, int(torch.get_num_threads()))


def device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Neighbours(NamedTuple):
    """A k-nearest-neighbour graph.

    Attributes
    ----------
    indices : int64 array [point, k]
        Neighbours by increasing distance, never the point itself.
    distances : float64 array [point, k]
        Euclidean distances, or cosine distances ``1 − cos`` for ``metric="cosine"``.
    backend : str
        ``"exact"`` or ``"ivf"``: what computed it.
    """

    indices: np.ndarray
    distances: np.ndarray
    backend: str


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn_backend(n_points: int, backend: str = "auto", *, on_device: str | None = None) -> str:
    """The backend :func:`neighbours` uses for ``n_points`` points.

    ``"auto"``: exact on CUDA and below :data:`EXACT_BELOW` points, faiss IVF above (exact when
    faiss is not installed, with a log message).
    """
    if backend not in BACKENDS:
        raise EmbeddingError(f"neighbors must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    if backend != "auto":
        return backend
    if (on_device or device()) == "cuda" or n_points < EXACT_BELOW:
        return "exact"
    if _faiss() is None:
        log.info("faiss is not installed: exact kNN for %d points (pip install faiss-cpu)", n_points)
        return "exact"
    return "ivf"


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
        Rows per distance block (lowered so that ``block * point`` stays within 2²⁶ floats).

    Returns
    -------
    indices : int64 array [point, k]
        Neighbours by increasing distance, never the point itself.
    distances : float64 array [point, k]
        The matching distances.
    """
    import torch

    n = x.shape[0]
    block = max(64, min(int(block), _BLOCK_ELEMENTS // max(n, 1)))  # at most 256 MiB of distances
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


def ivf_knn(
    x: np.ndarray,
    k: int,
    *,
    metric: str = "euclidean",
    list_size: int = _IVF_LIST,
    nprobe: int = _IVF_PROBE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate ``k`` nearest neighbours through a faiss IVF-Flat index (CPU).

    The cloud is split into ``point / list_size`` k-means cells (trained on 40 points per cell, a
    reproducible sample); each point is compared with the points of its ``nprobe`` nearest cells.

    Parameters
    ----------
    x : float array [point, d]
    k : int
    metric : {"euclidean", "cosine"}
    list_size, nprobe : int
        Cell size and cells searched.
    seed : int
        Of the training sample and k-means.

    Returns
    -------
    indices : int64 array [point, k]
        Neighbours by increasing distance, never the point itself. When fewer than ``k`` other
        points lie in the cells searched (rare), the row is completed from exact search.
    distances : float64 array [point, k]
    """
    faiss = _faiss()
    if faiss is None:  # pragma: no cover - faiss-cpu is a declared dependency
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            "approximate kNN needs faiss.", package="faiss-cpu", install="pip install faiss-cpu"
        )
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"ivf_knn supports 'euclidean' and 'cosine', not {metric!r}")
    xs = np.ascontiguousarray(x, np.float32)
    if metric == "cosine":
        xs = xs / np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-12)
    n, d = xs.shape
    nlist = max(1, n // int(list_size))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    index.cp.niter = 10
    index.cp.seed = int(seed)
    rng = np.random.default_rng(seed)
    index.train(xs[rng.choice(n, min(n, 40 * nlist), replace=False)])
    index.add(xs)
    index.nprobe = int(nprobe)
    d2, idx = index.search(xs, k + 1)
    own = idx == np.arange(n)[:, None]
    keep = ~own & (idx >= 0)
    # Rows whose own point was not returned keep k + 1 candidates: drop the farthest.
    extra = keep.sum(1) - k
    for row in np.flatnonzero(extra > 0):
        keep[row, np.flatnonzero(keep[row])[k:]] = False
    short = np.flatnonzero(keep.sum(1) < k)
    out_i = np.empty((n, k), np.int64)
    out_d = np.empty((n, k), np.float64)
    full = np.flatnonzero(keep.sum(1) == k)
    out_i[full] = idx[full][keep[full]].reshape(-1, k)
    out_d[full] = d2[full][keep[full]].reshape(-1, k)
    if len(short):  # too few candidates in the probed cells: exact for those rows
        sq = (xs * xs).sum(1)
        s = sq[None, :] - 2.0 * xs[short] @ xs.T
        s[np.arange(len(short)), short] = np.inf
        part = np.argpartition(s, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(s, part, axis=1).argsort(axis=1)
        out_i[short] = np.take_along_axis(part, order, axis=1)
        out_d[short] = np.take_along_axis(s, out_i[short], axis=1) + sq[short, None]
    dist = np.sqrt(np.maximum(out_d, 0.0))
    if metric == "cosine":
        dist = dist**2 / 2.0  # |a - b|^2 = 2 - 2 cos for unit vectors
    return out_i, dist


_MEMO: OrderedDict[tuple, Neighbours] = OrderedDict()
_MEMO_SIZE = 4
_MEMO_LOCK = threading.Lock()


def _digest(x: np.ndarray) -> str:
    a = np.ascontiguousarray(x)
    h = hashlib.blake2b(str((a.shape, a.dtype.str)).encode(), digest_size=16)
    h.update(a.view(np.uint8).reshape(-1).data)  # the bytes, without a copy
    return h.hexdigest()


def neighbours(x: np.ndarray, k: int, *, metric: str = "euclidean", backend: str = "auto") -> Neighbours:
    """The ``k`` nearest neighbours of every point of a cloud, by the fastest adequate backend.

    Parameters
    ----------
    x : float array [point, d]
    k : int
        Neighbours per point; clipped to ``point - 1``.
    metric : {"euclidean", "cosine"}
    backend : {"auto", "exact", "ivf"}
        See :func:`knn_backend`.

    Returns
    -------
    Neighbours
        ``indices`` int64 [point, k] and ``distances`` float64 [point, k], nearest first.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    >>> g = neighbours(x, 5)
    >>> g.indices.shape, g.backend
    ((200, 5), 'exact')
    """
    n = len(x)
    if n < 2:
        raise EmbeddingError(f"a neighbour graph needs at least 2 points, got {n}.")
    k = max(1, min(int(k), n - 1))
    chosen = knn_backend(n, backend)
    key = (_digest(x), metric, chosen)
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
        if hit is not None and hit.indices.shape[1] >= k:
            _MEMO.move_to_end(key)
            return Neighbours(hit.indices[:, :k], hit.distances[:, :k], hit.backend)
    if chosen == "exact":
        idx, dist = exact_knn(x, k, metric=metric)
    else:
        idx, dist = ivf_knn(x, k, metric=metric)
    graph = Neighbours(idx, dist, chosen)
    with _MEMO_LOCK:
        _MEMO[key] = graph
        _MEMO.move_to_end(key)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return graph


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
