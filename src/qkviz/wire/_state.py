"""``WidgetState``: everything the front end draws, built once from an ``Embedding``.

The notebook widget (:class:`qkviz.QKViz`) holds one and serves it over the comm; the standalone
export (:mod:`qkviz.export`) builds one without any widget. Both send the same wire values
(``docs/internals.md``, "Widget wire format"):

* ``meta``: the grid (layers, heads, point counts, chunking, per-cell recall and norm range...);
* ``tokens``: per-token binary columns plus the token strings, once;
* ``columns``: user colour-by columns (and, for image captures, patch position and colour);
* the grid points themselves (coordinates and 8-bit norms), read one head at a time from the
  embedding when the front end asks: the matrix's bounded sample of every head (``sample``, level
  of detail: :mod:`qkviz.wire._lod`), a focused head whole (``points``), forced extras
  (``points_at``). Nothing holds the whole grid: memory grows with the heads asked for, not with
  the grid.

Global point index: ``cell * 2 * n_tokens + point``, where ``cell = layer_index * n_heads +
head_index`` (layer-major over ``layers`` x ``heads``) and ``point`` follows the embedding's order
(queries of tokens ``0..n-1``, then keys). An embedding of several attentions (encoder–decoder:
``encoder``, ``decoder``, ``cross``) numbers its cells attention after attention: ``cell =
attn_offset + layer_index * n_heads(attn) + head_index``, and the points an attention does not
have (cross-attention: the encoder tokens' queries, the decoder tokens' keys) are parked outside
every cell, like the points of a missing head.

:class:`View` holds the display settings (focused head, colour, search, lines, theme, size) and
their defaults, which the widget's traits mirror.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import unicodedata
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..analysis import patch_colors
from ..errors import WidgetDataError
from ._codec import MAX_MESSAGE_BYTES, array_to_binary
from ._lod import FORCED_POINTS, draw_order, sample_size

if TYPE_CHECKING:
    from ..project import Embedding

__all__ = [
    "WidgetState",
    "View",
    "COLOR_FIELDS",
    "PATCH_COLOR",
    "VALUE_NORM",
    "THEMES",
    "SINGLE_SCALE",
    "PARKED",
    "CELL_FILL",
    "AUTO_SCORES_LIMIT",
]

#: Built-in colour encodings (user columns add their own names).
COLOR_FIELDS = ("kind", "position", "position_mod", "norm", "sequence", "category", "length")
#: Extra colour field of captures with value vectors: each point by its token's ‖v‖ in that head.
VALUE_NORM = "value_norm"
#: Head scores (and similar-heads map) are computed for a widget automatically up to this many
#: token-heads (tokens × heads, about 5 s on two cores); above it pass ``scores=True``.
AUTO_SCORES_LIMIT = 2_000_000
#: Extra colour field of image captures: each patch in its own mean colour (CLS grey).
PATCH_COLOR = "patch_color"
THEMES = ("auto", "light", "dark")
#: Names a user column may not take (they are built-in fields of the selection table).
_RESERVED = ("token", "display", "seq", "pos", "kind", "layer", "head", "x", "y", PATCH_COLOR, VALUE_NORM)

#: The single view draws a head's [-1, 1] layout at this scale of the canvas' [-1, 1] box, and the
#: matrix fills this share of each cell (margins keep dots off the edges). Tests map screen pixels
#: to layout coordinates with the same numbers.
SINGLE_SCALE = 0.9
CELL_FILL = 0.84

#: Heads whose quantised norms a state keeps (the focused one, its neighbours, a lasso's cells).
_NORM_CACHE_HEADS = 16
#: Where a point is parked that a head does not draw (a missing head, a point its attention does not
#: have): outside every cell of the matrix and of the single view. A compact page keeps it exact, apart
#: from the layout's own range (``qkviz.export``).
PARKED = 100.0


def _bytes_per_point(dim: int) -> int:
    """Bytes per grid point on the wire: float32 x, y (and z for 3-D layouts) plus one uint8 norm."""
    return 4 * dim + 1


def _category(display: str, special: bool) -> int:
    """0 = word, 1 = punctuation (every character is punctuation or a symbol), 2 = special."""
    if special:
        return 2
    s = display.strip()
    if s and all(unicodedata.category(c)[0] in "PS" for c in s):
        return 1
    return 0


def _whole(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def valid_threshold(v: Any) -> bool:
    """Whether ``v`` can be a line threshold: a finite number in [0, 1] (not NaN, not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and 0 <= float(v) <= 1


@dataclass
class View:
    """Display settings: the widget's public traits, and what a standalone page starts with.

    Attributes
    ----------
    layer, head : int or None
        Focused head (model numbering); both ``None`` = the matrix of all heads.
    attn : str
        Which attention an encoder–decoder embedding shows (``"encoder"``, ``"decoder"``,
        ``"cross"``); ``""`` picks the default: cross-attention when there is one.
    color : str
        Colour field: one of :data:`COLOR_FIELDS`, ``"patch_color"`` (images) or a user column.
    color_mod : int
        ``n`` of the ``"position_mod"`` colour field.
    size_by_norm : bool
        Scale dots by vector norm.
    search_query, search_regex : str, bool
        Case-insensitive substring (or regular expression) over the tokens' display text.
    lines_k, lines_threshold : int, float
        Attention lines: at most ``lines_k`` per clicked point, only weights ``>= lines_threshold``.
    theme : {"auto", "light", "dark"}
        ``"auto"`` follows the notebook (or the browser, in a standalone page).
    height : int
        Height of the widget in CSS pixels.
    """

    layer: int | None = None
    head: int | None = None
    attn: str = ""
    color: str = "kind"
    color_mod: int = 5
    size_by_norm: bool = False
    search_query: str = ""
    search_regex: bool = False
    lines_k: int = 5
    lines_threshold: float = 0.0
    theme: str = "auto"
    height: int = 640

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(eq=False)
class WidgetState:
    """The wire-ready state of one embedding (see the module docstring).

    Build one with :meth:`from_embedding`; the arrays are read-only views of what the front end
    receives.

    Attributes
    ----------
    embedding : Embedding
    layers, heads : tuple of int
        The grid's rows and columns.
    cells : list of (layer, head), or of (attn, layer, head)
        Layer-major (attention after attention); ``cells[c]`` is the head of cell ``c``.
    attns : list of dict
        One per attention: ``name``, ``layers``, ``heads``, ``cell_offset``, ``query_stream``,
        ``key_stream`` (a single ``"self"`` attention for most models).
    n_tokens, dim : int
    orders : dict of str to uint32 [point]
        Per attention, every point of a head in draw order (:func:`qkviz.wire._lod.draw_order`,
        the points the attention does not have last): the matrix draws the first
        ``sample_sizes[attn]`` of it in each cell, the single view all of it.
    sample_sizes : dict of str to int
        Per attention, the points of each head on the matrix (:func:`qkviz.wire._lod.sample_size`).
    norm_range : float32 [cell, 2]
        Each head's (min, max) norm.
    missing : uint8 [cell]
        1 where the embedding has no layout (a run stopped early).
    columns : dict of str to pandas.Series
        Colour-by columns, one value per token (user columns, plus patch fields for images).
    has_images : bool
        The capture holds images (thumbnails, patch colour fields).
    faithfulness : pandas.DataFrame or None
        ``layer, head, recall`` shown in the grid cells.
    scores : pandas.DataFrame or None
        The head atlas (``layer``, ``head`` and one column per score, see
        :func:`qkviz.analysis.head_scores`, plus e.g. ``js`` from a comparison) the cells can be
        tinted, filtered and ranked by.
    similar : pandas.DataFrame or None
        The similar-heads map (:func:`qkviz.analysis.similar_heads_map`).
    value_range : float32 [cell, 2] or None
        Each head's (min, max) token ‖v‖ (captures with value vectors; ``None`` otherwise); the
        quantised values are read per head (:meth:`head_vnorms`, :attr:`value_norms`).
    """

    embedding: Embedding
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    cells: list[Any]
    n_tokens: int
    dim: int
    orders: dict[str, np.ndarray]
    sample_sizes: dict[str, int]
    norm_range: np.ndarray
    missing: np.ndarray
    columns: dict[str, pd.Series] = field(default_factory=dict)
    has_images: bool = False
    faithfulness: pd.DataFrame | None = None
    display: list[str] = field(default_factory=list)
    token_text: list[str] = field(default_factory=list)
    category: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    attns: list[dict[str, Any]] = field(default_factory=list)
    scores: pd.DataFrame | None = None
    similar: pd.DataFrame | None = None
    value_range: np.ndarray | None = None
    _qnorms: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _qvnorms: OrderedDict[int, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _cell_attn: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32), repr=False)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_embedding(
        cls,
        embedding: Embedding,
        *,
        columns: dict[str, Any] | pd.DataFrame | None = None,
        faithfulness: bool | pd.DataFrame = False,
        scores: bool | pd.DataFrame | None = None,
    ) -> WidgetState:
        """Check an embedding and encode everything the front end draws.

        Parameters
        ----------
        embedding : Embedding
            What to show.
        columns : dict or pandas.DataFrame, optional
            Extra per-token columns (length ``n_tokens`` each) to colour by and to return in the
            selection table. Numeric columns get a colour map, others a categorical palette.
        faithfulness : bool or pandas.DataFrame
            ``True`` computes ``embedding.faithfulness()`` to print recall@k in every grid cell; a
            DataFrame with ``layer, head, recall`` is used as is.
        scores : bool, pandas.DataFrame or None
            The head atlas and similar-heads map. ``None`` computes them when the embedding has its
            capture and at most :data:`AUTO_SCORES_LIMIT` token-heads; ``True`` always (needs the
            capture); ``False`` never; a DataFrame with ``layer``, ``head`` and numeric columns is
            shown as the atlas (the map is still computed from the capture, under the same rule).

        Raises
        ------
        WidgetDataError
            An empty or inconsistent embedding, bad columns or a bad faithfulness table.
        """
        from ..project import Embedding

        if not isinstance(embedding, Embedding):
            raise WidgetDataError(
                f"expected a qkviz Embedding (made by qkviz.embed or Embedding.from_coords), got "
                f"{type(embedding).__name__}"
            )
        several = embedding.attns != ("self",)
        names = list(embedding.attns)
        attns: list[dict[str, Any]] = []
        cells: list[Any] = []
        for name in names:
            la_, he_ = (
                (embedding.layers_of(name), embedding.heads_of(name))
                if several
                else (embedding.layers, embedding.heads)
            )
            qs, ks = embedding.streams.get(name, (0, 0))
            cap = embedding.capture
            causal = bool(cap.attns[name].causal) if cap is not None and name in cap.attns else False
            attns.append(
                {"name": name, "layers": [int(x) for x in la_], "heads": [int(x) for x in he_],
                 "cell_offset": len(cells), "query_stream": int(qs), "key_stream": int(ks), "causal": causal}
            )  # fmt: skip
            cells += [(name, la, he) if several else (la, he) for la in la_ for he in he_]
        layers = tuple(attns[0]["layers"]) if attns else ()
        heads = tuple(attns[0]["heads"]) if attns else ()
        if not layers or not heads:
            raise WidgetDataError(f"the embedding has no heads (layers={layers}, heads={heads})")
        tokens = embedding.tokens
        n = len(tokens)
        if n == 0:
            raise WidgetDataError("the embedding has no tokens; capture at least one non-empty input")
        for col in ("seq", "pos"):
            if col not in tokens:
                raise WidgetDataError(f"the embedding's token table lacks the {col!r} column")
        # 3-D layouts keep z (the 3-D views read it); the 2-D canvas draws x, y.
        dim = 3 if int(embedding.dim) == 3 else 2
        # Checked head by head and kept nowhere: the points are read from the embedding again when
        # the front end asks for them, so the state stays small whatever the grid.
        norm_range = np.zeros((len(cells), 2), np.float32)
        missing = np.zeros(len(cells), np.uint8)
        for c, cell in enumerate(cells):
            attn, la, he = (cell[0], cell[1], cell[2]) if several else (None, cell[0], cell[1])
            what = f"coords({cell})"
            if not embedding.has(la, he, attn):
                # A projection stopped early leaves holes in the grid: the cell is drawn empty.
                missing[c] = 1
                continue
            ok = embedding.present(attn)
            xy = np.asarray(embedding.coords(la, he, attn))
            if xy.ndim != 2 or xy.shape[0] != 2 * n or xy.shape[1] < dim:
                raise WidgetDataError(f"{what} has shape {xy.shape}; expected (2 * n_tokens, dim) = ({2 * n}, 2 or 3)")
            if not np.isfinite(xy[ok, :dim]).all():
                raise WidgetDataError(f"{what} holds NaN or inf; re-run the projection")
            nm = np.asarray(embedding.norms(la, he, attn), np.float64).reshape(-1)
            if nm.shape[0] != 2 * n or not np.isfinite(nm[ok]).all():
                raise WidgetDataError(f"norms of {cell} must be {2 * n} finite values, got shape {nm.shape}")
            norm_range[c] = float(nm[ok].min()), float(nm[ok].max())
        # one draw order per attention: its points (cross-attention: decoder queries, encoder keys)
        # stratified and interleaved, the points it does not have last
        seq, pos = tokens["seq"].to_numpy(), tokens["pos"].to_numpy()
        orders: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        cell_attn = np.zeros(len(cells), np.int32)
        for i, a in enumerate(attns):
            ok = embedding.present(a["name"] if several else None)
            orders[a["name"]] = draw_order(seq, pos, valid=ok)
            n_cells = len(a["layers"]) * len(a["heads"])
            sizes[a["name"]] = sample_size(int(ok.sum()), n_cells) if ok.any() else 0
            cell_attn[a["cell_offset"] : a["cell_offset"] + n_cells] = i
        arrays: list[np.ndarray] = [norm_range, missing, cell_attn, *orders.values()]
        for arr in arrays:
            arr.setflags(write=False)
        text = tokens["token"].astype(str).tolist() if "token" in tokens else [""] * n
        display = tokens["display"].astype(str).tolist() if "display" in tokens else text
        special = tokens["special"].to_numpy(bool) if "special" in tokens else np.zeros(n, bool)
        state = cls(
            embedding=embedding,
            layers=layers,
            heads=heads,
            cells=cells,
            n_tokens=n,
            dim=dim,
            orders=orders,
            sample_sizes=sizes,
            norm_range=norm_range,
            missing=missing,
            display=display,
            token_text=text,
            category=np.array([_category(d, s) for d, s in zip(display, special)], np.uint8),
            attns=attns,
            _cell_attn=cell_attn,
        )
        state.columns = state._read_columns(columns)
        state.has_images = state._add_image_columns()
        state.faithfulness = state._read_faithfulness(faithfulness)
        state._read_scores(scores)
        state._add_value_norms()
        return state

    def _read_scores(self, scores: Any) -> None:
        emb = self.embedding
        # the head atlas covers models of one self-attention (encoder-decoder attentions: not yet)
        one = emb.attns == ("self",)
        small = one and emb.capture is not None and self.n_tokens * len(self.cells) <= AUTO_SCORES_LIMIT
        if scores is False or (scores is None and not small):
            return
        if not one and not isinstance(scores, pd.DataFrame):
            raise WidgetDataError("head scores cover models of one self-attention; pass scores=False for this one")
        if isinstance(scores, pd.DataFrame):
            if not {"layer", "head"} <= set(scores.columns):
                raise WidgetDataError("scores must be a DataFrame with layer, head and score columns")
            self.scores = scores
        elif emb.capture is None:
            raise WidgetDataError("head scores need the embedding's capture; pass scores=False or attach it")
        else:
            self.scores = emb.head_scores()
        if emb.capture is not None and (small or scores is True):
            from ..analysis import similar_heads_map

            cells = [c for c in self.cells if emb.has(*c)]
            self.similar = similar_heads_map(emb.capture, cells) if len(cells) > 1 else None

    def _add_value_norms(self) -> None:
        """Each head's range of token ‖v‖ (captures with value vectors): the per-head quantisation
        of :meth:`head_vnorms`. Reads each head's values once; keeps one pair of numbers a head."""
        cap = self.embedding.capture
        if cap is None or not cap.has_values:
            return
        rng = np.zeros((len(self.cells), 2), np.float32)
        for c in range(len(self.cells)):
            la, he, attn = self._head_key(c)
            if self.missing[c] or not self.embedding.has(la, he, attn):
                continue
            v = self._value_norm(c)
            rng[c] = float(v.min()), float(v.max())
        rng.setflags(write=False)
        self.value_range = rng

    def _value_norm(self, cell: int) -> np.ndarray:
        """float64 [token]: each token's ‖v‖ in the head of ``cell``."""
        la, he, attn = self._head_key(cell)
        cap = self.embedding.capture
        assert cap is not None  # only called when the capture holds values
        return np.linalg.norm(np.asarray(cap.v(la, he, attn), np.float64), axis=1)

    def head_vnorms(self, cell: int) -> np.ndarray | None:
        """Each point's token ‖v‖ in the head of ``cell`` (queries and keys alike), quantised
        min-max per head to ``uint8 [point]``; ``None`` without value vectors. The last few kept."""
        if self.value_range is None:
            return None
        cached = self._qvnorms.get(cell)
        if cached is not None:
            self._qvnorms.move_to_end(cell)
            return cached
        if self.missing[cell]:
            q = np.zeros(2 * self.n_tokens, np.uint8)
        else:
            v = self._value_norm(cell)
            lo, hi = (float(x) for x in self.value_range[cell])
            t = np.zeros_like(v) if hi <= lo else (v - lo) / (hi - lo) * 255.0
            q = np.tile(np.rint(t).astype(np.uint8), 2)
        q.setflags(write=False)
        self._qvnorms[cell] = q
        if len(self._qvnorms) > _NORM_CACHE_HEADS:
            self._qvnorms.popitem(last=False)
        return q

    @property
    def value_norms(self) -> np.ndarray | None:
        """Every point's quantised token ‖v‖, ``uint8 [point_global]`` (``None`` without values);
        built on each call, like :attr:`coords`."""
        if self.value_range is None:
            return None
        return np.concatenate([self.head_vnorms(c) for c in range(len(self.cells))])

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
            if name in COLOR_FIELDS or name in _RESERVED:
                raise WidgetDataError(f"column name {name!r} clashes with a built-in field; rename it")
            s = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values.to_numpy())
            if len(s) != self.n_tokens:
                raise WidgetDataError(f"column {name!r} has {len(s)} values; expected one per token ({self.n_tokens})")
            out[name] = s.reset_index(drop=True)
        return out

    def _add_image_columns(self) -> bool:
        """For image captures, add ``row``, ``col`` and the patches' colours as colour-by columns.

        AttentionViz found heads that sort patches by position, hue or brightness, so these are
        offered without the user passing them (the front end also offers ``"patch_color"``, each
        patch in its mean colour). Names the user already passed are left alone.

        Returns
        -------
        bool
            Whether the capture holds images (the front end then draws patch thumbnails).
        """
        cap = self.embedding.capture
        tok = self.embedding.tokens
        if cap is None or cap.images is None or "row" not in tok or "col" not in tok:
            return False
        try:
            colours = patch_colors(cap)
        except WidgetDataError as err:
            warnings.warn(f"no patch thumbnails or colour columns: {err}", stacklevel=5)
            return False
        patch = (tok["row"].to_numpy() >= 0) & (tok["col"].to_numpy() >= 0)
        auto = {
            # CLS has row/col -1: NaN, which the colour maps show as missing
            "row": np.where(patch, tok["row"].to_numpy(np.float64), np.nan),
            "col": np.where(patch, tok["col"].to_numpy(np.float64), np.nan),
            **colours,
        }
        for name, values in auto.items():
            if name not in self.columns:
                self.columns[name] = pd.Series(np.asarray(values, np.float64))
        return True

    def _read_faithfulness(self, faithfulness: Any) -> pd.DataFrame | None:
        if faithfulness is False or faithfulness is None:
            return None
        df = self.embedding.faithfulness() if faithfulness is True else faithfulness
        if not isinstance(df, pd.DataFrame) or not {"layer", "head", "recall"} <= set(df.columns):
            raise WidgetDataError("faithfulness must be True or a DataFrame with layer, head, recall columns")
        return df

    # -- questions about the grid -----------------------------------------------------------------

    @property
    def n_points(self) -> int:
        """Points of the whole grid (``2 * n_tokens`` per cell)."""
        return len(self.cells) * 2 * self.n_tokens

    @property
    def order(self) -> np.ndarray:
        """The draw order of the first attention (the only one for most models)."""
        return self.orders[self.attns[0]["name"]]

    @property
    def sample_points(self) -> int:
        """Points of each head of the first attention on the matrix."""
        return self.sample_sizes[self.attns[0]["name"]]

    # -- the points, one head at a time ------------------------------------------------------------

    def _head_key(self, c: int) -> tuple[int, int, str | None]:
        cell = self.cells[c]
        return (cell[1], cell[2], cell[0]) if self.several else (cell[0], cell[1], None)

    def head_coords(self, cell: int) -> np.ndarray:
        """Layout of one cell, ``float32 [point, dim]``: points the cell does not draw (a missing head,
        a point its attention does not have) parked at 100, outside every cell."""
        if not 0 <= cell < len(self.cells):
            raise IndexError(f"cell {cell} outside [0, {len(self.cells)})")
        if self.missing[cell]:
            return np.full((2 * self.n_tokens, self.dim), PARKED, np.float32)
        la, he, attn = self._head_key(cell)
        xy = np.asarray(self.embedding.coords(la, he, attn), np.float32)[:, : self.dim]
        ok = self.embedding.present(attn)
        if ok.all():
            return xy
        return np.where(ok[:, None], np.nan_to_num(xy, nan=PARKED), PARKED).astype(np.float32)

    def head_norms(self, cell: int) -> np.ndarray:
        """Norms of one cell quantised min-max to ``uint8 [point]`` (0..255; 0 for a missing head).

        Kept for the last few heads asked for (the focused head is asked for again and again).
        """
        cached = self._qnorms.get(cell)
        if cached is not None:
            self._qnorms.move_to_end(cell)
            return cached
        if not 0 <= cell < len(self.cells):
            raise IndexError(f"cell {cell} outside [0, {len(self.cells)})")
        if self.missing[cell]:
            q = np.zeros(2 * self.n_tokens, np.uint8)
        else:
            la, he, attn = self._head_key(cell)
            nm = np.asarray(self.embedding.norms(la, he, attn), np.float64).reshape(-1)
            ok = self.embedding.present(attn)
            lo, hi = (float(v) for v in self.norm_range[cell])
            # Per-head min-max to 0..255: enough for a colour ramp and dot sizes at 1 byte a point.
            q = np.rint(np.zeros_like(nm) if hi <= lo else (np.where(ok, nm, lo) - lo) / (hi - lo) * 255.0)
            q = q.astype(np.uint8)
        q.setflags(write=False)
        self._qnorms[cell] = q
        if len(self._qnorms) > _NORM_CACHE_HEADS:
            self._qnorms.popitem(last=False)
        return q

    def attn_of_cell(self, cell: int) -> str:
        """The name of the attention cell ``cell`` belongs to (``"self"`` for most models)."""
        return str(self.attns[int(self._cell_attn[cell])]["name"])

    @property
    def coords(self) -> np.ndarray:
        """Every cell's layout, ``float32 [point_global, dim]``, cell after cell (parked points at 100).

        Built on each call, O(whole grid) in memory: prefer :meth:`head_coords`, :meth:`points`,
        :meth:`sample` or :meth:`points_at`.
        """
        return self.points(0, self.n_points)["coords"]

    @property
    def norms(self) -> np.ndarray:
        """Every point's quantised norm, ``uint8 [point_global]``; built on each call, like :attr:`coords`."""
        return self.points(0, self.n_points)["norms"]

    @property
    def has_attention(self) -> bool:
        """Whether exact attention is available (the embedding carries its capture)."""
        return self.embedding.capture is not None

    def grid_of(self, attn: str | None) -> dict[str, Any]:
        """The grid of one attention (an entry of ``attns``); ``None`` or ``""``: the default one."""
        if not attn:
            attn = self.resolve_attn(None)
            if attn is None:
                return self.attns[0]
        for a in self.attns:
            if a["name"] == attn:
                return a
        raise WidgetDataError(f"attn={attn!r}: this embedding holds {[a['name'] for a in self.attns]}")

    @property
    def several(self) -> bool:
        """Whether the cells are (attn, layer, head): an embedding of several attentions."""
        return len(self.attns) > 1 or (bool(self.attns) and self.attns[0]["name"] != "self")

    def cell_index(self, layer: int, head: int, attn: str | None = None) -> int:
        """The cell of (layer, head): ``attn_offset + layer_index * n_heads + head_index``."""
        self.check_focus(layer, head, attn)
        a = self.grid_of(attn)
        return a["cell_offset"] + a["layers"].index(layer) * len(a["heads"]) + a["heads"].index(head)

    def color_fields(self) -> list[str]:
        """Every valid ``color``: the built-in fields, ``"patch_color"`` for images,
        ``"value_norm"`` with value vectors, user columns."""
        return (
            list(COLOR_FIELDS)
            + ([PATCH_COLOR] if self.has_images else [])
            + ([VALUE_NORM] if self.value_range is not None else [])
            + list(self.columns)
        )

    def check_color(self, name: Any) -> None:
        if name not in self.color_fields():
            raise WidgetDataError(f"unknown colour field {name!r}; expected one of {self.color_fields()}")

    def check_focus(self, layer: Any, head: Any, attn: str | None = None) -> None:
        for what, v in (("layer", layer), ("head", head)):
            if not _whole(v):
                raise WidgetDataError(
                    f"{what} must be a whole number (model numbering), got {v!r} ({type(v).__name__})"
                )
        a = self.grid_of(attn)
        name = a["name"] if self.several else None
        if layer not in a["layers"] or head not in a["heads"] or not self.embedding.has(layer, head, name):
            raise WidgetDataError(
                f"no head (layer={layer}, head={head}) in this embedding; layers are {a['layers']}, heads {a['heads']}"
            )

    def check_view(self, view: View) -> View:
        """Validate display settings against this state (unknown colour, bad theme, half a focus)."""
        self.check_color(view.color)
        checks = (
            ("color_mod", _whole(view.color_mod) and view.color_mod >= 1, "a whole number >= 1"),
            ("size_by_norm", isinstance(view.size_by_norm, bool), "True or False"),
            ("search_query", isinstance(view.search_query, str), "a str"),
            ("search_regex", isinstance(view.search_regex, bool), "True or False"),
            ("lines_k", _whole(view.lines_k) and view.lines_k >= 1, "a whole number >= 1"),
            ("lines_threshold", valid_threshold(view.lines_threshold), "a number in [0, 1]"),
            ("height", _whole(view.height) and view.height >= 200, "a whole number of pixels >= 200"),
        )
        for name, ok, what in checks:
            if not ok:
                raise WidgetDataError(f"{name} must be {what}, got {getattr(view, name)!r}")
        if view.theme not in THEMES:
            raise WidgetDataError(f"theme must be one of {THEMES}, got {view.theme!r}")
        if (view.layer is None) != (view.head is None):
            raise WidgetDataError("give both layer and head, or neither (to start on the matrix)")
        attn = self.resolve_attn(view.attn)
        if view.layer is not None:
            self.check_focus(view.layer, view.head, attn)
        return dataclasses.replace(view, attn=attn or "")

    def resolve_attn(self, attn: str | None) -> str | None:
        """The attention a view shows: ``attn``, or by default cross-attention (else the first);
        ``None`` for an embedding of one attention."""
        names = [a["name"] for a in self.attns]
        if not self.several:
            if attn not in (None, "", *names):
                raise WidgetDataError(f"attn={attn!r}: this embedding holds one attention")
            return None
        if not attn:
            return "cross" if "cross" in names else names[0]
        if attn not in names:
            raise WidgetDataError(f"attn={attn!r}: this embedding holds {names}")
        return attn

    def match_tokens(self, query: str, regex: bool) -> np.ndarray:
        """``bool [token]``: which tokens match a search (the same rule as ``js/src/canvas/search.js``).

        Matching is case-insensitive: a substring test, or ``re.search`` when ``regex``. An empty
        query matches nothing.
        """
        if not isinstance(query, str):
            raise WidgetDataError(f"the search query must be a str, got {query!r} ({type(query).__name__})")
        if not isinstance(regex, bool):
            raise WidgetDataError(f"regex must be True or False, got {regex!r}")
        if not query:
            return np.zeros(self.n_tokens, bool)
        if regex:
            try:
                rx = re.compile(query, re.IGNORECASE)
            except re.error as err:
                raise WidgetDataError(f"invalid regular expression {query!r}: {err}") from err
            return np.array([rx.search(d) is not None for d in self.display])
        q = query.lower()
        return np.array([q in d.lower() for d in self.display])

    def attention(self, layer: int, head: int, seq: int, attn: str | None = None) -> np.ndarray:
        """Exact attention ``float32 [query_pos, key_pos]`` of one head and seq."""
        self.check_focus(layer, head, attn)
        if not self.has_attention:
            raise WidgetDataError("this embedding has no capture attached, so attention is unavailable")
        name = self.grid_of(attn)["name"] if self.several else None
        return np.asarray(self.embedding.attention(layer, head, seq, name), np.float32)

    def _norms_of(self, c: int) -> np.ndarray:
        cell = self.cells[c]
        parts = (cell[1], cell[2], cell[0]) if self.several else (cell[0], cell[1])
        return np.asarray(self.embedding.norms(*parts), np.float32).reshape(-1)

    def exact_norms(self, cell: np.ndarray, point: np.ndarray) -> np.ndarray:
        """The float32 norms (not the 8-bit wire copy) of points given as (cell, point) pairs."""
        out = np.empty(len(cell), np.float32)
        for c in np.unique(cell):
            m = cell == c
            out[m] = self._norms_of(int(c))[point[m]]
        return out

    def selected(self, indices: np.ndarray) -> pd.DataFrame:
        """The points at global ``indices``, one row each, indexed by global point index.

        Columns: ``token``, ``display``, ``seq``, ``pos``, ``kind`` (``"query"``/``"key"``),
        ``layer``, ``head``, ``x``, ``y`` (``z`` for 3-D layouts), ``norm`` and every colour column.
        """
        idx = np.asarray(indices, np.int64)
        n = self.n_tokens
        per = 2 * n
        cell, point = idx // per, idx % per
        token = point % n
        tok = self.embedding.tokens
        cells = np.array([c[-2:] for c in self.cells], np.int64).reshape(-1, 2)
        attn_of = np.array([c[0] if self.several else "self" for c in self.cells], object)
        xyz = self._gather(cell, point)[0]
        df = pd.DataFrame(
            {
                **({"attn": attn_of[cell]} if self.several else {}),
                "token": np.asarray(self.token_text, object)[token],
                "display": np.asarray(self.display, object)[token],
                "seq": tok["seq"].to_numpy()[token],
                "pos": tok["pos"].to_numpy()[token],
                "kind": np.where(point < n, "query", "key"),
                "layer": cells[cell, 0],
                "head": cells[cell, 1],
                "x": xyz[:, 0],
                "y": xyz[:, 1],
                **({"z": xyz[:, 2]} if self.dim == 3 else {}),
                "norm": self.exact_norms(cell, point) if len(idx) else np.zeros(0, np.float32),
            },
            index=pd.Index(idx, name="point"),
        )
        for name, s in self.columns.items():
            df[name] = s.to_numpy()[token]
        return df

    # -- wire values ------------------------------------------------------------------------------

    @property
    def chunk_points(self) -> int:
        """Points per ``points`` message (each at most :data:`MAX_MESSAGE_BYTES`)."""
        return self.points_per_message(MAX_MESSAGE_BYTES)

    def points_per_message(self, message_bytes: int) -> int:
        """Points per ``points`` message when one message may carry ``message_bytes``."""
        return max(2, int(message_bytes) // _bytes_per_point(self.dim))

    def points(self, start: int, stop: int) -> dict[str, Any]:
        """Grid points ``[start, stop)`` (global indices): coords ``float32 [point, dim]``, norms ``uint8 [point]``.

        Reads only the heads the range covers (a focused head is one range).
        """
        if not 0 <= start <= stop <= self.n_points:
            raise IndexError(f"points [{start}, {stop}) outside [0, {self.n_points})")
        per = 2 * self.n_tokens
        coords = np.empty((stop - start, self.dim), np.float32)
        norms = np.empty(stop - start, np.uint8)
        vnorms = np.empty(stop - start, np.uint8) if self.value_range is not None else None
        at = start
        while at < stop:
            c, lo = divmod(at, per)
            hi = min(per, lo + stop - at)
            coords[at - start : at - start + hi - lo] = self.head_coords(c)[lo:hi]
            norms[at - start : at - start + hi - lo] = self.head_norms(c)[lo:hi]
            if vnorms is not None:
                vnorms[at - start : at - start + hi - lo] = self.head_vnorms(c)[lo:hi]  # type: ignore[index]
            at += hi - lo
        out = {"start": start, "stop": stop, "coords": coords, "norms": norms}
        if vnorms is not None:
            out["vnorms"] = vnorms
        return out

    def sample(self, start: int, stop: int, points: Any = None) -> dict[str, Any]:
        """The same points of every cell in ``[start, stop)``: the matrix's level of detail.

        Parameters
        ----------
        start, stop : int
            A range of cells (of one attention, unless ``points`` is given).
        points : int array [m], optional
            Indices within a head (``0..2 * n_tokens - 1``); default the sample of the cells'
            attention, ``orders[attn][:sample_sizes[attn]]``. The front end asks for searched
            points this way.

        Returns
        -------
        dict
            ``start``, ``stop``, ``coords`` float32 [cell, m, dim] (parked points at 100),
            ``norms`` uint8 [cell, m].
        """
        if not 0 <= start <= stop <= len(self.cells):
            raise IndexError(f"cells [{start}, {stop}) outside [0, {len(self.cells)})")
        if points is None:
            names = {self.attn_of_cell(c) for c in range(start, stop)} or {self.attns[0]["name"]}
            if len(names) > 1:
                raise IndexError(f"cells [{start}, {stop}) span several attentions ({sorted(names)}); ask for one")
            name = names.pop()
            pts = self.orders[name][: self.sample_sizes[name]].astype(np.int64)
        else:
            pts = np.asarray(points, np.int64).reshape(-1)
        if pts.size and (pts.min() < 0 or pts.max() >= 2 * self.n_tokens):
            raise IndexError(f"points must lie in [0, {2 * self.n_tokens})")
        coords = np.empty((stop - start, len(pts), self.dim), np.float32)
        norms = np.empty((stop - start, len(pts)), np.uint8)
        vnorms = np.empty((stop - start, len(pts)), np.uint8) if self.value_range is not None else None
        for i, c in enumerate(range(start, stop)):
            coords[i] = self.head_coords(c)[pts]
            norms[i] = self.head_norms(c)[pts]
            if vnorms is not None:
                vnorms[i] = self.head_vnorms(c)[pts]  # type: ignore[index]
        out = {"start": start, "stop": stop, "coords": coords, "norms": norms}
        if vnorms is not None:
            out["vnorms"] = vnorms
        return out

    def points_at(self, indices: Any) -> dict[str, Any]:
        """Points at global ``indices`` (any cells): coords ``float32 [point, dim]``, norms ``uint8 [point]``."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_points):
            raise IndexError(f"point indices must lie in [0, {self.n_points})")
        per = 2 * self.n_tokens
        coords, norms = self._gather(idx // per, idx % per)
        out = {"coords": coords, "norms": norms}
        if self.value_range is not None:
            cell, point = idx // per, idx % per
            vn = np.empty(len(idx), np.uint8)
            for c in np.unique(cell):
                m = cell == c
                vn[m] = self.head_vnorms(int(c))[point[m]]  # type: ignore[index]
            out["vnorms"] = vn
        return out

    def _gather(self, cell: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coords ``float32 [k, dim]`` and quantised norms ``uint8 [k]`` of (cell, point) pairs, head by head."""
        coords = np.empty((len(cell), self.dim), np.float32)
        norms = np.empty(len(cell), np.uint8)
        for c in np.unique(cell):
            m = cell == c
            coords[m] = self.head_coords(int(c))[point[m]]
            norms[m] = self.head_norms(int(c))[point[m]]
        return coords, norms

    def meta_wire(self, message_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
        """The ``_meta`` trait; the front end pulls the grid in messages of ``message_bytes`` at most."""
        recall = np.full(len(self.cells), np.nan, np.float32)
        if self.faithfulness is not None:
            f = self.faithfulness
            names = f["attn"] if "attn" in f.columns else [None] * len(f)
            lookup = {
                ((str(a), int(la), int(he)) if a is not None else (int(la), int(he))): float(r)
                for a, la, he, r in zip(names, f["layer"], f["head"], f["recall"])
            }
            recall = np.array([lookup.get(tuple(c), np.nan) for c in self.cells], np.float32)
        return {
            "layers": list(self.layers),
            "heads": list(self.heads),
            "n_tokens": self.n_tokens,
            "n_points": self.n_points,
            "chunk_points": self.points_per_message(message_bytes),
            "dim": self.dim,
            "has_attention": self.has_attention,
            "has_faithfulness": self.faithfulness is not None,
            "recall": array_to_binary(np.nan_to_num(recall, nan=-1.0), "float32"),
            "norm_range": array_to_binary(self.norm_range, "float32"),
            "missing": array_to_binary(self.missing, "uint8"),
            "n_seqs": int(len(self.embedding.sequences)),
            "has_images": self.has_images,
            "single_scale": SINGLE_SCALE,
            "cell_fill": CELL_FILL,
            # level of detail: the draw order and the matrix's points per head, of the first
            # attention here and of each attention in `attns` (its own order only when there are
            # several: 4 bytes a point that do not compress, the front end falls back to `order`)
            "order": array_to_binary(self.order, "uint32"),
            "sample_points": int(self.sample_points),
            "forced_points": FORCED_POINTS,
            "attns": [
                {
                    **a,
                    **({"order": array_to_binary(self.orders[a["name"]], "uint32")} if self.several else {}),
                    "sample_points": int(self.sample_sizes[a["name"]]),
                }
                for a in self.attns
            ],
            "streams": list(self._streams()),
            "has_values": self.value_range is not None,
            "can_probe": self.can_probe,
            **({"value_range": array_to_binary(self.value_range, "float32")} if self.value_range is not None else {}),
            "scores": self.scores_wire(),
            "similar": self.similar_wire(),
        }

    def _per_cell(self, df: pd.DataFrame, column: str) -> np.ndarray:
        lookup = {(int(la), int(he)): v for la, he, v in zip(df["layer"], df["head"], df[column])}
        return np.array([lookup.get(c, np.nan) for c in self.cells], np.float32)

    @property
    def can_probe(self) -> bool:
        """Whether :meth:`qkviz.QKViz.probe` can place text here: a text capture attached, and
        layouts made by ``qkviz.embed`` (with their frames)."""
        from ..project import METHODS

        emb = self.embedding
        cap = emb.capture
        return bool(
            cap is not None
            and cap.model.get("modality", "text") == "text"
            and emb.method in METHODS
            and all(c in emb.frames for c in emb.cells)
        )

    def scores_wire(self) -> dict[str, Any] | None:
        """The head atlas per cell: ``names`` and ``values`` float32 [name, cell] (NaN: no value)."""
        if self.scores is None:
            return None
        df = self.scores
        names = [
            c
            for c in df.columns
            if c not in ("layer", "head")
            and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c])
        ]
        values = np.stack([self._per_cell(df, c) for c in names]) if names else np.zeros((0, len(self.cells)))
        return {"names": names, "values": array_to_binary(values, "float32")}

    def similar_wire(self, k: int = 3) -> dict[str, Any] | None:
        """The similar-heads map per cell: ``xy`` float32 [cell, 2] (NaN: not on the map) and the
        ``k`` most similar other heads as ``nearest`` int32 [cell, k] (cell index, -1: none) with
        their mean Jensen–Shannon divergence ``nearest_js`` float32 [cell, k]."""
        if self.similar is None:
            return None
        m = self.similar
        where = {(int(la), int(he)): i for i, (la, he) in enumerate(zip(m["layer"], m["head"]))}
        d = np.asarray(m.attrs["distances"], np.float64)
        xy = np.full((len(self.cells), 2), np.nan, np.float32)
        nearest = np.full((len(self.cells), k), -1, np.int32)
        near_js = np.full((len(self.cells), k), np.nan, np.float32)
        cell_of = {c: i for i, c in enumerate(self.cells)}
        for c, key in enumerate(self.cells):
            i = where.get(key)
            if i is None:
                continue
            xy[c] = m["x"].iloc[i], m["y"].iloc[i]
            order = [j for j in np.argsort(d[i], kind="stable") if j != i][:k]
            for r, j in enumerate(order):
                other = (int(m["layer"].iloc[j]), int(m["head"].iloc[j]))
                nearest[c, r] = cell_of.get(other, -1)
                near_js[c, r] = d[i, j]
        return {
            "xy": array_to_binary(xy, "float32"),
            "nearest": array_to_binary(nearest, "int32"),
            "nearest_js": array_to_binary(near_js, "float32"),
        }

    def probe_wire(self, placed: Embedding) -> dict[str, Any]:
        """What the front end draws for a probe (:meth:`qkviz.QKViz.probe`).

        ``n_tokens`` (m); ``display``, one string per new token; ``seq`` / ``pos`` uint32 [token]; ``texts``;
        ``coords`` float32 [cell * 2m, dim] (the new points of every cell, queries then keys, in the
        grid's cell order; 100 where a cell has no layout); ``attention`` float32 [cell, S]: each
        cell's exact attention of every probe sequence, raveled and concatenated (``S = Σ n²``);
        ``offsets`` uint32 [seq]: where each sequence's block starts within ``S``.
        """
        m = placed.n_tokens
        tok = placed.tokens
        seq = tok["seq"].to_numpy(np.int64)
        lengths = np.bincount(seq) if m else np.zeros(0, np.int64)
        offsets = np.r_[0, np.cumsum(lengths**2)[:-1]] if len(lengths) else np.zeros(0, np.int64)
        size = int((lengths**2).sum())
        coords = np.full((len(self.cells) * 2 * m, self.dim), 100.0, np.float32)
        att = np.zeros((len(self.cells), size), np.float32)
        for c, key in enumerate(self.cells):
            if not placed.has(*key):
                continue
            coords[c * 2 * m : (c + 1) * 2 * m] = placed.coords(*key)[:, : self.dim]
            for s in range(len(lengths)):
                att[c, offsets[s] : offsets[s] + lengths[s] ** 2] = placed.attention(key[0], key[1], s).ravel()
        display_col = "display" if "display" in tok else "token"
        return {
            "n_tokens": int(m),
            "display": tok[display_col].astype(str).tolist(),
            "seq": array_to_binary(seq, "uint32"),
            "pos": array_to_binary(tok["pos"].to_numpy(np.int64), "uint32"),
            "texts": placed.sequences["text"].astype(str).tolist(),
            "coords": array_to_binary(coords, "float32"),
            "attention": array_to_binary(att, "float32"),
            "offsets": array_to_binary(offsets, "uint32"),
        }

    def _streams(self) -> tuple[str, ...]:
        cap = self.embedding.capture
        if cap is not None:
            return tuple(cap.streams)
        return ("encoder", "decoder") if self.several else ("tokens",)

    def tokens_wire(self) -> dict[str, Any]:
        """The ``_tokens`` trait."""
        tok = self.embedding.tokens
        seq = tok["seq"].to_numpy(np.int64)
        pos = tok["pos"].to_numpy(np.int64)
        stream = tok["stream"].to_numpy(np.int64) if "stream" in tok.columns else np.zeros(len(tok), np.int64)
        # length of the token's own stream within its sequence (encoder and decoder apart)
        seq_len = pd.Series(pos).groupby([seq, stream]).transform("max").to_numpy() + 1
        return {
            **({"stream": array_to_binary(stream, "uint8")} if self.several else {}),
            "seq": array_to_binary(seq, "uint32"),
            "pos": array_to_binary(pos, "uint32"),
            "seq_len": array_to_binary(seq_len, "uint32"),
            "category": array_to_binary(self.category, "uint8"),
            "token": self.token_text,
            "display": self.display,
        }

    def columns_wire(self) -> dict[str, Any]:
        """The ``_columns`` trait."""
        out = {}
        for name, s in self.columns.items():
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                v = s.to_numpy(np.float64)
                if not np.isfinite(v).any():
                    raise WidgetDataError(f"column {name!r} has no finite value to colour by")
                out[name] = {"type": "numeric", "values": array_to_binary(v, "float32")}
            else:
                codes, cats = pd.factorize(s.astype(str), sort=True)
                out[name] = {
                    "type": "categorical",
                    "values": array_to_binary(codes, "uint32"),
                    "categories": [str(c) for c in cats],
                }
        return out

    def check_wire_size(self, *wires: dict[str, Any]) -> None:
        """Warn when the initial state (one message) risks Jupyter's ~10 MiB message limit."""

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
                stacklevel=4,
            )
