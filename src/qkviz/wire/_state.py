"""``WidgetState``: everything the front end draws, built once from an ``Embedding``.

The notebook widget (:class:`qkviz.QKViz`) holds one and serves it over the comm; the standalone
export (:mod:`qkviz.export`) builds one without any widget. Both send the same wire values
(``docs/internals.md``, "Widget wire format"):

* ``meta``: the grid (layers, heads, point counts, chunking, per-cell recall and norm range...);
* ``tokens``: per-token binary columns plus the token strings, once;
* ``columns``: user colour-by columns (and, for image captures, patch position and colour);
* the grid points themselves (coordinates and 8-bit norms of every head), in chunks.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..analysis import patch_colors
from ..errors import WidgetDataError
from ._codec import MAX_MESSAGE_BYTES, array_to_binary

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
    coords : float32 [point_global, dim]
        Every cell's layout, cell after cell (missing heads parked at 100, outside every cell).
    norms : uint8 [point_global]
        Vector norms quantised per head (min-max to 0..255).
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
    value_norms : uint8 [point_global] or None
        Each point's token ‖v‖ in its head, quantised per head (captures with value vectors).
    """

    embedding: Embedding
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    cells: list[Any]
    n_tokens: int
    dim: int
    coords: np.ndarray
    norms: np.ndarray
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
    value_norms: np.ndarray | None = None
    value_range: np.ndarray | None = None

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
        coords = np.empty((len(cells) * 2 * n, dim), np.float32)
        norms = np.empty(len(cells) * 2 * n, np.uint8)
        norm_range = np.zeros((len(cells), 2), np.float32)
        missing = np.zeros(len(cells), np.uint8)
        for c, cell in enumerate(cells):
            attn, la, he = (cell[0], cell[1], cell[2]) if several else (None, cell[0], cell[1])
            sl = slice(c * 2 * n, (c + 1) * 2 * n)
            what = f"coords({cell})"
            if not embedding.has(la, he, attn):
                # A projection stopped early leaves holes in the grid: park those points far
                # outside every cell (drawn nowhere) and mark the cell empty.
                missing[c] = 1
                coords[sl], norms[sl], norm_range[c] = 100.0, 0, (0.0, 0.0)
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
            lo, hi = float(nm[ok].min()), float(nm[ok].max())
            # Per-head min-max to 0..255: enough for a colour ramp and dot sizes at 1 byte a point.
            q = np.zeros_like(nm) if hi <= lo else (np.where(ok, nm, lo) - lo) / (hi - lo) * 255.0
            # points this attention does not have are parked where missing heads go: drawn nowhere
            coords[sl] = np.where(ok[:, None], np.nan_to_num(xy[:, :dim], nan=100.0), 100.0)
            norms[sl] = np.rint(q).astype(np.uint8)
            norm_range[c] = lo, hi
        for a in (coords, norms, norm_range, missing):
            a.setflags(write=False)
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
            coords=coords,
            norms=norms,
            norm_range=norm_range,
            missing=missing,
            display=display,
            token_text=text,
            category=np.array([_category(d, s) for d, s in zip(display, special)], np.uint8),
            attns=attns,
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
        """Each point's token ‖v‖ in its head (queries and keys alike), quantised per head."""
        cap = self.embedding.capture
        if cap is None or not cap.has_values:
            return
        n = self.n_tokens
        out = np.zeros(len(self.cells) * 2 * n, np.uint8)
        rng = np.zeros((len(self.cells), 2), np.float32)
        for c, (la, he) in enumerate(self.cells):
            if not self.embedding.has(la, he):
                continue
            v = np.linalg.norm(cap.v(la, he).astype(np.float64), axis=1)
            lo, hi = float(v.min()), float(v.max())
            q = np.zeros_like(v) if hi <= lo else (v - lo) / (hi - lo) * 255.0
            out[c * 2 * n : (c + 1) * 2 * n] = np.tile(np.rint(q).astype(np.uint8), 2)
            rng[c] = lo, hi
        out.setflags(write=False)
        self.value_norms, self.value_range = out, rng

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
        return len(self.coords)

    @property
    def has_attention(self) -> bool:
        """Whether exact attention is available (the embedding carries its capture)."""
        return self.embedding.capture is not None

    def _attn(self, attn: str | None) -> dict[str, Any]:
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
        a = self._attn(attn)
        return a["cell_offset"] + a["layers"].index(layer) * len(a["heads"]) + a["heads"].index(head)

    def color_fields(self) -> list[str]:
        """Every valid ``color``: the built-in fields, ``"patch_color"`` for images,
        ``"value_norm"`` with value vectors, user columns."""
        return (
            list(COLOR_FIELDS)
            + ([PATCH_COLOR] if self.has_images else [])
            + ([VALUE_NORM] if self.value_norms is not None else [])
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
        a = self._attn(attn)
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
        name = self._attn(attn)["name"] if self.several else None
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
                "x": self.coords[idx, 0],
                "y": self.coords[idx, 1],
                **({"z": self.coords[idx, 2]} if self.dim == 3 else {}),
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
        """Grid points ``[start, stop)``: coords ``float32 [point, dim]``, norms ``uint8 [point]``."""
        if not 0 <= start <= stop <= self.n_points:
            raise IndexError(f"points [{start}, {stop}) outside [0, {self.n_points})")
        out = {"start": start, "stop": stop, "coords": self.coords[start:stop], "norms": self.norms[start:stop]}
        if self.value_norms is not None:
            out["vnorms"] = self.value_norms[start:stop]
        return out

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
            "attns": [dict(a) for a in self.attns],
            "streams": list(self._streams()),
            "has_values": self.value_norms is not None,
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
