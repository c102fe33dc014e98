"""The extra score terms of one attention layer: from the tensors a model used to exact, stored numbers.

A backend (the attention interface or a module hook) hands the recorder what the model added to
``scaling · q·k`` in one forward pass, as the model had it: a sink logit per head, an ALiBi bias per
key, a relative-position bias per (query, key) pair, DeBERTa's bucket indices and position tables.
:class:`LayerTerms` reduces each to the small arrays a :class:`qkviz.attention.ScoreFunction` holds,
**checking** on every batch that the reduction loses nothing (an ALiBi bias linear in the key
position, a pair bias that depends on the key − query offset only, the same values in every batch),
and grows the offset tables when a longer batch arrives. Nothing here reimplements a model's bucket
function: the tables are the model's own numbers.

Stored arrays (per layer; ``head`` = every query head of the model, ``L`` = longest sequence seen):

=============== =========================== ==========================================================
name            shape                       meaning
=============== =========================== ==========================================================
``sink``        float32 [head]              σ: the logit each row competes with (gpt-oss)
``alibi``       float32 [head]              m: slope, key ``j`` gets ``+ m·p_j`` (BLOOM, MPT)
``offset_bias`` float32 [head, 2L − 1]      B: ``+ B[p_j − p_i]`` at ``p_j − p_i + L − 1`` (T5, MPNet)
``rel_index``   int32 [2L − 1]              DeBERTa's table row for offset ``p_i − p_j``
``pos_key``     float32 [head, R, d_head]   DeBERTa's position keys (content → position)
``pos_query``   float32 [head, R, d_head]   DeBERTa's position queries (position → content)
=============== =========================== ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["RawTerms", "LayerTerms", "TERM_NAMES"]

TERM_NAMES = ("sink", "alibi", "offset_bias", "rel_index", "pos_key", "pos_query")


@dataclass
class RawTerms:
    """What one attention call added to ``scaling · q·k``, as the model had it (torch tensors).

    Attributes
    ----------
    softcap : float or None
    sink : float [head] or None
    key_bias : float [B, head, T_k] or None
        A bias that depends on the key only (ALiBi), per batch row.
    pair_bias : float [1 or B, head, T_q, T_k] or None
        A bias per (query, key) pair (relative-position buckets).
    rel : int [T_q, T_k] or None
        DeBERTa: the row of ``pos_key`` / ``pos_query`` each pair uses.
    pos_key, pos_query : float [head, R, d_head] or None
    """

    softcap: float | None = None
    sink: torch.Tensor | None = None
    key_bias: torch.Tensor | None = None
    pair_bias: torch.Tensor | None = None
    rel: torch.Tensor | None = None
    pos_key: torch.Tensor | None = None
    pos_query: torch.Tensor | None = None

    def names(self) -> tuple[str, ...]:
        """The stored terms these raw tensors become (an all-zero pair bias is no term)."""
        out = []
        if self.sink is not None:
            out.append("sink")
        if self.key_bias is not None:
            out.append("alibi")
        if self.pair_bias is not None and bool((self.pair_bias != 0).any()):
            out.append("offset_bias")
        if self.rel is not None:
            out.append("rel_index")
        if self.pos_key is not None:
            out.append("pos_key")
        if self.pos_query is not None:
            out.append("pos_query")
        return tuple(out)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def toeplitz_table(full: torch.Tensor) -> torch.Tensor | None:
    """``[head, T_q, T_k]`` → ``[head, 2T − 1]`` by offset ``j − i`` (``T = T_q = T_k``), or ``None``.

    ``None`` when the tensor is not a function of the offset alone (then it cannot be a table).
    """
    h, tq, tk = full.shape
    if tq != tk:
        return None
    t = tq
    offsets = torch.arange(-(t - 1), t, device=full.device)
    rows = torch.clamp(-offsets, min=0)
    table = full[:, rows, rows + offsets]  # [head, 2T-1]: the first pair of every diagonal
    pos = torch.arange(t, device=full.device)
    rebuilt = table[:, (pos[None, :] - pos[:, None]) + t - 1]
    if not torch.equal(rebuilt, full):
        return None
    return table


def _merge_centred(old: np.ndarray | None, new: np.ndarray, atol: float) -> np.ndarray | None:
    """Merge two tables indexed by offset (last axis, centred): the longer one, if they agree."""
    if old is None:
        return new
    a, b = (old, new) if old.shape[-1] >= new.shape[-1] else (new, old)
    pad = (a.shape[-1] - b.shape[-1]) // 2
    inner = a[..., pad : pad + b.shape[-1]]
    if not np.allclose(inner, b, atol=atol, rtol=0):
        return None
    return a


@dataclass
class LayerTerms:
    """The stored terms of one layer, accumulated over batches (numpy)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def update(self, raw: RawTerms, padding: torch.Tensor | None) -> list[str]:
        """Fold one batch's raw terms in; returns the problems found (empty when exact)."""
        problems: list[str] = []
        if raw.sink is not None:
            self._same("sink", _np(raw.sink).reshape(-1), problems)
        if raw.key_bias is not None:
            slopes = alibi_slopes(raw.key_bias, padding, problems)
            if slopes is not None:
                self._same("alibi", slopes, problems, atol=1e-6, rtol=1e-5)
        if raw.pair_bias is not None and "offset_bias" in raw.names():
            pb = raw.pair_bias
            if pb.shape[0] > 1 and not torch.equal(pb, pb[:1].expand_as(pb)):
                problems.append("the position bias differs between the rows of a batch")
            else:
                table = toeplitz_table(pb[0].float())
                if table is None:
                    problems.append("the position bias depends on more than the key − query offset")
                else:
                    self._grow("offset_bias", _np(table), problems)
        if raw.rel is not None:
            lut = toeplitz_table(raw.rel[None].long())
            if lut is None:
                problems.append("DeBERTa's relative positions depend on more than the query − key offset")
            else:
                # toeplitz_table indexes by (key − query); DeBERTa's tables by (query − key): flip
                self._grow("rel_index", _np(lut[0].flip(0)).astype(np.int32), problems, atol=0)
        for name in ("pos_key", "pos_query"):
            t = getattr(raw, name)
            if t is not None:
                self._same(name, _np(t), problems, atol=1e-6, rtol=1e-5)
        return problems

    def _same(self, name: str, value: np.ndarray, problems: list[str], atol: float = 0.0, rtol: float = 0.0) -> None:
        old = self.arrays.get(name)
        if old is None:
            self.arrays[name] = value.astype(np.float32)
        elif old.shape != value.shape or not np.allclose(old, value, atol=atol, rtol=rtol):
            problems.append(f"the {name} term changed between batches")

    def _grow(self, name: str, value: np.ndarray, problems: list[str], atol: float = 1e-6) -> None:
        merged = _merge_centred(self.arrays.get(name), value, atol)
        if merged is None:
            problems.append(f"the {name} term of a longer batch disagrees with the shorter ones")
        else:
            self.arrays[name] = merged

    def head_arrays(self, head: int) -> dict[str, Any]:
        """The arrays of one query head, as :class:`qkviz.attention.ScoreFunction` fields."""
        out: dict[str, Any] = {}
        for name, a in self.arrays.items():
            out[name] = a if name == "rel_index" else a[head]
            if name in ("sink", "alibi"):
                out[name] = float(a[head])
        return out


