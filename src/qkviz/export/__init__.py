"""Standalone HTML: one file that holds the widget, its data and its attention detail.

The file runs the widget's own bundled ES module (``qkviz/_bundle/widget.js``) against a small
stand-in for the anywidget model, so the page behaves like the notebook widget with no kernel, no
server and no network: it opens from disk (``file://``), from a web server, or as an e-mail
attachment. Data that a notebook would fetch from Python on demand is taken from the embedded
snapshot (:mod:`._snapshot`), built from a :class:`~qkviz.wire.WidgetState` — never from a live
widget, so this module does not import :mod:`qkviz.widget`.

Layout of the file (all inert ``<script>`` blocks; nothing is fetched):

* ``#qkviz-esm``: the bundle as a JSON string (``<`` escaped, so no ``</script>`` can end it early),
* ``#qkviz-meta``: the snapshot as JSON with every binary buffer replaced by ``{"$qkbuf": i}``,
* ``#qkviz-data``: all buffers in one blob (:mod:`._pack`): each aligned to 8 bytes, byte-shuffled
  by item size, optionally narrowed (``compact``) and gzip-compressed, written as raw bytes in a
  ``windows-1252`` page (~1.02 bytes a byte; base64 costs 1.33). Everything else in the page is
  ASCII (JSON uses ``\\u`` escapes, the title ``&#`` references),
* the page runtime (``_bundle/page.js``, built from ``js/src/static/``) that rebuilds ``DataView``
  objects and starts the widget.

Examples
--------
>>> import qkviz                                              # doctest: +SKIP
>>> emb = qkviz.embed(qkviz.capture("minilm", texts))        # doctest: +SKIP
>>> qkviz.export.save_html(emb, "minilm.html")               # doctest: +SKIP
PosixPath('minilm.html')
"""

from __future__ import annotations

import html
import json
import os
import pathlib
from typing import Any

import numpy as np

from .._fs import atomic_write_bytes
from ..errors import InputError, WidgetDataError
from ..project import Embedding
from ..wire import View, WidgetState
from ._pack import COMPACT_BITS, embed_bytes, key_delta, pack_state, page_bytes
from ._snapshot import snapshot

__all__ = ["save_html", "to_html", "page_html", "DEFAULT_TOP_K", "COMPACT_BITS"]

_BUNDLE_DIR = pathlib.Path(__file__).parent.parent / "_bundle"
BUNDLE = _BUNDLE_DIR / "widget.js"
#: The page runtime (js/src/static/runtime.js, bundled by esbuild as a classic script).
_RUNTIME = _BUNDLE_DIR / "page.js"
#: Strongest keys per query embedded by default: enough for the lines (the widget draws 5).
DEFAULT_TOP_K = 5

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
    progress: bool = True,
    **widget_kwargs: Any,
) -> pathlib.Path:
    """Write a self-contained interactive HTML file.

    Parameters
    ----------
    obj : QKViz, Embedding or WidgetState
        A widget (its current view, colouring, search and selection are kept), or an embedding or
        widget state (shown with the widget's defaults; ``widget_kwargs`` are
        :class:`qkviz.QKViz`'s keyword arguments: ``columns``, ``faithfulness``, ``color``,
        ``theme``, ``layer`` and ``head``...).
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
    progress : bool
        A progress bar with an ETA over the heads (a widget in notebooks, text in terminals), shown
        when the export takes more than a second.

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
    text = to_html(
        obj, title=title, top_k=top_k, compact=compact, compress=compress, progress=progress, **widget_kwargs
    )
    atomic_write_bytes(out, page_bytes(text))
    return out


def to_html(
    obj: Any,
    *,
    title: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    compact: bool = True,
    compress: bool = True,
    progress: bool = False,
    **widget_kwargs: Any,
) -> str:
    """The HTML text that :func:`save_html` writes (same parameters, minus ``path``).

    The text holds the data blob as ``windows-1252`` characters; write it with
    :func:`qkviz.export._pack.page_bytes` (any other encoding corrupts the data)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise InputError(f"top_k must be a whole number >= 0, got {top_k!r}")
    state, view, selection = _state_of(obj, widget_kwargs)
    snap = snapshot(state, view, int(top_k), selection, progress=progress)
    return page_html(
        snap, title=title or _default_title(state.embedding), theme=view.theme, compact=compact, compress=compress
    )


