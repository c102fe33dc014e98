"""Attention-preserving joint normalisation of one head's queries and keys.

For one head, the model's scores are ``s_ij = c · q_i·k_j`` and attention is ``softmax_j(s_ij +
mask_ij)`` over the keys of the same sequence. Two changes of the vectors leave every attention row
exactly as it was, and both make "near" in a joint q/k map mean "attends" more often:

* **Key translation** ``k' = k − mean(k) + mean(q)``: then ``q_i·k'_j = q_i·k_j + q_i·t`` with
  ``t = mean(q) − mean(k)``. The added term is the same for every key of a query row, and softmax is
  shift-invariant per row, so attention is unchanged (with any mask: causal or padding). It moves the
  key cloud onto the query cloud. Queries cannot be translated this way: ``(q+u)·k`` varies with k.
* **Norm scaling** ``q' = q / a``, ``k' = a · k``: every ``q·k`` is unchanged. With
  ``a = sqrt(mean‖q‖ / mean‖k‖)`` (``scale="auto"``) the two clouds get equal mean norms, so
  Euclidean distance ``‖q−k‖² = ‖q‖² + ‖k‖² − 2 q·k`` tracks the dot product better.

A **cosine metric ignores the scaling**: ``cos(q/a, a·k) = cos(q, k)`` and the cosine between two
keys or two queries does not change either. Scaling only matters for Euclidean metrics and PCA.
(Translation does change cosine geometry.)

The transform is recorded in a :class:`JointTransform` and can be undone with
:meth:`JointTransform.invert`.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> q = rng.normal(size=(6, 4)).astype(np.float32)
>>> k = (rng.normal(size=(6, 4)) * 3 + 1).astype(np.float32)
>>> q1, k1, _ = normalize(q, k, scale=None)              # translation only
>>> np.allclose(k1.mean(0), q1.mean(0), atol=1e-5)
True
>>> q2, k2, t = normalize(q, k)                           # translation + scaling
>>> n = lambda x: np.linalg.norm(x, axis=1).mean()
>>> bool(np.isclose(n(q2), n(k2), rtol=1e-4))
True
>>> q3, k3 = t.invert(q2, k2)
>>> np.allclose(q3, q, atol=1e-5) and np.allclose(k3, k, atol=1e-5)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EmbeddingError

__all__ = ["JointTransform", "normalize", "fit_transform_params", "dot_lift", "check_scale_mode"]


@dataclass(frozen=True)
class JointTransform:
    """A recorded, reversible joint normalisation: ``q' = q / scale``, ``k' = scale · (k + shift)``.

    Attributes
    ----------
    shift : float32 array [d_head]
        Added to every key before scaling: ``mean(q) − mean(k)`` when translating, else zeros.
    scale : float
        ``a``: queries are divided by it, keys multiplied by it (1.0 when not scaling).
    translate : bool
        Whether key translation was asked for.
    scale_mode : str or float or None
        What was asked: ``"auto"``, a number, or ``None``.
    """

    shift: np.ndarray = field(repr=False)
    scale: float
    translate: bool
    scale_mode: str | float | None

    def apply(self, q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalise ``q, k`` (float32 [token, d_head] each)."""
        q = np.asarray(q, np.float32)
        k = np.asarray(k, np.float32)
        return (q / np.float32(self.scale)).astype(np.float32), ((k + self.shift) * np.float32(self.scale)).astype(
            np.float32
        )

    def invert(self, q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undo :meth:`apply`: back to the model's own vectors (float32 [token, d_head] each)."""
        q = np.asarray(q, np.float32)
        k = np.asarray(k, np.float32)
        return (q * np.float32(self.scale)).astype(np.float32), (k / np.float32(self.scale) - self.shift).astype(
            np.float32
        )

    def sink_logits(self, q_norm: np.ndarray, sink: float, scaling: float) -> np.ndarray:
        """Each query's sink logit after the transform, so that sink heads keep every attention row.

        A sink (gpt-oss) is a logit ``σ`` every row competes with. Treat it as one more key, ``s``
        with ``c·q·s = σ`` for every query: the translation moves it like every key, adding
        ``c·q·shift`` to each query's scores — the sink's included. So with transformed vectors the
        row's sink logit is ``σ + c·q·shift = σ + c·a·(q'·shift)``, and every row and sink share is
        exactly the model's again (plain translation alone would move the share).

        Parameters
        ----------
        q_norm : float array [token, d_head]
            Transformed queries (``q / a``).
        sink, scaling : float
            The head's ``σ`` and ``c``.

        Returns
        -------
        float64 array [token]
        """
        qn = np.asarray(q_norm, np.float64)
        return float(sink) + float(scaling) * float(self.scale) * (qn @ self.shift.astype(np.float64))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (for an embedding's metadata)."""
        return {
            "shift": [float(x) for x in self.shift],
            "scale": float(self.scale),
            "translate": bool(self.translate),
            "scale_mode": self.scale_mode,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JointTransform:
        """Inverse of :meth:`to_dict`."""
        return cls(
            shift=np.asarray(d["shift"], np.float32),
            scale=float(d["scale"]),
            translate=bool(d["translate"]),
            scale_mode=d["scale_mode"],
        )


def check_scale_mode(scale: str | float | None) -> None:
    """Raise :class:`qkviz.EmbeddingError` unless ``scale`` is ``"auto"``, ``None`` or a positive number."""
    if scale is None or scale == "auto":
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise EmbeddingError(f'scale must be "auto", a positive number or None, got {scale!r}.')
    if not np.isfinite(scale) or scale <= 0:
        raise EmbeddingError(f"scale must be a positive finite number, got {scale!r}.")


def fit_transform_params(
    q: np.ndarray, k: np.ndarray, *, translate: bool = True, scale: str | float | None = "auto"
) -> JointTransform:
    """Compute (without applying) the joint normalisation of one head.

    Parameters
    ----------
    q, k : float array [token, d_head]
        The head's queries and keys over all tokens of the capture (padding is never a token);
        for cross-attention, the decoder tokens' queries and the encoder tokens' keys (the two
        may differ in number).
    translate : bool
        Move the key centroid onto the query centroid.
    scale : "auto", float or None
        ``"auto"``: ``a = sqrt(mean‖q‖ / mean‖k‖)`` (computed after translation, on the vectors the
        layout sees); a float: use it as ``a``; ``None``: no scaling (``a = 1``).

    Returns
    -------
    JointTransform
    """
    check_scale_mode(scale)
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    if q.ndim != 2 or k.ndim != 2 or k.shape[1] != q.shape[1]:
        raise EmbeddingError(f"q and k must both be [token, d_head], got {q.shape} and {k.shape}.")
    shift = (q.mean(0) - k.mean(0)) if translate and len(q) else np.zeros(q.shape[1])
    if scale is None:
        a = 1.0
    elif scale == "auto":
        nq = float(np.linalg.norm(q, axis=1).mean()) if len(q) else 0.0
        nk = float(np.linalg.norm(k + shift, axis=1).mean()) if len(k) else 0.0
        # Degenerate clouds (all-zero queries or keys) have no meaningful ratio: leave them be.
        a = float(np.sqrt(nq / nk)) if nq > 0 and nk > 0 and np.isfinite(nq / nk) else 1.0
    else:
        a = float(scale)
    return JointTransform(shift=shift.astype(np.float32), scale=a, translate=bool(translate), scale_mode=scale)


def normalize(
    q: np.ndarray, k: np.ndarray, *, translate: bool = True, scale: str | float | None = "auto"
) -> tuple[np.ndarray, np.ndarray, JointTransform]:
    """Jointly normalise one head's queries and keys without changing any attention row.

    Parameters
    ----------
    q, k : float array [token, d_head]
        The head's queries and keys.
    translate, scale
        See :func:`fit_transform_params`.

    Returns
    -------
    q_norm, k_norm : float32 array [token, d_head]
    transform : JointTransform
        The record, to save with the layout or to undo the change.
    """
    t = fit_transform_params(q, k, translate=translate, scale=scale)
    qn, kn = t.apply(q, k)
    return qn, kn, t


def dot_lift(q: np.ndarray, k: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """Stack queries and keys in a space where Euclidean distance orders keys by dot product.

    The asymmetric lift used for maximum-inner-product search (Bachrach et al. 2014; Neyshabur &
    Srebro 2015): ``q̃ = [q/‖q‖, 0]`` and ``k̃ = [k/M, sqrt(1 − ‖k‖²/M²)]`` with ``M = max‖k‖``.
    Every lifted key has unit norm, so ``‖q̃ − k̃‖² = 2 − 2 q·k / (‖q‖ M)``: for each query the
    distance to the keys is a decreasing function of ``q·k``, i.e. the nearest keys are exactly
    the most-attended ones (for any key translation, which shifts a whole score row equally).

    Parameters
    ----------
    q, k : float array [token, d_head]
        A head's (normalised) queries and keys.
    max_norm : float, optional
        ``M``; default ``max‖k‖``. Pass the reference cloud's ``M`` to lift new points into the same
        space as a fitted layout (a new key longer than ``M`` gets a last coordinate of 0).

    Returns
    -------
    float32 array [point, d_head + 1]
        Queries first, then keys.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> q, k = rng.normal(size=(1, 4)), rng.normal(size=(6, 4))
    >>> x = dot_lift(q, k)
    >>> d = np.linalg.norm(x[1:] - x[0], axis=1)
    >>> bool((np.argsort(d) == np.argsort(-(k @ q[0]))).all())
    True
    """
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    nq = np.linalg.norm(q, axis=1, keepdims=True)
    qu = np.divide(q, nq, out=np.zeros_like(q), where=nq > 0)
    nk = np.linalg.norm(k, axis=1)
    m = float(max_norm) if max_norm is not None else float(nk.max()) if len(nk) else 0.0
    ku = k / m if m > 0 else k
    extra = np.sqrt(np.clip(1.0 - (nk / m) ** 2, 0.0, None)) if m > 0 else np.ones(len(k))
    top = np.hstack([qu, np.zeros((len(q), 1))])
    bottom = np.hstack([ku, extra[:, None]])
    return np.vstack([top, bottom]).astype(np.float32)
