"""t-SNE's optimisation in torch: the same gradient descent as openTSNE, on CUDA when present.

openTSNE runs on the CPU only. With a GPU, qkviz runs the default layout's optimisation here
instead, on the same affinities and from the same start, with openTSNE's update rule:

* gradient ``g_i = Σ_j ρ p_ij w_ij (y_i − y_j) − Σ_j w_ij² (y_i − y_j) / Z`` with the Cauchy kernel
  ``w_ij = 1 / (1 + ‖y_i − y_j‖²)``, ``Z = Σ_{i≠j} w_ij`` and exaggeration ``ρ``; the attraction
  runs over the sparse affinities, the repulsion exactly, in blocks of rows (O(point²) work per
  iteration, which a GPU does in milliseconds up to a few hundred thousand points — see
  :data:`DEVICE_MAX_POINTS`);
* per-coordinate gains (+0.2 when the gradient changes sign, ×0.8 otherwise, at least 0.01),
  momentum, learning rate ``point / ρ`` by default, steps clipped to norm 5, and the layout
  re-centred after each step.

The code is device-agnostic: the tests run it on the CPU (small clouds) against openTSNE's
Barnes–Hut result for the same affinities and start. It has not been run on a GPU in this project
yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["optimize", "kl_divergence", "DEVICE_MAX_POINTS"]

#: Largest head whose layout is optimised on the GPU (exact repulsion is quadratic); above it the
#: CPU's openTSNE FFT gradients take over.
DEVICE_MAX_POINTS = 250_000

_BLOCK_ELEMENTS = 1 << 26  # rows × points per repulsion block (256 MiB of float32)


def _repulsion(y, block: int):
    """``(Σ_j w_ij² (y_i − y_j), Z)`` for every row, computed exactly in blocks of rows."""
    import torch

    n = y.shape[0]
    sq = (y * y).sum(1)
    rep = torch.empty_like(y)
    z = torch.zeros((), dtype=y.dtype, device=y.device)
    for start in range(0, n, block):
        stop = min(start + block, n)
        d2 = (sq[start:stop, None] + sq[None, :] - 2.0 * y[start:stop] @ y.T).clamp_min_(0.0)
        w = 1.0 / (1.0 + d2)
        rows = torch.arange(stop - start, device=y.device)
        w[rows, rows + start] = 0.0  # no self-interaction
        z = z + w.sum()
        w2 = w * w
        rep[start:stop] = w2.sum(1, keepdim=True) * y[start:stop] - w2 @ y
    return rep, z


def _coo(P: sp.spmatrix, device, dtype):
    import torch

    c = P.tocoo()
    rows = torch.as_tensor(c.row.astype(np.int64), device=device)
    cols = torch.as_tensor(c.col.astype(np.int64), device=device)
    vals = torch.as_tensor(c.data, dtype=dtype, device=device)
    return rows, cols, vals


def kl_divergence(P: sp.spmatrix, y: np.ndarray) -> float:
    """``KL(P ‖ Q)`` of a layout (exact Q; for tests and small clouds).

    Parameters
    ----------
    P : scipy.sparse matrix [point, point]
        Symmetric affinities summing to 1.
    y : float array [point, dim]
    """
    y = np.asarray(y, np.float64)
    d2 = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    w = 1.0 / (1.0 + d2)
    np.fill_diagonal(w, 0.0)
    c = P.tocoo()
    q = w[c.row, c.col] / w.sum()
    keep = c.data > 0
    return float((c.data[keep] * np.log(c.data[keep] / np.maximum(q[keep], 1e-300))).sum())


def optimize(
    P: sp.spmatrix,
    init: np.ndarray,
    *,
    n_iter: int,
    exaggeration: float = 1.0,
    learning_rate: float | str = "auto",
    momentum: float = 0.8,
    max_step_norm: float | None = 5.0,
    min_gain: float = 0.01,
    device: str | None = None,
    callback: Callable[[int], bool | None] | None = None,
    state: dict[str, Any] | None = None,
) -> np.ndarray:
    """Run ``n_iter`` iterations of t-SNE gradient descent from ``init``.

    Parameters
    ----------
    P : scipy.sparse matrix [point, point]
        Symmetric affinities summing to 1.
    init : float array [point, dim]
        Starting layout (used at its given scale).
    n_iter : int
    exaggeration : float
        ``ρ``, multiplying the attraction.
    learning_rate : float or "auto"
        ``"auto"``: ``point / ρ`` (openTSNE's and Belkina et al.'s rule).
    momentum, max_step_norm, min_gain
        As openTSNE's ``gradient_descent``.
    device : str, optional
        Torch device; default CUDA when present, else the CPU.
    callback : callable, optional
        ``callback(iteration)`` after each iteration; returning ``True`` stops early (the layout
        reached so far is returned).
    state : dict, optional
        Carries the momentum and the gains from one call to the next, as openTSNE's optimiser
        carries them from its early-exaggeration phase into the main one; updated in place.

    Returns
    -------
    float32 array [point, dim]
    """
    import torch

    from ._knn import device as default_device

    dev = torch.device(device or default_device())
    dtype = torch.float32
    y = torch.as_tensor(np.asarray(init, np.float32), device=dev).clone()
    n = y.shape[0]
    rho = 1.0 if exaggeration is None else float(exaggeration)
    lr = n / rho if learning_rate == "auto" else float(learning_rate)
    rows, cols, vals = _coo(P, dev, dtype)
    vals = vals * rho
    state = {} if state is None else state
    update = state.get("update", torch.zeros_like(y))
    gains = state.get("gains", torch.ones_like(y))
    block = max(64, min(n, _BLOCK_ELEMENTS // max(n, 1)))
    for it in range(int(n_iter)):
        diff = y[rows] - y[cols]
        w = 1.0 / (1.0 + (diff * diff).sum(1))
        grad = torch.zeros_like(y).index_add_(0, rows, (vals * w)[:, None] * diff)
        rep, z = _repulsion(y, block)
        grad -= rep / z
        flipped = torch.sign(update) != torch.sign(grad)
        gains = torch.where(flipped, gains + 0.2, gains * 0.8 + min_gain)
        update = momentum * update - lr * gains * grad
        if max_step_norm is not None:
            norms = update.norm(dim=1, keepdim=True)
            update = torch.where(norms > max_step_norm, update / norms * max_step_norm, update)
        y += update
        y -= y.mean(0)
        if callback is not None and callback(it + 1):
            break
    state["update"], state["gains"] = update, gains
    return y.cpu().numpy().astype(np.float32)
