"""The all-heads driver: normalise, project (in parallel, cached) and return raw per-head layouts.

Memory stays bounded: the main process looks at one head at a time (to hash it for the cache), and
each worker task carries one head, either as the path of a saved capture plus (layer, head) — the
worker then reads only that head from disk — or, for a capture that lives only in memory, as that
head's arrays. At most ``2 × workers`` tasks are in flight.

Executors: a local process pool by default (``spawn`` start method, so workers never inherit the
parent's thread pools), any :class:`concurrent.futures.Executor`, a Dask ``distributed.Client``
(through ``client.get_executor()``), or ``"serial"`` to run in the calling process.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmbeddingError
from ..joint import JointTransform, fit_transform_params
from ._cache import LayoutCache, layout_key

__all__ = ["HeadSpec", "HeadResult", "HeadSource", "run_heads", "make_reducer", "warm_up", "METHODS"]

log = logging.getLogger(__name__)

METHODS = ("tsne", "umap", "pca", "attention")


@dataclass(frozen=True)
class HeadSpec:
    """Everything that determines one head's layout except its vectors."""

    method: str
    dim: int
    translate: bool
    scale: Any
    metric: str
    params: dict
    random_state: int | None

    def as_dict(self) -> dict:
        return {"method": self.method, "dim": self.dim, "translate": self.translate,
                "scale": self.scale, "metric": self.metric, "params": self.params,
                "random_state": self.random_state}

    def reducer_params(self) -> dict:
        """Parameters for the reducer: the vector metric (the ``dot`` lift is Euclidean)."""
        p = dict(self.params)
        if self.method != "pca":
            p["metric"] = "euclidean" if self.metric == "dot" else self.metric
        return p


def layout_input(qn: np.ndarray, kn: np.ndarray, metric: str) -> np.ndarray:
    """The cloud a reducer sees: queries over keys, through the dot lift for ``metric="dot"``."""
    if metric == "dot":
        from ..joint import dot_lift

        return dot_lift(qn, kn)
    return np.concatenate([qn, kn])


@dataclass(frozen=True)
class HeadSource:
    """Where a worker finds one head: a capture store path, or the head's own arrays.

    ``seq``, ``scaling``, ``causal`` and ``window`` are only needed by the attention-guided method.
    """

    layer: int
    head: int
    path: str | None = None
    q: np.ndarray | None = field(default=None, repr=False)
    k: np.ndarray | None = field(default=None, repr=False)
    seq: np.ndarray | None = field(default=None, repr=False)
    scaling: float = 1.0
    causal: bool = False
    window: int | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        if self.q is not None and self.k is not None:
            return self.q, self.k
        cap = _open_capture(self.path)
        return cap.q(self.layer, self.head), cap.k(self.layer, self.head)


@functools.lru_cache(maxsize=4)
def _open_capture(path: str):
    from ..store import load

    return load(path)


@dataclass
class HeadResult:
    """One head's raw layout (before alignment and boxing), with what the layout saw."""

    layer: int
    head: int
    coords: np.ndarray  # float32 [point, dim]
    norms: np.ndarray  # float32 [point]
    transform: JointTransform
    seconds: float
    cached: bool


def make_reducer(method: str, dim: int, params: dict, random_state: int | None):
    """The reducer object for a method name (see :mod:`qkviz.project`)."""
    from ._reducers import PCA, TSNE, UMAP

    if method == "pca":
        return PCA(dim, random_state=random_state, **params)
    if method == "tsne":
        return TSNE(dim, random_state=random_state, **params)
    if method == "umap":
        return UMAP(dim, random_state=random_state, **params)
    if method == "attention":
        from ._attention import AttentionMap

        return AttentionMap(dim, random_state=random_state, **params)
    raise EmbeddingError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")


def _normalised(src: HeadSource, spec: HeadSpec):
    from ._reducers import check_points

    q, k = src.load()
    what = f"layer {src.layer} head {src.head}"
    check_points(np.concatenate([q, k]), dim=spec.dim, what=what)
    t = fit_transform_params(q, k, translate=spec.translate, scale=spec.scale)
    qn, kn = t.apply(q, k)
    return qn, kn, t


def _key(qn: np.ndarray, kn: np.ndarray, src: HeadSource, spec: HeadSpec) -> str:
    from .. import __version__

    arrays = [qn, kn]
    extra: dict[str, Any] = {}
    if spec.method == "attention":
        arrays.append(np.asarray(src.seq))
        extra = {"scaling": float(src.scaling), "causal": bool(src.causal), "window": src.window}
    return layout_key(arrays, {**spec.as_dict(), **extra, "qkviz": __version__,
                               "lib": _library_version(spec.method)})


