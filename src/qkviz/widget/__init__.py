"""The ``QKViz`` Jupyter widget: every head's joint query-key layout, one WebGL canvas.

Python keeps the data and answers requests; the front end (``js/src``, bundled to
``_bundle/widget.js``) draws. The widget holds one :class:`qkviz.wire.WidgetState` (built from the
embedding, checked before the comm opens) and mirrors its display settings
(:class:`qkviz.wire.View`) as traits. What crosses the wire (see ``docs/internals.md``):

* small state as traits: navigation (``layer``, ``head``), colour, search, line settings, theme, and
  the per-token table (``_tokens``: binary columns plus the token strings once);
* the grid points (coordinates and quantised norms of every head) in chunks of at most
  ``qkviz.wire.MAX_MESSAGE_BYTES``, pulled by the front end through the ``_qk_fetch`` command so
  that no single message grows with the grid;
* exact attention of the focused head, on demand, through the same command;
* the selection both ways in ``_selection`` (``qkviz.wire.pack_selection``: uint32 indices or a
  bitmask, whichever is smaller; a page's selection too large for one message arrives in parts).

Where the widget runs decides two budgets (``_hosts``: smaller messages in Colab and VS Code) and
what a viewer without the widget sees (``_fallback``: a picture of the layout in every displayed
bundle, and in Colab the standalone page when the widget does not start).
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from ..errors import QKVizError, WidgetDataError
from ..wire import (
    COLOR_FIELDS,
    THEMES,
    Uploads,
    View,
    WidgetState,
    array_to_binary,
    pack_selection,
    unpack_selection,
    valid_threshold,
)
from . import _commands, _fallback, _hosts
from ._fallback import FALLBACKS, ColabWatch, page_iframe

if TYPE_CHECKING:
    from ..export import SavedPage
    from ..project import Embedding

__all__ = ["QKViz", "COLOR_FIELDS"]

log = logging.getLogger(__name__)

_BUNDLE = Path(__file__).parent.parent / "_bundle"
_DEFAULT = View()


class _Typed(t.TraitType):  # type: ignore[type-arg]
    """A trait whose type and range errors are :class:`WidgetDataError` (a ``QKVizError``), not
    traitlets' ``TraitError``: ``viz.color_mod = 0`` must fail like every other bad widget input."""

    def validate(self, obj: Any, value: Any) -> Any:
        try:
            return super().validate(obj, value)  # type: ignore[misc]  # every concrete trait has one
        except t.TraitError as e:
            raise WidgetDataError(f"viz.{self.name}: {e}") from None


class _Int(_Typed, t.Int):  # type: ignore[type-arg]
    pass


class _Unicode(_Typed, t.Unicode):  # type: ignore[type-arg]
    pass


class _Bool(_Typed, t.Bool):  # type: ignore[type-arg]
    pass


class _Float(_Typed, t.Float):  # type: ignore[type-arg]
    pass


class _Instance(_Typed, t.Instance):  # type: ignore[type-arg]
    pass


