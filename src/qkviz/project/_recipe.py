"""``embed``: the recipe that makes an :class:`Embedding` from a capture.

Like openTSNE's ``TSNE.fit``, it only strings public stages together: validate the arguments, run
every head through :func:`run_heads` (joint normalisation, the method's reducer, the layout
cache), align the heads with :func:`generalized_procrustes`, box each layout into ``[-1, 1]``.
"""

from __future__ import annotations

import logging
import operator
import os
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .._capture._container import Capture
from ..errors import EmbeddingError
from ..joint import check_scale_mode
from ._align import generalized_procrustes
from ._cache import default_cache_dir
from ._driver import HeadSpec, run_heads, sources_for
from ._embedding import Embedding, Frame, present_points, to_box
from ._methods import DEFAULT_METHOD, check_params, check_random_state, get_method

__all__ = ["embed"]

log = logging.getLogger(__name__)


def _whole_numbers(name: str, value: Any) -> tuple[int, ...]:
    items: list[Any] = [value] if np.isscalar(value) else list(value)
    try:
        return tuple(operator.index(x) for x in items)
    except TypeError:
        raise EmbeddingError(
            f"{name} must be a whole number or a list of them (the grid is layers x heads, e.g. "
            f"layers=[3], heads=[0, 1]), got {value!r}."
        ) from None


def _resolve_cells(
    capture: Capture,
    layers: Iterable[int] | int | None,
    heads: Iterable[int] | int | None,
    attn: str | Iterable[str] | None = None,
) -> list[Any]:
    """``(layer, head)`` cells, or ``(attn, layer, head)`` for a capture of several attentions."""
    several = len(capture.attns) > 1
    names = list(capture.attns) if attn is None else [attn] if isinstance(attn, str) else list(attn)
    bad = [a for a in names if a not in capture.attns]
    if bad or not names:
        raise EmbeddingError(f"attn {bad or names} not in this capture; it holds {list(capture.attns)}.")
    out: list[Any] = []
    for name in names:
        g = capture.attns[name]
        all_layers, all_heads = tuple(g.layers), tuple(g.heads)
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
        out += [(name, la, h) if several else (la, h) for la in ls for h in hs]
    return out


