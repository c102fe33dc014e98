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

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._embedding import Embedding

__all__ = ["procrustes_rotation", "generalized_procrustes", "disparity", "standardize", "align_to"]


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


def align_to(embedding: Embedding, reference: Embedding) -> Embedding:
    """Rotate every head of ``embedding`` onto the same head of ``reference``, for side by side.

    Two embeddings of the same texts (two checkpoints, base and fine-tuned) are laid out
    independently, so a head's two pictures differ by an arbitrary rotation or mirror image. For
    each head both have, the orthogonal Procrustes rotation is fitted over the points of the tokens
    both hold (sequences with the same text and the same tokens,
    :func:`qkviz.analysis.match_sequences`; queries to queries, keys to keys) and applied to the
    whole layout, which is then boxed into ``[-1, 1]`` again. Neighbourhoods never change; the
    head's :class:`~qkviz.project.Frame` is updated, so :meth:`~qkviz.Embedding.place` still works.

    Parameters
    ----------
    embedding : Embedding
        What to rotate.
    reference : Embedding
        The frame to rotate into.

    Returns
    -------
    Embedding
        A new embedding sharing ``embedding``'s tables and capture.

    Raises
    ------
    EmbeddingError
        No token in common, or a different ``dim``.
    """
    from ..analysis import match_sequences
    from ..errors import EmbeddingError
    from ._embedding import Embedding, Frame, box_frame, to_box

    if embedding.dim != reference.dim:
        raise EmbeddingError(f"cannot align a {embedding.dim}-D embedding to a {reference.dim}-D one.")
    pairs = match_sequences(embedding, reference)
    if not pairs:
        raise EmbeddingError(
            "the two embeddings hold no sequence with the same text and tokens, so there is nothing to align on."
        )
    rows_e, rows_r = [], []
    seq_e, seq_r = embedding.tokens["seq"].to_numpy(), reference.tokens["seq"].to_numpy()
    for se, sr in pairs:
        rows_e.append(np.flatnonzero(seq_e == se))
        rows_r.append(np.flatnonzero(seq_r == sr))
    ie, ir = np.concatenate(rows_e), np.concatenate(rows_r)
    pe = np.concatenate([ie, ie + embedding.n_tokens])
    pr = np.concatenate([ir, ir + reference.n_tokens])
    coords, frames, rotations = {}, {}, {}
    for key in embedding.cells:
        y = np.asarray(embedding.coords(*key), np.float64)
        rot = np.eye(embedding.dim)
        if reference.has(*key):
            rot = procrustes_rotation(y[pe], np.asarray(reference.coords(*key), np.float64)[pr])
        turned = y @ rot
        coords[key] = to_box(turned)
        centre, half = box_frame(turned)
        base = embedding.rotations.get(key, np.eye(embedding.dim)) @ rot
        rotations[key] = base
        f = embedding.frames.get(key)
        if f is not None:
            r = f.rotation @ rot
            frames[key] = Frame(origin=f.origin + f.scale * (centre @ r.T), rotation=r, scale=f.scale * half)
    out = Embedding(
        coords,
        embedding.tokens,
        embedding.sequences,
        norms={k: embedding.norms(*k) for k in embedding.cells},
        method=embedding.method,
        params={**embedding.params, "aligned_to_reference": True},
        timings=embedding.timings,
        capture=embedding.capture,
        transforms=embedding.transforms,
        rotations=rotations,
        frames=frames,
    )
    out._scores = embedding._scores
    return out
