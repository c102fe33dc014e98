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
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..attention import ScoreFunction
from ..errors import EmbeddingError, QKVizError
from ..joint import JointTransform, dot_lift, fit_transform_params
from ._cache import LayoutCache, layout_key
from ._methods import get_method

if TYPE_CHECKING:
    from .._capture import Capture

__all__ = ["HeadSpec", "HeadResult", "HeadSource", "run_heads", "make_reducer", "warm_up", "sources_for"]

log = logging.getLogger(__name__)


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
        return {
            "method": self.method,
            "dim": self.dim,
            "translate": self.translate,
            "scale": self.scale,
            "metric": self.metric,
            "params": self.params,
            "random_state": self.random_state,
        }

    def reducer_params(self) -> dict:
        """Parameters for the reducer: the vector metric (the ``dot`` lift is Euclidean)."""
        p = dict(self.params)
        if get_method(self.method).takes_metric:
            p["metric"] = "euclidean" if self.metric == "dot" else self.metric
        return p


def layout_input(qn: np.ndarray, kn: np.ndarray, metric: str) -> np.ndarray:
    """The cloud a reducer sees: queries over keys, through the dot lift for ``metric="dot"``."""
    if metric == "dot":
        return dot_lift(qn, kn)
    return np.concatenate([qn, kn])


