"""What a standalone HTML page embeds: the view and wire state, the point chunks, the top-k keys of
every query, the exact aggregates and, for images, the patch atlas and the CLS rows.

:func:`snapshot` builds it from a :class:`~qkviz.wire.WidgetState` (never from a live widget);
``qkviz.export`` packs it into the page, and ``js/src/static/`` answers the widget's requests from
it. The layout of the dict is documented in ``docs/internals.md`` ("Static pages").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import AttentionSource, aggregate_detail, patch_atlas, row_stats
from ..wire import View, WidgetState, array_to_binary

if TYPE_CHECKING:
    from .._capture import Capture
    from ..project import Embedding

__all__ = ["snapshot", "topk_cell"]


def snapshot(state: WidgetState, view: View, top_k: int = 0, selection: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the front end needs without a kernel.

    Parameters
    ----------
    state : WidgetState
    view : View
        The display settings the page starts with.
    top_k : int
        If > 0, embed the ``top_k`` strongest keys of every query of every head (lines, the
        sentence, heatmap and image views work offline from these).
    selection : uint32 array [n_selected], optional
        Global point indices selected when the page opens.

    Returns
    -------
    dict
        ``state``: trait name -> wire value (the :class:`View` fields and ``_meta``, ``_tokens``,
        ``_columns``, ``_selection``; ``_meta`` adds ``modality`` and ``causal``, ``_tokens`` adds
        ``row``/``col`` int32 [token] for image captures); ``points``: the answers to the
        ``"points"`` requests; ``topk``, ``aggregate``, ``images``: see ``docs/internals.md``.
    """
    emb = state.embedding
    cap = emb.capture
    tok = emb.tokens
    image = "row" in tok and "col" in tok
    sel = np.zeros(0, np.uint32) if selection is None else np.asarray(selection, np.uint32)
    wire: dict[str, Any] = {
        **view.as_dict(),
        "_meta": {
            **state.meta_wire(),
            "modality": "image" if image else "text",
            # causal: the page's single-attention views; per attention it is in _meta.attns
            "causal": bool(cap.causal) if cap is not None and len(cap.attns) == 1 else False,
        },
        "_tokens": state.tokens_wire(),
        "_columns": state.columns_wire(),
        "_selection": array_to_binary(sel, "uint32"),
    }
    if image:
        wire["_tokens"] = {
            **wire["_tokens"],
            "row": array_to_binary(tok["row"].to_numpy(np.int64), "int32"),
            "col": array_to_binary(tok["col"].to_numpy(np.int64), "int32"),
        }
    chunk = state.chunk_points
    points = []
    for start in range(0, state.n_points, chunk):
        p = state.points(start, min(start + chunk, state.n_points))
        points.append(
            {
                "start": p["start"],
                "stop": p["stop"],
                "coords": array_to_binary(p["coords"], "float32"),
                "norms": array_to_binary(p["norms"], "uint8"),
            }
        )
    out: dict[str, Any] = {
        "state": wire,
        "points": points,
        "topk": None,
        "aggregate": None,
        "images": None,
        "families": None,
    }
    if not state.has_attention:
        return out
    out["families"] = _families(state)
    topk: list[dict[str, Any]] = []
    cells: list[dict[str, Any] | None] = []
    cls: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    # the by-position matrices grow with the longest sequence squared (ViT: 257² per head)
    max_pos = max(16, int(np.sqrt(_AGGREGATE_VALUES // len(state.cells))))
    for cell_key in state.cells:
        attn, la, he = cell_key if state.several else (None, *cell_key)
        if not emb.has(la, he, attn):  # a hole in the grid: nothing to embed, the page never asks
            topk.append(
                {
                    "layer": la,
                    "head": he,
                    "keys": array_to_binary(np.zeros(0, np.uint32), "uint32"),
                    "weights": array_to_binary(np.zeros(0, np.float32), "float32"),
                }
            )
            cells.append(None)
            cls.append(array_to_binary(np.zeros(0, np.float32), "float32"))
            continue
        att = _SeqAttention(emb, la, he, attn)
        if top_k > 0:
            cell = topk_cell(att, la, he, top_k)
            topk.append(
                {
                    **cell,
                    **({"attn": attn} if attn is not None else {}),
                    "keys": array_to_binary(cell["keys"], "uint32"),
                    "weights": array_to_binary(cell["weights"], "float32"),
                }
            )
        if state.several:  # the aggregate views read one token stream per sequence: single attentions only
            cells.append(None)
            continue
        agg = aggregate_detail(att, la, he, max_pos=max_pos)
        if not shared:
            shared = {
                "count": array_to_binary(agg["count"], "int32"),
                "offsets": array_to_binary(agg["offsets"], "int32"),
                "n_seqs": agg["n_seqs"],
            }
        cells.append(
            {
                "layer": la,
                "head": he,
                "scores": agg["scores"],
                **{k: array_to_binary(agg[k], "float32") for k in ("by_position", "by_offset", "by_offset_mean")},
            }
        )
        if image:
            cls.append(array_to_binary(_cls_rows(att), "float32"))
    out["topk"] = topk if top_k > 0 else None
    out["aggregate"] = {**shared, "cells": cells}
    if state.has_images and image and cap is not None:
        out["images"] = {**_static_atlas(cap), "cls": cls}
    return out


def _families(state: WidgetState) -> list[dict[str, Any] | None] | None:
    """Per cell, what its score function adds (``None`` for a plain head; ``None`` overall when
    every head is plain): ``family``, ``sink`` and ``position_effect`` float32 [token] (−1 for
    tokens without a query in the attention; absent when the head has none), ``alibi`` (the
    slope) and ``offset_bias`` float32 [2L − 1] (relative buckets by ``key_pos − query_pos + L −
    1``), from which the page draws the position term exactly without q or k."""
    emb = state.embedding
    cap = emb.capture
    out: list[dict[str, Any] | None] = []
    for cell in state.cells:
        attn, la, he = cell if state.several else (None, *cell)
        if cap is None or not emb.has(la, he, attn):
            out.append(None)
            continue
        f = cap.score(la, he, attn)
        if f.is_plain:
            out.append(None)
            continue
        stats = row_stats(cap, la, he, attn)
        entry: dict[str, Any] = {"layer": la, "head": he, "family": f.family, "alibi": f.alibi, "softcap": f.softcap}
        if attn is not None:
            entry["attn"] = attn
        for name in ("sink", "position_effect"):
            if stats[name] is not None:
                entry[name] = array_to_binary(np.nan_to_num(stats[name], nan=-1.0), "float32")
        if f.offset_bias is not None:
            entry["offset_bias"] = array_to_binary(np.asarray(f.offset_bias, np.float32), "float32")
        out.append(entry)
    return out if any(e is not None for e in out) else None


def topk_cell(source: AttentionSource, layer: int, head: int, k: int) -> dict[str, Any]:
    """The ``k`` strongest keys of every query of one head: ``keys`` uint32 [token, k] (key pos,
    ``2**32-1`` where the sequence is shorter than ``k``) and ``weights`` float32 [token, k],
    strongest first.

    With several token streams (encoder–decoder), only the rows of the attention's query stream
    are filled (the others have no query: none), and key positions count within the key stream.
    """
    tok = source.tokens
    n = len(tok)
    # no query has more keys than the longest sequence holds: a larger k (`--top-k 2147483648`)
    # would only add padding columns, and allocate them
    k = min(k, int(tok.groupby("seq").size().max()) if n else 0)
    keys = np.full((n, k), np.iinfo(np.uint32).max, np.uint32)
    weights = np.zeros((n, k), np.float32)
    seqs, offsets = tok["seq"].to_numpy(), np.arange(n)
    pos = tok["pos"].to_numpy()
    stream = getattr(source, "query_stream", None)
    if stream is not None and "stream" in tok.columns:
        mine = tok["stream"].to_numpy() == stream
        seqs, offsets, pos = seqs[mine], offsets[mine], pos[mine]
    for s in np.unique(seqs):
        rows = offsets[seqs == s]
        rows = rows[np.argsort(pos[np.searchsorted(offsets, rows)], kind="stable")]  # attention rows: pos order
        a = np.asarray(source.attention(layer, head, int(s)), np.float32)
        kk = min(k, a.shape[1])
        order = np.argsort(-a, axis=1, kind="stable")[:, :kk]
        keys[rows, :kk] = order
        weights[rows, :kk] = np.take_along_axis(a, order, axis=1)
    return {"layer": layer, "head": head, "keys": keys, "weights": weights}


class _SeqAttention:
    """One head's exact attention per sequence, computed once and kept (the static export reads it
    for the top-k keys, the aggregates and the CLS rows); an :class:`AttentionSource`."""

    def __init__(self, emb: Embedding, layer: int, head: int, attn: str | None = None) -> None:
        self.tokens, self.layers, self.heads = emb.tokens, (layer,), (head,)
        self._emb = emb
        self._attn = attn
        self.query_stream = emb.streams[attn][0] if attn is not None else None
        self._cache: dict[int, np.ndarray] = {}

    def attention(self, layer: int, head: int, seq: int) -> np.ndarray:
        if seq not in self._cache:
            self._cache[seq] = np.asarray(self._emb.attention(layer, head, seq, self._attn), np.float32)
        return self._cache[seq]


def _cls_rows(att: _SeqAttention) -> np.ndarray:
    """float32 [token]: the attention of each image's first non-patch token (CLS) on each token of
    its image (0 for images without one); the image view's CLS map, exact."""
    tok = att.tokens
    seqs, pos = tok["seq"].to_numpy(), tok["pos"].to_numpy()
    patch = (tok["row"].to_numpy() >= 0) & (tok["col"].to_numpy() >= 0)
    out = np.zeros(len(tok), np.float32)
    layer, head = att.layers[0], att.heads[0]
    for s in np.unique(seqs):
        rows = np.flatnonzero(seqs == s)
        rows = rows[np.argsort(pos[rows], kind="stable")]
        special = np.flatnonzero(~patch[rows])
        if special.size:
            out[rows] = att.attention(layer, head, int(s))[special[0]]
    return out


#: Most by-position values a static page embeds over all heads (positions past
#: ``isqrt(_AGGREGATE_VALUES / heads)`` are left out of the by-position view, as ``max_pos`` does;
#: the by-offset view keeps every position). ~0.4 MB in the file.
_AGGREGATE_VALUES = 1 << 19

#: Largest RGBA atlas (before JPEG) a static page embeds: the notebook's own cap.
_ATLAS_MAX_BYTES = 3 << 20


def _static_atlas(cap: Capture) -> dict[str, Any]:
    """The patch atlas as an RGB JPEG (browsers decode it natively; ~10x smaller than raw)."""
    import io

    from PIL import Image

    atlas, uv = patch_atlas(cap, max_bytes=_ATLAS_MAX_BYTES)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(atlas[..., :3])).save(buf, format="JPEG", quality=90)
    return {"jpeg": buf.getvalue(), "atlas_shape": list(atlas.shape), "uv": array_to_binary(uv, "float32")}