def _expand(y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """A head's compact rows (its queries, then its keys) at their places among ``2n`` points; NaN elsewhere."""
    full = np.full((len(ok),) + y.shape[1:], np.nan, np.float32)
    full[ok] = y
    return full


def _cache_dir(cache: Any) -> str | None:
    if cache is True:
        return str(default_cache_dir())
    if cache is False or cache is None:
        return None
    if isinstance(cache, (str, os.PathLike)):
        return str(pathlib.Path(cache) / "layouts")
    raise EmbeddingError(f"cache must be True, False or a directory path, got {cache!r}.")


def embed(
    capture: Capture,
    method: str = DEFAULT_METHOD,
    dim: int = 2,
    *,
    translate: bool = True,
    scale: str | float | None = "auto",
    metric: str | None = None,
    layers: Iterable[int] | int | None = None,
    heads: Iterable[int] | int | None = None,
    attn: str | Iterable[str] | None = None,
    align: bool = True,
    random_state: int | None = 0,
    executor: Any = None,
    cache: bool | str | os.PathLike[str] = True,
    progress: bool = True,
    callback: Callable[[int, int, tuple[int, int]], bool | None] | None = None,
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
    attn : str or list of str, optional
        Encoder–decoder captures: which attentions to lay out (``"encoder"``, ``"decoder"``,
        ``"cross"``; default all). The embedding's heads are then ``(attn, layer, head)``, and
        each layout has the ``2n`` points of every token, NaN where the attention has no such point
        (cross-attention: the encoder tokens' queries, the decoder tokens' keys).
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
    t_start = time.perf_counter()
    if not isinstance(capture, Capture):
        raise EmbeddingError(
            f"embed needs a qkviz Capture (from qkviz.capture, qkviz.load or Capture.from_arrays), got "
            f"{type(capture).__name__}."
        )
    spec_method = get_method(method)
    if dim not in (2, 3):
        raise EmbeddingError(f"dim must be 2 or 3, got {dim!r}.")
    if metric is None:
        metric = spec_method.default_metric
    if metric not in spec_method.metrics:
        why = f" ({spec_method.metrics_note})" if spec_method.metrics_note else ""
        raise EmbeddingError(
            f"method {method!r} takes metric {' or '.join(map(repr, spec_method.metrics))}, got {metric!r}{why}."
        )
    check_scale_mode(scale)
    cells = _resolve_cells(capture, layers, heads, attn)
    if "metric" in method_params:
        raise EmbeddingError("pass metric as embed(..., metric=...), not inside the method parameters.")
    random_state = check_random_state(random_state)
    check_params(spec_method, method_params)
    params = {**spec_method.defaults, **method_params}
    spec = HeadSpec(
        method=method,
        dim=int(dim),
        translate=bool(translate),
        scale=scale,
        metric=metric,
        params=params,
        random_state=random_state,
    )
    sources = sources_for(capture, cells, with_attention=spec_method.needs_attention)
    t0 = time.perf_counter()
    results, stopped = run_heads(
        sources, spec, executor=executor, cache_dir=_cache_dir(cache), callback=callback, progress=progress
    )
    t_project = time.perf_counter() - t0
    if stopped:
        log.info("embed stopped by the callback after %d of %d heads", len(results), len(cells))
    t0 = time.perf_counter()
    raw = [r.coords for r in results]
    rots = [np.eye(dim) for _ in raw]
    if align:  # heads of one attention share their points: align each attention's heads together
        for name in {r.attn for r in results}:
            idx = [i for i, r in enumerate(results) if r.attn == name]
            if len(idx) > 1:
                group, _ = generalized_procrustes([raw[i] for i in idx])
                for i, rot in zip(idx, group):
                    rots[i] = rot

    def key(r: Any) -> Any:
        return (r.layer, r.head) if r.attn is None else (r.attn, r.layer, r.head)

    present = {name: present_points(capture.tokens, g.query_stream, g.key_stream) for name, g in capture.attns.items()}

    def place(r: Any, y: np.ndarray) -> np.ndarray:
        return y if r.attn is None else _expand(y, present[r.attn])

    coords = {key(r): place(r, to_box((y - y.mean(0)) @ rot)) for r, y, rot in zip(results, raw, rots)}
    # the map from each head's raw layout to its drawn box (Embedding.place reuses it)
    frames = {key(r): Frame.fit(y, rot) for r, y, rot in zip(results, raw, rots)}
    t_align = time.perf_counter() - t0
    record = {
        "translate": bool(translate),
        "scale": scale,
        "metric": metric,
        "align": bool(align),
        "random_state": random_state,
        **params,
    }
    record.pop("n_jobs", None)
    # which entries are the reducer's own parameters (Embedding.place rebuilds the reducer from them)
    record["method_params"] = sorted(k for k in params if k != "n_jobs")
    capped = [
        [src.layer, src.head] if src.attn is None else [src.attn, src.layer, src.head]
        for src in sources
        if not src.translate
    ]
    if translate and capped:
        # tanh(z + c) ≠ tanh(z) + c: a key translation would change a soft-capped head's attention
        record["translate_off"] = {
            "reason": "soft-capped heads: a key translation changes attention under the cap (norm scaling does not)",
            "heads": capped,
        }
    timings = {
        "project": t_project,
        "align": t_align,
        "total": time.perf_counter() - t_start,
        "heads_computed": float(sum(not r.cached for r in results)),
        "heads_cached": float(sum(r.cached for r in results)),
        "compute_seconds_per_head": (
            float(np.mean([r.seconds for r in results if not r.cached])) if any(not r.cached for r in results) else 0.0
        ),
    }
    return Embedding(
        coords,
        capture.tokens,
        capture.sequences,
        norms={key(r): place(r, r.norms) for r in results},
        method=method,
        params=record,
        timings=timings,
        capture=capture,
        transforms={key(r): r.transform for r in results},
        rotations={key(r): rot for r, rot in zip(results, rots)},
        attns={name: (g.query_stream, g.key_stream) for name, g in capture.attns.items()},
        frames=frames,
    )
