"""Request/response between the front end and Python (anywidget's experimental commands).

The front end calls ``fetchDetail(request)``; in a notebook that becomes
``invoke(model, "_qk_fetch", request)`` and lands in :func:`dispatch`, which routes on
``request["kind"]`` through the explicit table :data:`HANDLERS`. Handlers take the widget's
:class:`~qkviz.wire.WidgetState` and return a JSON-like dict that may hold numpy arrays;
:func:`qkviz.wire.pack_buffers` moves those into binary frames.

Keeping this in one module isolates the experimental anywidget API: if it changes, only
``QKViz._qk_fetch`` and this file move. A standalone page answers the same requests from embedded
data (``js/src/page/``), so every reply must be reproducible from what
:mod:`qkviz.export` embeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..analysis import aggregate_detail, attention_context, family_detail, patch_atlas, patch_colors
from ..errors import QKVizError, WidgetDataError
from ..wire import MAX_MESSAGE_BYTES, WidgetState, pack_buffers

__all__ = ["HANDLERS", "dispatch"]

log = logging.getLogger(__name__)


def _points(state: WidgetState, request: dict) -> dict:
    """Grid points ``[start, stop)`` of the flattened (head, point) order: coords ``float32 [point,
    dim]`` (dim 2, or 3 for 3-D layouts) and norms ``uint8 [point]`` (min-max per head). The front
    end asks for a focused head whole this way."""
    return state.points(int(request["start"]), int(request["stop"]))


def _sample(state: WidgetState, request: dict) -> dict:
    """The matrix's level of detail: the same points of every cell in ``[start, stop)`` (default the
    sample, ``order[:sample_points]``; ``points``: indices within a head, e.g. searched tokens)."""
    points = request.get("points")
    return state.sample(int(request["start"]), int(request["stop"]), None if points is None else _ints(points))


def _points_at(state: WidgetState, request: dict) -> dict:
    """Points at global indices (``points``), e.g. selected points outside the matrix's sample."""
    return state.points_at(_ints(request["points"]))


def _ints(value: Any) -> list[int]:
    """A list of point indices from a request (a JSON list; never trust its items' types)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of point indices, got {type(value).__name__}")
    return [int(v) for v in value]


def _attention(state: WidgetState, request: dict) -> dict:
    """Exact attention ``float32 [query_pos, key_pos]`` of one head and one seq. With ``detail``
    (the side panel's request), also :func:`~qkviz.analysis.attention_context`: value norms and,
    for images, the patch grid and the pixels; the panel computes its sentence, heatmap and image
    views from these in the browser, as a standalone page does from what it embeds."""
    layer, head, seq = int(request["layer"]), int(request["head"]), int(request["seq"])
    attn = request.get("attn")
    name = None if attn is None else str(attn)
    weights = state.attention(layer, head, seq, name)
    reply = {"layer": layer, "head": head, "seq": seq, **({"attn": attn} if attn else {}), "weights": weights}
    if request.get("detail"):
        if name is None:
            reply.update(attention_context(_attention_source(state), layer, head, seq))
        else:  # one attention of an encoder-decoder: what its score function adds (no values, no images)
            reply.update(value_norms=None, **family_detail(_attention_source(state).capture, layer, head, seq, name))
    return reply


def _attention_source(state: WidgetState) -> Any:
    if not state.has_attention:
        raise WidgetDataError("this embedding has no capture attached, so attention is unavailable")
    return state.embedding


def _aggregate(state: WidgetState, request: dict) -> dict:
    """The aggregate view: one head's attention over every sequence, by position and offset."""
    return aggregate_detail(_attention_source(state), int(request["layer"]), int(request["head"]))


def _atlas(state: WidgetState, request: dict) -> dict:
    """Patch thumbnails: every image tiled into one texture, and each token's place in it."""
    cap = state.embedding.capture
    if cap is None:
        raise WidgetDataError("this embedding has no capture attached, so it holds no images")
    # stay under the widget's message budget (4 MiB) with room for the uv table
    atlas, uv = patch_atlas(cap, max_bytes=3 << 20)
    # typed arrays lose their shape on the way: send it alongside
    return {"atlas": atlas, "atlas_shape": list(atlas.shape), "uv": uv, "colors": patch_colors(cap)}


Handler = Callable[[WidgetState, dict], dict]


#: kind -> handler(state, request) -> response dict (numpy arrays allowed inside). One backend per
#: kind: views of one sequence's attention (sentence, heatmap, image) are computed in the browser
#: from "attention"; kinds that span every sequence ("aggregate", "atlas") only here (a standalone
#: page embeds their answers).
HANDLERS: dict[str, Handler] = {
    "points": _points,
    "sample": _sample,
    "points_at": _points_at,
    "attention": _attention,
    "aggregate": _aggregate,
    "atlas": _atlas,
}


def dispatch(state: WidgetState, request: Any) -> tuple[dict, list[memoryview]]:
    """Answer one front-end request; never raises (errors travel back as ``{"error": str}``).

    Parameters
    ----------
    state : WidgetState
        The state of the widget that received the request.
    request : dict
        ``{"kind": str, ...}``.

    Returns
    -------
    tuple
        The JSON-able response and its binary buffers.
    """
    if not isinstance(request, dict) or not isinstance(request.get("kind"), str):
        return {"error": f"a request must be a dict with a 'kind' string, got {request!r}"}, []
    kind = request["kind"]
    fn = HANDLERS.get(kind)
    if fn is None:
        return {"error": f"unknown request kind {kind!r}; known: {sorted(HANDLERS)}"}, []
    try:
        response = fn(state, request)
    except (QKVizError, KeyError, ValueError, IndexError, TypeError) as err:
        # A bad request must not leave the browser waiting for a reply that never comes.
        log.debug("request %r failed", request, exc_info=True)
        return {"error": f"{type(err).__name__}: {err}"}, []
    msg, buffers = pack_buffers(response)
    size = sum(b.nbytes for b in buffers)
    if size > 2 * MAX_MESSAGE_BYTES:
        log.warning("response to %r is %.1f MiB; chunk it", kind, size / 2**20)
    return msg, buffers
