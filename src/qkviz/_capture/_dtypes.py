"""How q/k/v are stored (float32, float16 or bfloat16) and how far attention recomputed from them can move.

numpy has no bfloat16, so bfloat16 vectors are kept as their raw bits: ``uint16``, the upper half
of the float32 with the same value. :func:`decode` widens every stored form back to float32
exactly (each float16 and bfloat16 value is a float32), and attention is always recomputed in
float32 from the decoded vectors (:mod:`qkviz.attention`). A stored array's numpy dtype says which
form it is: ``float32``, ``float16``, or ``uint16`` (bfloat16 bits; nothing else is stored as
integers).

Error bound (:func:`attention_error_bound`). Rounding a float32 ``x`` to the storage format gives
``x + δ`` with ``|δ| <= u·|x| + η`` (``u`` the unit roundoff: 2⁻¹¹ for float16, 2⁻⁸ for
bfloat16; ``η`` half the spacing of the subnormals, where relative precision runs out: 2⁻²⁵ for
float16). For one query ``q`` and key ``k`` of ``d`` components, the stored vectors' score moves
by at most

    ε = scaling · [(2u + u²) Σᵢ|qᵢ||kᵢ| + η(1 + u)(‖q‖₁ + ‖k‖₁) + dη² + 2γ Σᵢ|qᵢ||kᵢ|(1 + u)²]

(the last term, ``γ = d·2⁻²⁴``, covers float32 rounding in the two dot products compared). A
softmax row whose scores each move by at most ``ε_j`` (largest ``ε_max`` over the visible keys)
keeps every weight within a factor ``exp(±(ε_j + ε_max))``: numerator ``exp(s_j)`` moves by at
most ``exp(±ε_j)`` and the denominator by at most ``exp(±ε_max)``. Hence

    |p̃_j − p_j| <= p_j · (exp(ε_j + ε_max) − 1) + 1e-6

with ``1e-6`` for float32 arithmetic in the softmax itself. The bound is relative to each weight:
weights near 0 stay near 0, and the large weights that carry a head's pattern move by a small
fraction of themselves. ``tests/capture/test_dtypes.py`` checks it on real MiniLM and SmolLM2
heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..attention import visible
from ..errors import InputError

__all__ = [
    "STORAGE_DTYPES",
    "UNIT_ROUNDOFF",
    "storage_dtype",
    "stored_dtype",
    "itemsize",
    "encode",
    "decode",
    "to_storage",
    "host_array",
    "check_range",
    "score_error_bound",
    "attention_error_bound",
]

#: The storage formats ``qkviz.capture(dtype=...)`` accepts.
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
_ALIASES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}  # fmt: skip

#: Unit roundoff (round to nearest) of each storage format.
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
#: Largest absolute rounding error below the smallest normal number (half the subnormal spacing).
_TINY = {"float32": 2.0**-150, "float16": 2.0**-25, "bfloat16": 2.0**-134}
#: Largest finite value of each format.
_MAX = {"float32": float(np.finfo(np.float32).max), "float16": 65504.0, "bfloat16": 3.3895314e38}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
#: float32 arithmetic slack of a softmax weight (absolute).
_SOFTMAX_SLACK = 1e-6


def storage_dtype(dtype: Any) -> str:
    """The storage format named by ``dtype`` (a string or a torch dtype): ``"float32"``,
    ``"float16"`` or ``"bfloat16"``.

    Raises
    ------
    InputError
        Any other name.

    Examples
    --------
    >>> storage_dtype("fp16"), storage_dtype("bfloat16")
    ('float16', 'bfloat16')
    """
    key = str(dtype).replace("torch.", "").lower()
    if key not in _ALIASES:
        raise InputError(f"dtype must be 'float32', 'float16' or 'bfloat16' (how q/k are stored), got {dtype!r}")
    return _ALIASES[key]


def stored_dtype(a: np.ndarray) -> str:
    """Which storage format the numpy array ``a`` holds (``uint16`` = bfloat16 bits)."""
    if a.dtype == np.uint16:
        return "bfloat16"
    if a.dtype == np.float16:
        return "float16"
    return "float32"


def itemsize(dtype: str) -> int:
    """Bytes per stored value."""
    return _ITEMSIZE[storage_dtype(dtype)]


def encode(a: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values in a storage format (round to nearest even, as torch does).

    Examples
    --------
    >>> x = np.array([1.0, 1.00390625, -3.14159], np.float32)
    >>> decode(encode(x, "bfloat16")).tolist()
    [1.0, 1.0, -3.140625]
    """
    a = np.asarray(a, np.float32)
    dtype = storage_dtype(dtype)
    if dtype == "float32":
        return a.copy()
    if dtype == "float16":
        with np.errstate(over="ignore"):  # beyond 65504 becomes inf, as in torch (capture refuses it)
            return a.astype(np.float16)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round half to even on the dropped 16 bits
    return rounded.astype(np.uint16)


