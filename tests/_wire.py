"""Trait state as JSON for the browser harness pages (buffers as ``{"$b64": ...}``, revived there)."""

from __future__ import annotations

import base64

import numpy as np


def wire_json(value):
    """JSON-able copy of widget state: arrays and memoryviews become ``{"$b64": ...}``."""
    if isinstance(value, np.ndarray):
        value = memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
    if isinstance(value, (memoryview, bytes)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: wire_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


#: A JS function ``(wire) => number[]``: the global point indices of a ``_selection`` wire (indices or
#: bitmask, ``js/src/wire/selection.js``), for browser tests that read what the page wrote.
SELECTION_JS = """(w) => {
  if (!w || !w.view) return [];
  const b = new Uint8Array(w.view.buffer, w.view.byteOffset, w.view.byteLength);
  if (w.encoding === 'bitmask') {
    const out = [];
    for (let i = 0; i < b.length * 8; i++) if (b[i >> 3] & (1 << (i & 7))) out.push(w.start + i);
    return out;
  }
  return Array.from(new Uint32Array(b.slice().buffer));
}"""
