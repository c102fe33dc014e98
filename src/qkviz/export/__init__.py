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
* the page runtime (``_bundle/page.js``, built from ``js/src/page/``) that rebuilds ``DataView``
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
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._fs import PAGE, atomic_write_bytes, check_target
from ..errors import InputError, WidgetDataError
from ..project import Embedding
from ..wire import View, WidgetState, array_to_binary
from ._lod import DEFAULT_MAX_BYTES, Sample, describe, full_cells, lod_snapshot, make_sample
from ._pack import _TO_PAGE, COMPACT_BITS, COMPACT_EXACT, escape_bytes, key_delta, pack_state
from ._snapshot import HeadDetail, head_details, snapshot

__all__ = ["save_html", "to_html", "page_html", "SavedPage", "DEFAULT_TOP_K", "DEFAULT_MAX_BYTES", "COMPACT_BITS"]

_BUNDLE_DIR = pathlib.Path(__file__).parent.parent / "_bundle"
BUNDLE = _BUNDLE_DIR / "widget.js"
#: The page runtime (js/src/page/runtime.js, bundled by esbuild as a classic script).
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
.qkviz-page-note {{ font-size: 12px; opacity: 0.75; margin: 0 0 6px; }}
</style>
</head>
<body>
{note}<div id="qkviz-root"></div>
<script type="application/json" id="qkviz-esm">{esm}</script>
<script type="application/json" id="qkviz-meta">{meta}</script>
<script type="text/plain" id="qkviz-data">{data}</script>
<script>{runtime}</script>
</body>
</html>
"""


@dataclass(frozen=True, eq=False)
class SavedPage:
    """What :func:`save_html` wrote: the file, its size and what it holds.

    It stands in for the :class:`pathlib.Path` of the file: ``os.fspath(page)``, ``open(page)``,
    ``str(page)``, ``page == path`` and any ``Path`` attribute (``page.stat()``, ``page.name``...)
    work as on the path; :attr:`summary` says it in words.

    Attributes
    ----------
    path : pathlib.Path
    size : int
        Bytes of the file.
    sampled : bool
        Whether some heads hold a sample of their points (the page was over ``max_bytes``).
    points, points_total : int
        Points the page holds, and of the whole grid.
    tokens_per_sampled_head, tokens_total : int
        Tokens whose query and key a sampled head holds, and of the capture.
    full : list of [layer, head]
        Heads at full resolution.
    note : str
        The sentence the page shows about its sample ("" when it holds every point).
    seconds : float
        Time the export took.
    """

    path: pathlib.Path
    size: int
    sampled: bool = False
    points: int = 0
    points_total: int = 0
    tokens_per_sampled_head: int = 0
    tokens_total: int = 0
    full: list[list[int]] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.path, name)  # the rest of pathlib.Path: stat(), read_bytes(), name...

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SavedPage):
            return self.path == other.path
        if isinstance(other, (str, os.PathLike)):
            return self.path == pathlib.Path(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def summary(self) -> str:
        """The file, its size and what it holds, in one line."""
        held = (
            f"{self.points:,} of {self.points_total:,} points (sampled heads: {self.tokens_per_sampled_head:,} "
            f"of {self.tokens_total:,} tokens)"
            if self.sampled
            else f"every point ({self.points:,})"
        )
        return f"{self.path} ({self.size / 1e6:.1f} MB, {held})"


def save_html(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    compact: bool = True,
    compress: bool = True,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    full: Iterable[tuple[int, int]] | None = None,
    overwrite: bool = True,
    progress: bool = True,
    **widget_kwargs: Any,
) -> SavedPage:
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
    max_bytes : int or None
        Size budget of the file (default 20 MB). A grid that does not fit keeps every point of
        the ``full`` heads and, in the others, the queries and keys of a sample of whole
        sequences (stratified by length, the same in every head) with their top-k keys; the
        aggregates stay exact. The page says what it holds. ``None``: every point, whatever the
        size.
    full : list of (layer, head), optional
        Heads to keep at full resolution within the budget (a widget's focused head always is).
    overwrite : bool
        Replace a page qkviz wrote at ``path``. A file qkviz did not write is never replaced. The
        page is written to a temporary file and renamed into place, so a failed write (a full
        disk) leaves the previous page as it was.
    progress : bool
        A progress bar with an ETA over the heads (a widget in notebooks, text in terminals), shown
        when the export takes more than a second.

    Returns
    -------
    SavedPage
        The file (``os.fspath`` works on it), its size and what it holds.

    Raises
    ------
    InputError
        ``obj`` is neither a widget nor an embedding, ``top_k`` or ``max_bytes`` is negative, a
        ``full`` head is not in the embedding, or the folder of ``path`` does not exist.
    StoreError
        ``path`` holds a file qkviz did not write (or a page and ``overwrite=False``), or the page
        cannot be written (full or read-only disk; the old page is then unchanged).
    WidgetDataError
        The widget bundle is missing (build it with ``cd js && npm run build``).
    """
    t0 = time.perf_counter()
    out = pathlib.Path(path)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")
    check_target(out, PAGE, what="page", overwrite=overwrite)  # before the slow part
    data, info = _render(
        obj, title=title, top_k=top_k, compact=compact, compress=compress, max_bytes=max_bytes, full=full,
        progress=progress, widget_kwargs=widget_kwargs,
    )  # fmt: skip
    atomic_write_bytes(out, data, kind=PAGE, what="page", overwrite=overwrite)
    return SavedPage(path=out, size=len(data), seconds=time.perf_counter() - t0, **info)


