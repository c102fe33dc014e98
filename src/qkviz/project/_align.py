"""Cross-head alignment: one common frame for every head's layout.

Every head embeds the *same* points (the queries and keys of the same tokens), so two heads' layouts
can be compared point by point. t-SNE, UMAP and PCA fix their axes arbitrarily per head (any rotation
or mirror image is an equally good answer), which makes neighbouring heads in the grid look unrelated
even when they arrange the tokens alike. Alignment removes that arbitrary part:

* :func:`procrustes_rotation` finds the orthogonal matrix (rotation or reflection) that best maps one
  layout onto a reference (orthogonal Procrustes, via an SVD of the dim×dim cross-covariance).
* :func:`generalized_procrustes` aligns many layouts to their common consensus (iteratively: align
  all to the current mean, recompute the mean), so no single head is privileged.
* :func:`disparity` measures how different two layouts look *as drawn* (after centring and unit
  scaling, without any rotation), which is what alignment improves.

Rotations only change how a layout is drawn, never which points are near which, so faithfulness
scores are unaffected.
"""

from __future__ import annotations

import numpy as np

__all__ = ["procrustes_rotation", "generalized_procrustes", "disparity", "standardize"]


def standardize(y: np.ndarray) -> np.ndarray:
    """Centre a layout and scale it to unit Frobenius norm (float64 [point, dim])."""
    y = np.asarray(y, np.float64)
    y = y - y.mean(0)
    n = np.linalg.norm(y)
    return y / n if n > 0 else y


def procrustes_rotation(y: np.ndarray, ref: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Orthogonal matrix ``R`` minimising ``‖(y - ȳ) R - (ref - r̄)‖`` (rotation or reflection).

    Parameters
    ----------
    y, ref : float array [point, dim]
        Layouts of the same points.
    weights : float array [point], optional
        Per-point weights (e.g. to fit on a subset of shared tokens).

    Returns
    -------
    float64 array [dim, dim]
    """
    a, b = standardize(y), standardize(ref)
    if weights is not None:
        a = a * np.sqrt(np.asarray(weights, np.float64))[:, None]
        b = b * np.sqrt(np.asarray(weights, np.float64))[:, None]
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def disparity(a: np.ndarray, b: np.ndarray) -> float:
    """How different two layouts of the same points look as drawn: ``‖std(a) - std(b)‖²`` in [0, 4].

    Unlike :func:`scipy.spatial.procrustes`, no rotation is fitted first: a layout and its mirror
    image count as different, because they look different side by side in the grid.
    """
    return float(((standardize(a) - standardize(b)) ** 2).sum())


def generalized_procrustes(layouts: list[np.ndarray], *, n_iter: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """Rotations aligning every layout to the consensus of all of them.

    Parameters
    ----------
    layouts : list of float array [point, dim]
        Layouts of the same points (one per head).
    n_iter : int
        Rounds of "align to the mean, recompute the mean". Three are plenty in practice.

    Returns
    -------
    rotations : list of float64 array [dim, dim]
        ``layouts[i] @ rotations[i]`` is aligned (rotations about each layout's centroid).
    consensus : float64 array [point, dim]
        The final reference (standardised).
    """
    if not layouts:
        return [], np.zeros((0, 0))
    std = [standardize(y) for y in layouts]
    dim = std[0].shape[1]
    rots = [np.eye(dim) for _ in std]
    ref = std[0]
    for _ in range(max(1, n_iter)):
        rots = [procrustes_rotation(y, ref) for y in std]
        ref = standardize(np.mean([y @ r for y, r in zip(std, rots)], axis=0))
    return rots, ref
