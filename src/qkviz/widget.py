"""The ``QKViz`` Jupyter widget: every head's joint query-key layout, one WebGL canvas.

Python keeps the data and answers requests; the front end (``js/src``, bundled to
``static/widget.js``) draws. What crosses the wire (see ``docs/internals.md``):

* small state as traits: navigation (``layer``, ``head``), colour, search, line settings, theme, and
  the per-token table (``_tokens``: binary columns plus the token strings once);
* the grid points (coordinates and quantised norms of every head) in chunks of at most
  ``qkviz._codec.MAX_MESSAGE_BYTES``, pulled by the front end through the ``_qk_fetch`` command so
  that no single message grows with the grid;
* exact attention of the focused head, on demand, through the same command;
* the selection back as ``uint32`` global point indices (``_selection``).

Global point index: ``cell * 2 * n_tokens + point``, where ``cell = layer_index * n_heads +
head_index`` (layer-major over ``embedding.layers`` x ``embedding.heads``) and ``point`` follows the
embedding's order (queries of tokens ``0..n-1``, then keys).
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets as t

from . import _commands
from ._codec import MAX_MESSAGE_BYTES, array_to_binary, binary_to_array
from .errors import WidgetDataError

__all__ = ["QKViz", "COLOR_FIELDS"]

_STATIC = Path(__file__).parent / "static"

#: Built-in colour encodings (user columns add their own names).
COLOR_FIELDS = ("kind", "position", "position_mod", "norm", "sequence", "category", "length")
#: Extra colour field of image captures: each patch in its own mean colour (CLS grey).
PATCH_COLOR = "patch_color"
_CATEGORY_NAMES = ("word", "punct", "special")
_THEMES = ("auto", "light", "dark")
#: Bytes per grid point on the wire: float32 x, y (and z for 3-D layouts) plus one uint8 norm.
def _bytes_per_point(dim: int) -> int:
    return 4 * dim + 1

#: The single view draws a head's [-1, 1] layout at this scale of the canvas' [-1, 1] box, and the
#: matrix fills this share of each cell (margins keep dots off the edges). Tests map screen pixels
#: to layout coordinates with the same numbers.
SINGLE_SCALE = 0.9
CELL_FILL = 0.84


def _category(display: str, special: bool) -> int:
    """0 = word, 1 = punctuation (every character is punctuation or a symbol), 2 = special."""
    if special:
        return 2
    s = display.strip()
    if s and all(unicodedata.category(c)[0] in "PS" for c in s):
        return 1
    return 0


class QKViz(anywidget.AnyWidget):
    """Interactive view of a joint query-key embedding: all heads as a grid, one head in detail.

    Parameters
    ----------
    embedding : qkviz.embedding.Embedding
        What to show (``coords``, ``norms``, ``tokens``, ``sequences``, ``layers``, ``heads``; and
        ``attention`` for attention lines, ``faithfulness`` for per-cell scores).
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

    _esm = _STATIC / "widget.js"

    # ---- public synced state -------------------------------------------------------------------
    layer = t.Int(None, allow_none=True).tag(sync=True)
    """Focused layer (model numbering), or None for the matrix of all heads."""
    head = t.Int(None, allow_none=True).tag(sync=True)
    """Focused query head, or None for the matrix."""
    color = t.Unicode("kind").tag(sync=True)
    """Colour field: one of ``COLOR_FIELDS`` or a user column."""
    color_mod = t.Int(5, min=1).tag(sync=True)
    """``n`` of the ``position_mod`` colour field."""
    size_by_norm = t.Bool(False).tag(sync=True)
    """Scale dots by vector norm."""
    search_query = t.Unicode("").tag(sync=True)
    """Search string (substring, or a regular expression when ``search_regex``); case-insensitive."""
    search_regex = t.Bool(False).tag(sync=True)
    """Treat ``search_query`` as a regular expression."""
    lines_k = t.Int(5, min=1).tag(sync=True)
    """Attention lines drawn per clicked point (top-k)."""
    lines_threshold = t.Float(0.0, min=0.0, max=1.0).tag(sync=True)
    """Minimum attention weight of a drawn line."""
    theme = t.Unicode("auto").tag(sync=True)
    """``"auto"`` (follow the notebook), ``"light"`` or ``"dark"``."""
    height = t.Int(640, min=200).tag(sync=True)
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
        embedding: Any,
        *,
        columns: dict[str, Any] | pd.DataFrame | None = None,
        color: str = "kind",
        color_mod: int = 5,
        size_by_norm: bool = False,
        faithfulness: bool | pd.DataFrame = False,
        lines_k: int = 5,
        lines_threshold: float = 0.0,
        theme: str = "auto",
        height: int = 640,
        layer: int | None = None,
        head: int | None = None,
    ) -> None:
        # Everything is checked and encoded before super().__init__, which opens the comm: bad
        # input must fail here, in Python, with nothing sent to the browser.
        self._emb = embedding
        self._read_embedding(embedding)
        self._user = self._read_columns(columns)
        self._images = self._add_image_columns()
        self._check_color(color)
        if theme not in _THEMES:
            raise WidgetDataError(f"theme must be one of {_THEMES}, got {theme!r}")
        if (layer is None) != (head is None):
            raise WidgetDataError("give both layer and head, or neither (to start on the matrix)")
        if layer is not None:
            self._check_focus(layer, head)
        faith = self._read_faithfulness(embedding, faithfulness)
        tokens_wire, columns_wire = self._make_tokens(), self._make_columns()
        self._warn_if_large(tokens_wire, columns_wire)
        super().__init__(
            _meta=self._make_meta(faith),
            _tokens=tokens_wire,
            _columns=columns_wire,
            _selection=array_to_binary(np.zeros(0, np.uint32)),
            selection=np.zeros(0, np.uint32),
            color=color,
            color_mod=color_mod,
            size_by_norm=size_by_norm,
            lines_k=lines_k,
            lines_threshold=lines_threshold,
            theme=theme,
            height=height,
            layer=layer,
            head=head,
        )

    # ---- reading and checking input ----------------------------------------------------------------
    def _read_embedding(self, emb: Any) -> None:
        need = ("coords", "norms", "tokens", "sequences", "layers", "heads")
        missing = [a for a in need if not hasattr(emb, a)]
        if missing:
            raise WidgetDataError(
                f"QKViz needs a qkviz.embedding.Embedding (made by qkviz.embed); the object given "
                f"({type(emb).__name__}) lacks {missing}"
            )
        self._layers = tuple(int(x) for x in emb.layers)
        self._heads = tuple(int(x) for x in emb.heads)
        if not self._layers or not self._heads:
            raise WidgetDataError(f"the embedding has no heads (layers={self._layers}, heads={self._heads})")
        tokens = emb.tokens
        n = len(tokens)
        if n == 0:
            raise WidgetDataError("the embedding has no tokens; capture at least one non-empty input")
        for col in ("seq", "pos"):
            if col not in tokens:
                raise WidgetDataError(f"the embedding's token table lacks the {col!r} column")
        self._n = n
        cells = [(la, he) for la in self._layers for he in self._heads]
        # 3-D layouts keep z (the side panel's 3-D view reads it); the canvas draws x, y.
        dim = 3 if int(getattr(emb, "dim", 2)) == 3 else 2
        coords = np.empty((len(cells) * 2 * n, dim), np.float32)
        norms = np.empty(len(cells) * 2 * n, np.uint8)
        norm_range = np.zeros((len(cells), 2), np.float32)
        has = getattr(emb, "has", lambda la, he: True)
        self._missing = np.zeros(len(cells), np.uint8)
        for c, (la, he) in enumerate(cells):
            sl = slice(c * 2 * n, (c + 1) * 2 * n)
            if not has(la, he):
                # A projection stopped early leaves holes in the grid: park those points far
                # outside every cell (drawn nowhere) and mark the cell empty.
                self._missing[c] = 1
                coords[sl], norms[sl], norm_range[c] = 100.0, 0, (0.0, 0.0)
                continue
            xy = np.asarray(emb.coords(la, he))
            if xy.ndim != 2 or xy.shape[0] != 2 * n or xy.shape[1] < dim:
                raise WidgetDataError(
                    f"coords(layer={la}, head={he}) has shape {xy.shape}; expected (2 * n_tokens, dim) "
                    f"= ({2 * n}, 2 or 3)"
                )
            if not np.isfinite(xy[:, :dim]).all():
                raise WidgetDataError(f"coords(layer={la}, head={he}) holds NaN or inf; re-run the projection")
            nm = np.asarray(emb.norms(la, he), np.float64).reshape(-1)
            if nm.shape[0] != 2 * n or not np.isfinite(nm).all():
                raise WidgetDataError(
                    f"norms(layer={la}, head={he}) must be {2 * n} finite values, got shape {nm.shape}"
                )
            lo, hi = float(nm.min()), float(nm.max())
            # Per-head min-max to 0..255: enough for a colour ramp and dot sizes at 1 byte a point.
            q = np.zeros_like(nm) if hi <= lo else (nm - lo) / (hi - lo) * 255.0
            coords[sl] = xy[:, :dim]
            norms[sl] = np.rint(q).astype(np.uint8)
            norm_range[c] = lo, hi
        self._cells = cells
        self._coords, self._norms, self._norm_range = coords, norms, norm_range
        self._dim = dim

    def _read_columns(self, columns: Any) -> dict[str, pd.Series]:
        if columns is None:
            return {}
        if isinstance(columns, pd.DataFrame):
            columns = {c: columns[c] for c in columns.columns}
        if not isinstance(columns, dict):
            raise WidgetDataError(f"columns must be a dict or a DataFrame, got {type(columns).__name__}")
        out = {}
        for name, values in columns.items():
            name = str(name)
            builtin = ("token", "display", "seq", "pos", "kind", "layer", "head", "x", "y", PATCH_COLOR)
            if name in COLOR_FIELDS or name in builtin:
                raise WidgetDataError(f"column name {name!r} clashes with a built-in field; rename it")
            s = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values.to_numpy())
            if len(s) != self._n:
                raise WidgetDataError(
                    f"column {name!r} has {len(s)} values; expected one per token ({self._n})"
                )
            out[name] = s.reset_index(drop=True)
        return out

    def _add_image_columns(self) -> bool:
        """For image captures, add ``row``, ``col`` and the patches' colours as colour-by columns.

        The front end also offers ``"patch_color"`` (each patch in its mean colour, from the
        ``mean_r/g/b`` columns).

        AttentionViz found heads that sort patches by position, hue or brightness, so these are
        offered without the user passing them. Names the user already passed are left alone.

        Returns
        -------
        bool
            Whether the capture holds images (the front end then draws patch thumbnails).
        """
        from . import _detail  # lazy: the text-only widget does not need it

        cap = _detail._capture_of(self._emb)
        tok = self._emb.tokens
        if cap is None or getattr(cap, "images", None) is None or "row" not in tok or "col" not in tok:
            return False
        try:
            colours = _detail.patch_colors(cap)
        except WidgetDataError as err:
            warnings.warn(f"no patch thumbnails or colour columns: {err}", stacklevel=4)
            return False
        patch = (tok["row"].to_numpy() >= 0) & (tok["col"].to_numpy() >= 0)
        auto = {
            # CLS has row/col -1: NaN, which the colour maps show as missing
            "row": np.where(patch, tok["row"].to_numpy(np.float64), np.nan),
            "col": np.where(patch, tok["col"].to_numpy(np.float64), np.nan),
            **colours,
        }
        for name, values in auto.items():
            if name not in self._user:
                self._user[name] = pd.Series(np.asarray(values, np.float64))
        return True

    def _read_faithfulness(self, emb: Any, faithfulness: Any) -> pd.DataFrame | None:
        if faithfulness is False or faithfulness is None:
            return None
        df = emb.faithfulness() if faithfulness is True else faithfulness
        if not isinstance(df, pd.DataFrame) or not {"layer", "head", "recall"} <= set(df.columns):
            raise WidgetDataError("faithfulness must be True or a DataFrame with layer, head, recall columns")
        return df

    def _check_color(self, field: str) -> None:
        extra = [PATCH_COLOR] if self._images else []
        if field not in COLOR_FIELDS and field not in self._user and field not in extra:
            raise WidgetDataError(
                f"unknown colour field {field!r}; expected one of {list(COLOR_FIELDS) + extra + list(self._user)}"
            )

    def _check_focus(self, layer: Any, head: Any) -> None:
        has = getattr(self._emb, "has", lambda la, he: True)
        if layer not in self._layers or head not in self._heads or not has(layer, head):
            raise WidgetDataError(
                f"no head (layer={layer}, head={head}) in this embedding; layers are {self._layers}, "
                f"heads {self._heads}"
            )

    @staticmethod
    def _warn_if_large(*wires: dict[str, Any]) -> None:
        # The grid is pulled in chunks, but the token table goes in the initial state (one message).
        def size(v: Any) -> int:
            if isinstance(v, memoryview):
                return v.nbytes
            if isinstance(v, dict):
                return sum(size(x) for x in v.values())
            if isinstance(v, list):
                return sum(len(str(x)) + 3 for x in v)
            return 8

        total = sum(size(w) for w in wires)
        if total > 2 * MAX_MESSAGE_BYTES:
            warnings.warn(
                f"the token table is {total / 2**20:.1f} MiB and is sent in one message; above ~10 MiB "
                "Jupyter drops it. Capture fewer tokens (max_tokens) or fewer user columns.",
                stacklevel=3,
            )

    # ---- wire encoding ------------------------------------------------------------------------------
    def _make_meta(self, faith: pd.DataFrame | None) -> dict[str, Any]:
        n_points = len(self._coords)
        chunk = max(2, MAX_MESSAGE_BYTES // _bytes_per_point(self._dim))
        recall = np.full(len(self._cells), np.nan, np.float32)
        if faith is not None:
            lookup = {(int(r.layer), int(r.head)): float(r.recall) for r in faith.itertuples()}
            recall = np.array([lookup.get(c, np.nan) for c in self._cells], np.float32)
        return {
            "layers": list(self._layers),
            "heads": list(self._heads),
            "n_tokens": self._n,
            "n_points": n_points,
            "chunk_points": int(chunk),
            "dim": self._dim,
            "has_attention": callable(getattr(self._emb, "attention", None))
            and getattr(self._emb, "capture", True) is not None,
            "has_faithfulness": faith is not None,
            "recall": array_to_binary(np.nan_to_num(recall, nan=-1.0), "float32"),
            "norm_range": array_to_binary(self._norm_range, "float32"),
            "missing": array_to_binary(self._missing, "uint8"),
            "n_seqs": int(len(self._emb.sequences)),
            "has_images": self._images,
            "single_scale": SINGLE_SCALE,
            "cell_fill": CELL_FILL,
        }

    def _make_tokens(self) -> dict[str, Any]:
        tok = self._emb.tokens
        n = self._n
        text = tok["token"].astype(str).tolist() if "token" in tok else [""] * n
        display = tok["display"].astype(str).tolist() if "display" in tok else text
        special = tok["special"].to_numpy(bool) if "special" in tok else np.zeros(n, bool)
        seq = tok["seq"].to_numpy(np.int64)
        pos = tok["pos"].to_numpy(np.int64)
        seq_len = pd.Series(pos).groupby(seq).transform("max").to_numpy() + 1
        category = np.array([_category(d, s) for d, s in zip(display, special)], np.uint8)
        self._display = display
        self._token_text = text
        self._category_codes = category
        return {
            "seq": array_to_binary(seq, "uint32"),
            "pos": array_to_binary(pos, "uint32"),
            "seq_len": array_to_binary(seq_len, "uint32"),
            "category": array_to_binary(category, "uint8"),
            "token": text,
            "display": display,
        }

    def _make_columns(self) -> dict[str, Any]:
        out = {}
        for name, s in self._user.items():
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                v = s.to_numpy(np.float64)
                if not np.isfinite(v).any():
                    raise WidgetDataError(f"column {name!r} has no finite value to colour by")
                out[name] = {"type": "numeric", "values": array_to_binary(v, "float32")}
            else:
                codes, cats = pd.factorize(s.astype(str), sort=True)
                out[name] = {"type": "categorical", "values": array_to_binary(codes, "uint32"),
                             "categories": [str(c) for c in cats]}
        return out

    # ---- validation of synced state ------------------------------------------------------------------
    @t.validate("color")
    def _valid_color(self, proposal: Any) -> str:
        self._check_color(proposal["value"])
        return proposal["value"]

    @t.validate("theme")
    def _valid_theme(self, proposal: Any) -> str:
        if proposal["value"] not in _THEMES:
            raise WidgetDataError(f"theme must be one of {_THEMES}, got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("layer")
    def _valid_layer(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if v is not None and v not in self._layers:
            raise WidgetDataError(f"no layer {v}; layers are {self._layers}")
        return v

    @t.validate("head")
    def _valid_head(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if v is not None and v not in self._heads:
            raise WidgetDataError(f"no head {v}; heads are {self._heads}")
        return v

    @t.validate("selection")
    def _valid_selection(self, proposal: Any) -> np.ndarray:
        a = np.asarray(proposal["value"])
        if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= len(self._coords))):
            raise WidgetDataError(f"selection must be global point indices in [0, {len(self._coords)})")
        return np.unique(a).astype(np.uint32)

    @t.observe("_selection")
    def _wire_to_selection(self, change: Any) -> None:
        try:
            a = binary_to_array(change["new"]).astype(np.int64).reshape(-1)
        except WidgetDataError:
            return
        a = a[(a >= 0) & (a < len(self._coords))]  # never trust indices from the page
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
        self._check_focus(layer, head)
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
        self._check_color(field)
        with self.hold_sync():
            if n is not None:
                self.color_mod = int(n)
            self.color = field

    def search(self, query: str, regex: bool = False) -> int:
        """Highlight tokens whose display text matches ``query`` in every head; return their count.

        Matching is case-insensitive: a substring test, or ``re.search`` when ``regex``. An empty
        query clears the search.
        """
        count = int(self._match_tokens(query, regex).sum())
        with self.hold_sync():
            self.search_regex = bool(regex)
            self.search_query = query
        return count

    def _match_tokens(self, query: str, regex: bool) -> np.ndarray:
        """``bool [token]``: which tokens match (same rule as ``js/src/search.js``)."""
        if not query:
            return np.zeros(self._n, bool)
        if regex:
            try:
                rx = re.compile(query, re.IGNORECASE)
            except re.error as err:
                raise WidgetDataError(f"invalid regular expression {query!r}: {err}") from err
            return np.array([rx.search(d) is not None for d in self._display])
        q = query.lower()
        return np.array([q in d.lower() for d in self._display])

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
        per = 2 * self._n
        cells = [self._cell_index()] if self.layer is not None else range(len(self._cells))
        if isinstance(what, str):
            tok = np.flatnonzero(self._match_tokens(what, False))
            local = np.concatenate([tok, tok + self._n])
            idx = np.concatenate([c * per + local for c in cells]) if len(local) else np.zeros(0, np.int64)
        else:
            a = np.asarray(what)
            if a.dtype == bool:
                if a.shape == (len(self._coords),):
                    idx = np.flatnonzero(a)
                elif a.shape == (per,) and self.layer is not None:
                    idx = self._cell_index() * per + np.flatnonzero(a)
                else:
                    raise WidgetDataError(
                        f"a boolean mask must have {len(self._coords)} entries (all points) or {per} "
                        f"(the focused head's points); got shape {a.shape}"
                    )
            elif a.size == 0 or np.issubdtype(a.dtype, np.integer):
                idx = a.astype(np.int64).reshape(-1)
            else:
                raise WidgetDataError(f"select() takes indices, a boolean mask or a string, got {a.dtype}")
        self.selection = idx

    def _cell_index(self) -> int:
        return self._layers.index(self.layer) * len(self._heads) + self._heads.index(self.head)

    @property
    def selected(self) -> pd.DataFrame:
        """The selected points, one row each, indexed by global point index.

        Columns: ``token``, ``display``, ``seq``, ``pos``, ``kind`` (``"query"``/``"key"``),
        ``layer``, ``head``, ``x``, ``y``, ``norm`` and every user column.
        """
        idx = self.selection.astype(np.int64)
        per = 2 * self._n
        cell, point = idx // per, idx % per
        token = point % self._n
        tok = self._emb.tokens
        cells = np.array(self._cells, np.int64).reshape(-1, 2)
        df = pd.DataFrame(
            {
                "token": np.asarray(self._token_text, object)[token],
                "display": np.asarray(self._display, object)[token],
                "seq": tok["seq"].to_numpy()[token],
                "pos": tok["pos"].to_numpy()[token],
                "kind": np.where(point < self._n, "query", "key"),
                "layer": cells[cell, 0],
                "head": cells[cell, 1],
                "x": self._coords[idx, 0],
                "y": self._coords[idx, 1],
                **({"z": self._coords[idx, 2]} if self._dim == 3 else {}),
                # exact norms, not the 8-bit wire copy
                "norm": self._exact_norms(cell, point) if len(idx) else np.zeros(0, np.float32),
            },
            index=pd.Index(idx, name="point"),
        )
        for name, s in self._user.items():
            df[name] = s.to_numpy()[token]
        return df

    def _exact_norms(self, cell: np.ndarray, point: np.ndarray) -> np.ndarray:
        out = np.empty(len(cell), np.float32)
        for c in np.unique(cell):
            m = cell == c
            out[m] = np.asarray(self._emb.norms(*self._cells[c]), np.float32).reshape(-1)[point[m]]
        return out

    # ---- data served to the front end ----------------------------------------------------------------
    def _grid_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``float32 [n_points, dim]`` coords and ``uint8 [n_points]`` quantised norms of every cell."""
        return self._coords, self._norms

    def _attention(self, layer: int, head: int, seq: int) -> np.ndarray:
        """Exact attention ``float32 [query_pos, key_pos]`` of one head and seq."""
        self._check_focus(layer, head)
        if not self._meta.get("has_attention"):
            raise WidgetDataError("this embedding has no capture attached, so attention is unavailable")
        return np.asarray(self._emb.attention(layer, head, seq), np.float32)

    @anywidget.experimental.command
    def _qk_fetch(self, msg: Any, buffers: list[bytes]) -> tuple[dict, list[memoryview]]:
        return _commands.dispatch(self, msg)

    def save_html(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Write this widget, as it is now, to one self-contained interactive HTML file.

        The file needs no kernel and no network: the bundle, the layouts and the strongest keys of
        every query (for lines and the sentence view) are embedded. Keyword arguments go to
        :func:`qkviz.export.save_html` (``top_k``, ``compact``, ``title`` ...).

        Examples
        --------
        >>> viz.save_html("minilm.html", top_k=3)       # doctest: +SKIP
        PosixPath('minilm.html')
        """
        from .export import save_html

        return save_html(self, path, **kwargs)

    def _static_state(self, top_k: int = 0) -> dict[str, Any]:
        """Everything the front end needs without a kernel (for standalone HTML export).

        Parameters
        ----------
        top_k : int
            If > 0, embed the ``top_k`` strongest keys of every query of every head (lines, the
            sentence, heatmap and image views work offline from these).

        Returns
        -------
        dict
            ``state``: synced trait name -> wire value (arrays as ``{"view", "dtype", "shape"}``);
            its ``_meta`` adds ``modality`` (``"text"``/``"image"``) and ``causal``, its ``_tokens``
            adds ``row``/``col`` int32 [token] (-1 for non-patch tokens) for image captures.
            ``points``: list of ``{"start", "stop", "coords", "norms"}`` chunks (wire dicts), the
            answers to the ``"points"`` requests; ``topk``: None or a list, one per cell in global
            order, of ``{"layer", "head", "keys": uint32 [token, top_k] (key pos, 2**32-1 = none),
            "weights": float32 [token, top_k]}``; ``aggregate``: None or ``{"count": int32 [pos, pos],
            "offsets": int32 [offset], "n_seqs", "cells": [{"layer", "head", "by_position": float32
            [pos, pos], "by_offset", "by_offset_mean": float32 [offset], "scores"}]}`` (exact, from
            ``qkviz._detail.aggregate_detail``; ``pos`` stops at ``isqrt(2**19 / heads)``); ``images``: None or ``{"jpeg": bytes (the patch
            atlas of ``_detail.patch_atlas``, RGB JPEG), "atlas_shape": [h, w, 4], "uv": float32
            [token, 4], "cls": [float32 [token] per cell: the weight the first non-patch token (CLS)
            of each image puts on each token]}``. ``js/src/transport.js`` (``staticTransport``) and
            ``js/src/static.js`` (``staticExtra``) answer requests from exactly this dict.
        """
        from ._static import static_state

        return static_state(self, top_k)
