"""What a standalone HTML page embeds: the view and wire state, the point chunks, the top-k keys of
every query, the exact aggregates and, for images, the patch atlas and the CLS rows.

:func:`snapshot` builds it from a :class:`~qkviz.wire.WidgetState` (never from a live widget);
``qkviz.export`` packs it into the page, and ``js/src/page/`` answers the widget's requests from
it. The layout of the dict is documented in ``docs/internals.md`` ("Static pages").

:func:`head_details` computes each head's attention once, a block of similar-length sequences at a
time (:meth:`qkviz.Capture.attention_blocks`), and feeds the top-k table, the aggregate and the CLS
rows from that one pass: SmolLM2 over 700 sentences (270 heads) took 181 s when every sequence's
attention was recomputed per sequence and per use. ``qkviz.export._lod`` cuts what a page over its
size budget holds from the same details.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis import Aggregator, AttentionSource, attention_blocks, patch_atlas, row_stats
from ..wire import View, WidgetState, array_to_binary

if TYPE_CHECKING:
    from .._capture import Capture
    from ..project import Embedding

__all__ = [
    "snapshot",
    "state_wire",
    "points_wire",
    "sample_wire",
    "attention_wire",
    "head_details",
    "HeadDetail",
    "topk_cell",
]


def snapshot(
    state: WidgetState,
    view: View,
    top_k: int = 0,
    selection: np.ndarray | None = None,
    details: list[HeadDetail | None] | None = None,
) -> dict[str, Any]:
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
    details : list, optional
        :func:`head_details` of ``state`` with ``top_k``, when already computed.

    Returns
    -------
    dict
        ``state``: trait name -> wire value (the :class:`View` fields and ``_meta``, ``_tokens``,
        ``_columns``, ``_selection``; ``_meta`` adds ``modality`` and ``causal``, ``_tokens`` adds
        ``row``/``col`` int32 [token] for image captures); ``points``: the answers to the
        ``"points"`` requests (the whole grid, in chunks; the page answers ``"sample"`` from them);
        ``topk``, ``aggregate``, ``images``: see ``docs/internals.md``.
    """
    out: dict[str, Any] = {"state": state_wire(state, view, selection), "points": points_wire(state)}
    if details is None:
        details = head_details(state, top_k)
    out.update(attention_wire(state, details, top_k))
    return out


def state_wire(state: WidgetState, view: View, selection: np.ndarray | None = None) -> dict[str, Any]:
    """The traits a page starts with (``snapshot(...)["state"]``)."""
    emb = state.embedding
    cap = emb.capture
    tok = emb.tokens
    image = _is_image(state)
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
    return wire


def _binary_chunk(reply: dict[str, Any]) -> dict[str, Any]:
    """A "points" or "sample" reply of the widget state as the page embeds it (binary arrays)."""
    return {
        "start": reply["start"],
        "stop": reply["stop"],
        "coords": array_to_binary(reply["coords"], "float32"),
        "norms": array_to_binary(reply["norms"], "uint8"),
        **({"vnorms": array_to_binary(reply["vnorms"], "uint8")} if "vnorms" in reply else {}),
    }


def points_wire(state: WidgetState) -> list[dict[str, Any]]:
    """Every grid point, as the answers to the ``"points"`` requests (chunks of ``chunk_points``)."""
    chunk = state.chunk_points
    points = []
    for start in range(0, state.n_points, chunk):
        p = state.points(start, min(start + chunk, state.n_points))
        points.append(_binary_chunk(p))
    # every point is embedded: the page gathers the matrix's sample from the chunks (a page that
    # embeds fewer points adds "sample": sample_wire(...))
    return points


