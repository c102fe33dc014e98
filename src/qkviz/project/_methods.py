"""The projection methods: one record per method, read by ``embed``, the driver and the CLI.

Adding a method is one entry here (lonboard keeps one module per layer kind for the same reason).
Nothing heavy is imported: each entry's ``make`` imports its reducer when called, so the command
line can list methods and defaults without loading openTSNE or umap-learn.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import EmbeddingError

if TYPE_CHECKING:
    from ._reducers import Reducer

__all__ = ["Method", "METHODS", "DEFAULT_METHOD", "get_method", "check_params", "check_random_state"]


@dataclass(frozen=True)
class Method:
    """Everything qkviz knows about one projection method.

    Attributes
    ----------
    name : str
        What users pass as ``embed(method=...)``.
    summary : str
        One line for help texts.
    make : callable
        ``make(dim, params, random_state) -> Reducer``.
    defaults : mapping
        Method parameters used unless overridden (measured on MiniLM, ``bench/embed.py``).
    default_metric : str
        The vector-space geometry used when ``embed(metric=None)``.
    metrics : tuple of str
        The metrics the method accepts.
    metrics_note : str
        Why it accepts only those (shown when another is asked for).
    library : str
        The distribution whose version enters the cache key.
    init_param : str or None
        Name of the library's own initialisation parameter (``None``: no initialisation).
    takes_metric : bool
        Whether the reducer itself receives the metric (PCA sees it through the dot lift only).
    needs_attention : bool
        Whether the reducer needs each head's exact attention (sequence ids, scaling, mask).
    inline : bool
        Fast enough (milliseconds a head) to run in the calling process rather than a worker pool.
    jit : bool
        Pays a JIT compile (numba) on first use in a process; pool workers warm it up as they start.
    releases_gil : bool
        Its heavy code (compiled loops, BLAS, torch) runs without Python's GIL, so heads run in a
        thread pool at full parallel speed; otherwise in a process pool (see ``_driver``).
    own_params : tuple of str
        Parameters qkviz's reducer takes itself (besides the wrapped library's).
    library_class : str
        ``"module:Class"`` whose constructor takes the remaining parameters (their names are
        checked against its signature, so a typo fails before any work).
    """

    name: str
    summary: str
    make: Callable[[int, dict[str, Any], int | None], Reducer]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    default_metric: str = "cosine"
    metrics: tuple[str, ...] = ("cosine", "euclidean", "dot")
    metrics_note: str = ""
    library: str = ""
    init_param: str | None = "initialization"
    takes_metric: bool = True
    needs_attention: bool = False
    inline: bool = False
    jit: bool = False
    releases_gil: bool = True
    own_params: tuple[str, ...] = ()
    library_class: str = ""

    def accepted(self) -> set[str]:
        """Every method parameter name :func:`qkviz.embed` may pass to this method."""
        names = set(self.own_params) | set(self.defaults)
        if self.library_class:
            import importlib

            module, cls = self.library_class.split(":")
            params = inspect.signature(getattr(importlib.import_module(module), cls).__init__).parameters
            names |= {n for n in params if n not in ("self", "n_components", "random_state", "metric")}
        return names


def _pca(dim: int, params: dict[str, Any], random_state: int | None) -> Reducer:
    from ._reducers import PCA

    return PCA(dim, random_state=random_state, **params)


def _tsne(dim: int, params: dict[str, Any], random_state: int | None) -> Reducer:
    from ._reducers import TSNE

    return TSNE(dim, random_state=random_state, **params)


def _umap(dim: int, params: dict[str, Any], random_state: int | None) -> Reducer:
    from ._reducers import UMAP

    return UMAP(dim, random_state=random_state, **params)


def _attention(dim: int, params: dict[str, Any], random_state: int | None) -> Reducer:
    from ._attention import AttentionMap

    return AttentionMap(dim, random_state=random_state, **params)


def _frozen(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


#: Every method, in the order help texts list them.
METHODS: Mapping[str, Method] = MappingProxyType(
    {
        m.name: m
        for m in (
            Method(
                "pca",
                "principal components of the (dot-lifted) joint cloud; exact and milliseconds per head",
                _pca,
                default_metric="dot",
                metrics=("dot", "euclidean"),
                metrics_note="PCA is linear: it has no cosine form",
                library="torch",
                init_param=None,
                takes_metric=False,
                inline=True,
            ),
            # t-SNE starts from the dot-lift PCA at full scale and refines it with a short schedule (no
            # early exaggeration), linking each query to its 15 highest-dot-product keys besides its
            # cosine kNN.
            Method(
                "tsne",
                "t-SNE (openTSNE) refining the dot-lift PCA start",
                _tsne,
                defaults=_frozen(
                    {
                        "perplexity": 30,
                        "init": "pca_dot",
                        "init_std": 5.0,
                        "early_exaggeration_iter": 0,
                        "n_iter": 40,
                        "exaggeration": 2.0,
                        "theta": 0.9,
                        "qk_neighbors": 15,
                        "qk_weight": 0.3,
                    }
                ),
                library="openTSNE",
                own_params=("perplexity", "neighbors", "qk_neighbors", "qk_weight", "init", "init_std"),
                library_class="openTSNE:TSNE",
            ),
            Method(
                "umap",
                "UMAP (umap-learn) from the dot-lift PCA start",
                _umap,
                defaults=_frozen({"n_neighbors": 15, "min_dist": 0.1, "init": "pca_dot", "n_epochs": 200}),
                library="umap-learn",
                init_param="init",
                jit=True,
                # umap-learn's epoch loop is numba without nogil: it holds the GIL (threads would
                # take turns), so its heads run in processes
                releases_gil=False,
                own_params=("n_neighbors", "min_dist", "neighbors", "init", "init_std"),
                library_class="umap:UMAP",
            ),
            Method(
                "attention",
                "t-SNE on the head's real attention plus q-q / k-k neighbourhoods",
                _attention,
                defaults=_frozen(
                    {
                        "attention_weight": 0.9,
                        "top_keys": 5,
                        "init": "pca_dot",
                        "early_exaggeration_iter": 100,
                        "n_iter": 150,
                        "theta": 0.9,
                    }
                ),
                library="openTSNE",
                needs_attention=True,
                own_params=("attention_weight", "top_keys", "perplexity", "init", "init_std"),
                library_class="openTSNE:TSNE",
            ),
        )
    }
)

#: What ``qkviz.embed`` uses when no method is named.
DEFAULT_METHOD = "tsne"


def get_method(name: str) -> Method:
    """The registry entry for ``name``; an unknown name raises :class:`qkviz.EmbeddingError`."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise EmbeddingError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}.") from None


