"""Standalone HTML: one file that holds the widget, its data and its attention detail.

The file runs the widget's own bundled ES module (``qkviz/static/widget.js``) against a small stand-in
for the anywidget model, so the page behaves like the notebook widget with no kernel, no server and
no network: it opens from disk (``file://``), from a web server, or as an e-mail attachment. Data
that a notebook would fetch from Python on demand is taken from the embedded state (see
``QKViz._static_state``).

Layout of the file (all inert ``<script>`` blocks; nothing is fetched):

* ``#qkviz-esm``: the bundle as a JSON string (``<`` escaped, so no ``</script>`` can end it early),
* ``#qkviz-meta``: the widget state as JSON with every binary buffer replaced by ``{"$qkbuf": i}``,
* ``#qkviz-data``: all buffers in one blob, each aligned to 8 bytes, byte-shuffled by item size
  (numbers whose high bytes agree compress better), optionally narrowed (``compact``) and
  gzip-compressed, written as raw bytes: the page is ``windows-1252``, in which every byte is one
  character, so the blob costs ~1.02 bytes a byte (base64 costs 1.33). The four bytes HTML would
  alter or end the block at (NUL, CR, ``<``) and the escape byte itself are written as ``=`` plus
  a letter. Everything else in the page is ASCII (JSON uses ``\\u`` escapes, the title ``&#`` references),
* a small runtime (``_export_runtime.js``) that rebuilds ``DataView`` objects and starts the widget.

Examples
--------
>>> import qkviz                                              # doctest: +SKIP
>>> emb = qkviz.embed(qkviz.capture("minilm", texts))        # doctest: +SKIP
>>> qkviz.export.save_html(emb, "minilm.html")               # doctest: +SKIP
PosixPath('minilm.html')
"""

from __future__ import annotations

import gzip
import html
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InputError, WidgetDataError

__all__ = ["save_html", "to_html"]

