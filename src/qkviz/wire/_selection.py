"""The ``_selection`` trait on the wire: the Python half of ``js/src/wire/selection.js``.

A selection (sorted global point indices) travels as whichever is smaller:

* indices: ``{"view", "dtype": "uint32", "shape": [k]}`` — 4 bytes a point;
* bitmask: ``{"view", "dtype": "uint8", "shape": [b], "encoding": "bitmask", "start", "count"}`` —
  one bit a point of ``[start, start + 8 b)``, least significant bit first.

A page whose selection is larger than one page → kernel message may carry (``upload_bytes`` in
``_meta``; about 1 MB fails in Colab, ``docs/environments.md``) sends the bytes ahead in parts and
then sets ``{"encoding": "parts", "id", "count", "parts", "inner": {dtype, shape, encoding?,
start?}}``; :class:`Uploads` keeps the parts until that wire arrives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WidgetDataError
from ._codec import array_to_binary, binary_to_array

__all__ = ["pack_selection", "unpack_selection", "Uploads"]

#: Parts one upload may have, at most (a 512 KiB part each: 2 GiB), and uploads kept at once.
MAX_PARTS = 4096
MAX_UPLOADS = 4


def pack_selection(indices: Any) -> dict[str, Any]:
    """The smaller wire of a selection.

    Parameters
    ----------
    indices : array of int
        Global point indices, ``>= 0``; sorted and deduplicated here.

    Returns
    -------
    dict
        An indices or a bitmask wire (module docstring).

    Examples
    --------
    >>> w = pack_selection([3, 4, 5, 9])
    >>> w["encoding"], w["start"], w["count"], bytes(w["view"])
    ('bitmask', 3, 4, b'G')
    >>> pack_selection([0, 10**6])["dtype"]
    'uint32'
    """
    idx = np.unique(np.asarray(indices, np.int64).reshape(-1))
    if idx.size == 0:
        return array_to_binary(np.zeros(0, np.uint32), "uint32")
    start = int(idx[0])
    n_bytes = (int(idx[-1]) - start) // 8 + 1
    if n_bytes >= 4 * idx.size:
        return array_to_binary(idx, "uint32")
    bits = np.zeros(n_bytes * 8, bool)
    bits[idx - start] = True
    packed = np.packbits(bits, bitorder="little")
    return {**array_to_binary(packed, "uint8"), "encoding": "bitmask", "start": start, "count": int(idx.size)}


def unpack_selection(wire: Any, n_points: int, uploads: Uploads | None = None) -> np.ndarray:
    """Global point indices (``int64``, sorted, inside ``[0, n_points)``) of a selection wire.

    Indices outside the grid are dropped: never trust indices from the page.

    Raises
    ------
    WidgetDataError
        A malformed wire, or a parts wire whose parts did not all arrive.
    """
    if not isinstance(wire, dict):
        raise WidgetDataError(f"a selection wire is a dict, got {type(wire).__name__}")
    encoding = wire.get("encoding")
    if encoding == "parts":
        if uploads is None:
            raise WidgetDataError("a selection sent in parts needs the widget's uploads")
        inner = dict(wire.get("inner") or {})
        inner["view"] = uploads.take(str(wire.get("id")), int(wire.get("parts", -1)))
        return unpack_selection(inner, n_points)
    if encoding == "bitmask":
        bits = binary_to_array({"view": wire.get("view"), "dtype": "uint8", "shape": wire.get("shape")})
        try:
            start = int(wire["start"])
        except (KeyError, TypeError, ValueError) as err:
            raise WidgetDataError("a bitmask selection needs its start") from err
        idx = np.flatnonzero(np.unpackbits(bits.reshape(-1), bitorder="little")).astype(np.int64) + start
    elif encoding is None:
        idx = binary_to_array(wire).astype(np.int64).reshape(-1)
    else:
        raise WidgetDataError(f"unknown selection encoding {encoding!r}")
    return np.unique(idx[(idx >= 0) & (idx < n_points)])


class Uploads:
    """Parts of selections sent ahead by the page (``{"kind": "selection_part"}`` requests).

    Parameters
    ----------
    max_bytes : int
        Bytes one upload may hold in all (the larger wire of a selection of every point).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._parts: dict[str, dict[int, bytes]] = {}

    def add(self, request: dict, buffers: list[Any]) -> dict[str, Any]:
        """Keep one part; answers ``{"ok": True}`` (errors raise, and travel back as errors)."""
        try:
            upload, part, parts = str(request["id"]), int(request["part"]), int(request["parts"])
        except (KeyError, TypeError, ValueError) as err:
            raise WidgetDataError("a selection part needs id, part and parts") from err
        if not 0 < parts <= MAX_PARTS or not 0 <= part < parts or len(buffers) != 1:
            raise WidgetDataError(f"bad selection part {part} of {parts} with {len(buffers)} buffers")
        got = self._parts.setdefault(upload, {})
        data = bytes(memoryview(buffers[0]).cast("B"))
        if sum(len(b) for b in got.values()) + len(data) > self.max_bytes:
            self._parts.pop(upload, None)
            raise WidgetDataError(f"selection upload {upload} exceeds {self.max_bytes} bytes")
        got[part] = data
        while len(self._parts) > MAX_UPLOADS:  # an abandoned upload (a newer lasso won) goes
            self._parts.pop(next(iter(self._parts)))
        return {"ok": True}

    def take(self, upload: str, parts: int) -> bytes:
        """The bytes of an upload, once every one of its ``parts`` arrived (then forgotten)."""
        got = self._parts.get(upload)
        if got is None or sorted(got) != list(range(parts)):
            raise WidgetDataError(f"selection upload {upload} is incomplete")
        del self._parts[upload]
        return b"".join(got[i] for i in range(parts))
