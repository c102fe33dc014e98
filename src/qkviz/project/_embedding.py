"""The :class:`Embedding` container: what the project stage makes (see :func:`qkviz.embed`).

An embedding holds, for every (layer, head), the 2-D or 3-D coordinates of that head's queries and
keys in one normalised box, plus what made them (method, parameters, the joint normalisation and
alignment rotation of each head, timings) and a link back to the capture for exact attention.

Examples
--------
Build one from coordinates you computed yourself (what the widget needs, no model involved):

>>> import numpy as np, pandas as pd
>>> tokens = pd.DataFrame({"seq": [0, 0, 0], "pos": [0, 1, 2], "token": ["a", "b", "c"]})
>>> xy = {(0, 0): np.random.default_rng(0).normal(size=(6, 2))}
>>> emb = Embedding.from_coords(xy, tokens)
>>> emb.coords(0, 0).shape, float(np.abs(emb.coords(0, 0)).max())
((6, 2), 1.0)
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._capture._container import fingerprint, sequences_from_tokens
from .._fs import (
    LIB_TEMP,
    META,
    array_crc,
    check_target,
    clean_stale,
    field,
    file_crc,
    read_header,
    replace_dir,
    temp_sibling,
    writing,
)
from ..errors import EmbeddingError, StoreError

if TYPE_CHECKING:
    from .._capture import Capture
    from ..joint import JointTransform

__all__ = ["Embedding", "Frame", "to_box", "box_frame", "present_points", "FORMAT", "VERSION"]

FORMAT = "qkviz.embedding"
#: 2: several attentions per embedding (cells named (attn, layer, head)); 3: checksums per tensor
#: and per table, and the capture's fingerprint. Versions 1 and 2 still load, unchecked.
VERSION = 3
READS = (1, 2, 3)
#: The names an embedding folder holds (anything else in it is the user's).
OWN = re.compile(rf"^(meta\.json|coords\.safetensors|tokens\.parquet|sequences\.parquet|{LIB_TEMP})$")
_TABLES = ("tokens.parquet", "sequences.parquet")

HeadKey = tuple[int, int]  # (layer, head)
Cell = tuple[str, int, int]  # (attn, layer, head): how an embedding of several attentions names its heads


def present_points(tokens: pd.DataFrame, query_stream: int, key_stream: int) -> np.ndarray:
    """Which of a head's ``2n`` points exist: bool ``[point]``.

    Point ``p < n`` is the query of token ``p`` and exists when the token belongs to the attention's
    query stream; point ``n + p`` is the key of token ``p`` and exists when it belongs to the key
    stream (cross-attention: decoder queries, encoder keys). Single-stream captures: all of them.
    """
    stream = tokens["stream"].to_numpy() if "stream" in tokens.columns else np.zeros(len(tokens), np.int8)
    return np.concatenate([stream == query_stream, stream == key_stream])


def to_box(y: np.ndarray) -> np.ndarray:
    """Centre a layout on its bounding-box midpoint and scale it uniformly into ``[-1, 1]``.

    One factor for all axes keeps the aspect ratio. A layout with no extent maps to zeros.

    Parameters
    ----------
    y : float array [point, dim]

    Returns
    -------
    float32 array [point, dim]
    """
    y = np.asarray(y, np.float64)
    ok = np.isfinite(y).all(axis=1)  # absent points (NaN rows) stay NaN and take no part
    if y.size == 0 or not ok.any():
        return y.astype(np.float32)
    lo, hi = y[ok].min(0), y[ok].max(0)
    y = y - (lo + hi) / 2.0
    half = float(np.abs(y[ok]).max())
    if half > 0:
        y = y / half
    with np.errstate(invalid="ignore"):
        return np.clip(y, -1.0, 1.0).astype(np.float32)


def box_frame(y: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre and half-width :func:`to_box` uses: ``to_box(y) == (y - centre) / half``.

    Returns
    -------
    centre : float64 array [dim]
    half : float
        1.0 for a layout with no extent.
    """
    y = np.asarray(y, np.float64)
    if y.size == 0:
        return np.zeros(y.shape[1] if y.ndim == 2 else 0), 1.0
    centre = (y.min(0) + y.max(0)) / 2.0
    half = float(np.abs(y - centre).max())
    return centre, (half if half > 0 else 1.0)


