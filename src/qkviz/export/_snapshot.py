"""What a standalone HTML page embeds: the view and wire state, the point chunks, the top-k keys of
every query, the exact aggregates and, for images, the patch atlas and the CLS rows.

:func:`snapshot` builds it from a :class:`~qkviz.wire.WidgetState` (never from a live widget);
``qkviz.export`` packs it into the page, and ``js/src/static/`` answers the widget's requests from
it. The layout of the dict is documented in ``docs/internals.md`` ("Static pages").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import AttentionSource, aggregate_detail, patch_atlas
from ..wire import View, WidgetState, array_to_binary

if TYPE_CHECKING:
    from .._capture import Capture
    from ..project import Embedding

__all__ = ["snapshot", "sample_wire", "topk_cell"]


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
        ``"points"`` requests (the whole grid, in chunks; the page answers ``"sample"`` from them);
        ``topk``, ``aggregate``, ``images``: see ``docs/internals.md``.
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
            "causal": bool(cap.causal) if cap is not None else False,
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
    # every point is embedded: the page gathers the matrix's sample from the chunks (a page that
    # embeds fewer points adds "sample": sample_wire(state))
    out: dict[str, Any] = {"state": wire, "points": points, "topk": None, "aggregate": None, "images": None}
    if not state.has_attention:
        return out
    topk: list[dict[str, Any]] = []
    cells: list[dict[str, Any] | None] = []
    cls: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    # the by-position matrices grow with the longest sequence squared (ViT: 257² per head)
    max_pos = max(16, int(np.sqrt(_AGGREGATE_VALUES // len(state.cells))))
    for la, he in state.cells:
        if not emb.has(la, he):  # a hole in the grid: nothing to embed, the page never asks
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
        att = _SeqAttention(emb, la, he)
        if top_k > 0:
            cell = topk_cell(att, la, he, top_k)
            topk.append(
                {
                    **cell,
                    "keys": array_to_binary(cell["keys"], "uint32"),
                    "weights": array_to_binary(cell["weights"], "float32"),
                }
            )
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


def sample_wire(state: WidgetState) -> list[dict[str, Any]]:
    """The answers to the ``"sample"`` requests: the matrix's level of detail
    (``state.order[:state.sample_points]`` of every head), in chunks of cells, for a page that does
    not embed every point (``snapshot(...)["sample"]``; a page with every point gathers it).

    Returns
    -------
    list of dict
        ``{"start", "stop", "coords": float32 [cell, m, dim], "norms": uint8 [cell, m]}`` as wire
        dicts, ``max(1, chunk_points // m)`` cells each (what the front end asks for at once; a
        page answers those requests from these chunks as they are).
    """
    step = max(1, state.chunk_points // max(1, state.sample_points))
    out = []
    for start in range(0, len(state.cells), step):
        s = state.sample(start, min(start + step, len(state.cells)))
        out.append(
            {
                "start": s["start"],
                "stop": s["stop"],
                "coords": array_to_binary(s["coords"], "float32"),
                "norms": array_to_binary(s["norms"], "uint8"),
            }
        )
    return out


def topk_cell(source: AttentionSource, layer: int, head: int, k: int) -> dict[str, Any]:
    """The ``k`` strongest keys of every query of one head: ``keys`` uint32 [token, k] (key pos,
    ``2**32-1`` where the sequence is shorter than ``k``) and ``weights`` float32 [token, k],
    strongest first."""
    tok = source.tokens
    n = len(tok)
    keys = np.full((n, k), np.iinfo(np.uint32).max, np.uint32)
    weights = np.zeros((n, k), np.float32)
    seqs, offsets = tok["seq"].to_numpy(), np.arange(n)
    pos = tok["pos"].to_numpy()
    for s in np.unique(seqs):
        rows = offsets[seqs == s]
        rows = rows[np.argsort(pos[rows], kind="stable")]  # attention rows are in pos order
        a = np.asarray(source.attention(layer, head, int(s)), np.float32)
        kk = min(k, a.shape[1])
        order = np.argsort(-a, axis=1, kind="stable")[:, :kk]
        keys[rows, :kk] = order
        weights[rows, :kk] = np.take_along_axis(a, order, axis=1)
    return {"layer": layer, "head": head, "keys": keys, "weights": weights}


class _SeqAttention:
    """One head's exact attention per sequence, computed once and kept (the static export reads it
    for the top-k keys, the aggregates and the CLS rows); an :class:`AttentionSource`."""

    def __init__(self, emb: Embedding, layer: int, head: int) -> None:
        self.tokens, self.layers, self.heads = emb.tokens, (layer,), (head,)
        self._emb = emb
        self._cache: dict[int, np.ndarray] = {}

    def attention(self, layer: int, head: int, seq: int) -> np.ndarray:
        if seq not in self._cache:
            self._cache[seq] = np.asarray(self._emb.attention(layer, head, seq), np.float32)
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
