"""Request/response between the front end and Python (anywidget's experimental commands).

The front end calls ``fetchDetail(request)``; in a notebook that becomes
``invoke(model, "_qk_fetch", request)`` and lands in :func:`dispatch`, which routes on
``request["kind"]`` to a handler registered with :func:`handler`. Handlers return a JSON-like dict that
may hold numpy arrays; :func:`qkviz._codec.pack_buffers` moves those into binary frames.

Built-in kinds (this module): ``"points"`` (a chunk of the flattened grid), ``"attention"`` (exact
attention of one head and one seq). Other modules add kinds by importing this module and decorating a
function with ``@handler("kind")``; ``qkviz._detail`` (the side-panel views) is imported on the first
unknown kind so that its handlers register themselves.

Keeping this in one module isolates the experimental anywidget API: if it changes, only
``QKViz._qk_fetch`` and this file move. A static page answers the same requests from embedded data
(``js/src/transport.js``), so every handler's response must be reproducible from
``QKViz._static_state()``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ._codec import MAX_MESSAGE_BYTES, pack_buffers
from .errors import QKVizError

__all__ = ["handler", "dispatch", "HANDLERS"]

log = logging.getLogger(__name__)

Handler = Callable[[Any, dict], dict]
#: kind -> function(widget, request) -> response dict (numpy arrays allowed inside)
HANDLERS: dict[str, Handler] = {}
_EXTENSIONS = ("qkviz._detail",)


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register ``fn(widget, request) -> dict`` for requests of ``kind``."""

    def deco(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return deco


def _load_extensions() -> None:
    for name in _EXTENSIONS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but one of its imports failed: say so
                log.warning("could not import %s: %s", name, err)


def dispatch(widget: Any, request: Any) -> tuple[dict, list[memoryview]]:
    """Answer one front-end request; never raises (errors travel back as ``{"error": str}``).

    Parameters
    ----------
    widget : QKViz
        The widget that received the request.
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
    if kind not in HANDLERS:
        _load_extensions()
    fn = HANDLERS.get(kind)
    if fn is None:
        return {"error": f"unknown request kind {kind!r}; known: {sorted(HANDLERS)}"}, []
    try:
        response = fn(widget, request)
    except (QKVizError, KeyError, ValueError, IndexError, TypeError) as err:
        # A bad request must not leave the browser waiting for a reply that never comes.
        log.debug("request %r failed", request, exc_info=True)
        return {"error": f"{type(err).__name__}: {err}"}, []
    msg, buffers = pack_buffers(response)
    size = sum(b.nbytes for b in buffers)
    if size > 2 * MAX_MESSAGE_BYTES:
        log.warning("response to %r is %.1f MiB; chunk it", kind, size / 2**20)
    return msg, buffers


@handler("points")
def _points(widget: Any, request: dict) -> dict:
    """Grid points ``[start, stop)`` of the flattened (head, point) order: coords ``float32 [point,
    dim]`` (dim 2, or 3 for 3-D layouts) and norms ``uint8 [point]`` (min-max per head)."""
    start, stop = int(request["start"]), int(request["stop"])
    coords, norms = widget._grid_arrays()
    if not 0 <= start <= stop <= len(coords):
        raise IndexError(f"points [{start}, {stop}) outside [0, {len(coords)})")
    return {"start": start, "stop": stop, "coords": coords[start:stop], "norms": norms[start:stop]}


@handler("attention")
def _attention(widget: Any, request: dict) -> dict:
    """Exact attention ``float32 [query_pos, key_pos]`` of one head and one seq."""
    layer, head, seq = int(request["layer"]), int(request["head"]), int(request["seq"])
    weights = np.asarray(widget._attention(layer, head, seq), dtype=np.float32)
    return {"layer": layer, "head": head, "seq": seq, "weights": weights}