def page_html(
    snap: dict[str, Any], *, title: str, theme: str = "auto", compact: bool = True, compress: bool = True
) -> str:
    """Assemble the page around a snapshot (``{"state": trait values, ...embedded data}``).

    The lower half of :func:`to_html`, exposed so that the page runtime can be tested on any state.
    """
    meta, blob = pack_state(_page_state(snap), compress=compress, compact=compact, float_bits=COMPACT_BITS)
    meta["title"] = title
    # lets the page tell a damaged data block (a file re-saved as UTF-8) from a good one
    meta["blob_length"] = len(blob)
    from .._version import __version__

    page = _PAGE.format(
        version=__version__,
        title=_ascii(html.escape(title)),
        theme_css=_theme_css(theme),
        esm=_script_json(_bundle()),
        meta=_script_json(meta),
        data="{data}",
        runtime=_ascii(_built(_RUNTIME, "page runtime")),
    )
    return page.replace("{data}", embed_bytes(blob), 1)


# ---------------------------------------------------------------------------------------------
# helpers


def _state_of(obj: Any, widget_kwargs: dict[str, Any]) -> tuple[WidgetState, View, np.ndarray | None]:
    """The state, view and selection to write, from a widget, an embedding or a widget state."""
    export = getattr(type(obj), "__qkviz_export__", None)
    if export is not None:  # a QKViz widget (qkviz.widget sits above this module: no import)
        if widget_kwargs:
            raise InputError(
                f"options {sorted(widget_kwargs)} apply only when exporting an Embedding; "
                "set them on the widget instead"
            )
        state, view = export(obj)
        return state, view, getattr(obj, "selection", None)
    if isinstance(obj, (Embedding, WidgetState)):
        kw = dict(widget_kwargs)
        state_kw = {k: kw.pop(k) for k in ("columns", "faithfulness") if k in kw}
        if isinstance(obj, WidgetState):
            if state_kw:
                raise InputError(f"options {sorted(state_kw)} are fixed in a WidgetState; pass the Embedding")
            state = obj
        else:
            state = WidgetState.from_embedding(obj, **state_kw)
        fields = View().as_dict()
        unknown = sorted(set(kw) - set(fields))
        if unknown:
            raise InputError(
                f"unknown option(s) {unknown}; save_html takes the widget's options "
                f"{sorted(fields) + ['columns', 'faithfulness']}"
            )
        return state, state.check_view(View(**kw)), None
    raise InputError(
        f"save_html expects a qkviz.QKViz widget or a qkviz Embedding, got {type(obj).__name__}; "
        "make one with qkviz.embed(capture)"
    )


def _page_state(snap: dict[str, Any]) -> dict[str, Any]:
    """``{"state": trait values, "embedded": data the page answers requests from}``."""
    embedded = {k: v for k, v in snap.items() if k != "state"}
    if embedded.get("topk"):
        embedded["topk"] = [key_delta(e) for e in embedded["topk"]]
    return {"state": snap["state"], "embedded": embedded}


def _ascii(text: str) -> str:
    """Non-ASCII characters as escapes the context understands (the page is windows-1252)."""
    if text.isascii():
        return text
    # HTML character references work in the title; in <style> and <script> a \u escape is read
    # only inside strings, so anything else must already be ASCII (esbuild writes ASCII).
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _built(path: pathlib.Path, what: str) -> str:
    if not path.is_file() or path.stat().st_size == 0:
        raise WidgetDataError(
            f"the {what} {path} is missing; build it with `cd js && npm run build` (or reinstall qkviz from a wheel)"
        )
    return path.read_text(encoding="utf-8")


def _bundle() -> str:
    return _built(BUNDLE, "widget bundle")


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


def _default_title(emb: Embedding) -> str:
    parts = ["qkviz"]
    name = emb.capture.model.get("name") if emb.capture is not None else None
    if name:
        parts.append(str(name))
    if emb.method:
        parts.append(str(emb.method))
    return " · ".join(parts)