# -- parameter checks -------------------------------------------------------------------------------


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _whole(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


#: Value rules of the parameters qkviz knows, by name: (test, what the value must be). Parameters
#: not listed go to the library as given; an error it raises is reported as an EmbeddingError.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "perplexity": (lambda v: _real(v) and v > 0, "a finite number > 0"),
    "n_iter": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "early_exaggeration_iter": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "early_exaggeration": (lambda v: _real(v) and v > 0, "a finite number > 0"),
    "exaggeration": (lambda v: v is None or (_real(v) and v > 0), "None or a finite number > 0"),
    "theta": (lambda v: _real(v) and v >= 0, "a finite number >= 0"),
    "dof": (lambda v: _real(v) and v > 0, "a finite number > 0"),
    "learning_rate": (lambda v: v == "auto" or (_real(v) and v > 0), "'auto' or a finite number > 0"),
    "qk_neighbors": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "qk_weight": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "init_std": (lambda v: _real(v) and v > 0, "a finite number > 0"),
    "n_jobs": (lambda v: _whole(v) and v != 0, "a whole number other than 0"),
    "n_neighbors": (lambda v: _whole(v) and v >= 2, "a whole number >= 2"),
    "min_dist": (lambda v: _real(v) and v >= 0, "a finite number >= 0"),
    "spread": (lambda v: _real(v) and v > 0, "a finite number > 0"),
    "n_epochs": (lambda v: v is None or (_whole(v) and v >= 1), "None or a whole number >= 1"),
    "attention_weight": (lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "top_keys": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "neighbors": (lambda v: isinstance(v, str), "a string ('exact', 'annoy', 'approximate'...)"),
}


def check_params(method: Method, params: Mapping[str, Any]) -> None:
    """Refuse unknown method parameters and values qkviz knows to be invalid (before any work).

    Raises
    ------
    EmbeddingError
        A name the method does not take (with the names it does), or a value out of range.
    """
    accepted = method.accepted()
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise EmbeddingError(
            f"method {method.name!r} takes no parameter {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(sorted(accepted)) or 'none'}."
        )
    for name, value in params.items():
        rule = _RULES.get(name)
        if rule is not None and not rule[0](value):
            raise EmbeddingError(f"{name} must be {rule[1]}, got {value!r} (method {method.name!r}).")


def check_random_state(value: Any) -> int | None:
    """``random_state`` as an int or None; anything else raises :class:`qkviz.EmbeddingError`."""
    if value is None:
        return None
    if not _whole(value) or not 0 <= int(value) < 2**32:
        raise EmbeddingError(f"random_state must be None or a whole number in [0, 2**32), got {value!r}.")
    return int(value)