def to_html(
    obj: Any,
    *,
    title: str | None = None,
    top_k: int = DEFAULT_TOP_K,
    compact: bool = True,
    compress: bool = True,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    full: Iterable[tuple[int, int]] | None = None,
    progress: bool = False,
    **widget_kwargs: Any,
) -> str:
    """The HTML text that :func:`save_html` writes (same parameters, minus ``path``).

    The text holds the data blob as ``windows-1252`` characters; write it with
    :func:`qkviz.export._pack.page_bytes` (any other encoding corrupts the data)."""
    data, _ = _render(
        obj, title=title, top_k=top_k, compact=compact, compress=compress, max_bytes=max_bytes, full=full,
        progress=progress, widget_kwargs=widget_kwargs,
    )  # fmt: skip
    return data.decode("latin-1").translate(_TO_PAGE)


def page_html(
    snap: dict[str, Any], *, title: str, theme: str = "auto", compact: bool = True, compress: bool = True
) -> str:
    """Assemble the page around a snapshot (``{"state": trait values, ...embedded data}``).

    The lower half of :func:`to_html`, exposed so that the page runtime can be tested on any state.
    """
    return (
        _page(snap, title=title, theme=theme, compact=compact, compress=compress).decode("latin-1").translate(_TO_PAGE)
    )


def _page(
    snap: dict[str, Any],
    *,
    title: str,
    theme: str = "auto",
    compact: bool = True,
    compress: bool = True,
    note: str = "",
) -> bytes:
    """The page's bytes (windows-1252: ASCII around the raw data block)."""
    meta, blob = pack_state(
        _page_state(snap), compress=compress, compact=compact, float_bits=COMPACT_BITS, float_exact=COMPACT_EXACT
    )
    meta["title"] = title
    # lets the page tell a damaged data block (a file re-saved as UTF-8) from a good one
    meta["blob_length"] = len(blob)
    from .._version import __version__

    page = _PAGE.format(
        version=__version__,
        title=_ascii(html.escape(title)),
        theme_css=_theme_css(theme),
        note=f'<p class="qkviz-page-note">{_ascii(html.escape(note))}</p>\n' if note else "",
        esm=_script_json(_bundle()),
        meta=_script_json(meta),
        data="{data}",
        runtime=_ascii(_built(_RUNTIME, "page runtime")),
    )
    head, tail = page.split("{data}", 1)
    return head.encode("ascii") + escape_bytes(blob) + tail.encode("ascii")