@functools.lru_cache(maxsize=None)
def _library_version(method: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    pkg = {"tsne": "openTSNE", "attention": "openTSNE", "umap": "umap-learn", "pca": "torch"}[method]
    try:
        return f"{pkg}=={version(pkg)}"
    except PackageNotFoundError:  # pragma: no cover
        return pkg


def _norms(qn: np.ndarray, kn: np.ndarray) -> np.ndarray:
    return np.concatenate([np.linalg.norm(qn, axis=1), np.linalg.norm(kn, axis=1)]).astype(np.float32)


def project_one(src: HeadSource, spec: HeadSpec, cache_dir: str | None) -> HeadResult:
    """Normalise and project one head (runs in a worker); reads and fills the cache."""
    t0 = time.perf_counter()
    qn, kn, t = _normalised(src, spec)
    cache = LayoutCache(cache_dir) if cache_dir else None
    key = _key(qn, kn, src, spec) if cache else None
    y = cache.get(key) if cache else None
    cached = y is not None
    if y is None:
        params, init = _initialisation(spec, qn, kn)
        reducer = make_reducer(spec.method, spec.dim, params, spec.random_state)
        X = layout_input(qn, kn, spec.metric)
        if spec.method == "attention":
            y = reducer.fit_transform(X, init, seq=src.seq, scaling=src.scaling, causal=src.causal,
                                      window=src.window, n_tokens=len(qn), q=qn, k=kn)
        else:
            y = reducer.fit_transform(X, init)
        if cache:
            cache.put(key, y)
    return HeadResult(src.layer, src.head, np.asarray(y, np.float32), _norms(qn, kn), t,
                      time.perf_counter() - t0, cached)


def _initialisation(spec: HeadSpec, qn: np.ndarray, kn: np.ndarray):
    """Reducer parameters and initial layout; ``init="pca_dot"`` is resolved here.

    ``"pca_dot"`` starts t-SNE / UMAP / the attention map from the PCA of the dot-lifted cloud
    (:func:`qkviz.joint.dot_lift`): a linear map in which each query's nearest keys already tend to
    be its most-attended ones (recall@5 about 0.6 on MiniLM), which the optimisation then refines.
    ``init_std`` sets that start's standard deviation (default 1e-4, openTSNE's convention; a
    full-scale start such as 5 lets a short schedule without early exaggeration refine it).
    Other values are the library's own: openTSNE's ``initialization``, umap-learn's ``init``.
    """
    params = spec.reducer_params()
    if spec.method == "pca":
        return params, None
    mode = params.pop("init", None)
    std = params.pop("init_std", None)
    if isinstance(mode, str) and mode == "pca_dot":
        from ..joint import dot_lift
        from ._reducers import pca_init

        init = pca_init(dot_lift(qn, kn), spec.dim)
        if std is not None:  # start at full scale instead of openTSNE's 1e-4
            init = init * (float(std) / 1e-4)
        return params, init
    if mode is not None:
        params["init" if spec.method == "umap" else "initialization"] = mode
    return params, None


def _lookup(src: HeadSource, spec: HeadSpec, cache_dir: str) -> HeadResult | None:
    """A cache hit for ``src`` computed in the calling process, or ``None``."""
    t0 = time.perf_counter()
    qn, kn, t = _normalised(src, spec)
    y = LayoutCache(cache_dir).get(_key(qn, kn, src, spec))
    if y is None:
        return None
    return HeadResult(src.layer, src.head, y, _norms(qn, kn), t, time.perf_counter() - t0, True)


# -- workers ------------------------------------------------------------------------------------


def _worker_init(method: str, threads: int) -> None:
    """Limit each worker's threads (workers run side by side) and pay JIT costs up front."""
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass
    import torch

    torch.set_num_threads(threads)
    warm_up(method)


def warm_up(method: str) -> float:
    """Compile what a method JIT-compiles (numba, for UMAP) on a tiny input; returns seconds.

    Called in every pool worker as it starts, so the compile overlaps the main process's own work
    and the first real head does not pay it.
    """
    if method != "umap":
        return 0.0
    t0 = time.perf_counter()
    from ._reducers import UMAP

    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    for dim in (2,):
        UMAP(dim, n_neighbors=5, n_epochs=5).fit(x)
    return time.perf_counter() - t0


class _Serial(cf.Executor):
    """Runs each task at submit time, in the calling process."""

    def submit(self, fn, /, *args, **kwargs):
        f: cf.Future = cf.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return f


def _is_dask_client(x: Any) -> bool:
    return type(x).__module__.startswith("distributed") and hasattr(x, "get_executor")


def _executor_for(executor: Any, n_tasks: int, method: str) -> tuple[cf.Executor, bool, int]:
    """(executor, owned, workers) for the ``executor`` argument of :func:`run_heads`."""
    if executor == "serial" or (executor is None and (n_tasks <= 1 or method == "pca")):
        return _Serial(), True, 1
    if executor is None:
        workers = max(1, min(os.cpu_count() or 1, n_tasks))
        threads = max(1, (os.cpu_count() or 1) // workers)
        pool = cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(method, threads),
        )
        return pool, True, workers
    if _is_dask_client(executor):
        n = len(executor.scheduler_info().get("workers", {})) or 1
        return executor.get_executor(), False, n
    if isinstance(executor, cf.Executor):
        return executor, False, int(getattr(executor, "_max_workers", 2) or 2)
    raise EmbeddingError(
        f"executor must be None, 'serial', a concurrent.futures.Executor or a dask Client; got "
        f"{type(executor).__name__}."
    )


def run_heads(
    sources: Sequence[HeadSource],
    spec: HeadSpec,
    *,
    executor: Any = None,
    cache_dir: str | None = None,
    callback: Callable[[int, int, tuple[int, int]], bool | None] | None = None,
    progress: bool = False,
) -> tuple[list[HeadResult], bool]:
    """Project every head; returns (results in input order for the heads done, stopped_early).

    Parameters
    ----------
    sources : sequence of HeadSource
    spec : HeadSpec
    executor : None, "serial", concurrent.futures.Executor or distributed.Client
    cache_dir : str, optional
        Cache directory; ``None`` disables the cache.
    callback : callable, optional
        ``callback(done, total, (layer, head))`` after each head; returning ``True`` stops the run
        and the heads finished so far are returned.
    progress : bool
        Show a progress bar (tqdm) on stderr.
    """
    total = len(sources)
    done: dict[tuple[int, int], HeadResult] = {}
    stopped = False
    bar = None
    if progress and total > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"qkviz {spec.method}", unit="head", leave=False)

    def finish(res: HeadResult) -> bool:
        done[(res.layer, res.head)] = res
        if bar is not None:
            bar.update(1)
        if callback is not None and callback(len(done), total, (res.layer, res.head)):
            return True
        return False

    try:
        pending: list[HeadSource] = []
        for src in sources:  # cache hits need no worker: serve them here, one head at a time
            hit = _lookup(src, spec, cache_dir) if cache_dir else None
            if hit is None:
                pending.append(src)
            elif finish(hit):
                stopped = True
                break
        if pending and not stopped:
            stopped = _run_pending(pending, spec, executor, cache_dir, finish)
    finally:
        if bar is not None:
            bar.close()
    ordered = [done[(s.layer, s.head)] for s in sources if (s.layer, s.head) in done]
    return ordered, stopped