def attention_wire(state: WidgetState, details: list[HeadDetail | None], top_k: int) -> dict[str, Any]:
    """``topk``, ``aggregate``, ``images`` and ``families`` of a snapshot from the heads' details."""
    out: dict[str, Any] = {"topk": None, "aggregate": None, "images": None, "families": None}
    if not state.has_attention:
        return out
    out["families"] = _families(state)
    none32 = array_to_binary(np.zeros(0, np.uint32), "uint32")
    topk: list[dict[str, Any]] = []
    cells: list[dict[str, Any] | None] = []
    cls: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    for cell_key, d in zip(state.cells, details):
        attn, la, he = cell_key if state.several else (None, *cell_key)
        if d is None:  # a hole in the grid: nothing to embed, the page never asks
            topk.append(
                {
                    "layer": la,
                    "head": he,
                    "keys": none32,
                    "weights": array_to_binary(np.zeros(0, np.float32), "float32"),
                }
            )
            cells.append(None)
            cls.append(array_to_binary(np.zeros(0, np.float32), "float32"))
            continue
        if top_k > 0:
            assert d.keys is not None and d.weights is not None
            topk.append(
                {
                    "layer": la,
                    "head": he,
                    **({"attn": attn} if attn is not None else {}),
                    "keys": array_to_binary(d.keys, "uint32"),
                    "weights": array_to_binary(d.weights, "float32"),
                }
            )
        agg = d.aggregate
        if agg is None:  # several attentions: the aggregate views read one token stream per sequence
            cells.append(None)
            continue
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
        if d.cls is not None:
            cls.append(array_to_binary(d.cls, "float32"))
    out["topk"] = topk if top_k > 0 else None
    out["aggregate"] = {**shared, "cells": cells}
    cap = state.embedding.capture
    if state.has_images and _is_image(state) and cap is not None:
        out["images"] = {**_static_atlas(cap), "cls": cls}
    return out


