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
* the selection back as ``uint32`` global point indices (``_selection``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from ..errors import WidgetDataError
from ..wire import COLOR_FIELDS, THEMES, View, WidgetState, array_to_binary, binary_to_array
from . import _commands

if TYPE_CHECKING:
    from ..export import SavedPage
    from ..project import Embedding

__all__ = ["QKViz", "COLOR_FIELDS"]

_BUNDLE = Path(__file__).parent.parent / "_bundle"
_DEFAULT = View()


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
    lines_k, lines_threshold : int, float
        Attention lines: at most ``lines_k`` per clicked point, only weights >= threshold.
    theme : {"auto", "light", "dark"}
        ``"auto"`` follows the notebook's theme.
    height : int
        Height of the widget in CSS pixels.
    layer, head : int, optional
        Start focused on this head instead of the grid.

    Examples
    --------
    >>> viz = QKViz(emb)                         # doctest: +SKIP
    >>> viz.focus(layer=3, head=5)               # doctest: +SKIP
    >>> viz.search("the")                        # doctest: +SKIP
    >>> viz.selected.head()                      # doctest: +SKIP
    """

    _esm = _BUNDLE / "widget.js"

    # ---- public synced state (the fields of qkviz.wire.View) ----------------------------------------
    layer = t.Int(_DEFAULT.layer, allow_none=True).tag(sync=True)
    """Focused layer (model numbering), or None for the matrix of all heads."""
    head = t.Int(_DEFAULT.head, allow_none=True).tag(sync=True)
    """Focused query head, or None for the matrix."""
    color = t.Unicode(_DEFAULT.color).tag(sync=True)
    """Colour field: one of ``COLOR_FIELDS`` or a user column."""
    color_mod = t.Int(_DEFAULT.color_mod, min=1).tag(sync=True)
    """``n`` of the ``position_mod`` colour field."""
    size_by_norm = t.Bool(_DEFAULT.size_by_norm).tag(sync=True)
    """Scale dots by vector norm."""
    search_query = t.Unicode(_DEFAULT.search_query).tag(sync=True)
    """Search string (substring, or a regular expression when ``search_regex``); case-insensitive."""
    search_regex = t.Bool(_DEFAULT.search_regex).tag(sync=True)
    """Treat ``search_query`` as a regular expression."""
    lines_k = t.Int(_DEFAULT.lines_k, min=1).tag(sync=True)
    """Attention lines drawn per clicked point (top-k)."""
    lines_threshold = t.Float(_DEFAULT.lines_threshold, min=0.0, max=1.0).tag(sync=True)
    """Minimum attention weight of a drawn line."""
    theme = t.Unicode(_DEFAULT.theme).tag(sync=True)
    """``"auto"`` (follow the notebook), ``"light"`` or ``"dark"``."""
    height = t.Int(_DEFAULT.height, min=200).tag(sync=True)
    """Widget height in CSS pixels."""
    selection = t.Instance(np.ndarray, allow_none=False)
    """Selected global point indices, ``uint32 [n_selected]`` (mirrors ``_selection``)."""

    # ---- private wire state ----------------------------------------------------------------------
    _meta = t.Dict().tag(sync=True)
    _tokens = t.Dict().tag(sync=True)
    _columns = t.Dict().tag(sync=True)
    _selection = t.Dict().tag(sync=True)

    def __init__(
        self,
        embedding: Embedding,
        *,
        columns: dict[str, Any] | pd.DataFrame | None = None,
        color: str = _DEFAULT.color,
        color_mod: int = _DEFAULT.color_mod,
        size_by_norm: bool = _DEFAULT.size_by_norm,
        faithfulness: bool | pd.DataFrame = False,
        lines_k: int = _DEFAULT.lines_k,
        lines_threshold: float = _DEFAULT.lines_threshold,
        theme: str = _DEFAULT.theme,
        height: int = _DEFAULT.height,
        layer: int | None = None,
        head: int | None = None,
    ) -> None:
        # Everything is checked and encoded before super().__init__, which opens the comm: bad
        # input must fail here, in Python, with nothing sent to the browser.
        self.state = WidgetState.from_embedding(embedding, columns=columns, faithfulness=faithfulness)
        view = self.state.check_view(
            View(
                layer=layer,
                head=head,
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
        super().__init__(
            _meta=self.state.meta_wire(),
            _tokens=tokens_wire,
            _columns=columns_wire,
            _selection=array_to_binary(np.zeros(0, np.uint32)),
            selection=np.zeros(0, np.uint32),
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

    @t.validate("layer")
    def _valid_layer(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if v is not None and v not in self.state.layers:
            raise WidgetDataError(f"no layer {v}; layers are {self.state.layers}")
        return v

    @t.validate("head")
    def _valid_head(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if v is not None and v not in self.state.heads:
            raise WidgetDataError(f"no head {v}; heads are {self.state.heads}")
        return v

    @t.validate("selection")
    def _valid_selection(self, proposal: Any) -> np.ndarray:
        a = np.asarray(proposal["value"])
        if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= self.state.n_points)):
            raise WidgetDataError(f"selection must be global point indices in [0, {self.state.n_points})")
        return np.unique(a).astype(np.uint32)

    @t.observe("_selection")
    def _wire_to_selection(self, change: Any) -> None:
        try:
            a = binary_to_array(change["new"]).astype(np.int64).reshape(-1)
        except WidgetDataError:
            return
        a = a[(a >= 0) & (a < self.state.n_points)]  # never trust indices from the page
        if not np.array_equal(np.unique(a), self.selection):
            self.selection = a

    @t.observe("selection")
    def _selection_to_wire(self, change: Any) -> None:
        wire = self._selection
        current = binary_to_array(wire) if wire else np.zeros(0, np.uint32)
        if not np.array_equal(current, change["new"]):
            self._selection = array_to_binary(change["new"], "uint32")

    # ---- actions -------------------------------------------------------------------------------------
    def focus(self, layer: int, head: int) -> None:
        """Show one head (model numbering); ``show_matrix()`` goes back to the grid."""
        self.state.check_focus(layer, head)
        with self.hold_sync():
            self.layer, self.head = layer, head

    def show_matrix(self) -> None:
        """Show every head as a grid."""
        with self.hold_sync():
            self.layer, self.head = None, None

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
        cells = [focused] if focused is not None else range(len(st.cells))
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
        return self.state.cell_index(self.layer, self.head)

    @property
    def selected(self) -> pd.DataFrame:
        """The selected points, one row each, indexed by global point index.

        Columns: ``token``, ``display``, ``seq``, ``pos``, ``kind`` (``"query"``/``"key"``),
        ``layer``, ``head``, ``x``, ``y``, ``norm`` and every user column.
        """
        return self.state.selected(self.selection)

    @anywidget.experimental.command
    def _qk_fetch(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list[memoryview]]:
        return _commands.dispatch(self.state, msg)

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
        >>> print(viz.save_html("minilm.html", top_k=3))       # doctest: +SKIP
        minilm.html (8.7 MB, every point (1,235,088))
        """
        from ..export import save_html

        return save_html(self, path, **kwargs)