def decode(a: np.ndarray) -> np.ndarray:
    """Any stored form as float32 (exact: every float16 and bfloat16 value is a float32)."""
    if a.dtype == np.uint16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32, copy=False)


def to_storage(t: Any, dtype: str) -> Any:
    """A torch tensor in its storage form (bfloat16 as its bits, ``torch.int16``), on its device."""
    import torch

    if dtype == "bfloat16":
        return t.to(torch.bfloat16).view(torch.int16)
    return t.to(torch.float16 if dtype == "float16" else torch.float32)


def host_array(t: Any) -> np.ndarray:
    """A CPU tensor from :func:`to_storage` as numpy (bfloat16 bits as ``uint16``)."""
    a = t.numpy()
    return a.view(np.uint16) if a.dtype == np.int16 else a


def check_range(t: Any, dtype: str) -> None:
    """Refuse vectors that the storage format cannot hold (float16 overflows above 65504).

    Raises
    ------
    InputError
        Some value is larger than the format's largest number (or the model produced inf/NaN).
    """
    if dtype == "float32":
        return
    big = float(t.detach().abs().amax()) if t.numel() else 0.0
    if not np.isfinite(big) or big > _MAX[dtype]:
        raise InputError(
            f"q/k/v values reach {big:.4g}, beyond what {dtype} holds (largest {_MAX[dtype]:.6g}); "
            "capture with dtype='bfloat16' (float32's range) or dtype='float32'"
        )


def score_error_bound(q: np.ndarray, k: np.ndarray, scaling: float, dtype: str) -> np.ndarray:
    """Largest change of the scores ``scaling · q·k`` when q and k are stored in ``dtype``.

    Parameters
    ----------
    q, k : float [query_pos, d_head], [key_pos, d_head]
        The exact (float32) vectors.

    Returns
    -------
    numpy.ndarray
        float64 ``[query_pos, key_pos]``: ``ε`` of the module docstring.
    """
    dtype = storage_dtype(dtype)
    u, eta = UNIT_ROUNDOFF[dtype], _TINY[dtype]
    q = np.abs(np.asarray(q, np.float64))
    k = np.abs(np.asarray(k, np.float64))
    d = q.shape[1]
    gamma = d * 2.0**-24
    dots = q @ k.T
    eps = (2 * u + u * u) * dots + eta * (1 + u) * (q.sum(1)[:, None] + k.sum(1)[None, :]) + d * eta * eta
    eps += 2 * gamma * dots * (1 + u) ** 2
    return abs(float(scaling)) * eps


def attention_error_bound(
    q: np.ndarray,
    k: np.ndarray,
    scaling: float,
    dtype: str,
    attention: np.ndarray,
    causal: bool = False,
    window: int | None = None,
) -> np.ndarray:
    """Largest change of each attention weight of one sequence when q and k are stored in ``dtype``.

    Parameters
    ----------
    q, k : float [pos, d_head]
        The exact vectors of one sequence.
    scaling : float
    dtype : str
        The storage format.
    attention : float [query_pos, key_pos]
        The attention computed from the exact vectors.
    causal, window
        The mask the model used.

    Returns
    -------
    numpy.ndarray
        float64 ``[query_pos, key_pos]``: ``p · (exp(ε_j + ε_max) − 1) + 1e-6`` (module docstring);
        0 where the key is masked.
    """
    eps = score_error_bound(q, k, scaling, dtype)
    seen = visible(len(q), causal, window)
    eps = np.where(seen, eps, 0.0)
    eps_max = eps.max(axis=1, keepdims=True)
    bound = np.asarray(attention, np.float64) * np.expm1(eps + eps_max) + _SOFTMAX_SLACK
    return np.where(seen, bound, 0.0)
