"""The :class:`Embedding` container and :func:`embed`, the recipe that makes one from a capture.

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
import logging
import operator
import os
import pathlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import EmbeddingError, StoreError
from .store import replace_dir

__all__ = ["Embedding", "embed", "FORMAT", "VERSION"]

log = logging.getLogger(__name__)

FORMAT = "qkviz.embedding"
VERSION = 1
_META = "meta.json"

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


def _sequences_from_tokens(tokens: pd.DataFrame) -> pd.DataFrame:
    seq = tokens["seq"].to_numpy()
    ids, offsets, counts = np.unique(seq, return_index=True, return_counts=True)
    return pd.DataFrame({"seq": ids.astype(np.int32), "text": [""] * len(ids),
                         "n_tokens": counts.astype(np.int32), "offset": offsets.astype(np.int64),
                         "truncated": np.zeros(len(ids), bool)})


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
        capture: Any = None,
        transforms: Mapping[HeadKey, Any] | None = None,
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
        self.sequences = sequences if sequences is not None else _sequences_from_tokens(tokens)
        self.method = str(method)
        self.params: dict[str, Any] = dict(params or {})
        self.timings: dict[str, float] = dict(timings or {})
        self.capture = capture
        self.transforms: dict[HeadKey, Any] = dict(transforms or {})
        self.rotations: dict[HeadKey, np.ndarray] = {
            k: np.asarray(v, np.float64) for k, v in (rotations or {}).items()
        }
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
        capture: Any = None,
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
    def keys(self) -> list[HeadKey]:
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
        from .metrics import head_faithfulness

        seq = self.tokens["seq"].to_numpy()
        rows = []
        for layer, head in self.keys:
            f = head_faithfulness(
                self.coords(layer, head), self.capture.q(layer, head), self.capture.k(layer, head),
                seq, self.capture.scaling[layer], causal=bool(self.capture.causal),
                window=getattr(self.capture, "sliding_window", {}).get(layer), k=k,
            )
            rows.append({"layer": layer, "head": head, "recall": f.recall, "spearman": f.spearman,
                         "chance_recall": f.chance_recall})
        df = pd.DataFrame(rows, columns=["layer", "head", "recall", "spearman", "chance_recall"])
        self._faith[k] = df
        return df.copy()

    # -- persistence ----------------------------------------------------------------------------

    def _capture_path(self) -> str | None:
        root = getattr(getattr(self.capture, "_tensors", None), "root", None)
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
        if path.exists() and not (path / _META).is_file():
            raise StoreError(f"{path} exists and is not a qkviz embedding; refusing to replace it", path=path)
        for key in self.keys:  # materialise norms from the capture while it is at hand
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
            "heads": [list(k) for k in self.keys],
            "transforms": {f"{l}.{h}": t.to_dict() for (l, h), t in self.transforms.items()},
            "rotations": {f"{l}.{h}": r.tolist() for (l, h), r in self.rotations.items()},
            "faithfulness": {str(k): df.to_dict(orient="list") for k, df in self._faith.items()},
            "capture_path": self._capture_path(),
        }
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.mkdir(parents=True)
            save_file(tensors, str(tmp / "coords.safetensors"))
            self.tokens.to_parquet(tmp / "tokens.parquet")
            self.sequences.to_parquet(tmp / "sequences.parquet")
            (tmp / _META).write_text(json.dumps(meta, indent=1))
            replace_dir(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, capture: Any = None) -> Embedding:
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

        from .joint import JointTransform

        path = pathlib.Path(path)
        try:
            meta = json.loads((path / _META).read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{path} is not a readable qkviz embedding ({e}).", path=path) from e
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StoreError(
                f"{path} has format {meta.get('format')!r} version {meta.get('version')!r}; this qkviz "
                f"reads {FORMAT!r} version {VERSION}.", path=path,
            )
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
                from .store import load as load_capture

                capture = load_capture(cpath)
            else:
                import warnings

                warnings.warn(f"the capture {cpath} recorded with this embedding is gone; attention "
                              "and new faithfulness scores are unavailable.", stacklevel=2)

        def split(s: str) -> HeadKey:
            a, b = s.split(".")
            return int(a), int(b)

        return cls(
            coords, tokens, sequences, norms=norms, method=meta["method"], params=meta["params"],
            timings=meta["timings"], capture=capture,
            transforms={split(s): JointTransform.from_dict(d) for s, d in meta["transforms"].items()},
            rotations={split(s): np.asarray(r) for s, r in meta["rotations"].items()},
            faithfulness_tables={int(k): pd.DataFrame(v) for k, v in meta["faithfulness"].items()},
        )

    def __repr__(self) -> str:
        return (f"Embedding(method={self.method!r}, dim={self.dim}, heads={len(self._coords)}, "
                f"tokens={self.n_tokens})")


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


# -- the recipe ----------------------------------------------------------------------------------

#: Method parameters used unless overridden, chosen by measurement on MiniLM (bench/embed.py).
#: t-SNE starts from the dot-lift PCA at full scale and refines it with a short schedule (no early
#: exaggeration), linking each query to its 15 highest-dot-product keys besides its cosine kNN.
DEFAULTS: dict[str, dict[str, Any]] = {
    "tsne": {"perplexity": 30, "init": "pca_dot", "init_std": 5.0, "early_exaggeration_iter": 0,
             "n_iter": 40, "exaggeration": 2.0, "theta": 0.9, "qk_neighbors": 15, "qk_weight": 0.3},
    "umap": {"n_neighbors": 15, "min_dist": 0.1, "init": "pca_dot", "n_epochs": 200},
    "pca": {},
    "attention": {"attention_weight": 0.9, "top_keys": 5, "init": "pca_dot",
                  "early_exaggeration_iter": 100, "n_iter": 150, "theta": 0.9},
}

_DEFAULT_METRIC = {"tsne": "cosine", "umap": "cosine", "attention": "cosine", "pca": "dot"}


def _whole_numbers(name: str, value: Any) -> tuple[int, ...]:
    items = [value] if np.isscalar(value) else list(value)
    try:
        return tuple(operator.index(x) for x in items)
    except TypeError:
        raise EmbeddingError(
            f"{name} must be a whole number or a list of them (the grid is layers x heads, e.g. "
            f"layers=[3], heads=[0, 1]), got {value!r}."
        ) from None


def _resolve_keys(capture: Any, layers: Iterable[int] | None, heads: Iterable[int] | None) -> list[HeadKey]:
    all_layers, all_heads = tuple(capture.layers), tuple(capture.heads)
    ls = all_layers if layers is None else _whole_numbers("layers", layers)
    hs = all_heads if heads is None else _whole_numbers("heads", heads)
    bad_l = [x for x in ls if x not in all_layers]
    bad_h = [x for x in hs if x not in all_heads]
    if bad_l or bad_h:
        raise EmbeddingError(
            f"layers {bad_l} / heads {bad_h} were not captured; captured layers {list(all_layers)}, "
            f"heads {list(all_heads)}."
        )
    if not ls or not hs:
        raise EmbeddingError("no heads to embed: layers and heads must not be empty.")
    return [(l, h) for l in ls for h in hs]


def _cache_dir(cache: Any) -> str | None:
    if cache is True:
        from .project._cache import default_cache_dir

        return str(default_cache_dir())
    if cache is False or cache is None:
        return None
    if isinstance(cache, (str, os.PathLike)):
        return str(pathlib.Path(cache) / "layouts")
    raise EmbeddingError(f"cache must be True, False or a directory path, got {cache!r}.")


def embed(
    capture: Any,
    method: str = "tsne",
    dim: int = 2,
    *,
    translate: bool = True,
    scale: str | float | None = "auto",
    metric: str | None = None,
    layers: Iterable[int] | int | None = None,
    heads: Iterable[int] | int | None = None,
    align: bool = True,
    random_state: int | None = 0,
    executor: Any = None,
    cache: bool | str | os.PathLike[str] = True,
    progress: bool = True,
    callback: Callable[[int, int, HeadKey], bool | None] | None = None,
    **method_params: Any,
) -> Embedding:
    """Joint query-key layout of every head of a capture.

    Per head: the keys are translated and the norms scaled without changing any attention row
    (:mod:`qkviz.joint`), queries and keys are stacked and reduced together, heads are rotated into
    one common frame, and each layout is centred and scaled into ``[-1, 1]``.

    Parameters
    ----------
    capture : Capture
        From :func:`qkviz.capture` or :func:`qkviz.load`.
    method : {"tsne", "umap", "pca", "attention"}
        ``"attention"`` builds the layout from the head's real attention plus q–q / k–k vector
        neighbourhoods (see ``docs/concepts/faithfulness.md``): much more faithful to attention, but
        not a picture of vector geometry alone.
    dim : {2, 3}
    translate : bool
        Key translation ``k' = k − mean(k) + mean(q)``.
    scale : "auto", float or None
        Norm scaling ``q/a, a·k``; ``"auto"`` equalises mean norms. A cosine metric ignores it.
    metric : {"cosine", "euclidean", "dot"}, optional
        Vector-space geometry. ``None`` takes each method's measured best: ``"dot"`` for PCA (PCA of
        the dot-lifted cloud, where nearer keys are exactly higher-scoring keys, see
        :func:`qkviz.joint.dot_lift`), ``"cosine"`` for t-SNE, UMAP and attention. Cosine ignores
        the norm scaling.
    layers, heads : int or iterable of int, optional
        Subset of the captured grid (default: all).
    align : bool
        Rotate/reflect every head into a common frame (generalised orthogonal Procrustes over the
        shared tokens). Never changes neighbourhoods, so faithfulness is unaffected.
    random_state : int or None
        Same inputs and seed give identical coordinates.
    executor : None, "serial", concurrent.futures.Executor or distributed.Client
        Where heads run: a local process pool by default (PCA runs inline: it takes milliseconds).
    cache : bool or path
        Cache per-head layouts on disk (``$QKVIZ_CACHE_DIR`` or the user cache directory), or in the
        given directory. The key covers the vectors, method, every parameter and library versions.
    progress : bool
        Progress bar for long runs.
    callback : callable, optional
        ``callback(done, total, (layer, head))`` after each head; return ``True`` to stop and get the
        heads finished so far.
    **method_params
        Straight to the reducer: ``perplexity``, ``n_iter``, ``early_exaggeration_iter``,
        ``theta`` (t-SNE, openTSNE names); ``n_neighbors``, ``min_dist``, ``n_epochs`` (UMAP);
        ``attention_weight``, ``top_keys`` (attention).

    Returns
    -------
    Embedding

    Raises
    ------
    EmbeddingError
        Unknown method, ``dim`` not 2/3, non-finite vectors, too few points, bad parameters.
    """
    from .project._align import generalized_procrustes
    from .project._driver import METHODS, HeadSpec, run_heads, sources_for

    t_start = time.perf_counter()
    missing = [a for a in ("q", "k", "tokens", "layers", "heads", "scaling", "causal") if not hasattr(capture, a)]
    if missing:
        raise EmbeddingError(
            f"embed needs a qkviz Capture (from qkviz.capture or qkviz.load), got "
            f"{type(capture).__name__} without {', '.join(missing)}."
        )
    if method not in METHODS:
        raise EmbeddingError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if dim not in (2, 3):
        raise EmbeddingError(f"dim must be 2 or 3, got {dim!r}.")
    if metric is None:
        metric = _DEFAULT_METRIC[method]
    if metric not in ("cosine", "euclidean", "dot"):
        raise EmbeddingError(f"metric must be 'cosine', 'euclidean' or 'dot', got {metric!r}.")
    if method == "pca" and metric == "cosine":
        raise EmbeddingError("PCA takes metric='dot' or 'euclidean' (it is linear: no cosine form).")
    from .joint import _check_scale_mode

    _check_scale_mode(scale)
    keys = _resolve_keys(capture, layers, heads)
    params = {**DEFAULTS[method], **method_params}
    if "metric" in params:
        raise EmbeddingError("pass metric as embed(..., metric=...), not inside the method parameters.")
    spec = HeadSpec(method=method, dim=int(dim), translate=bool(translate), scale=scale,
                    metric=metric, params=params, random_state=random_state)
    sources = sources_for(capture, keys, with_attention=method == "attention")
    t0 = time.perf_counter()
    results, stopped = run_heads(sources, spec, executor=executor, cache_dir=_cache_dir(cache),
                                 callback=callback, progress=progress)
    t_project = time.perf_counter() - t0
    if stopped:
        log.info("embed stopped by the callback after %d of %d heads", len(results), len(keys))
    t0 = time.perf_counter()
    raw = [r.coords for r in results]
    if align and len(raw) > 1:
        rots, _ = generalized_procrustes(raw)
    else:
        rots = [np.eye(dim) for _ in raw]
    coords = {(r.layer, r.head): to_box((y - y.mean(0)) @ rot) for r, y, rot in zip(results, raw, rots)}
    t_align = time.perf_counter() - t0
    record = {"translate": bool(translate), "scale": scale, "metric": metric, "align": bool(align),
              "random_state": random_state, **params}
    record.pop("n_jobs", None)
    timings = {
        "project": t_project,
        "align": t_align,
        "total": time.perf_counter() - t_start,
        "heads_computed": float(sum(not r.cached for r in results)),
        "heads_cached": float(sum(r.cached for r in results)),
        "compute_seconds_per_head": (
            float(np.mean([r.seconds for r in results if not r.cached]))
            if any(not r.cached for r in results) else 0.0
        ),
    }
    return Embedding(
        coords, capture.tokens, capture.sequences,
        norms={(r.layer, r.head): r.norms for r in results},
        method=method, params=record, timings=timings, capture=capture,
        transforms={(r.layer, r.head): r.transform for r in results},
        rotations={(r.layer, r.head): rot for r, rot in zip(results, rots)},
    )