@dataclass(frozen=True)
class Frame:
    """How one head's raw layout (the reducer's own coordinates) becomes the drawn one.

    ``drawn = (raw - origin) @ rotation / scale``: the alignment rotation about the layout's
    centroid and the uniform scaling into the ``[-1, 1]`` box, as one map. :meth:`Embedding.place`
    sends new points through it, so they land in the same frame as the head's own points.

    Attributes
    ----------
    origin : float64 array [dim]
        The raw point drawn at the box centre.
    rotation : float64 array [dim, dim]
        Orthogonal (the Procrustes alignment; identity when not aligned).
    scale : float
        Raw units per drawn unit.
    """

    origin: np.ndarray
    rotation: np.ndarray
    scale: float

    @classmethod
    def fit(cls, raw: np.ndarray, rotation: np.ndarray) -> Frame:
        """The frame ``embed`` applies: centre on the centroid, rotate, then box (:func:`to_box`)."""
        raw = np.asarray(raw, np.float64)
        rot = np.asarray(rotation, np.float64)
        mu = raw.mean(0)
        centre, half = box_frame((raw - mu) @ rot)
        return cls(origin=mu + centre @ rot.T, rotation=rot, scale=half)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw layout -> drawn coordinates (float32 [point, dim]; not clipped to the box)."""
        return (((np.asarray(raw, np.float64) - self.origin) @ self.rotation) / self.scale).astype(np.float32)

    def invert(self, drawn: np.ndarray) -> np.ndarray:
        """Drawn coordinates -> the reducer's raw layout (float64 [point, dim])."""
        return (np.asarray(drawn, np.float64) * self.scale) @ self.rotation.T + self.origin

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin.tolist(), "rotation": self.rotation.tolist(), "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Frame:
        return cls(
            origin=np.asarray(d["origin"], np.float64),
            rotation=np.asarray(d["rotation"], np.float64),
            scale=float(d["scale"]),
        )