_HERE = pathlib.Path(__file__).parent
BUNDLE = _HERE / "static" / "widget.js"
_RUNTIME = _HERE / "_export_runtime.js"
_ALIGN = 8
#: Strongest keys per query embedded by default: enough for the lines (the widget draws 5).
DEFAULT_TOP_K = 5
#: Bits per value of the arrays that ``compact`` narrows, by their name in ``QKViz._static_state()``;
#: other floats get 16, other integers stay lossless. Layouts are drawn on a screen (2047 levels
#: across the box: 0.16 px in a 640-pixel view), weights as line widths, heatmap colours and
#: 3-decimal numbers (256 levels), the quantised norms (uint8) as a colour ramp and dot sizes (64
#: levels), the exact aggregates as heatmaps, bars and 3-decimal scores (4096 levels).
COMPACT_BITS = {
    "coords": 11, "weights": 8, "cls": 8, "norms": 6, "by_position": 12, "by_offset": 12, "by_offset_mean": 12,
}  # fmt: skip
_ITEMSIZE = {"float32": 4, "uint32": 4, "int32": 4, "uint8": 1, "float64": 8, "int64": 8, "uint16": 2}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="windows-1252">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="qkviz {version}">
<title>{title}</title>
<style>
body {{ margin: 0; padding: 12px; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }}
{theme_css}
.qkviz-static-error {{ color: #a00; white-space: pre-wrap; }}
</style>
{css}
</head>
<body>
<div id="qkviz-root"></div>
<script type="application/json" id="qkviz-esm">{esm}</script>
<script type="application/json" id="qkviz-meta">{meta}</script>
<script type="text/plain" id="qkviz-data">{data}</script>
<script>{runtime}</script>
</body>
</html>
"""


def save_html(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    compact: bool = True,
    compress: bool = True,
    **widget_kwargs: Any,
) -> pathlib.Path:
    """Write a self-contained interactive HTML file.

    Parameters
    ----------
    obj : QKViz or Embedding
        A widget (its current view, colouring and search are kept) or an embedding (shown with the
        widget's defaults; ``widget_kwargs`` go to :class:`qkviz.QKViz`).
    path : str or PathLike
        The ``.html`` file to write; its folder must exist.
    title : str, optional
        Browser tab title; defaults to the model name and the layout method.
    top_k : int
        Strongest keys embedded per query and head, for the attention lines and the sentence,
        heatmap and image views (weights outside the top ``top_k`` show as 0, and the page says
        so). Each unit adds about 1.2 bytes per token and head (``compact``; 8 without it); 0
        embeds no per-query attention. The aggregate view (exact, precomputed per head), the
        image view's CLS map and, for image captures, the patch atlas (a JPEG) are embedded
        whatever ``top_k``.
    compact : bool
        Store layouts in 11 bits over their range (an error of at most 5e-4 of the ``[-1, 1]``
        box: 0.16 pixel in a 640-pixel view), attention weights in 8 bits (error at most 0.002),
        the quantised norms in 64 levels, the aggregates in 12 bits and integer arrays in the
        fewest bytes that hold them (``COMPACT_BITS``). About a third of the exact file; turn off
        to embed every float32 exactly.
    compress : bool
        gzip the binary data (the page needs ``DecompressionStream``: Chrome/Edge 80+, Firefox
        113+, Safari 16.4+). Turn off only for very old browsers; the file then grows.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        ``obj`` is neither a widget nor an embedding, ``top_k`` is negative, or the folder of
        ``path`` does not exist.
    WidgetDataError
        The widget bundle is missing (build it with ``cd js && npm run build``).
    """
    out = pathlib.Path(path)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")
    text = to_html(obj, title=title, top_k=top_k, compact=compact, compress=compress, **widget_kwargs)
    out.write_bytes(page_bytes(text))
    return out


def to_html(
    obj: Any,
    *,
    title: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    compact: bool = True,
    compress: bool = True,
    **widget_kwargs: Any,
) -> str:
    """The HTML text that :func:`save_html` writes (same parameters, minus ``path``).

    The text holds the data blob as ``windows-1252`` characters; write it with :func:`page_bytes`
    (any other encoding corrupts the data)."""
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise InputError(f"top_k must be a whole number >= 0, got {top_k!r}")
    viz = _as_widget(obj, widget_kwargs)
    static = _static_state(viz, int(top_k))
    meta, blob = pack_state(static, compress=compress, compact=compact, float_bits=COMPACT_BITS)
    meta["title"] = title or _default_title(viz)
    # lets the page tell a damaged data block (a file re-saved as UTF-8) from a good one
    meta["blob_length"] = len(blob)
    from . import __version__

    page = _PAGE.format(
        version=__version__,
        title=_ascii(html.escape(meta["title"])),
        css=_ascii(_css(viz)),
        theme_css=_theme_css(getattr(viz, "theme", "auto")),
        esm=_script_json(_bundle()),
        meta=_script_json(meta),
        data="{data}",
        runtime=_ascii(_RUNTIME.read_text(encoding="utf-8")),
    )
    return page.replace("{data}", embed_bytes(blob), 1)


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


def embed_bytes(blob: bytes) -> str:
    """``blob`` as the text of the page's data block (one character per byte, a few escaped).

    Examples
    --------
    >>> embed_bytes(bytes([0x41, 0x00, 0x3C, 0x80, 0xFF]))
    'A=0=2€ÿ'
    """
    raw = np.frombuffer(blob, np.uint8)
    special = np.isin(raw, list(_ESCAPE))
    if special.any():
        # escape by splitting at the special bytes (vectorised: a 10 MB blob takes ~50 ms)
        idx = np.flatnonzero(special)
        pieces, last = [], 0
        for i in idx.tolist():
            pieces.append(blob[last:i])
            pieces.append(_ESCAPE[blob[i]])
            last = i + 1
        pieces.append(blob[last:])
        blob = b"".join(pieces)
    return blob.decode("latin-1").translate(_TO_PAGE)


def page_bytes(text: str) -> bytes:
    """The bytes of a page from :func:`to_html` (windows-1252; the text must not hold other characters)."""
    return text.translate(_FROM_PAGE).encode("latin-1")


def _ascii(text: str) -> str:
    """Non-ASCII characters as escapes the context understands (the page is windows-1252)."""
    if text.isascii():
        return text
    # HTML character references work in the title; in <style> and <script> a \u escape is read
    # only inside strings, so anything else must already be ASCII (esbuild writes ASCII).
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


# ---------------------------------------------------------------------------------------------
# state packing


def pack_state(
    state: Any, *, compress: bool = True, compact: bool = False, float_bits: Mapping[str, int] | None = None
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
    parts: list[bytes] = []
    specs: list[dict[str, Any]] = []
    offset = 0

    def add(buf: Any, dtype: str | None, bits: int = 16) -> dict[str, int]:
        nonlocal offset
        raw = memoryview(buf).cast("B").tobytes()
        spec: dict[str, Any] = {}
        if compact and dtype is not None:
            raw, encoding = _narrow(raw, dtype, bits)
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
            from ._codec import array_to_binary

            value = array_to_binary(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return add(value, None)
        if isinstance(value, dict):
            if "view" in value and "dtype" in value:  # a wire dict: its buffer has a known dtype
                out = {str(k): walk(v) for k, v in value.items() if k != "view"}
                return {"view": add(value["view"], str(value["dtype"]), bits_of.get(name, 16)), **out}
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


def _narrow(raw: bytes, dtype: str, bits: int = 16) -> tuple[bytes, dict[str, Any] | None]:
    """Narrow one buffer for ``compact`` export; ``(raw, None)`` when it cannot or need not be."""
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
        lo, hi = float(a.min()), float(a.max())
        levels = 2 ** int(bits) - 1
        narrow = "uint8" if bits <= 8 else "<u2"
        span = hi - lo
        q = np.zeros(a.shape, narrow) if span == 0 else np.rint((a - lo) * (levels / span)).astype(narrow)
        name = "uint8" if bits <= 8 else "uint16"
        return q.tobytes(), {"as": name, "to": "float32", "min": lo, "max": hi, "levels": levels}
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


# ---------------------------------------------------------------------------------------------
# helpers


def _as_widget(obj: Any, widget_kwargs: dict[str, Any]) -> Any:
    if hasattr(obj, "_static_state"):
        if widget_kwargs:
            raise InputError(
                f"options {sorted(widget_kwargs)} apply only when exporting an Embedding; "
                "set them on the widget instead"
            )
        return obj
    if hasattr(obj, "coords") and hasattr(obj, "layers"):
        from .widget import QKViz

        return QKViz(obj, **widget_kwargs)
    raise InputError(
        f"save_html expects a qkviz.QKViz widget or a qkviz Embedding, got {type(obj).__name__}; "
        "make one with qkviz.embed(capture)"
    )


def _static_state(viz: Any, top_k: int) -> dict[str, Any]:
    """``{"state": trait values, "embedded": data the page answers requests from}``."""
    static = viz._static_state(top_k=top_k)
    if not isinstance(static, dict) or not isinstance(static.get("state"), dict):
        raise WidgetDataError(
            f"QKViz._static_state() returned {type(static).__name__}; expected a dict with a 'state' dict"
        )
    # the bundle travels separately; the runtime never reads these
    state = {k: v for k, v in static["state"].items() if k not in ("_esm", "_css", "_anywidget_id")}
    embedded = {k: v for k, v in static.items() if k != "state"}
    if embedded.get("topk"):
        embedded["topk"] = [_key_delta(e) for e in embedded["topk"]]
    return {"state": state, "embedded": embedded}


def _key_delta(entry: dict[str, Any]) -> dict[str, Any]:
    """One head's top-k table, reordered to compress better (lossless; ``layout: "key-delta"``).

    Each query's keys sorted by position (its weights follow), stored key-rank-major
    (``[k, token]``) as differences: the first key's position, then the gap to the one before
    (gaps of a set of distinct keys are >= 1, so 0 marks "no key": sequences shorter than ``k``).
    Gaps are small where the keys cluster (near the query, at [CLS]/[SEP]); gzip packs them ~30 %
    tighter than positions ordered by weight. ``js/src/transport.js`` undoes it.
    """
    from ._codec import array_to_binary, binary_to_array

    keys = binary_to_array(entry["keys"]).astype(np.int64)
    weights = binary_to_array(entry["weights"]).astype(np.float32)
    if keys.ndim != 2 or keys.size == 0:
        return entry
    order = np.argsort(keys, axis=1, kind="stable")  # the "none" marker (2**32-1) sorts last
    keys = np.take_along_axis(keys, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    none = keys == _NONE32
    gaps = keys.copy()
    gaps[:, 1:] = keys[:, 1:] - keys[:, :-1]
    gaps[none] = 0
    return {**entry, "layout": "key-delta", "keys": array_to_binary(np.ascontiguousarray(gaps.T), "uint32"),
            "weights": array_to_binary(np.ascontiguousarray(weights.T), "float32")}


def _bundle() -> str:
    if not BUNDLE.is_file() or BUNDLE.stat().st_size == 0:
        raise WidgetDataError(
            f"the widget bundle {BUNDLE} is missing; build it with `cd js && npm run build` "
            "(or reinstall qkviz from a wheel)"
        )
    return BUNDLE.read_text(encoding="utf-8")


def _css(viz: Any) -> str:
    css = getattr(viz, "_css", None)
    if isinstance(css, pathlib.Path):
        css = css.read_text(encoding="utf-8") if css.is_file() else None
    if not isinstance(css, str) or not css.strip():
        return ""
    return "<style>\n" + css.replace("</style", "<\\/style") + "\n</style>"


def _theme_css(theme: str) -> str:
    """Page colours matching the widget's theme ("auto" follows the browser, as the widget does)."""
    dark = "body { background: #15181d; color: #e6e6e6; }"
    if theme == "dark":
        return dark
    if theme == "auto":
        return "@media (prefers-color-scheme: dark) { " + dark + " }"
    return ""


def _script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: ``<``, ``>``, ``&`` become ``\\u`` escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _default_title(viz: Any) -> str:
    emb = getattr(viz, "embedding", None) or getattr(viz, "_embedding", None)
    parts = ["qkviz"]
    cap = getattr(emb, "capture", None)
    name = (getattr(cap, "model", None) or {}).get("name") if cap is not None else None
    if name:
        parts.append(str(name))
    method = getattr(emb, "method", None)
    if method:
        parts.append(str(method))
    return " · ".join(parts)