def _run_pending(pending, spec, executor, cache_dir, finish) -> bool:
    ex, owned, workers = _executor_for(executor, len(pending), spec.method)
    window = max(2, 2 * workers)
    queue = list(reversed(pending))
    running: set[cf.Future] = set()
    stopped = False
    try:
        while queue or running:
            while queue and len(running) < window:
                running.add(ex.submit(project_one, queue.pop(), spec, cache_dir))
            finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                if finish(f.result()):
                    stopped = True
            if stopped:
                for f in running:
                    f.cancel()
                break
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)
    return stopped


def sources_for(
    capture: Any, keys: Iterable[tuple[int, int]], *, with_attention: bool
) -> list[HeadSource]:
    """One :class:`HeadSource` per (layer, head): by path for a capture on disk, else by arrays."""
    root = getattr(getattr(capture, "_tensors", None), "root", None)
    path = str(root) if root is not None else None
    seq = capture.tokens["seq"].to_numpy() if with_attention else None
    windows = getattr(capture, "sliding_window", {}) or {}
    out = []
    for layer, head in keys:
        extra = dict(seq=seq, scaling=float(capture.scaling[layer]), causal=bool(capture.causal),
                     window=windows.get(layer))
        if path is not None:
            out.append(HeadSource(layer, head, path=path, **extra))
        else:
            out.append(_LazyArrays(layer, head, capture=capture, **extra))
    return out


@dataclass(frozen=True)
class _LazyArrays(HeadSource):
    """An in-memory capture's head: its arrays are read only when the task is pickled or run."""

    capture: Any = field(default=None, repr=False, compare=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return self.capture.q(self.layer, self.head), self.capture.k(self.layer, self.head)

    def __reduce__(self):
        q, k = self.load()
        return (HeadSource, (self.layer, self.head, None, q, k, self.seq, self.scaling, self.causal,
                             self.window))