class Embedding:
    """Joint query-key layouts of many heads of one capture.

    Prefer :func:`embed` to make one, :meth:`from_coords` to wrap coordinates computed elsewhere,
    and :meth:`load` to read a saved one.

    Attributes
    ----------
    tokens, sequences : pandas.DataFrame
        The capture's token and sequence tables (shared, not copied).
    layers, heads : tuple of int
        Layers and heads that have coordinates (the grid; see :meth:`has` for a partial run).
    dim : {2, 3}
    method : str
        ``"tsne"``, ``"umap"``, ``"pca"``, ``"attention"`` or ``"custom"``.
    params : dict
        Everything that made the layout, including ``translate``, ``scale``, ``metric``, ``align``
        and the method parameters.
    timings : dict
        Seconds per stage (``normalize``, ``project``, ``align``, ``total``, ...).
    capture : Capture or None
        For exact attention; ``None`` for an embedding loaded without its capture.
    transforms : dict
        Per (layer, head), the :class:`qkviz.joint.JointTransform` the layout saw.
    rotations : dict
        Per (layer, head), the orthogonal ``[dim, dim]`` alignment matrix applied (identity when not
        aligned).
    frames : dict
        Per (layer, head), the :class:`Frame` from the reducer's raw layout to the drawn one (what
        :meth:`place` sends new points through); empty for :meth:`from_coords` embeddings.

    Notes
    -----
    An embedding keeps no fitted reducer (openTSNE and umap-learn objects hold the whole
    affinity graph, are large and do not survive every pickle, and a layout served by the cache
    never had one): :meth:`place` rebuilds what each reducer's ``transform`` needs from the
    capture and the stored layout when it is called.
    """

    def __init__(
        self,
        coords: Mapping[HeadKey, np.ndarray],
        tokens: pd.DataFrame,
        sequences: pd.DataFrame | None = None,
        *,
        norms: Mapping[HeadKey, np.ndarray] | None = None,
        method: str = "custom",
        params: Mapping[str, Any] | None = None,
        timings: Mapping[str, float] | None = None,
        capture: Capture | None = None,
        transforms: Mapping[HeadKey, JointTransform] | None = None,
        rotations: Mapping[HeadKey, np.ndarray] | None = None,
        faithfulness_tables: Mapping[int, pd.DataFrame] | None = None,
        attns: Mapping[str, tuple[int, int]] | None = None,
        frames: Mapping[Any, Frame] | None = None,
        head_scores: pd.DataFrame | None = None,
    ):
        if not isinstance(tokens, pd.DataFrame) or "seq" not in tokens:
            raise EmbeddingError("tokens must be a pandas DataFrame with a 'seq' column (one row per token).")
        n = len(tokens)
        self.tokens = tokens
        # attention name -> (query stream, key stream); one "self" attention unless told otherwise
        self.streams: dict[str, tuple[int, int]] = {a: (int(q), int(k)) for a, (q, k) in (attns or {}).items()}
        self._coords: dict[Cell, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}
        dims = set()
        for key, y in coords.items():
            cell = self._cell(key)
            if cell[0] not in self.streams:
                self.streams[cell[0]] = (0, 0)
            y = np.ascontiguousarray(y, dtype=np.float32)
            if y.ndim != 2 or y.shape[0] != 2 * n or y.shape[1] not in (2, 3):
                raise EmbeddingError(
                    f"coords for {tuple(key)} must be float [point={2 * n}, dim=2|3] (queries "
                    f"of the {n} tokens, then their keys), got shape {y.shape}."
                )
            ok = self.present(cell[0])
            if not np.isfinite(y[ok]).all():
                raise EmbeddingError(f"coords for {tuple(key)} contain NaN or inf.")
            if not np.isnan(y[~ok]).all():
                raise EmbeddingError(
                    f"coords for {tuple(key)}: the points this attention does not have (queries or keys of "
                    "the other stream's tokens) must be NaN."
                )
            y.setflags(write=False)
            self._coords[cell] = y
            dims.add(y.shape[1])
        if len(dims) > 1:
            raise EmbeddingError(f"all heads must have the same dim, got {sorted(dims)}.")
        self.dim: int = dims.pop() if dims else 2
        self.tokens = tokens
        self.sequences = sequences if sequences is not None else sequences_from_tokens(tokens)
        self.method = str(method)
        self.params: dict[str, Any] = dict(params or {})
        self.timings: dict[str, float] = dict(timings or {})
        self.capture = capture
        self.transforms: dict[Any, JointTransform] = dict(transforms or {})
        self.rotations: dict[Any, np.ndarray] = {k: np.asarray(v, np.float64) for k, v in (rotations or {}).items()}
        self._norms: dict[Cell, np.ndarray] = {}
        for key, v in (norms or {}).items():
            v = np.ascontiguousarray(v, dtype=np.float32)
            if v.shape != (2 * n,):
                raise EmbeddingError(f"norms for {tuple(key)} must be float [point={2 * n}], got {v.shape}.")
            xy = self._coords.get(self._cell(key))
            present = np.isfinite(xy).all(axis=1) if xy is not None else np.ones(len(v), bool)
            if not np.isfinite(v[present]).all():  # absent points (another stream's tokens) are NaN
                raise EmbeddingError(f"norms for (layer, head) = {tuple(key)} contain NaN or inf.")
            v.setflags(write=False)
            self._norms[self._cell(key)] = v
        self._faith: dict[int, pd.DataFrame] = dict(faithfulness_tables or {})
        # keyed like transforms and rotations: (layer, head), or (attn, layer, head) for several attentions
        self.frames: dict[Any, Frame] = dict(frames or {})
        self._scores: pd.DataFrame | None = head_scores
        self._model: Any = None  # the model place() captures with, once resolved (never saved)
        # what the embedding was made from, when no capture is attached (see qkviz._capture.fingerprint)
        self._capture_fingerprint: str | None = None

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_coords(
        cls,
        coords: Mapping[HeadKey, np.ndarray],
        tokens: pd.DataFrame,
        sequences: pd.DataFrame | None = None,
        *,
        norms: Mapping[HeadKey, np.ndarray] | None = None,
        method: str = "custom",
        params: Mapping[str, Any] | None = None,
        capture: Capture | None = None,
    ) -> Embedding:
        """Wrap layouts computed elsewhere; each head is centred and scaled into ``[-1, 1]``.

        Parameters
        ----------
        coords : dict of (layer, head) to float array [point, dim]
            Rows ``0..n-1`` are the queries of tokens ``0..n-1``, rows ``n..2n-1`` their keys.
        tokens : pandas.DataFrame
            One row per token, with at least a ``seq`` column (contiguous per sequence).
        sequences : pandas.DataFrame, optional
            Derived from ``tokens`` when omitted (``seq``, ``text=""``, ``n_tokens``, ``offset``).
        norms : dict of (layer, head) to float array [point], optional
            Vector norms to colour by; taken from ``capture`` when omitted and it is given.
        method, params : str, dict
            Recorded as given.
        capture : Capture, optional
            Enables :meth:`attention` and :meth:`faithfulness`.
        """
        boxed = {key: to_box(y) for key, y in coords.items()}
        return cls(boxed, tokens, sequences, norms=norms, method=method, params=params, capture=capture)

    # -- grid -----------------------------------------------------------------------------------

    @staticmethod
    def _cell(key: Any) -> Cell:
        if len(key) == 3:
            return (str(key[0]), int(key[1]), int(key[2]))
        return ("self", int(key[0]), int(key[1]))

    def _public(self, cell: Cell) -> Any:
        return cell[1:] if self.attns == ("self",) else cell

    @property
    def attns(self) -> tuple[str, ...]:
        """The attentions with coordinates: ``("self",)``, or e.g. ``("encoder", "decoder", "cross")``."""
        order = {a: i for i, a in enumerate(self.streams)}
        return tuple(sorted({c[0] for c in self._coords} or {"self"}, key=lambda a: order.get(a, len(order))))

    @property
    def cells(self) -> list[Any]:
        """Every head with coordinates, sorted: ``(layer, head)``, or ``(attn, layer, head)`` when the
        embedding holds several attentions."""
        order = {a: i for i, a in enumerate(self.attns)}
        return [self._public(c) for c in sorted(self._coords, key=lambda c: (order[c[0]], c[1], c[2]))]

    def present(self, attn: str | None = None) -> np.ndarray:
        """Which of a head's ``2n`` points exist in attention ``attn`` (see :func:`present_points`)."""
        name = attn if attn is not None and attn in self.streams else self._attn(attn)
        if name not in self._present:
            qs, ks = self.streams.get(name, (0, 0))
            self._present[name] = present_points(self.tokens, qs, ks)
        return self._present[name]

    def _attn(self, attn: str | None) -> str:
        names = self.attns
        if attn is None:
            if len(names) != 1:
                raise EmbeddingError(f"this embedding holds {list(names)} attention; pass attn=")
            return names[0]
        if attn not in names:
            raise EmbeddingError(f"attn={attn!r}: this embedding holds {list(names)}")
        return attn

    def layers_of(self, attn: str | None = None) -> tuple[int, ...]:
        """Layers with coordinates in one attention."""
        name = self._attn(attn)
        return tuple(sorted({c[1] for c in self._coords if c[0] == name}))

    def heads_of(self, attn: str | None = None) -> tuple[int, ...]:
        """Heads with coordinates in one attention."""
        name = self._attn(attn)
        return tuple(sorted({c[2] for c in self._coords if c[0] == name}))

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({k[1] for k in self._coords}))

    @property
    def heads(self) -> tuple[int, ...]:
        return tuple(sorted({k[2] for k in self._coords}))

    def has(self, layer: int, head: int, attn: str | None = None) -> bool:
        """Whether (layer, head) has coordinates (a run stopped early may miss some)."""
        try:
            name = self._attn(attn)
        except EmbeddingError:
            return False
        return (name, int(layer), int(head)) in self._coords

    def _get(self, layer: int, head: int, attn: str | None = None) -> Cell:
        key = (self._attn(attn), int(layer), int(head))
        if key not in self._coords:
            raise EmbeddingError(
                f"(layer, head) = {key[1:]} has no layout in {key[0]!r}; available layers {list(self.layers)}, heads "
                f"{list(self.heads)} ({len(self._coords)} heads in all)."
            )
        return key

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    # -- data -----------------------------------------------------------------------------------

    def coords(self, layer: int, head: int, attn: str | None = None) -> np.ndarray:
        """Layout of one head: float32 [point, dim], queries first then keys, within ``[-1, 1]``.

        Points the attention does not have (cross-attention: the encoder tokens' queries, the decoder
        tokens' keys) are NaN; :meth:`present` says which.
        """
        return self._coords[self._get(layer, head, attn)]

    def norms(self, layer: int, head: int, attn: str | None = None) -> np.ndarray:
        """Vector norms after the joint normalisation (what the layout saw): float32 [point].

        When the embedding was built without norms and without a capture, zeros are returned.
        Absent points (see :meth:`present`) are NaN.
        """
        key = self._get(layer, head, attn)
        if key not in self._norms:
            v = np.zeros(2 * self.n_tokens)
            if self.capture is not None:
                ok = self.present(key[0])
                cap_attn = None if key[0] == "self" else key[0]
                q, k = self.capture.layout_vectors(key[1], key[2], cap_attn)
                t = self.transforms.get(self._public(key))
                if t is not None:
                    q, k = t.apply(q, k)
                v = np.full(2 * self.n_tokens, np.nan)
                v[ok] = np.concatenate([np.linalg.norm(q, axis=1), np.linalg.norm(k, axis=1)])
            v = v.astype(np.float32)
            v.setflags(write=False)
            self._norms[key] = v
        return self._norms[key]

    def attention(self, layer: int, head: int, seq: int, attn: str | None = None) -> np.ndarray:
        """Exact attention ``float32 [query_pos, key_pos]`` of one sequence (from the capture)."""
        if self.capture is None:
            raise EmbeddingError(
                "this embedding has no capture attached, so attention is unavailable; pass "
                "capture=qkviz.load(path) to Embedding.load (or keep the capture when embedding)."
            )
        name = self._attn(attn)
        return self.capture.attention(int(layer), int(head), int(seq), attn=None if name == "self" else name)

    def faithfulness(self, k: int = 5) -> pd.DataFrame:
        """How well each head's layout shows its attention (see :mod:`qkviz.metrics`).

        Parameters
        ----------
        k : int
            Neighbourhood size of recall@k.

        Returns
        -------
        pandas.DataFrame
            One row per head: ``layer``, ``head``, ``recall``, ``spearman``, ``chance_recall``.
        """
        if k in self._faith:
            return self._faith[k].copy()
        if self.capture is None:
            raise EmbeddingError(
                f"faithfulness(k={k}) needs the capture (only k in {sorted(self._faith)} was stored "
                "with this embedding); pass capture= to Embedding.load."
            )
        from ..metrics import head_faithfulness

        seq = self.tokens["seq"].to_numpy()
        several = self.attns != ("self",)
        rows = []
        for cell in sorted(self._coords):
            name, layer, head = cell
            a = None if name == "self" else name
            g = self.capture.attns[name] if several else self.capture.geometry
            ok = self.present(name)
            qrows, krows = self.capture.query_rows(a), self.capture.key_rows(a)
            f = head_faithfulness(
                self._coords[cell][ok],
                self.capture.q(layer, head, a),
                self.capture.k(layer, head, a),
                seq[qrows],
                self.capture.score(layer, head, a),
                causal=bool(g.causal),
                window=g.window(layer),
                k=k,
                key_seq=None if g.query_stream == g.key_stream else seq[krows],
            )
            row = {"layer": layer, "head": head, "recall": f.recall, "spearman": f.spearman}
            rows.append({**({"attn": name} if several else {}), **row, "chance_recall": f.chance_recall})
        cols = ["layer", "head", "recall", "spearman", "chance_recall"]
        df = pd.DataFrame(rows, columns=(["attn"] if several else []) + cols)
        self._faith[k] = df
        return df.copy()

    def head_scores(self, *, value_weighted: bool | None = None) -> pd.DataFrame:
        """The head atlas of this embedding's heads (see :meth:`qkviz.Capture.head_scores`).

        Computed from the capture once and kept (and saved with the embedding), so an embedding
        loaded without its capture still has the scores it had when saved.

        Returns
        -------
        pandas.DataFrame
            One row per (layer, head) of the grid.
        """
        have = self._scores
        if have is not None and (value_weighted is not True or any(c.endswith("_vw") for c in have.columns)):
            drop = [c for c in have.columns if c.endswith("_vw")] if value_weighted is False else []
            return have.drop(columns=drop)
        if self.capture is None:
            raise EmbeddingError(
                "head scores need the capture (none was stored with this embedding); pass capture= to Embedding.load."
            )
        if self.attns != ("self",):
            raise EmbeddingError(
                "head scores cover models of one self-attention; this embedding holds "
                f"{', '.join(self.attns)} attention (an encoder-decoder model)."
            )
        from ..analysis import head_scores

        self._scores = head_scores(self.capture, self.cells, value_weighted=value_weighted)
        return self._scores.copy()

    def place(
        self,
        inputs: Any,
        *,
        model: Any = None,
        batch_size: int = 16,
        check: bool = True,
        progress: bool = False,
        **transform_params: Any,
    ) -> Embedding:
        """Put new inputs into this embedding's existing layouts, without recomputing them.

        The inputs are captured with the same model (only this grid's layers and heads), each
        head's new queries and keys go through that head's joint normalisation, its reducer's own
        ``transform`` (PCA: the fitted projection, exact; t-SNE: openTSNE's ``transform``; UMAP:
        umap-learn's ``transform``; attention-guided: openTSNE's ``transform`` on the vector
        neighbourhoods, since attention never links a new sentence to the corpus) and the head's
        alignment rotation and box (:attr:`frames`). See ``docs/how-to/probe.md``.

        Parameters
        ----------
        inputs : str or list of str (or images, for an image capture)
            What to place.
        model : model spec or loaded model, optional
            The model that made the capture. Default: the one :func:`qkviz.capture` used while it
            is still alive in this session, else the named offline model, folder or hub id the
            capture records. A model passed as a Python object is never reloaded from its name.
        batch_size : int
            Inputs per forward pass.
        check : bool
            Before the first placement, capture the capture's first text again and compare its q
            and k with the stored ones (refuses a different model or different weights).
        progress : bool
            Progress bars.
        **transform_params
            To the reducer's ``transform`` (openTSNE's ``perplexity``, ``n_iter``...).

        Returns
        -------
        Embedding
            Just the new tokens, in the same frame: same layers and heads, queries then keys, and
            the new capture attached (so their attention is available).

        Raises
        ------
        EmbeddingError
            No capture attached, a method that cannot place points, no way to find the model, or a
            model that does not reproduce the capture.
        """
        from ._place import place

        return place(
            self, inputs, model=model, batch_size=batch_size, check=check, progress=progress, **transform_params
        )

    # -- persistence ----------------------------------------------------------------------------

    def _capture_path(self) -> str | None:
        root = self.capture.path if self.capture is not None else None
        return str(pathlib.Path(root).resolve()) if root is not None else None

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> pathlib.Path:
        """Write the embedding to a directory (``meta.json``, ``coords.safetensors``, parquet tables).

        The capture itself is not copied: its path and a fingerprint of what it holds are recorded,
        and :meth:`load` reattaches it if the same capture is still there. Every tensor and table
        gets a checksum. The folder is written in full under a temporary name and then swapped in,
        so an existing embedding is replaced only by a complete one (see ``docs/data-safety.md``).

        Parameters
        ----------
        path : path-like
        overwrite : bool
            Replace an embedding already at ``path``. Whatever ``overwrite`` says, qkviz never
            replaces a capture, a folder it did not write, or one holding files it did not write.

        Raises
        ------
        StoreError
            ``path`` holds something else than an embedding, or the disk is full or read-only (the
            old embedding is then unchanged).
        """
        from safetensors.numpy import save_file

        path = pathlib.Path(path)
        check_target(path, FORMAT, what="embedding", overwrite=overwrite, own=OWN)
        for cell in self._coords:  # materialise norms from the capture while it is at hand
            self.norms(cell[1], cell[2], cell[0])
        tensors = {}
        for cell, y in self._coords.items():
            tensors[f"coords.{_name(cell)}"] = np.ascontiguousarray(y)
            tensors[f"norms.{_name(cell)}"] = np.ascontiguousarray(self._norms[cell])
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "method": self.method,
            "params": _json_safe(self.params),
            "timings": self.timings,
            "heads": [list(k) for k in self.cells],
            "attns": {a: list(v) for a, v in self.streams.items()},
            "transforms": {_name(self._cell(k)): t.to_dict() for k, t in self.transforms.items()},
            "rotations": {_name(self._cell(k)): r.tolist() for k, r in self.rotations.items()},
            "faithfulness": {str(k): df.to_dict(orient="list") for k, df in self._faith.items()},
            "frames": {_name(self._cell(k)): f.to_dict() for k, f in self.frames.items()},
            "head_scores": None if self._scores is None else _json_safe(self._scores.to_dict(orient="list")),
            "capture_path": self._capture_path(),
            "capture_fingerprint": fingerprint(self.capture) or self._capture_fingerprint,
            "crc32": {k: array_crc(a) for k, a in tensors.items()},
        }
        clean_stale(path, own=OWN)
        tmp = temp_sibling(path)
        with writing(path, "embedding", cleanup=tmp):
            tmp.mkdir(parents=True)
            save_file(tensors, str(tmp / "coords.safetensors"))
            self.tokens.to_parquet(tmp / "tokens.parquet")
            self.sequences.to_parquet(tmp / "sequences.parquet")
            meta["files"] = {
                name: {"bytes": (tmp / name).stat().st_size, "crc32": file_crc(tmp / name)} for name in _TABLES
            }
            for name in ("coords.safetensors", *_TABLES):
                with open(tmp / name, "rb+") as fh:
                    os.fsync(fh.fileno())
            with open(tmp / META, "w") as fh:  # written last: a folder without it is not a store
                fh.write(json.dumps(meta, indent=1))
                fh.flush()
                os.fsync(fh.fileno())
        replace_dir(tmp, path, kind=FORMAT, what="embedding", own=OWN)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, capture: Capture | None = None) -> Embedding:
        """Read an embedding written by :meth:`save`, checking every checksum.

        Parameters
        ----------
        path : path-like
        capture : Capture, optional
            Attach this capture; it must be the one the embedding was made from. When omitted, the
            recorded capture is loaded if it is still at its path, intact and the same capture; if
            not, a warning says why and the embedding loads without it (coordinates and norms
            work; attention and new faithfulness scores do not).

        Raises
        ------
        StoreError
            Missing, damaged or edited files, or an unknown format version.
        EmbeddingError
            ``capture`` is not the capture this embedding was made from.
        """
        from safetensors.numpy import load_file

        path = pathlib.Path(path)
        meta = read_header(path, FORMAT, READS, "embedding")
        where = path / META
        parsed = _parse_meta(meta, where)
        checked = meta["version"] >= 3
        try:
            if checked:
                for name in _TABLES:
                    info = field(field(meta, "files", dict, where), name, dict, where)
                    f = path / name
                    if not f.is_file():
                        raise StoreError(f"{f} is missing; the embedding is incomplete", path=f)
                    if f.stat().st_size != info.get("bytes") or file_crc(f) != info.get("crc32"):
                        raise StoreError(
                            f"{f} is corrupted or was edited (checksum mismatch); write the embedding again", path=f
                        )
            tensors = load_file(str(path / "coords.safetensors"))
            tokens = pd.read_parquet(path / "tokens.parquet")
            sequences = pd.read_parquet(path / "sequences.parquet")
        except StoreError:
            raise
        except Exception as e:  # safetensors / pyarrow raise their own types for damaged files
            raise StoreError(f"{path} is damaged: {' '.join(str(e).split())}", path=path) from e
        crcs = field(meta, "crc32", dict, where) if checked else {}
        for key, a in tensors.items():
            if checked and array_crc(a) != crcs.get(key):
                raise StoreError(
                    f"{path / 'coords.safetensors'} is corrupted or was edited: tensor {key!r} does not match its "
                    "checksum. Write the embedding again.",
                    path=path / "coords.safetensors",
                )
        try:
            coords = {k: tensors[f"coords.{_name(cls._cell(k))}"] for k in parsed["heads"]}
            norms = {k: tensors[f"norms.{_name(cls._cell(k))}"] for k in parsed["heads"]}
        except KeyError as e:
            raise StoreError(
                f"{path / 'coords.safetensors'} lacks tensor {e}; the embedding is damaged", path=path
            ) from None
        recorded = meta.get("capture_fingerprint") if isinstance(meta.get("capture_fingerprint"), str) else None
        if capture is not None:
            mine = fingerprint(capture)
            if (recorded and mine is not None and mine != recorded) or len(capture.tokens) != len(tokens):
                raise EmbeddingError(
                    f"the capture given is not the capture this embedding ({path}) was made from (other inputs, "
                    "model or settings); pass the capture it was computed from"
                )
        elif isinstance(meta.get("capture_path"), str):
            capture = _recorded_capture(pathlib.Path(meta["capture_path"]), recorded, len(tokens))
        try:
            emb = cls(
                coords,
                tokens,
                sequences,
                norms=norms,
                method=parsed["method"],
                params=meta["params"],
                timings=meta["timings"],
                capture=capture,
                transforms=parsed["transforms"],
                rotations=parsed["rotations"],
                faithfulness_tables=parsed["faithfulness"],
                attns=parsed["attns"],
                frames=parsed["frames"],
                head_scores=parsed["head_scores"],
            )
        except EmbeddingError as e:
            raise StoreError(f"{path} is damaged: {e}", path=path) from e
        emb._capture_fingerprint = recorded
        return emb

    def __repr__(self) -> str:
        return f"Embedding(method={self.method!r}, dim={self.dim}, heads={len(self._coords)}, tokens={self.n_tokens})"


