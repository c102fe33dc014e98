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
import shutil
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._capture._container import sequences_from_tokens
from .._fs import META, read_header, replace_dir, temp_sibling
from ..errors import EmbeddingError, StoreError

if TYPE_CHECKING:
    from .._capture import Capture
    from ..joint import JointTransform

__all__ = ["Embedding", "to_box", "FORMAT", "VERSION"]

FORMAT = "qkviz.embedding"
VERSION = 1

HeadKey = tuple[int, int]


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
    if y.size == 0:
        return y.astype(np.float32)
    lo, hi = y.min(0), y.max(0)
    y = y - (lo + hi) / 2.0
    half = float(np.abs(y).max())
    if half > 0:
        y = y / half
    return np.clip(y, -1.0, 1.0).astype(np.float32)


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
    ):
        if not isinstance(tokens, pd.DataFrame) or "seq" not in tokens:
            raise EmbeddingError("tokens must be a pandas DataFrame with a 'seq' column (one row per token).")
        n = len(tokens)
        self._coords: dict[HeadKey, np.ndarray] = {}
        dims = set()
        for key, y in coords.items():
            key = (int(key[0]), int(key[1]))
            y = np.ascontiguousarray(y, dtype=np.float32)
            if y.ndim != 2 or y.shape[0] != 2 * n or y.shape[1] not in (2, 3):
                raise EmbeddingError(
                    f"coords for (layer, head) = {key} must be float [point={2 * n}, dim=2|3] (queries "
                    f"of the {n} tokens, then their keys), got shape {y.shape}."
                )
            if not np.isfinite(y).all():
                raise EmbeddingError(f"coords for (layer, head) = {key} contain NaN or inf.")
            y.setflags(write=False)
            self._coords[key] = y
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
        self.transforms: dict[HeadKey, JointTransform] = dict(transforms or {})
        self.rotations: dict[HeadKey, np.ndarray] = {k: np.asarray(v, np.float64) for k, v in (rotations or {}).items()}
        self._norms: dict[HeadKey, np.ndarray] = {}
        for key, v in (norms or {}).items():
            v = np.ascontiguousarray(v, dtype=np.float32)
            if v.shape != (2 * n,):
                raise EmbeddingError(f"norms for {tuple(key)} must be float [point={2 * n}], got {v.shape}.")
            v.setflags(write=False)
            self._norms[(int(key[0]), int(key[1]))] = v
        self._faith: dict[int, pd.DataFrame] = dict(faithfulness_tables or {})

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

    @property
    def cells(self) -> list[HeadKey]:
        """Every (layer, head) with coordinates, sorted."""
        return sorted(self._coords)

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted({k[0] for k in self._coords}))

    @property
    def heads(self) -> tuple[int, ...]:
        return tuple(sorted({k[1] for k in self._coords}))

    def has(self, layer: int, head: int) -> bool:
        """Whether (layer, head) has coordinates (a run stopped early may miss some)."""
        return (int(layer), int(head)) in self._coords

    def _get(self, layer: int, head: int) -> HeadKey:
        key = (int(layer), int(head))
        if key not in self._coords:
            raise EmbeddingError(
                f"(layer, head) = {key} has no layout; available layers {list(self.layers)}, heads "
                f"{list(self.heads)} ({len(self._coords)} heads in all)."
            )
        return key

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    # -- data -----------------------------------------------------------------------------------

    def coords(self, layer: int, head: int) -> np.ndarray:
        """Layout of one head: float32 [point, dim], queries first then keys, within ``[-1, 1]``."""
        return self._coords[self._get(layer, head)]

    def norms(self, layer: int, head: int) -> np.ndarray:
        """Vector norms after the joint normalisation (what the layout saw): float32 [point].

        When the embedding was built without norms and without a capture, zeros are returned.
        """
        key = self._get(layer, head)
        if key not in self._norms:
            if self.capture is not None:
                q, k = self.capture.q(*key), self.capture.k(*key)
                t = self.transforms.get(key)
                if t is not None:
                    q, k = t.apply(q, k)
                v = np.concatenate([np.linalg.norm(q, axis=1), np.linalg.norm(k, axis=1)])
            else:
                v = np.zeros(2 * self.n_tokens)
            v = v.astype(np.float32)
            v.setflags(write=False)
            self._norms[key] = v
        return self._norms[key]

    def attention(self, layer: int, head: int, seq: int) -> np.ndarray:
        """Exact attention ``float32 [query_pos, key_pos]`` of one sequence (from the capture)."""
        if self.capture is None:
            raise EmbeddingError(
                "this embedding has no capture attached, so attention is unavailable; pass "
                "capture=qkviz.load(path) to Embedding.load (or keep the capture when embedding)."
            )
        return self.capture.attention(int(layer), int(head), int(seq))

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
        rows = []
        for layer, head in self.cells:
            f = head_faithfulness(
                self.coords(layer, head),
                self.capture.q(layer, head),
                self.capture.k(layer, head),
                seq,
                self.capture.score(layer, head),
                causal=bool(self.capture.causal),
                window=getattr(self.capture, "sliding_window", {}).get(layer),
                k=k,
            )
            rows.append(
                {
                    "layer": layer,
                    "head": head,
                    "recall": f.recall,
                    "spearman": f.spearman,
                    "chance_recall": f.chance_recall,
                }
            )
        df = pd.DataFrame(rows, columns=["layer", "head", "recall", "spearman", "chance_recall"])
        self._faith[k] = df
        return df.copy()

    # -- persistence ----------------------------------------------------------------------------

    def _capture_path(self) -> str | None:
        root = self.capture.path if self.capture is not None else None
        return str(pathlib.Path(root).resolve()) if root is not None else None

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> pathlib.Path:
        """Write the embedding to a directory (``meta.json``, ``coords.safetensors``, parquet tables).

        The capture itself is not copied; its path is recorded when it was loaded from disk, and
        :meth:`load` reattaches it if it is still there. Written under a temporary name and renamed
        into place, so an existing directory is replaced only by a complete one.
        """
        from safetensors.numpy import save_file

        path = pathlib.Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} exists; pass overwrite=True to replace it", path=path)
        if path.exists() and not (path / META).is_file():
            raise StoreError(f"{path} exists and is not a qkviz embedding; refusing to replace it", path=path)
        for key in self.cells:  # materialise norms from the capture while it is at hand
            self.norms(*key)
        tensors = {}
        for (layer, head), y in self._coords.items():
            tensors[f"coords.{layer}.{head}"] = np.ascontiguousarray(y)
            tensors[f"norms.{layer}.{head}"] = np.ascontiguousarray(self._norms[(layer, head)])
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "method": self.method,
            "params": _json_safe(self.params),
            "timings": self.timings,
            "heads": [list(k) for k in self.cells],
            "transforms": {f"{l}.{h}": t.to_dict() for (l, h), t in self.transforms.items()},
            "rotations": {f"{l}.{h}": r.tolist() for (l, h), r in self.rotations.items()},
            "faithfulness": {str(k): df.to_dict(orient="list") for k, df in self._faith.items()},
            "capture_path": self._capture_path(),
        }
        tmp = temp_sibling(path)
        try:
            tmp.mkdir(parents=True)
            save_file(tensors, str(tmp / "coords.safetensors"))
            self.tokens.to_parquet(tmp / "tokens.parquet")
            self.sequences.to_parquet(tmp / "sequences.parquet")
            (tmp / META).write_text(json.dumps(meta, indent=1))
            replace_dir(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, capture: Capture | None = None) -> Embedding:
        """Read an embedding written by :meth:`save`.

        Parameters
        ----------
        path : path-like
        capture : Capture, optional
            Attach this capture. When omitted, the recorded capture path is loaded if it still
            exists (a warning says so when it does not; coordinates and norms still work).

        Raises
        ------
        StoreError
            Missing or damaged files, or an unknown format version.
        """
        from safetensors.numpy import load_file

        from ..joint import JointTransform

        path = pathlib.Path(path)
        meta = read_header(path, FORMAT, VERSION, "embedding")
        try:
            tensors = load_file(str(path / "coords.safetensors"))
            tokens = pd.read_parquet(path / "tokens.parquet")
            sequences = pd.read_parquet(path / "sequences.parquet")
        except Exception as e:  # safetensors / pyarrow raise their own types for damaged files
            raise StoreError(f"{path} is damaged: {e}", path=path) from e
        keys = [tuple(k) for k in meta["heads"]]
        coords = {k: tensors[f"coords.{k[0]}.{k[1]}"] for k in keys}
        norms = {k: tensors[f"norms.{k[0]}.{k[1]}"] for k in keys}
        if capture is None and meta.get("capture_path"):
            cpath = pathlib.Path(meta["capture_path"])
            if cpath.exists():
                from .._capture._container import load as load_capture

                capture = load_capture(cpath)
            else:
                warnings.warn(
                    f"the capture {cpath} recorded with this embedding is gone; attention "
                    "and new faithfulness scores are unavailable.",
                    stacklevel=2,
                )

        def split(s: str) -> HeadKey:
            a, b = s.split(".")
            return int(a), int(b)

        return cls(
            coords,
            tokens,
            sequences,
            norms=norms,
            method=meta["method"],
            params=meta["params"],
            timings=meta["timings"],
            capture=capture,
            transforms={split(s): JointTransform.from_dict(d) for s, d in meta["transforms"].items()},
            rotations={split(s): np.asarray(r) for s, r in meta["rotations"].items()},
            faithfulness_tables={int(k): pd.DataFrame(v) for k, v in meta["faithfulness"].items()},
        )

    def __repr__(self) -> str:
        return f"Embedding(method={self.method!r}, dim={self.dim}, heads={len(self._coords)}, tokens={self.n_tokens})"


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