def sample_wire(state: WidgetState, points: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """The answers to the ``"sample"`` requests: the matrix's level of detail
    (``state.orders[attn][:state.sample_sizes[attn]]`` of every head), in chunks of cells of one
    attention (as the front end asks for them, from the shown attention's first cell), for a page that does
    not embed every point (a page with every point gathers it).

    Parameters
    ----------
    state : WidgetState
    points : dict of str to uint32 [m], optional
        Per attention, the points of each head to hold instead (a page over its size budget: the
        held points, ``qkviz.export._lod``); they must be the first ``m`` of the page's ``order``.

    Returns
    -------
    list of dict
        ``{"start", "stop", "coords": float32 [cell, m, dim], "norms": uint8 [cell, m]}`` (and
        ``"vnorms"`` uint8 [cell, m] with value vectors) as wire dicts, ``max(1, chunk_points // m)``
        cells each (what the front end asks for at once; a page answers those requests from these
        chunks as they are). Heads are read one at a time (:meth:`WidgetState.sample`).
    """
    out = []
    for a in state.attns:  # the sample is per attention (its own points and order)
        name = a["name"]
        pts = None if points is None else np.asarray(points[name], np.int64)
        m = state.sample_sizes[name] if pts is None else len(pts)
        stop = a["cell_offset"] + len(a["layers"]) * len(a["heads"])
        step = max(1, state.chunk_points // max(1, m))
        for start in range(a["cell_offset"], stop, step):
            s = state.sample(start, min(start + step, stop), pts)
            out.append(_binary_chunk(s))
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


def _is_image(state: WidgetState) -> bool:
    tok = state.embedding.tokens
    return "row" in tok and "col" in tok


# ---------------------------------------------------------------------------------------------
# per head: one pass over its attention


@dataclass
class HeadDetail:
    """What a page embeds of one head, from one pass over its exact attention.

    Attributes
    ----------
    keys, weights : uint32 [token, k], float32 [token, k] or None
        The ``k`` strongest keys of every query (key position, ``2**32-1`` where the sequence is
        shorter than ``k``) and their weights, strongest first; ``None`` when ``top_k`` is 0.
    aggregate : dict or None
        :func:`qkviz.analysis.aggregate_detail` of the head (``None`` for a capture of several
        attentions: the aggregate views read one token stream per sequence).
    cls : float32 [token] or None
        Image captures: each image's CLS row on its tokens (0 without a CLS).
    """

    keys: np.ndarray | None
    weights: np.ndarray | None
    aggregate: dict[str, Any] | None
    cls: np.ndarray | None


def head_details(
    state: WidgetState, top_k: int, *, workers: int | None = None, progress: bool = False
) -> list[HeadDetail | None]:
    """:class:`HeadDetail` of every cell (``None`` for holes), heads in parallel threads.

    Each head's attention is computed once, a block of sequences at a time
    (:meth:`qkviz.Capture.attention_blocks`), and feeds the top-k table, the aggregate and the
    CLS rows together. numpy releases the GIL in the heavy parts, so ``workers`` threads
    (default: the CPU count, at most 8) overlap heads. ``progress``: a bar with an ETA over the
    heads (``tqdm.auto``), shown when they take more than a second: this is the slow part of an
    export (SmolLM2's 270 heads over 700 sentences).
    """
    if not state.has_attention:
        return [None] * len(state.cells)
    emb = state.embedding
    tok = emb.tokens
    seqs, lengths = np.unique(tok["seq"].to_numpy(), return_counts=True)
    # no query has more keys than the longest sequence holds: a larger top_k (`--top-k 2147483648`)
    # would only add padding columns, and allocate them
    top_k = min(top_k, int(lengths.max()) if len(lengths) else 0)
    n_cells = len(state.cells)
    # the by-position matrices grow with the longest sequence squared (ViT: 257² per head)
    max_pos = max(16, int(np.sqrt(_AGGREGATE_VALUES // n_cells)))
    first_special = _first_special(tok) if _is_image(state) else None

    def one(cell: tuple[Any, ...]) -> HeadDetail | None:
        attn, la, he = cell if state.several else (None, *cell)
        if not emb.has(la, he, attn):
            return None
        if attn is not None:  # encoder-decoder: one sequence at a time, rows of the query stream
            keys = weights = None
            if top_k > 0:
                t = topk_cell(_SeqAttention(emb, la, he, attn), la, he, top_k)
                keys, weights = t["keys"], t["weights"]
            return HeadDetail(keys, weights, None, None)
        return head_detail(emb, la, he, top_k, seqs, lengths, max_pos, first_special)

    from tqdm.auto import tqdm

    def bar(results: Iterable[HeadDetail | None]) -> list[HeadDetail | None]:
        shown = tqdm(results, total=n_cells, desc="qkviz html", unit="head", disable=not progress, delay=1.0,
                     leave=False)  # fmt: skip
        return list(shown)

    n = workers or min(8, os.cpu_count() or 1)
    if n <= 1 or n_cells == 1:
        return bar(one(c) for c in state.cells)
    with ThreadPoolExecutor(n) as pool:
        return bar(pool.map(one, state.cells))


def head_detail(
    source: AttentionSource,
    layer: int,
    head: int,
    top_k: int,
    seqs: np.ndarray,
    lengths: np.ndarray,
    max_pos: int,
    first_special: np.ndarray | None = None,
) -> HeadDetail:
    """One head's :class:`HeadDetail` (see :func:`head_details`)."""
    tok = source.tokens
    n = len(tok)
    offsets = _offsets(tok)
    acc = Aggregator(lengths, max_pos)
    keys = weights = None
    if top_k > 0:
        keys = np.full((n, top_k), _NONE, np.uint32)
        weights = np.zeros((n, top_k), np.float32)
    cls = np.zeros(n, np.float32) if first_special is not None else None
    for ids, ln, a in attention_blocks(source, layer, head, seqs):
        acc.add(a)
        t = a.shape[-1]
        real = np.arange(t)[None, :] < ln[:, None]  # [seq, pos]
        rows = offsets[ids][:, None] + np.arange(t)[None, :]
        if keys is not None and weights is not None:
            kk = min(top_k, t)
            # only the real query rows: [query, key_pos], queries in token order within the block
            order, w = _top(a[real], kk)
            inside = order < np.broadcast_to(ln[:, None], real.shape)[real][:, None]  # keys past the end: none
            at = rows[real]
            keys[at, :kk] = np.where(inside, order, _NONE)
            weights[at, :kk] = np.where(inside, w, 0.0)
        if cls is not None and first_special is not None:
            for b, s in enumerate(ids.tolist()):
                p = int(first_special[s])
                if p >= 0:
                    cls[rows[b, : ln[b]]] = a[b, p, : ln[b]]
    return HeadDetail(keys, weights, acc.result(layer, head), cls)


def _top(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``k`` largest weights of each row of ``a`` [row, key_pos], largest first
    (ties: lower position first), and those weights."""
    t = a.shape[-1]
    if t <= 256 and a.size and a.min() >= 0:  # weights (no NaN): their float32 bits order like them
        # one unsigned key per weight, ``bits << 32 | (2**32 - 1 - pos)``: unique in its row, larger
        # for a larger weight and, between equal weights, for the lower position; a plain sort of
        # the keys (vectorised, unlike numpy's stable argsort of short rows) gives the order of the
        # stable argsort below. ``+ 0`` turns a -0.0 into 0.0, whose bits order as zero.
        bits = (a + np.float32(0)).astype(np.float32, copy=False).view(np.uint32).astype(np.uint64)
        key = (bits << np.uint64(32)) | (np.uint64(_NONE) - np.arange(t, dtype=np.uint64))
        top = np.sort(key, axis=-1)[..., : -k - 1 : -1]
        order = (np.uint64(_NONE) - (top & np.uint64(_NONE))).astype(np.intp)
        return order, (top >> np.uint64(32)).astype(np.uint32).view(np.float32)
    if t <= 256:
        order = np.argsort(-a, axis=-1, kind="stable")[..., :k]
        return order, np.take_along_axis(a, order, axis=-1)
    # long rows: partition first, then order only the k chosen (ties at the cut may pick another
    # position of the same weight)
    part = np.argpartition(-a, k - 1, axis=-1)[..., :k]
    w = np.take_along_axis(a, part, axis=-1)
    order = np.lexsort((part, -w), axis=-1)
    return np.take_along_axis(part, order, axis=-1), np.take_along_axis(w, order, axis=-1)


def _offsets(tok: Any) -> np.ndarray:
    """First token row of every sequence id (tokens of a sequence are contiguous, in position order)."""
    seq = tok["seq"].to_numpy()
    out = np.zeros(int(seq.max()) + 1 if len(seq) else 0, np.int64)
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    out[seq[starts]] = starts
    return out


def _first_special(tok: Any) -> np.ndarray:
    """Position of each image's first non-patch token (its CLS), -1 where there is none."""
    seq = tok["seq"].to_numpy()
    pos = tok["pos"].to_numpy()
    special = ~((tok["row"].to_numpy() >= 0) & (tok["col"].to_numpy() >= 0))
    out = np.full(int(seq.max()) + 1 if len(seq) else 0, -1, np.int64)
    idx = np.flatnonzero(special)
    for i in idx[::-1]:  # the first one wins
        out[seq[i]] = pos[i]
    return out


def topk_cell(source: AttentionSource, layer: int, head: int, k: int) -> dict[str, Any]:
    """The ``k`` strongest keys of every query of one head: ``keys`` uint32 [token, k] (key pos,
    ``2**32-1`` where the sequence is shorter than ``k``) and ``weights`` float32 [token, k],
    strongest first.

    With several token streams (encoder–decoder), only the rows of the attention's query stream
    are filled (the others have no query: none), and key positions count within the key stream.
    """
    tok = source.tokens
    n = len(tok)
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


_NONE = np.iinfo(np.uint32).max


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