@dataclass(frozen=True)
class HeadSource:
    """Where a worker finds one head: a capture store path, or the head's own arrays.

    ``seq``, ``causal`` and ``window`` are only needed by the attention-guided method; ``score`` (the
    head's :class:`~qkviz.attention.ScoreFunction`, or a plain scaling) by that method and by
    layouts of ALiBi heads, whose layout vectors carry the bias (with ``pos``, the token positions).
    ``translate`` is False for soft-capped heads: a key translation would change their attention.
    """

    layer: int
    head: int
    path: str | None = None
    q: np.ndarray | None = field(default=None, repr=False)
    k: np.ndarray | None = field(default=None, repr=False)
    seq: np.ndarray | None = field(default=None, repr=False)
    score: float | ScoreFunction = 1.0
    causal: bool = False
    window: int | None = None
    pos: np.ndarray | None = field(default=None, repr=False)
    translate: bool = True
    attn: str | None = None  # which attention of an encoder-decoder capture
    stamp: tuple[int, int] | None = None  # (inode, mtime_ns) of the store's meta.json when the task was made

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The head's queries and keys, as captured."""
        if self.q is not None and self.k is not None:
            return self.q, self.k
        assert self.path is not None  # sources_for sets a path or arrays
        cap = _open_capture(self.path, self.stamp)
        return cap.q(self.layer, self.head, self.attn), cap.k(self.layer, self.head, self.attn)

    def layout_vectors(self, q: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the layout is made from: ``q, k``, or for ALiBi ``[q, 1/c]`` and ``[k, m·p_j]``
        (see :meth:`qkviz.Capture.layout_vectors`)."""
        f = self.score
        if not isinstance(f, ScoreFunction) or f.alibi is None:
            return q, k
        if self.pos is None:
            raise EmbeddingError(f"layer {self.layer} head {self.head}: an ALiBi head's layout needs the positions")
        qa = np.concatenate([q, np.full((len(q), 1), 1.0 / f.scaling, np.float32)], axis=1)
        ka = np.concatenate([k, (np.float32(f.alibi) * self.pos.astype(np.float32))[:, None]], axis=1)
        return qa.astype(np.float32), ka.astype(np.float32)


@functools.lru_cache(maxsize=4)
def _open_capture(path: str, stamp: tuple[int, int] | None) -> Capture:
    """The capture at ``path``, opened once per process (threads and reused workers share it).

    ``stamp`` is part of the key: a store saved again at the same path is a new ``meta.json``, so it
    is opened afresh rather than read through the old one's checksums.
    """
    from .._capture._container import load

    return load(path)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(path, "meta.json"))
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


@dataclass
class HeadResult:
    """One head's raw layout (before alignment and boxing), with what the layout saw."""

    layer: int
    head: int
    coords: np.ndarray  # float32 [point, dim]: the head's queries, then its keys
    norms: np.ndarray  # float32 [point]
    transform: JointTransform
    seconds: float
    cached: bool
    attn: str | None = None


def make_reducer(method: str, dim: int, params: dict, random_state: int | None):
    """The reducer object for a method name (see :mod:`qkviz.project._methods`)."""
    return get_method(method).make(dim, params, random_state)


def _normalised(src: HeadSource, spec: HeadSpec):
    """The head's normalised layout vectors, the transform, and its vectors as captured."""
    from ._reducers import check_points

    q, k = src.load()
    qv, kv = src.layout_vectors(q, k)
    what = f"layer {src.layer} head {src.head}"
    check_points(np.concatenate([qv, kv]), dim=spec.dim, what=what)
    t = fit_transform_params(qv, kv, translate=spec.translate and src.translate, scale=spec.scale)
    qn, kn = t.apply(qv, kv)
    return qn, kn, t, (q, k)


def _key(qn: np.ndarray, kn: np.ndarray, src: HeadSource, spec: HeadSpec) -> str:
    from .._version import __version__

    arrays = [qn, kn]
    extra: dict[str, Any] = {}
    if get_method(spec.method).needs_attention:
        arrays.append(np.asarray(src.seq))
        f = src.score if isinstance(src.score, ScoreFunction) else ScoreFunction(scaling=float(src.score))
        for name in ("offset_bias", "rel_index", "pos_key", "pos_query"):
            if getattr(f, name) is not None:
                arrays.append(np.asarray(getattr(f, name)))
        extra = {
            "scaling": float(f.scaling),
            "softcap": f.softcap,
            "sink": f.sink,
            "alibi": f.alibi,
            "causal": bool(src.causal),
            "window": src.window,
        }
    return layout_key(arrays, {**spec.as_dict(), **extra, "qkviz": __version__, "lib": _library_version(spec.method)})


@functools.cache
def _library_version(method: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    pkg = get_method(method).library
    try:
        return f"{pkg}=={version(pkg)}"
    except PackageNotFoundError:  # pragma: no cover
        return pkg


def _norms(qn: np.ndarray, kn: np.ndarray) -> np.ndarray:
    return np.concatenate([np.linalg.norm(qn, axis=1), np.linalg.norm(kn, axis=1)]).astype(np.float32)


def project_one(src: HeadSource, spec: HeadSpec, cache_dir: str | None) -> HeadResult:
    """Normalise and project one head (runs in a worker); reads and fills the cache."""
    t0 = time.perf_counter()
    qn, kn, t, (q, k) = _normalised(src, spec)
    cache = LayoutCache(cache_dir) if cache_dir else None
    key = _key(qn, kn, src, spec) if cache is not None else ""
    y = cache.get(key) if cache is not None else None
    cached = y is not None
    if y is None:
        try:
            y = _fit(src, spec, qn, kn, q, k)
        except QKVizError:
            raise
        except (ValueError, TypeError, ArithmeticError, RuntimeError, np.linalg.LinAlgError) as e:
            # the libraries' own errors (openTSNE, umap-learn, torch), named for the head and method
            raise EmbeddingError(
                f"layer {src.layer} head {src.head}: {spec.method} failed ({type(e).__name__}: "
                f"{' '.join(str(e).split())}). Check the method parameters, or try method='pca'."
            ) from e
        if cache is not None:
            cache.put(key, y)
    return HeadResult(
        src.layer, src.head, np.asarray(y, np.float32), _norms(qn, kn), t, time.perf_counter() - t0, cached, src.attn
    )


def _fit(src: HeadSource, spec: HeadSpec, qn: np.ndarray, kn: np.ndarray, q: np.ndarray, k: np.ndarray) -> np.ndarray:
    params, init = _initialisation(spec, qn, kn)
    reducer = make_reducer(spec.method, spec.dim, params, spec.random_state)
    X = layout_input(qn, kn, spec.metric)
    if get_method(spec.method).needs_attention:
        return reducer.fit_transform(
            X,
            init,
            seq=src.seq,
            scaling=src.score,
            causal=src.causal,
            window=src.window,
            n_tokens=len(qn),
            # attention from the head's own vectors: the score function is defined on them
            q=q,
            k=k,
        )
    return reducer.fit_transform(X, init)


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
    method = get_method(spec.method)
    if method.init_param is None:
        return params, None
    mode = params.pop("init", None)
    std = params.pop("init_std", None)
    if isinstance(mode, str) and mode == "pca_dot":
        from ._reducers import pca_init

        init = pca_init(dot_lift(qn, kn), spec.dim)
        if std is not None:  # start at full scale instead of openTSNE's 1e-4
            init = init * (float(std) / 1e-4)
        return params, init
    if mode is not None:
        params[method.init_param] = mode
    return params, None


def _lookup(src: HeadSource, spec: HeadSpec, cache_dir: str) -> HeadResult | None:
    """A cache hit for ``src`` computed in the calling process, or ``None``."""
    t0 = time.perf_counter()
    qn, kn, t, _ = _normalised(src, spec)
    y = LayoutCache(cache_dir).get(_key(qn, kn, src, spec))
    if y is None:
        return None
    return HeadResult(src.layer, src.head, y, _norms(qn, kn), t, time.perf_counter() - t0, True, src.attn)


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
    if not get_method(method).jit:
        return 0.0
    t0 = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    get_method(method).make(2, {"n_neighbors": 5, "n_epochs": 5}, 0).fit(x)
    return time.perf_counter() - t0


class _Serial(cf.Executor):
    """Runs each task at submit time, in the calling process."""

    def submit(self, fn, /, *args, **kwargs):
        f: cf.Future = cf.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:
            f.set_exception(e)
        return f


def _is_dask_client(x: Any) -> bool:
    return type(x).__module__.startswith("distributed") and hasattr(x, "get_executor")


def _executor_for(executor: Any, n_tasks: int, method: str) -> tuple[cf.Executor, bool, int]:
    """(executor, owned, workers) for the ``executor`` argument of :func:`run_heads`."""
    if executor == "serial" or (executor is None and (n_tasks <= 1 or get_method(method).inline)):
        return _Serial(), True, 1
    if executor is None:
        workers = max(1, min(os.cpu_count() or 1, n_tasks))
        if get_method(method).releases_gil:
            # torch keeps its own thread count (2 heads x torch's threads measured fastest)
            return cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qkviz-head"), True, workers
        from joblib.externals.loky import get_reusable_executor

        threads = max(1, (os.cpu_count() or 1) // workers)
        # reused across embed calls (a notebook pays the worker start once); never shut down here
        pool = get_reusable_executor(max_workers=workers, initializer=_worker_init, initargs=(method, threads))
        return pool, False, workers
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
    done: dict[tuple[str | None, int, int], HeadResult] = {}
    stopped = False
    bar = None
    if progress and total > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"qkviz {spec.method}", unit="head", leave=False)

    def finish(res: HeadResult) -> bool:
        done[(res.attn, res.layer, res.head)] = res
        if bar is not None:
            bar.update(1)
        return bool(callback is not None and callback(len(done), total, (res.layer, res.head)))

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
    ordered = [done[(s.attn, s.layer, s.head)] for s in sources if (s.attn, s.layer, s.head) in done]
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


def sources_for(capture: Capture, cells: Iterable[tuple[Any, ...]], *, with_attention: bool) -> list[HeadSource]:
    """One :class:`HeadSource` per head: by path for a capture on disk, else by arrays.

    ``cells`` are ``(layer, head)``, or ``(attn, layer, head)`` for a capture of several attentions.
    """
    path = str(capture.path) if capture.path is not None else None
    stamp = _stamp(path) if path is not None else None
    seq_all = capture.tokens["seq"].to_numpy()
    pos_all = capture.tokens["pos"].to_numpy()
    out = []
    for cell in cells:
        attn, layer, head = (None, *cell) if len(cell) == 2 else cell
        g = capture.geometry if attn is None else capture.attns[attn]
        if with_attention and g.query_stream != g.key_stream:
            raise EmbeddingError(
                "method='attention' lays out self-attention (queries and keys of the same tokens); for "
                f"{attn} attention use method='tsne', 'umap' or 'pca'"
            )
        f = capture.score(layer, head, attn)
        kw: dict[str, Any] = {
            "seq": seq_all[capture.query_rows(attn)] if with_attention else None,
            "score": f if not f.is_plain else float(f.scaling),
            "causal": bool(g.causal),
            "window": g.window(layer),
            "pos": pos_all[capture.key_rows(attn)] if f.alibi is not None else None,
            "translate": f.softcap is None,
            "attn": attn,
        }
        if path is not None:
            out.append(HeadSource(layer, head, path=path, stamp=stamp, **kw))
        else:
            out.append(_LazyArrays(layer, head, capture=capture, **kw))
    return out


@dataclass(frozen=True)
class _LazyArrays(HeadSource):
    """An in-memory capture's head: its arrays are read only when the task is pickled or run."""

    capture: Capture | None = field(default=None, repr=False, compare=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.capture is not None  # sources_for always sets it
        return self.capture.q(self.layer, self.head, self.attn), self.capture.k(self.layer, self.head, self.attn)

    def __reduce__(self):
        q, k = self.load()
        return (
            HeadSource,
            (
                self.layer,
                self.head,
                None,
                q,
                k,
                self.seq,
                self.score,
                self.causal,
                self.window,
                self.pos,
                self.translate,
                self.attn,
            ),
        )