class QKViz(anywidget.AnyWidget):
    """Interactive view of a joint query-key embedding: all heads as a grid, one head in detail.

    Parameters
    ----------
    embedding : qkviz.Embedding
        What to show (made by :func:`qkviz.embed` or :meth:`qkviz.Embedding.from_coords`); with its
        capture attached, attention lines and the side panel's views work too.
    columns : dict or pandas.DataFrame, optional
        Extra per-token columns (length ``n_tokens`` each) to colour by and to return in
        :attr:`selected`. Numeric columns get a colour map, others a categorical palette.
    color : str
        Initial colour field: one of :data:`COLOR_FIELDS` or a user column name.
    color_mod : int
        ``n`` of the ``"position_mod"`` encoding (position modulo n).
    size_by_norm : bool
        Scale dots by vector norm.
    faithfulness : bool or pandas.DataFrame
        ``True`` computes ``embedding.faithfulness()`` to print recall@k in every grid cell; a
        DataFrame with ``layer, head, recall`` is used as is.
    scores : bool, pandas.DataFrame or None
        The head atlas (tint, filter and rank the cells by any head score) and the similar-heads
        map. ``None``: computed when the capture is attached and not too large
        (:data:`qkviz.wire.AUTO_SCORES_LIMIT` token-heads); ``True``: always; a DataFrame of
        per-head numbers (``layer``, ``head``, ...): shown as given.
    model : model spec or loaded model, optional
        What :meth:`probe` captures new text with (default: the capture's own model, see
        :meth:`qkviz.Embedding.place`).
    lines_k, lines_threshold : int, float
        Attention lines: at most ``lines_k`` per clicked point, only weights >= threshold.
    theme : {"auto", "light", "dark"}
        ``"auto"`` follows the notebook's theme.
    height : int
        Height of the widget in CSS pixels.
    layer, head : int, optional
        Start focused on this head instead of the grid.
    fallback : {"image", "page", "none"}
        What a displayed widget also carries for viewers that cannot run it (GitHub, nbviewer,
        nbconvert, a notebook opened without its kernel): ``"image"``, a PNG of the matrix and the
        focused head; ``"page"``, that and the whole standalone page (as large as
        :meth:`save_html`'s file); ``"none"``, nothing. Settable later (``viz.fallback = "page"``).

    Examples
    --------
    >>> viz = QKViz(emb)                         # doctest: +SKIP
    >>> viz.focus(layer=3, head=5)               # doctest: +SKIP
    >>> viz.search("the")                        # doctest: +SKIP
    >>> viz.selected.head()                      # doctest: +SKIP
    """

    _esm = _BUNDLE / "widget.js"

    # ---- public synced state (the fields of qkviz.wire.View) ----------------------------------------
    layer = _Int(_DEFAULT.layer, allow_none=True).tag(sync=True)
    """Focused layer (model numbering), or None for the matrix of all heads."""
    head = _Int(_DEFAULT.head, allow_none=True).tag(sync=True)
    #: Which attention an encoder–decoder embedding shows: "encoder", "decoder" or "cross" ("" for
    #: an embedding of one attention).
    attn = _Unicode(_DEFAULT.attn).tag(sync=True)
    """Focused query head, or None for the matrix."""
    color = _Unicode(_DEFAULT.color).tag(sync=True)
    """Colour field: one of ``COLOR_FIELDS`` or a user column."""
    color_mod = _Int(_DEFAULT.color_mod, min=1).tag(sync=True)
    """``n`` of the ``position_mod`` colour field."""
    size_by_norm = _Bool(_DEFAULT.size_by_norm).tag(sync=True)
    """Scale dots by vector norm."""
    search_query = _Unicode(_DEFAULT.search_query).tag(sync=True)
    """Search string (substring, or a regular expression when ``search_regex``); case-insensitive."""
    search_regex = _Bool(_DEFAULT.search_regex).tag(sync=True)
    """Treat ``search_query`` as a regular expression."""
    lines_k = _Int(_DEFAULT.lines_k, min=1).tag(sync=True)
    """Attention lines drawn per clicked point (top-k)."""
    lines_threshold = _Float(_DEFAULT.lines_threshold, min=0.0, max=1.0).tag(sync=True)
    """Minimum attention weight of a drawn line."""
    theme = _Unicode(_DEFAULT.theme).tag(sync=True)
    """``"auto"`` (follow the notebook), ``"light"`` or ``"dark"``."""
    height = _Int(_DEFAULT.height, min=200).tag(sync=True)
    """Widget height in CSS pixels."""
    selection = _Instance(np.ndarray, allow_none=False)
    """Selected global point indices, ``uint32 [n_selected]`` (mirrors ``_selection``)."""
    fallback = _Unicode("image")
    """What a displayed widget carries for viewers that cannot run it (see the class docstring)."""

    # ---- private wire state ----------------------------------------------------------------------
    _meta = t.Dict().tag(sync=True)
    _tokens = t.Dict().tag(sync=True)
    _columns = t.Dict().tag(sync=True)
    _selection = t.Dict().tag(sync=True)
    _picture = t.Dict().tag(sync=True)
    """The PNG of the last display (``uint8`` wire dict), shown by a front end no kernel answers."""
    _probe = t.Dict().tag(sync=True)
    _hover = t.Int(-1).tag(sync=True)

    def __init__(
        self,
        embedding: Embedding,
        *,
        columns: dict[str, Any] | pd.DataFrame | None = None,
        color: str = _DEFAULT.color,
        color_mod: int = _DEFAULT.color_mod,
        size_by_norm: bool = _DEFAULT.size_by_norm,
        faithfulness: bool | pd.DataFrame = False,
        scores: bool | pd.DataFrame | None = None,
        model: Any = None,
        lines_k: int = _DEFAULT.lines_k,
        lines_threshold: float = _DEFAULT.lines_threshold,
        theme: str = _DEFAULT.theme,
        height: int = _DEFAULT.height,
        layer: int | None = None,
        head: int | None = None,
        attn: str | None = None,
        fallback: str = "image",
    ) -> None:
        # Everything is checked and encoded before super().__init__, which opens the comm: bad
        # input must fail here, in Python, with nothing sent to the browser.
        self.state = WidgetState.from_embedding(embedding, columns=columns, faithfulness=faithfulness, scores=scores)
        self._probe_model = model
        self.probed: Embedding | None = None
        """The last :meth:`probe` result (an Embedding of just the new tokens), or None."""
        view = self.state.check_view(
            View(
                layer=layer,
                head=head,
                attn=attn or "",
                color=color,
                color_mod=color_mod,
                size_by_norm=size_by_norm,
                lines_k=lines_k,
                lines_threshold=lines_threshold,
                theme=theme,
                height=height,
            )
        )
        tokens_wire, columns_wire = self.state.tokens_wire(), self.state.columns_wire()
        self.state.check_wire_size(tokens_wire, columns_wire)
        if fallback not in FALLBACKS:
            raise WidgetDataError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        # Colab shows third-party widgets only once its custom widget manager is on
        _hosts.enable_colab_widgets()
        meta = self.state.meta_wire(_hosts.message_budget())
        meta["upload_bytes"] = _hosts.UPLOAD_BUDGET
        self._frontend: dict[str, Any] = {"started": 0, "ready": 0, "failed": 0, "error": None}
        self._watch: ColabWatch | None = None
        # a page's selection too large for one message arrives in parts (at most a uint32 a point)
        self._uploads = Uploads(4 * self.state.n_points + 1024)
        self._last_parts: tuple[str, np.ndarray] | None = None
        super().__init__(
            _meta=meta,
            _tokens=tokens_wire,
            _columns=columns_wire,
            _selection=array_to_binary(np.zeros(0, np.uint32)),
            selection=np.zeros(0, np.uint32),
            fallback=fallback,
            **view.as_dict(),
        )

    @property
    def embedding(self) -> Embedding:
        """The embedding shown."""
        return self.state.embedding

    def view(self) -> View:
        """The current display settings (focused head, colour, search, lines, theme, height)."""
        return View(**{name: getattr(self, name) for name in View().as_dict()})

    # ---- validation of synced state ------------------------------------------------------------------
    @t.validate("color")
    def _valid_color(self, proposal: Any) -> str:
        self.state.check_color(proposal["value"])
        return proposal["value"]

    @t.validate("theme")
    def _valid_theme(self, proposal: Any) -> str:
        if proposal["value"] not in THEMES:
            raise WidgetDataError(f"theme must be one of {THEMES}, got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("attn")
    def _valid_attn(self, proposal: Any) -> str:
        a = self.state.resolve_attn(proposal["value"])
        return a or ""

    def _grid(self) -> dict[str, Any]:
        return self.state.grid_of(getattr(self, "attn", "") or None)

    @t.validate("fallback")
    def _valid_fallback(self, proposal: Any) -> str:
        if proposal["value"] not in FALLBACKS:
            raise WidgetDataError(f"fallback must be one of {FALLBACKS}, got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("layer")
    def _valid_layer(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if isinstance(v, bool):
            raise WidgetDataError(f"layer must be a whole number (model numbering) or None, got {v!r}")
        if v is not None and v not in self._grid()["layers"]:
            raise WidgetDataError(f"no layer {v}; layers are {self._grid()['layers']}")
        return v

    @t.validate("head")
    def _valid_head(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if isinstance(v, bool):
            raise WidgetDataError(f"head must be a whole number (model numbering) or None, got {v!r}")
        if v is not None and v not in self._grid()["heads"]:
            raise WidgetDataError(f"no head {v}; heads are {self._grid()['heads']}")
        return v

    @t.observe("layer", "head")
    def _focus_both(self, change: Any) -> None:
        """Keep layer and head set together: one alone would leave the view on the matrix.

        Setting one on the matrix focuses the first head of that layer (or that head in the first
        layer that has it); setting one to ``None`` goes back to the matrix.
        """
        layer, head = self.layer, self.head
        if self._setting_both or (layer is None) == (head is None):
            return
        grid, emb = self._grid(), self.state.embedding
        name = grid["name"] if self.state.several else None
        with self.hold_sync():
            if change["new"] is None:
                self.layer = self.head = None
            elif layer is not None:
                self.head = next((h for h in grid["heads"] if emb.has(layer, h, name)), grid["heads"][0])
            elif head is not None:
                self.layer = next((la for la in grid["layers"] if emb.has(la, head, name)), grid["layers"][0])

    @t.validate("lines_threshold")
    def _valid_threshold(self, proposal: Any) -> float:
        if not valid_threshold(proposal["value"]):
            raise WidgetDataError(f"lines_threshold must be a number in [0, 1], got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("selection")
    def _valid_selection(self, proposal: Any) -> np.ndarray:
        a = np.asarray(proposal["value"])
        if a.dtype == bool:
            raise WidgetDataError("selection takes point indices; pass a boolean mask to viz.select(mask)")
        whole = np.issubdtype(a.dtype, np.integer) or (
            np.issubdtype(a.dtype, np.floating) and bool(np.isfinite(a).all()) and bool((a == np.round(a)).all())
        )
        if a.size and not whole:
            raise WidgetDataError(f"selection must be whole point indices, got {a.dtype} values such as {a.flat[0]!r}")
        if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= self.state.n_points)):
            raise WidgetDataError(f"selection must be global point indices in [0, {self.state.n_points})")
        return np.unique(a).astype(np.uint32)

    @t.observe("_selection")
    def _wire_to_selection(self, change: Any) -> None:
        wire = change["new"]
        try:
            a = unpack_selection(wire, self.state.n_points, self._uploads)  # indices off the grid go
        except WidgetDataError as err:
            log.warning("qkviz: ignored a selection from the page: %s", err)
            return
        if isinstance(wire, dict) and wire.get("encoding") == "parts":
            self._last_parts = (str(wire.get("id")), a)
        if not np.array_equal(a, self.selection):
            self.selection = a

    @t.observe("selection")
    def _selection_to_wire(self, change: Any) -> None:
        current = self._wire_indices(self._selection)
        if current is None or not np.array_equal(current, change["new"]):
            self._selection = pack_selection(change["new"])

    def _wire_indices(self, wire: Any) -> np.ndarray | None:
        """What the current ``_selection`` wire stands for (``None``: unknown)."""
        if not wire:
            return np.zeros(0, np.int64)
        if wire.get("encoding") == "parts":
            last = self._last_parts
            return last[1] if last is not None and last[0] == str(wire.get("id")) else None
        try:
            return unpack_selection(wire, self.state.n_points)
        except WidgetDataError:
            return None

    # ---- actions -------------------------------------------------------------------------------------
    def focus(self, layer: int, head: int, attn: str | None = None) -> None:
        """Show one head (model numbering); ``show_matrix()`` goes back to the grid.

        ``attn`` picks the attention of an encoder–decoder embedding (default: the one shown).
        """
        name = self.state.resolve_attn(attn or self.attn or None)
        self.state.check_focus(layer, head, name)
        self._setting_both = True
        try:
            with self.hold_sync():
                if name is not None and name != self.attn:
                    self.layer, self.head = None, None
                    self.attn = name
                self.layer, self.head = layer, head
        finally:
            self._setting_both = False

    def show_attention(self, attn: str) -> None:
        """Show the matrix of one attention of an encoder–decoder embedding (``"encoder"``,
        ``"decoder"`` or ``"cross"``)."""
        name = self.state.resolve_attn(attn)
        with self.hold_sync():
            self.layer, self.head = None, None
            self.attn = name or ""

    def show_matrix(self) -> None:
        """Show every head as a grid."""
        self._set_both(None, None)

    _setting_both = False

    def _set_both(self, layer: int | None, head: int | None) -> None:
        self._setting_both = True
        try:
            with self.hold_sync():
                self.layer, self.head = layer, head
        finally:
            self._setting_both = False

    def color_by(self, field: str, n: int | None = None) -> None:
        """Colour points by ``field`` (see :data:`COLOR_FIELDS` or a user column).

        ``n`` sets the modulus of ``"position_mod"``.
        """
        self.state.check_color(field)
        with self.hold_sync():
            if n is not None:
                self.color_mod = int(n)
            self.color = field

    def search(self, query: str, regex: bool = False) -> int:
        """Highlight tokens whose display text matches ``query`` in every head; return their count.

        Matching is case-insensitive: a substring test, or ``re.search`` when ``regex``. An empty
        query clears the search.
        """
        count = int(self.state.match_tokens(query, regex).sum())
        with self.hold_sync():
            self.search_regex = bool(regex)
            self.search_query = query
        return count

    def select(self, what: Any) -> None:
        """Set the selection from Python.

        Parameters
        ----------
        what : array of int, array of bool, or str
            Global point indices; a boolean mask over all points (``n_points``) or, when a head is
            focused, over that head's ``2 * n_tokens`` points; or a token query (substring of the
            display text, case-insensitive) selecting the queries and keys of matching tokens in the
            focused head (every head on the matrix).
        """
        st = self.state
        per = 2 * st.n_tokens
        focused = self._focused_cell()
        shown = st.grid_of(self.attn or None)
        n_shown = len(shown["layers"]) * len(shown["heads"])
        cells = [focused] if focused is not None else range(shown["cell_offset"], shown["cell_offset"] + n_shown)
        if isinstance(what, str):
            tok = np.flatnonzero(st.match_tokens(what, False))
            local = np.concatenate([tok, tok + st.n_tokens])
            idx = np.concatenate([c * per + local for c in cells]) if len(local) else np.zeros(0, np.int64)
        else:
            a = np.asarray(what)
            if a.dtype == bool:
                if a.shape == (st.n_points,):
                    idx = np.flatnonzero(a)
                elif a.shape == (per,) and focused is not None:
                    idx = focused * per + np.flatnonzero(a)
                else:
                    raise WidgetDataError(
                        f"a boolean mask must have {st.n_points} entries (all points) or {per} "
                        f"(the focused head's points); got shape {a.shape}"
                    )
            elif a.size == 0 or np.issubdtype(a.dtype, np.integer):
                idx = a.astype(np.int64).reshape(-1)
            else:
                raise WidgetDataError(f"select() takes indices, a boolean mask or a string, got {a.dtype}")
        self.selection = idx

    def _focused_cell(self) -> int | None:
        """The cell of the focused head, or ``None`` on the matrix."""
        if self.layer is None or self.head is None:
            return None
        return self.state.cell_index(self.layer, self.head, self.attn or None)

    @property
    def selected(self) -> pd.DataFrame:
        """The selected points, one row each, indexed by global point index.

        Columns: ``token``, ``display``, ``seq``, ``pos``, ``kind`` (``"query"``/``"key"``),
        ``layer``, ``head``, ``x``, ``y``, ``norm`` and every user column.
        """
        return self.state.selected(self.selection)

    @property
    def head_scores(self) -> pd.DataFrame | None:
        """The head atlas shown (one row per head), or None when it was not computed."""
        return None if self.state.scores is None else self.state.scores.copy()

    def probe(self, texts: str | list[str] | None, **place_params: Any) -> Embedding | None:
        """Capture ``texts`` with the same model and show their tokens in every head's layout.

        The new queries and keys are placed into each head's existing layout
        (:meth:`qkviz.Embedding.place`), drawn highlighted on the matrix and in the focused head,
        with the attention lines of the new text in the focused head. ``None`` or ``""`` clears.

        Returns
        -------
        Embedding or None
            Just the new tokens (also kept as :attr:`probed`).
        """
        if texts is None or (isinstance(texts, str) and not texts.strip()):
            self.probed = None
            self._probe = {}
            return None
        placed = self.state.embedding.place(texts, model=self._probe_model, **place_params)
        self.probed = placed
        self._probe = self.state.probe_wire(placed)
        return placed

    def clear_probe(self) -> None:
        """Remove the probed text from the view."""
        self.probe(None)

    @anywidget.experimental.command
    def _qk_fetch(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list[memoryview]]:
        kind = msg.get("kind") if isinstance(msg, dict) else None
        if kind == "probe":  # changes the widget, not a lookup
            try:
                placed = self.probe(str(msg.get("text", "")))
            except QKVizError as err:
                return {"error": f"{type(err).__name__}: {err}"}, []
            return {"n_tokens": 0 if placed is None else placed.n_tokens}, []
        if kind == "status":
            return self._on_status(msg), []
        if kind == "selection_part":
            try:
                return self._uploads.add(msg, buffers), []
            except WidgetDataError as err:
                return {"error": f"{type(err).__name__}: {err}"}, []
        return _commands.dispatch(self.state, msg)

    # ---- what viewers without the widget see ----------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None or self.fallback == "none":
            return bundle
        data, metadata = bundle  # metadata: anywidget's, with Colab's widget-manager URL
        from ..export._picture import picture_png

        try:  # a fallback must never cost the user the widget itself
            png = picture_png(self.state, self.view())
            data["image/png"] = base64.b64encode(png).decode("ascii")
            # the same picture for a front end that runs from saved widget state, with no kernel
            self._picture = array_to_binary(np.frombuffer(png, np.uint8), "uint8")
            if self.fallback == "page":
                data["text/html"] = self._page_fragment(png)
        except Exception as err:
            log.warning("qkviz: no static fallback in this output (%s: %s)", type(err).__name__, err)
        if _hosts.in_colab():
            self._watch_colab()
        return data, metadata

    def _page_fragment(self, picture: bytes | None = None) -> str:
        from ..export import to_html

        return page_iframe(to_html(self), self.height, picture)

    def _watch_colab(self) -> None:
        """In Colab, show the standalone page under the cell if the widget does not start."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - Colab always has IPython
            return
        ip = get_ipython()
        if ip is None:
            return
        if self._watch is None or self._watch.handle is not None:  # one slot per display
            if self._watch is not None:  # reports now go to the new slot: the old one stays as it is
                self._watch.retire()
            self._watch = ColabWatch(self._page_fragment, ip, display, grace_s=_fallback.GRACE_S)
            if self._frontend["started"]:
                self._watch.started = True
        self._watch.arm()

    def _on_status(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The front end's report: ``{"kind": "status", "stage": "started" | "ready" | "failed"}``."""
        stage = str(msg.get("stage"))
        if stage not in ("started", "ready", "failed"):
            return {"error": f"unknown status stage {stage!r}"}
        self._frontend[stage] += 1
        if stage == "failed":
            self._frontend["error"] = str(msg.get("error", ""))[:500]
        if self._watch is not None:
            self._watch.on_status(stage, self._frontend["error"])
        return {"ok": True}

    @property
    def frontend(self) -> dict[str, Any]:
        """What the front end reported: counts of views ``started``, ``ready`` and ``failed``, and
        the last ``error`` (a view that never started reports nothing)."""
        return dict(self._frontend)

    def __qkviz_export__(self) -> tuple[WidgetState, View]:
        """What :func:`qkviz.export.save_html` writes for this widget: its state and current view."""
        return self.state, self.view()

    def save_html(self, path: str | os.PathLike[str], **kwargs: Any) -> SavedPage:
        """Write this widget, as it is now, to one self-contained interactive HTML file.

        The file needs no kernel and no network: the bundle, the layouts and the strongest keys of
        every query (for lines and the sentence view) are embedded, within a size budget (20 MB by
        default; the focused head is kept whole). Keyword arguments go to
        :func:`qkviz.export.save_html` (``top_k``, ``max_bytes``, ``full``, ``compact``, ``title`` ...).

        Returns
        -------
        qkviz.export.SavedPage
            The file, its size and what it holds.

        Examples
        --------
        >>> print(viz.save_html("minilm.html", top_k=3).summary)       # doctest: +SKIP
        minilm.html (8.7 MB, every point (1,235,088))
        """
        from ..export import save_html

        return save_html(self, path, **kwargs)
