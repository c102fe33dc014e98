"""How a standalone page carries its data: binary buffers packed into one blob, narrowed, byte-
shuffled, gzip-compressed and written as raw bytes in a windows-1252 page (``docs/internals.md``,
"The file").
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..wire import PARKED, array_to_binary, binary_to_array

__all__ = ["embed_bytes", "escape_bytes", "page_bytes", "pack_state", "key_delta", "COMPACT_BITS", "COMPACT_EXACT"]

_ALIGN = 8
#: Bits per value of the arrays that ``compact`` narrows, by their name in the snapshot
#: (:func:`qkviz.export._snapshot.snapshot`); other floats get 16, other integers stay lossless.
#: Layouts are drawn on a screen (2047 levels across the box: 0.16 px in a 640-pixel view), weights
#: as line widths, heatmap colours and 3-decimal numbers (256 levels), the quantised norms (uint8)
#: as a colour ramp and dot sizes (64 levels), the exact aggregates as heatmaps, bars and
#: 3-decimal scores (4096 levels).
COMPACT_BITS = {
    "coords": 11, "weights": 8, "cls": 8, "norms": 6, "vnorms": 6, "by_position": 12, "by_offset": 12, "by_offset_mean": 12,
    "sink": 8, "position_effect": 8,
}  # fmt: skip
#: A value that ``compact`` keeps exact in a narrowed float array, by the array's name: a layout's
#: parked points (:data:`qkviz.wire.PARKED`, far outside the box) get a code of their own. Quantised
#: with the rest, they would stretch the range from [-1, 1] to [-1, 100] and move every drawn point
#: by up to 10 px, more than a click's reach.
COMPACT_EXACT = {"coords": PARKED}
_ITEMSIZE = {"float32": 4, "uint32": 4, "int32": 4, "uint8": 1, "float64": 8, "int64": 8, "uint16": 2}


# ---------------------------------------------------------------------------------------------
# the data block: raw bytes in a windows-1252 page

#: WHATWG windows-1252 (what browsers use for that label, ``latin1`` and ``ascii``): bytes 0x80-0x9F
#: become these code points; every other byte is its own code point. A bijection, so any byte
#: sequence survives the round trip (Python's ``cp1252`` codec rejects 0x81, 0x8D, 0x8F, 0x90, 0x9D).
_W1252_HIGH = (
    0x20AC, 0x81, 0x201A, 0x192, 0x201E, 0x2026, 0x2020, 0x2021, 0x2C6, 0x2030, 0x160, 0x2039, 0x152, 0x8D,
    0x17D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x2DC, 0x2122, 0x161,
    0x203A, 0x153, 0x9D, 0x17E, 0x178,
)  # fmt: skip
_TO_PAGE = {0x80 + i: cp for i, cp in enumerate(_W1252_HIGH)}
_FROM_PAGE = {cp: 0x80 + i for i, cp in enumerate(_W1252_HIGH)}
#: Bytes the HTML parser would alter (NUL -> U+FFFD, CR -> LF) or that could end the block (``<``),
#: and the escape byte itself: each becomes ``=`` and a letter.
_ESCAPE = {0x00: b"=0", 0x0D: b"=1", 0x3C: b"=2", 0x3D: b"=3"}


def escape_bytes(blob: bytes) -> bytes:
    """``blob`` with the bytes the page cannot hold raw written as ``=`` and a digit (its bytes in
    the page; decoded as windows-1252, one character per byte).

    Examples
    --------
    >>> escape_bytes(bytes([0x41, 0x00, 0x3C, 0x80, 0xFF]))
    b'A=0=2\\x80\\xff'
    """
    raw = np.frombuffer(blob, np.uint8)
    codes = np.full(256, 0, np.uint8)
    for byte, esc in _ESCAPE.items():
        codes[byte] = esc[1]
    special = np.flatnonzero(codes[raw])
    if not special.size:
        return bytes(blob)
    # vectorised: each special byte becomes "=" followed by its digit (a 20 MB blob: ~0.05 s)
    out = np.insert(raw, special + 1, codes[raw[special]])
    out[special + np.arange(special.size)] = ord("=")
    return out.tobytes()


def embed_bytes(blob: bytes) -> str:
    """``blob`` as the text of the page's data block (one character per byte, a few escaped).

    Examples
    --------
    >>> embed_bytes(bytes([0x41, 0x00, 0x3C, 0x80, 0xFF]))
    'A=0=2€ÿ'
    """
    return escape_bytes(blob).decode("latin-1").translate(_TO_PAGE)


def page_bytes(text: str) -> bytes:
    """The bytes of a page from :func:`to_html` (windows-1252; the text must not hold other characters)."""
    return text.translate(_FROM_PAGE).encode("latin-1")


# ---------------------------------------------------------------------------------------------
# state packing


def pack_state(
    state: Any,
    *,
    compress: bool = True,
    compact: bool = False,
    float_bits: Mapping[str, int] | None = None,
    float_exact: Mapping[str, float] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """Split the binary buffers out of a (nested) widget state.

    Parameters
    ----------
    state : dict
        Nested dicts and lists; ``bytes``, ``memoryview`` and numpy arrays become buffers. A wire
        dict ``{"view": buffer, "dtype": ..., "shape": ...}`` keeps its dtype, so its buffer can be
        byte-shuffled by item size and, with ``compact``, narrowed.
    compress : bool
        gzip the blob.
    compact : bool
        Store typed buffers narrower, expanded back to their dtype by the page: ``uint32``/``int32``
        losslessly into 8 or 16 bits when their range allows (``2**32-1``, the "none" marker, is
        kept); ``float32`` in ``b`` bits over the array's own ``[min, max]`` (absolute error at
        most ``(max - min) / (2 * (2**b - 1))``).
    float_bits : dict of str to int, optional
        ``b`` per name of the wire dict (its key in the enclosing dict), 16 for the others. Lower
        it where the values need less: layouts drawn on a screen, attention weights drawn as lines.
    float_exact : dict of str to float, optional
        A value per name kept exact by ``compact`` (a code of its own, outside the ``[min, max]`` of
        the other values, which then get ``2**b - 2`` steps): a marker such as a parked point.

    Returns
    -------
    meta : dict
        ``{"state": JSON-able state with {"$qkbuf": i} placeholders, "buffers": [{"offset",
        "length", "shuffle", "encoding"?}], "compressed": bool}``.
    blob : bytes
        The buffers, concatenated (8-byte aligned), optionally gzip-compressed.

    Examples
    --------
    >>> xy = {"view": memoryview(bytes(64)), "dtype": "float32", "shape": [8, 2]}
    >>> meta, blob = pack_state({"xy": xy, "label": b"abc"}, compress=False)
    >>> meta["state"]
    {'xy': {'view': {'$qkbuf': 0}, 'dtype': 'float32', 'shape': [8, 2]}, 'label': {'$qkbuf': 1}}
    >>> meta["buffers"]
    [{'offset': 0, 'length': 64, 'shuffle': 4}, {'offset': 64, 'length': 3, 'shuffle': 1}]
    """
    bits_of = dict(float_bits or {})
    exact_of = dict(float_exact or {})
    parts: list[bytes] = []
    specs: list[dict[str, Any]] = []
    offset = 0

    def add(buf: Any, dtype: str | None, bits: int = 16, exact: float | None = None) -> dict[str, int]:
        nonlocal offset
        raw = memoryview(buf).cast("B").tobytes()
        spec: dict[str, Any] = {}
        if compact and dtype is not None:
            raw, encoding = _narrow(raw, dtype, bits, exact)
            if encoding:
                spec["encoding"] = encoding
        itemsize = _ITEMSIZE.get(spec.get("encoding", {}).get("as", dtype or ""), 1)
        shuffle = itemsize if itemsize > 1 and len(raw) % itemsize == 0 and len(raw) >= 64 else 1
        if shuffle > 1:
            raw = np.frombuffer(raw, np.uint8).reshape(-1, shuffle).T.tobytes()
        pad = -offset % _ALIGN
        if pad:
            parts.append(bytes(pad))
            offset += pad
        specs.append({"offset": offset, "length": len(raw), "shuffle": shuffle, **spec})
        parts.append(raw)
        offset += len(raw)
        return {"$qkbuf": len(specs) - 1}

    def walk(value: Any, name: str = "") -> Any:
        if isinstance(value, np.ndarray):
            value = array_to_binary(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return add(value, None)
        if isinstance(value, dict):
            if "view" in value and "dtype" in value:  # a wire dict: its buffer has a known dtype
                out = {str(k): walk(v) for k, v in value.items() if k != "view"}
                view = add(value["view"], str(value["dtype"]), bits_of.get(name, 16), exact_of.get(name))
                return {"view": view, **out}
            return {str(k): walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, name) for v in value]
        if isinstance(value, np.generic):
            return walk(value.item())
        if isinstance(value, float) and not np.isfinite(value):
            return None  # JSON has no NaN/Infinity; the widget treats null as "missing"
        return value

    packed = walk(state)
    blob = b"".join(parts)
    if compress:
        blob = gzip.compress(blob, compresslevel=6, mtime=0)
    return {"state": packed, "buffers": specs, "compressed": compress}, blob


_NONE32 = 2**32 - 1


def _narrow(raw: bytes, dtype: str, bits: int = 16, exact: float | None = None) -> tuple[bytes, dict[str, Any] | None]:
    """Narrow one buffer for ``compact`` export; ``(raw, None)`` when it cannot or need not be.

    A float32 buffer holding ``exact`` stores it as the top code, ``2**bits - 1``, and quantises
    the other values over their own range in the codes below.
    """
    if dtype == "uint8" and bits < 8 and len(raw) >= 64:
        # fewer levels over 0..255 (the per-head quantised norms): q = rint(v * levels / 255)
        levels = 2 ** int(bits) - 1
        q = np.rint(np.frombuffer(raw, np.uint8) * (levels / 255)).astype(np.uint8)
        return q.tobytes(), {"as": "uint8", "to": "uint8", "levels": levels}
    if dtype not in ("float32", "uint32", "int32") or len(raw) < 64 or len(raw) % 4:
        return raw, None
    a = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
    if dtype == "float32":
        if not np.isfinite(a).all():
            return raw, None
        kept = a == np.float32(exact) if exact is not None else None
        if kept is not None and not kept.any():
            kept = None
        levels = 2 ** int(bits) - (1 if kept is None else 2)
        rest = a if kept is None else a[~kept]
        lo, hi = (float(rest.min()), float(rest.max())) if rest.size else (0.0, 0.0)
        narrow = "uint8" if bits <= 8 else "<u2"
        span = hi - lo
        # the kept value gets its own code below, never a cast out of range
        inside = a if kept is None else np.where(kept, lo, a)
        q = np.zeros(a.shape, narrow) if span == 0 else np.rint((inside - lo) * (levels / span)).astype(narrow)
        name = "uint8" if bits <= 8 else "uint16"
        encoding: dict[str, Any] = {"as": name, "to": "float32", "min": lo, "max": hi, "levels": levels}
        if kept is not None:
            q[kept] = levels + 1
            encoding["exact"] = float(np.float32(exact))
        return q.tobytes(), encoding
    values = a.astype(np.int64)
    none = (values == _NONE32) if dtype == "uint32" else np.zeros(a.shape, bool)
    real = values[~none]
    lo = int(real.min()) if real.size else 0
    top = int(real.max()) - lo if real.size else 0
    for narrow, cap in (("uint8", 255), ("uint16", 65535)):
        if top < cap:  # cap itself is reserved for the "none" marker
            out = np.where(none, cap, values - lo).astype(np.dtype(narrow).newbyteorder("<"))
            return out.tobytes(), {"as": narrow, "to": dtype, "add": lo, "none": bool(none.any())}
    return raw, None


def key_delta(entry: dict[str, Any]) -> dict[str, Any]:
    """One head's top-k table, reordered to compress better (lossless; ``layout: "key-delta"``).

    Each query's keys sorted by position (its weights follow), stored key-rank-major
    (``[k, token]``) as differences: the first key's position, then the gap to the one before
    (gaps of a set of distinct keys are >= 1, so 0 marks "no key": sequences shorter than ``k``).
    Gaps are small where the keys cluster (near the query, at [CLS]/[SEP]); gzip packs them ~30 %
    tighter than positions ordered by weight. ``js/src/page/transport.js`` undoes it.
    """
    keys = binary_to_array(entry["keys"]).astype(np.int64)
    weights = binary_to_array(entry["weights"]).astype(np.float32)
    if keys.ndim != 2 or keys.size == 0:
        return entry
    some = np.flatnonzero((keys != _NONE32).any(axis=1))
    if 2 * some.size >= len(keys):
        gaps, weights = _sorted_gaps(keys, weights)
        gaps_t, weights_t = np.ascontiguousarray(gaps.T), np.ascontiguousarray(weights.T)
    else:
        # most rows hold no key (a sampled page: the tokens it does not hold): such a row is all
        # gaps 0 in any order, and the stable sort leaves its weights where they are
        gaps_t = np.zeros(keys.shape[::-1], np.int64)
        weights_t = np.ascontiguousarray(weights.T)
        if some.size:
            gaps, w = _sorted_gaps(keys[some], weights[some])
            gaps_t[:, some] = gaps.T
            weights_t[:, some] = w.T
    return {
        **entry,
        "layout": "key-delta",
        "keys": array_to_binary(gaps_t, "uint32"),
        "weights": array_to_binary(weights_t, "float32"),
    }


def _sorted_gaps(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of keys sorted by position, as gaps (0 for "none"), and their weights in that order."""
    order = np.argsort(keys, axis=1, kind="stable")  # the "none" marker (2**32-1) sorts last
    keys = np.take_along_axis(keys, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    none = keys == _NONE32
    gaps = keys.copy()
    gaps[:, 1:] = keys[:, 1:] - keys[:, :-1]
    gaps[none] = 0
    return gaps, weights