def _render(
    obj: Any,
    *,
    title: str | None,
    top_k: int,
    compact: bool,
    compress: bool,
    max_bytes: int | None,
    full: Iterable[tuple[int, int]] | None,
    widget_kwargs: dict[str, Any],
    progress: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    """The page's bytes within ``max_bytes`` and :func:`~._lod.describe` of what it holds."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise InputError(f"top_k must be a whole number >= 0, got {top_k!r}")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer))
                                  or max_bytes < 1):  # fmt: skip
        raise InputError(f"max_bytes must be a positive number of bytes or None, got {max_bytes!r}")
    top_k = int(top_k)
    state, view, selection = _state_of(obj, widget_kwargs)
    title = title or _default_title(state.embedding)
    kw: dict[str, Any] = {"title": title, "theme": view.theme, "compact": compact, "compress": compress}
    full_mask = full_cells(state, full, view)
    details = head_details(state, top_k, progress=progress)

    def whole() -> bytes:
        return _page(snapshot(state, view, top_k, selection, details), **kw)

    if max_bytes is None:
        return whole(), describe(state, None)
    fitted = _Fit(state, view, selection, details, top_k, full_mask, kw)
    return fitted.run(int(max_bytes), whole)


class _Fit:
    """Choose the largest sequence sample whose page fits the budget.

    The page's size is close to linear in the tokens a sampled head holds: ``S = F + b·H`` with
    ``H`` = tokens held x sampled heads. Two cheap pages (the smallest sample, and one ~1/8 of the
    budget) measure ``F`` and ``b``; the page at the predicted size is then built and, if it is
    still over, shrunk in proportion (rarely needed: gzip is near-linear at these sizes).
    """

    def __init__(
        self,
        state: WidgetState,
        view: View,
        selection: np.ndarray | None,
        details: list[HeadDetail | None],
        top_k: int,
        full: np.ndarray,
        kw: dict[str, Any],
    ) -> None:
        self.state, self.view, self.selection, self.details = state, view, selection, details
        self.top_k, self.full, self.kw = top_k, full, kw
        present = state.missing == 0
        self.n_sampled = int((present & ~full).sum())
        first: list[int] = []
        if selection is not None and len(selection):
            idx = np.asarray(selection, np.int64)
            token = (idx % (2 * state.n_tokens)) % state.n_tokens
            first = sorted(set(state.embedding.tokens["seq"].to_numpy()[token].tolist()))
        self.first = first

    def build(self, budget: int) -> tuple[bytes, Sample]:
        sample = make_sample(self.state, self.full, budget, first=self.first)
        snap = lod_snapshot(self.state, self.view, self.details, self.top_k, sample, self.selection)
        return _page(snap, **self.kw, note=describe(self.state, sample)["note"]), sample

    def run(self, max_bytes: int, whole: Any) -> tuple[bytes, dict[str, Any]]:
        n = self.state.n_tokens
        if self.n_sampled == 0:
            data = whole()
            self._warn(len(data), max_bytes, "every head is named in full=")
            return data, describe(self.state, None)
        small, s_small = self.build(1)
        h_small = len(s_small.tokens) * self.n_sampled
        per_token = self._per_token(max(len(s_small.tokens) + 1, n // 8))
        fixed = len(small) - per_token * h_small
        target = 0.98 * max_bytes
        tokens = int((target - fixed) / (per_token * self.n_sampled))
        if tokens >= n:
            data = whole()
            if len(data) <= max_bytes:
                return data, describe(self.state, None)
            tokens = int(0.95 * n)
        if tokens <= len(s_small.tokens):
            self._warn(len(small), max_bytes, "even one sequence per head does not fit")
            return small, describe(self.state, s_small)
        data, sample = self.build(tokens)
        for _ in range(3):
            if len(data) <= max_bytes:
                break
            tokens = int(tokens * 0.97 * (max_bytes - fixed) / max(len(data) - fixed, 1))
            if tokens <= len(s_small.tokens):
                data, sample = small, s_small
                break
            data, sample = self.build(tokens)
        self._warn(len(data), max_bytes, "the budget is too small for what must be embedded")
        return data, describe(self.state, sample)

    def _per_token(self, budget: int) -> float:
        """Page bytes per token held in a sampled head: a dozen sampled heads packed alone."""
        sample = make_sample(self.state, self.full, budget, first=self.first)
        cells = [c for c in range(len(self.state.cells)) if not self.full[c] and self.details[c] is not None][:12]
        if not cells or not len(sample.tokens):
            return 1.0
        part: dict[str, Any] = {"cells": [], "topk": []}
        for c in cells:
            s = self.state.sample(c, c + 1, sample.points)  # one head read, as the page's chunks
            part["cells"].append(
                {
                    "coords": array_to_binary(s["coords"][0], "float32"),
                    "norms": array_to_binary(s["norms"][0], "uint8"),
                }
            )
            d = self.details[c]
            if d is not None and d.keys is not None and d.weights is not None:
                rows = {"keys": d.keys[sample.tokens], "weights": d.weights[sample.tokens]}
                part["topk"].append(key_delta({k: array_to_binary(v, str(v.dtype)) for k, v in rows.items()}))
        _, blob = pack_state(
            part,
            compress=self.kw["compress"],
            compact=self.kw["compact"],
            float_bits=COMPACT_BITS,
            float_exact=COMPACT_EXACT,
        )
        return max(len(escape_bytes(blob)) / (len(cells) * len(sample.tokens)), 1e-3)

    def _warn(self, size: int, max_bytes: int, why: str) -> None:
        if size > max_bytes:
            warnings.warn(
                f"the page is {size / 1e6:.1f} MB, over max_bytes={max_bytes / 1e6:.1f} MB: {why} "
                "(fewer full= heads, a smaller top_k, or a larger max_bytes)",
                stacklevel=4,
            )


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