def _name(cell: Cell) -> str:
    """``"<layer>.<head>"`` for the only attention, ``"<attn>.<layer>.<head>"`` otherwise (file keys)."""
    return f"{cell[1]}.{cell[2]}" if cell[0] == "self" else f"{cell[0]}.{cell[1]}.{cell[2]}"


def _parse_meta(meta: dict[str, Any], where: pathlib.Path) -> dict[str, Any]:
    """The header's fields, checked (a missing or mistyped one is a StoreError naming it)."""
    from ..joint import JointTransform

    field(meta, "dim", int, where, lambda d: d in (2, 3))
    method = field(meta, "method", str, where)
    field(meta, "params", dict, where)
    field(meta, "timings", dict, where)

    def whole(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def cell(x: Any) -> bool:  # [layer, head] or [attn, layer, head]
        return isinstance(x, list) and (
            (len(x) == 2 and all(whole(i) for i in x))
            or (len(x) == 3 and isinstance(x[0], str) and whole(x[1]) and whole(x[2]))
        )

    heads = field(meta, "heads", list, where, lambda hs: all(cell(h) for h in hs))
    transforms = field(meta, "transforms", dict, where)
    rotations = field(meta, "rotations", dict, where)
    faith = field(meta, "faithfulness", dict, where)
    attns = meta.get("attns") or {}

    def split(s: str) -> Any:
        parts = s.split(".")
        return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (parts[0], int(parts[1]), int(parts[2]))

    try:
        return {
            "method": method,
            "heads": [tuple(h) for h in heads],
            "transforms": {split(s): JointTransform.from_dict(d) for s, d in transforms.items()},
            "rotations": {split(s): np.asarray(r, np.float64) for s, r in rotations.items()},
            "faithfulness": {int(k): pd.DataFrame(v) for k, v in faith.items()},
            "attns": {a: (int(v[0]), int(v[1])) for a, v in attns.items()},
            "frames": {split(s): Frame.from_dict(d) for s, d in (meta.get("frames") or {}).items()},
            "head_scores": pd.DataFrame(meta["head_scores"]) if meta.get("head_scores") else None,
        }
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise StoreError(
            f"{where}: a transform, rotation, frame, score or attention entry is damaged ({e!r}); write the "
            "embedding again",
            path=where,
        ) from e


def _recorded_capture(cpath: pathlib.Path, recorded: str | None, n_tokens: int) -> Capture | None:
    """The capture recorded with an embedding, if it is still there, intact and the same one."""
    from .._capture._container import load as load_capture

    unavailable = "attention and new faithfulness scores are unavailable; pass capture= to Embedding.load"
    if not cpath.exists():
        warnings.warn(f"the capture {cpath} recorded with this embedding is gone; {unavailable}.", stacklevel=3)
        return None
    try:
        cap = load_capture(cpath)
    except StoreError as e:
        warnings.warn(
            f"the capture {cpath} recorded with this embedding cannot be read ({e}); {unavailable}.", stacklevel=3
        )
        return None
    if (recorded and fingerprint(cap) != recorded) or len(cap.tokens) != n_tokens:
        warnings.warn(
            f"the capture now at {cpath} is not the capture this embedding was made from (another capture was "
            f"saved there since); {unavailable}.",
            stacklevel=3,
        )
        return None
    return cap


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
