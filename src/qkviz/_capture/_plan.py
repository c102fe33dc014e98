"""Which inputs a capture runs, in which batches, on which shard.

A capture plans its work before the first forward pass:

1. **sample** (``sample=n`` or a fraction, ``random_state``): a uniform random subset of the
   inputs without replacement, kept in input order. ``sequences["input"]`` records each kept
   sequence's index in the original inputs.
2. **max_tokens**: the longest prefix of those inputs whose tokens fit (whole sequences: the first
   sequence that would cross the limit and everything after it are left out). Texts are counted
   by tokenising them once up front (lengths only); images all have the same length, which the
   model tells on the first batch.
3. **batches** of ``batch_size`` consecutive planned inputs.
4. **shard** ``(i, n)``: batch ``b`` goes to shard ``b % n`` (round-robin over batches). Every
   shard therefore runs exactly the batches a single capture would, with the same padding, so
   :func:`qkviz.merge` of the ``n`` shard stores is bit-identical to one capture of everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["sample_inputs", "check_shard", "check_max_tokens", "batches", "tokens_fit", "text_lengths"]


def sample_inputs(n: int, sample: Any, random_state: Any) -> np.ndarray:
    """Indices of the inputs to capture, in input order.

    Parameters
    ----------
    n : int
        Number of inputs given.
    sample : None, int or float
        ``None``: all; an int ``m``: ``m`` inputs; a float in ``(0, 1]``: that share of them
        (rounded, at least one).
    random_state : int
        Seed of the draw (``numpy.random.default_rng``).

    Returns
    -------
    numpy.ndarray
        int64 ``[seq]``.

    Examples
    --------
    >>> sample_inputs(10, 3, 0).tolist()
    [5, 6, 9]
    >>> sample_inputs(10, 0.5, 0).tolist() == sample_inputs(10, 5, 0).tolist()
    True
    """
    if sample is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(sample, bool) or not isinstance(sample, (int, float, np.integer, np.floating)):
        raise InputError(f"sample must be a number of inputs (int) or a share of them (float), got {sample!r}")
    if isinstance(sample, (float, np.floating)):
        if not 0.0 < float(sample) <= 1.0:
            raise InputError(f"sample={sample} as a share of the inputs must be in (0, 1]; pass an int for a count")
        size = max(1, int(round(float(sample) * n)))
    else:
        size = int(sample)
        if size < 1:
            raise InputError(f"sample must be at least 1, got {sample}")
        if size > n:
            raise InputError(f"sample={size} but only {n} inputs were given; pass sample=None to capture them all")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise InputError(f"random_state must be an int seed (so the sample can be drawn again), got {random_state!r}")
    rng = np.random.default_rng(int(random_state))
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def check_shard(shard: Any) -> tuple[int, int] | None:
    """Validate ``shard=(i, n)``: ``0 <= i < n``."""
    if shard is None:
        return None
    try:
        i, n = shard
    except (TypeError, ValueError):
        raise InputError(f"shard must be a pair (i, n): this is shard i of n, got {shard!r}") from None
    if any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in (i, n)) or not 0 <= i < n:
        raise InputError(f"shard=(i, n) needs whole numbers with 0 <= i < n, got {shard!r}")
    return int(i), int(n)


def check_max_tokens(max_tokens: Any) -> int | None:
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
        raise InputError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    return int(max_tokens)


def batches(n: int, batch_size: int, shard: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of the planned inputs, one per batch this capture runs.

    Examples
    --------
    >>> batches(7, 3)
    [(0, 3), (3, 6), (6, 7)]
    >>> batches(7, 3, shard=(1, 2))
    [(3, 6)]
    """
    out = [(b, min(b + batch_size, n)) for b in range(0, n, batch_size)]
    if shard is not None:
        i, k = shard
        out = out[i::k]
    return out


def tokens_fit(lengths: Sequence[int] | np.ndarray, max_tokens: int) -> int:
    """How many leading sequences fit in ``max_tokens`` tokens (whole sequences).

    Raises
    ------
    InputError
        Not even the first sequence fits.

    Examples
    --------
    >>> tokens_fit([5, 4, 6], 10)
    2
    """
    total = np.cumsum(np.asarray(lengths, np.int64))
    keep = int(np.searchsorted(total, max_tokens, side="right"))
    if keep == 0:
        first = int(total[0]) if len(total) else 0
        raise InputError(
            f"max_tokens={max_tokens} is smaller than the first input alone ({first} tokens); raise max_tokens"
        )
    return keep


def text_lengths(tokenizer: Any, texts: Sequence[str], max_length: int | None, chunk: int = 1024) -> np.ndarray:
    """Tokens per text as the capture will see them (special tokens included, truncated at
    ``max_length``), counted in chunks so memory stays small."""
    kw: dict[str, Any] = {"add_special_tokens": True, "return_attention_mask": False}
    if max_length is not None:
        kw.update(truncation=True, max_length=max_length)
    out = np.empty(len(texts), np.int64)
    for a in range(0, len(texts), chunk):
        ids = tokenizer(list(texts[a : a + chunk]), **kw)["input_ids"]
        out[a : a + len(ids)] = [len(x) for x in ids]
    return out
