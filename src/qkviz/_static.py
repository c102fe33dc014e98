"""What a standalone HTML page embeds from a widget: the trait state, the point chunks, the top-k
keys of every query, the exact aggregates and, for images, the patch atlas and the CLS rows.

``qkviz.export`` packs :func:`static_state`'s dict into the page; ``js/src/transport.js``
(``staticTransport``) and ``js/src/static.js`` (``staticExtra``) answer the widget's requests from
it. The layout of the dict is documented on ``QKViz._static_state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._codec import array_to_binary

__all__ = ["static_state", "topk_cell"]


def static_state(viz: Any, top_k: int = 0) -> dict[str, Any]:
    """``QKViz._static_state``: see its docstring."""
    state = {name: getattr(viz, name) for name in viz.trait_names(sync=True)
             if not name.startswith("_") or name in ("_meta", "_tokens", "_columns", "_selection")}
    for k in ("_esm", "_css", "_anywidget_id", "_dom_classes", "layout", "tabbable", "tooltip",
              "_model_module", "_model_module_version", "_model_name", "_view_count",
              "_view_module", "_view_module_version", "_view_name"):
        state.pop(k, None)
    from . import _detail

    cap = _detail._capture_of(viz._emb)
    tok = viz._emb.tokens
    image = "row" in tok and "col" in tok
    # copies: the widget's own traits stay as they are
    state["_meta"] = {**state["_meta"], "modality": "image" if image else "text",
                      "causal": bool(getattr(cap, "causal", False))}
    if image:
        state["_tokens"] = {**state["_tokens"], "row": array_to_binary(tok["row"].to_numpy(np.int64), "int32"),
                            "col": array_to_binary(tok["col"].to_numpy(np.int64), "int32")}
    chunk = viz._meta["chunk_points"]
    points = [
        {"start": s, "stop": min(s + chunk, len(viz._coords)),
         "coords": array_to_binary(viz._coords[s:s + chunk], "float32"),
         "norms": array_to_binary(viz._norms[s:s + chunk], "uint8")}
        for s in range(0, len(viz._coords), chunk)
    ]
    out: dict[str, Any] = {"state": state, "points": points, "topk": None, "aggregate": None, "images": None}
    if not viz._meta["has_attention"]:
        return out
    has = getattr(viz._emb, "has", lambda la, he: True)
    topk, cells, cls = [], [], []
    shared: dict[str, Any] = {}
    # the by-position matrices grow with the longest sequence squared (ViT: 257² per head)
    max_pos = max(16, int(np.sqrt(_AGGREGATE_VALUES // len(viz._cells))))
    for la, he in viz._cells:
        if not has(la, he):  # a hole in the grid: nothing to embed, the page never asks
            topk.append({"layer": la, "head": he, "keys": array_to_binary(np.zeros(0, np.uint32), "uint32"),
                         "weights": array_to_binary(np.zeros(0, np.float32), "float32")})
            cells.append(None)
            cls.append(array_to_binary(np.zeros(0, np.float32), "float32"))
            continue
        att = _SeqAttention(viz._emb, la, he)
        if top_k > 0:
            cell = topk_cell(viz, la, he, top_k, attention=att)
            topk.append({**cell, "keys": array_to_binary(cell["keys"], "uint32"),
                         "weights": array_to_binary(cell["weights"], "float32")})
        agg = _detail.aggregate_detail(att, la, he, max_pos=max_pos)
        if not shared:
            shared = {"count": array_to_binary(agg["count"], "int32"),
                      "offsets": array_to_binary(agg["offsets"], "int32"), "n_seqs": agg["n_seqs"]}
        cells.append({"layer": la, "head": he, "scores": agg["scores"],
                      **{k: array_to_binary(agg[k], "float32") for k in ("by_position", "by_offset", "by_offset_mean")}})
        if image:
            cls.append(array_to_binary(_cls_rows(att), "float32"))
    out["topk"] = topk if top_k > 0 else None
    out["aggregate"] = {**shared, "cells": cells}
    if viz._images and image:
        out["images"] = {**_static_atlas(cap), "cls": cls}
    return out


def topk_cell(viz: Any, layer: int, head: int, k: int, attention: Any = None) -> dict[str, Any]:
    """The ``k`` strongest keys of every query of one head: ``keys`` uint32 [token, k] (key pos,
    ``2**32-1`` where the sequence is shorter than ``k``) and ``weights`` float32 [token, k],
    strongest first. ``attention``: a `_SeqAttention` to reuse (else the embedding's)."""
    n = viz._n
    keys = np.full((n, k), np.iinfo(np.uint32).max, np.uint32)
    weights = np.zeros((n, k), np.float32)
    source = attention if attention is not None else viz._emb
    tok = viz._emb.tokens
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
    for the top-k keys, the aggregates and the CLS rows). Quacks like an Embedding for
    ``qkviz._detail.aggregate_detail``: ``tokens``, ``layers``, ``heads``, ``attention``."""

    def __init__(self, emb: Any, layer: int, head: int) -> None:
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


def _static_atlas(cap: Any) -> dict[str, Any]:
    """The patch atlas as an RGB JPEG (browsers decode it natively; ~10x smaller than raw)."""
    import io

    from PIL import Image

    from . import _detail

    atlas, uv = _detail.patch_atlas(cap, max_bytes=_ATLAS_MAX_BYTES)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(atlas[..., :3])).save(buf, format="JPEG", quality=90)
    return {"jpeg": buf.getvalue(), "atlas_shape": list(atlas.shape), "uv": array_to_binary(uv, "float32")}