def alibi_slopes(key_bias: torch.Tensor, padding: torch.Tensor | None, problems: list[str]) -> np.ndarray | None:
    """Slopes ``m [head]`` with ``key_bias[b, h, j] = m_h · j + const(b, h)`` over every row's real keys.

    Keys sit at positions ``0..n-1`` of their row (right padding). ``None`` when no row has two
    real keys (the slope then cannot matter yet) or when the bias is not linear in the position.
    """
    kb = key_bias.detach().double()
    b, h, t = kb.shape
    lengths = padding.sum(1).tolist() if padding is not None else [t] * b
    slopes: torch.Tensor | None = None
    for row, n in enumerate(lengths):
        n = int(n)
        if n < 2:
            continue
        x = kb[row, :, :n]
        m = (x[:, n - 1] - x[:, 0]) / (n - 1)
        resid = x - x[:, :1] - m[:, None] * torch.arange(n, dtype=x.dtype, device=x.device)
        scale = float(x.abs().max()) + 1.0
        if float(resid.abs().max()) > 1e-5 * scale:
            problems.append("the ALiBi bias is not linear in the key position")
            return None
        if slopes is None:
            slopes = m
        elif not torch.allclose(slopes, m, atol=1e-6 * scale, rtol=1e-5):
            problems.append("the ALiBi slopes differ between the rows of a batch")
            return None
    return None if slopes is None else slopes.float().cpu().numpy()
