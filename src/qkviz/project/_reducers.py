"""Reducers: small estimators that turn one head's joint cloud into 2-D/3-D coordinates.

Each reducer follows the scikit-learn shape: parameters in ``__init__`` (all passed straight to the
wrapped library), ``fit(X, init=None)`` stores ``embedding_``, ``fit_transform`` returns it, and
``transform(X_new)`` places new points into the fitted map. ``random_state`` is explicit: the same
input and the same ``random_state`` give identical coordinates.

``X`` is always ``float [point, d_head]``: a head's queries stacked over its keys (after the joint
normalisation of :mod:`qkviz.joint`).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..attention import ScoreFunction
from ..errors import EmbeddingError, MissingDependencyError

__all__ = [
    "Reducer",
    "PCA",
    "TSNE",
    "UMAP",
    "check_points",
    "cuml_available",
    "pca_init",
    "gradient_method",
    "tsne_engine",
    "FFT_FROM",
]

log = logging.getLogger(__name__)


def cuml_available() -> bool:
    """True when torch sees a CUDA device and RAPIDS cuML imports (then t-SNE/UMAP run on the GPU)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import cuml  # noqa: F401
    except Exception:  # any import problem means: no cuML
        return False
    return True


def check_points(X: np.ndarray, *, dim: int, what: str = "the head") -> np.ndarray:
    """Validate a joint cloud; returns it as C-contiguous float32 [point, d].

    Raises
    ------
    EmbeddingError
        ``dim`` is not 2 or 3, ``X`` is not 2-D, or holds NaN/inf values.
    """
    if dim not in (2, 3):
        raise EmbeddingError(f"dim must be 2 or 3, got {dim!r}.")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise EmbeddingError(f"{what}: expected a non-empty [point, d_head] array, got shape {X.shape}.")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise EmbeddingError(
            f"{what}: {int(bad.sum())} of {len(X)} vectors contain NaN or inf (first at row "
            f"{int(np.flatnonzero(bad)[0])}). Recapture in float32 (fp16 can overflow) or drop those "
            "tokens."
        )
    return np.ascontiguousarray(X, dtype=np.float32)


def _is_degenerate(X: np.ndarray) -> bool:
    """All points identical (to float32 precision): nothing for any reducer to separate."""
    spread = np.abs(X - X[0]).max()
    return bool(spread <= 1e-7 * max(1.0, float(np.abs(X).max())))


def _degenerate_layout(n: int, dim: int, what: str) -> np.ndarray:
    warnings.warn(
        f"{what}: all vectors are identical, so every point is placed at the origin.",
        stacklevel=3,
    )
    return np.zeros((n, dim), np.float32)


def pca_init(X: np.ndarray, dim: int) -> np.ndarray:
    """openTSNE-style PCA initialisation: the PCA layout rescaled to a standard deviation of 1e-4.

    Returns float64 [point, dim]. The tiny scale lets the affinities, not the initial spread, shape
    the final map, while keeping PCA's global arrangement (and, across heads, its orientation).
    """
    y = PCA(dim).fit_transform(X).astype(np.float64)
    std = float(y[:, 0].std())
    return y / std * 1e-4 if std > 0 else y


class _quiet_opentsne:
    """Silence openTSNE's log warning about full-scale initialisations (qkviz uses them on purpose)."""

    def __enter__(self):
        self._log = logging.getLogger("openTSNE.tsne")
        self._level = self._log.level
        self._log.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._log.setLevel(self._level)


class Reducer:
    """Base class: holds parameters, offers ``fit_transform`` and ``get_params``."""

    method: str = ""

    def __init__(self, n_components: int = 2, *, random_state: int | None = 0, **params: Any):
        if n_components not in (2, 3):
            raise EmbeddingError(f"dim (n_components) must be 2 or 3, got {n_components!r}.")
        self.n_components = n_components
        self.random_state = random_state
        self.params = dict(params)
        self.embedding_: np.ndarray | None = None

    def get_params(self) -> dict:
        """Everything that determines the output (for cache keys and records)."""
        return {"n_components": self.n_components, "random_state": self.random_state, **self.params}

    def fit(self, X: np.ndarray, init: np.ndarray | None = None) -> Reducer:  # pragma: no cover
        raise NotImplementedError

    def fit_transform(self, X: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Fit on ``X`` (float [point, d]) and return float32 [point, n_components]."""
        self.fit(X, init=init)
        assert self.embedding_ is not None
        return self.embedding_

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class PCA(Reducer):
    """Principal components by an eigendecomposition of the d×d covariance (torch; CUDA if present).

    At ``d_head`` ≤ 256 the covariance route is exact and the fastest (about 1 ms per head of 5,000
    points on 2 CPU cores). Component signs are fixed (largest loading positive), so results are
    deterministic; ``random_state`` is accepted for symmetry and unused.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(100, 8)) * np.arange(1, 9)
    >>> PCA(2).fit_transform(X).shape
    (100, 2)
    """

    method = "pca"

    def fit(self, X: np.ndarray, init: np.ndarray | None = None) -> PCA:
        import torch

        from ._knn import device

        X = check_points(X, dim=self.n_components)
        if self.params:
            raise EmbeddingError(f"PCA takes no method parameters, got {sorted(self.params)}.")
        t = torch.as_tensor(X, dtype=torch.float64, device=device())
        mean = t.mean(0)
        c = t - mean
        cov = c.T @ c / max(len(X) - 1, 1)
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
        comps = vecs.flip(1)[:, : self.n_components].T  # [n_components, d]
        if comps.shape[0] < self.n_components:  # d_head < dim: pad with zero axes
            pad = torch.zeros(
                self.n_components - comps.shape[0], comps.shape[1], dtype=comps.dtype, device=comps.device
            )
            comps = torch.cat([comps, pad])
        # Deterministic sign: make the largest-magnitude loading of each component positive.
        pick = comps.abs().argmax(1)
        signs = torch.sign(comps[torch.arange(len(comps)), pick])
        signs[signs == 0] = 1
        comps = comps * signs[:, None]
        self.mean_ = mean.cpu().numpy()
        self.components_ = comps.cpu().numpy()
        self.embedding_ = (c @ comps.T).cpu().numpy().astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Project new points (float [point, d]) onto the fitted components."""
        X = check_points(X, dim=self.n_components)
        return ((X - self.mean_) @ self.components_.T).astype(np.float32)

    def anchor(self, X: np.ndarray, Y: np.ndarray) -> PCA:
        """Ready :meth:`transform` for the layout ``Y`` of ``X`` (made earlier by :meth:`fit`).

        PCA is deterministic, so this refits on ``X`` (milliseconds) and checks that the fit gives
        ``Y`` back: new points then land exactly where a fit including them would put them.

        Raises
        ------
        EmbeddingError
            ``Y`` is not the PCA layout of ``X`` (the vectors changed since the layout was made).
        """
        self.fit(X)
        assert self.embedding_ is not None
        _check_anchor(self.embedding_, Y, "PCA")
        return self


#: From this many points on, openTSNE's FFT gradients beat Barnes–Hut for qkviz's short schedules
#: (30 iterations: BH 0.23 s vs FFT 0.29 s at 2,000 points, 0.53 s vs 0.32 s at 4,000; 8.9 s vs
#: 0.59 s at 48,000 — one thread, MiniLM heads, measured for issue 11). openTSNE's own switch, 10,000
#: points, suits its 750-iteration default, where FFT's fixed cost per iteration adds up.
FFT_FROM = 3000

# Parameters qkviz reads itself; everything else goes to openTSNE.
_OWN = ("metric", "perplexity", "n_neighbors", "neighbors", "seq_keys", "seq_weight", "qk_neighbors",
         "qk_weight", "engine", "initialization")  # fmt: skip


def gradient_method(n_points: int) -> str:
    """openTSNE's negative-gradient method for a cloud of ``n_points``: ``"bh"`` or ``"fft"``."""
    return "fft" if n_points >= FFT_FROM else "bh"


def tsne_engine(n_points: int, engine: str = "auto", *, on_device: str | None = None) -> str:
    """What optimises a t-SNE of ``n_points``: ``"torch"`` (:mod:`._tsne_torch`) or ``"opentsne"``.

    ``"auto"``: torch when torch sees CUDA and the head has at most
    :data:`~qkviz.project._tsne_torch.DEVICE_MAX_POINTS` points (its exact repulsion is quadratic),
    else openTSNE on the CPU. ``on_device`` overrides the device torch reports (for tests).
    """
    from ._knn import device
    from ._tsne_torch import DEVICE_MAX_POINTS

    if engine not in ("auto", "opentsne", "torch"):
        raise EmbeddingError(f"engine must be 'auto', 'opentsne' or 'torch', got {engine!r}.")
    if engine != "auto":
        return engine
    return "torch" if (on_device or device()) == "cuda" and n_points <= DEVICE_MAX_POINTS else "opentsne"


class TSNE(Reducer):
    """t-SNE: neighbour affinities (plus optional query→key links), optimised by openTSNE or torch.

    Parameters
    ----------
    n_components : {2, 3}
    metric : {"cosine", "euclidean"}
        Distance in the vector space. Cosine ignores the joint norm scaling; ``embed``'s
        ``metric="dot"`` passes the dot-lifted cloud with ``"euclidean"``.
    perplexity : float or None
        Gaussian affinities calibrated to this perplexity over ``3 × perplexity`` neighbours
        (lowered, with a warning, for small clouds). ``None``: uniform affinities over
        ``n_neighbors`` neighbours, which lay out as well at a sixth of the kNN cost.
    random_state : int or None
    **params
        qkviz's own:

        * ``n_neighbors`` (15): neighbours of the uniform affinities;
        * ``neighbors`` (``"auto"``): the kNN backend (:func:`qkviz.project._knn.knn_backend`:
          exact below 3,000 points and on CUDA, faiss IVF above); ``"annoy"``, ``"pynndescent"``
          or ``"hnsw"`` hand the whole affinity step to openTSNE (plain t-SNE only);
        * ``seq_keys`` (0) and ``seq_weight`` (0.5): link every query to the ``seq_keys`` keys of
          its own sequence that the head scores highest (:func:`~qkviz.project._affinity.sequence_links`),
          with that share of the affinity mass. Needs ``fit(..., seq=, scaling=, q=, k=)``;
        * ``qk_neighbors`` (0) and ``qk_weight`` (0.3): link every query to its highest-``q·k``
          keys over the whole corpus (exact, quadratic in tokens);
        * ``engine`` (``"auto"``): ``"opentsne"``, or ``"torch"`` (:mod:`qkviz.project._tsne_torch`;
          what ``"auto"`` picks on CUDA for clouds up to 250,000 points).

        Everything else goes to :class:`openTSNE.TSNE` (``early_exaggeration_iter``, ``n_iter``,
        ``learning_rate``, ``exaggeration``, ``theta``, ``n_jobs``, ``negative_gradient_method``,
        whose default here is Barnes–Hut below 3,000 points and FFT above, see :data:`FFT_FROM`).

    Notes
    -----
    ``fit(X, init=...)`` takes an initial layout [point, n_components], used as given (openTSNE's
    convention is a standard deviation of 1e-4 followed by early exaggeration; a full-scale start
    with a short schedule refines it instead). Without one, the PCA of ``X`` at 1e-4 is used, as
    openTSNE does. cuML's TSNE is not used: it takes neither these affinities nor an array start,
    so it would lay out something else.
    """

    method = "tsne"

    def __init__(
        self,
        n_components: int = 2,
        *,
        metric: str = "cosine",
        perplexity: float | None = 30.0,
        random_state: int | None = 0,
        **params: Any,
    ):
        super().__init__(n_components, random_state=random_state, metric=metric, perplexity=perplexity, **params)

    def _effective_perplexity(self, n: int) -> float | None:
        if n < 4:
            raise EmbeddingError(f"t-SNE needs at least 4 points, got {n}; use method='pca'.")
        if self.params.get("perplexity") is None:
            k = int(self.params.get("n_neighbors", 15))
            if k > n - 1:
                warnings.warn(f"n_neighbors={k} needs more than {n} points; using {n - 1}.", stacklevel=3)
            return None
        perplexity = float(self.params["perplexity"])
        limit = (n - 1) / 3.0
        if perplexity > limit:
            warnings.warn(
                f"perplexity={perplexity:g} needs more than {n} points; using {limit:.3g} instead "
                "(perplexity must stay below (points - 1) / 3).",
                stacklevel=3,
            )
            return limit
        return perplexity

    def affinities(
        self,
        X: np.ndarray,
        *,
        seq: np.ndarray | None = None,
        scaling: float | ScoreFunction = 1.0,
        causal: bool = False,
        window: int | None = None,
        pos: np.ndarray | None = None,
        kseq: np.ndarray | None = None,
        n_tokens: int | None = None,
        q: np.ndarray | None = None,
        k: np.ndarray | None = None,
    ):
        """The layout's affinity matrix (``scipy.sparse.csr_matrix [point, point]``, summing to 1).

        ``X`` is validated as in :meth:`fit`; the keyword arguments are the head's scoring context,
        needed only with ``seq_keys`` (``n_tokens``: how many of ``X``'s rows are queries, default
        half; ``kseq``: the keys' sequence ids for cross-attention).
        """
        from ._affinity import knn_affinities, mix, query_key_links, sequence_links
        from ._knn import threads

        X = check_points(X, dim=self.n_components)
        p = self.params
        perplexity = self._effective_perplexity(len(X))
        parts = [
            (
                1.0,
                knn_affinities(
                    X,
                    n_neighbors=int(p.get("n_neighbors", 15)),
                    perplexity=perplexity,
                    metric=p["metric"],
                    backend=p.get("neighbors", "auto"),
                    n_jobs=int(p.get("n_jobs", threads())),
                ),
            )
        ]
        seq_keys = int(p.get("seq_keys", 0) or 0)
        seq_weight = float(p.get("seq_weight", 0.5))
        qk_neighbors = int(p.get("qk_neighbors", 0) or 0)
        qk_weight = float(p.get("qk_weight", 0.3))
        for name, w in (("seq_weight", seq_weight), ("qk_weight", qk_weight)):
            if not 0.0 <= w < 1.0:
                raise EmbeddingError(f"{name} must be in [0, 1), got {w!r}.")
        nq = len(X) // 2 if n_tokens is None else int(n_tokens)
        if seq_keys > 0 and seq_weight > 0:
            if seq is None:
                raise EmbeddingError(
                    "seq_keys needs the head's sequence ids and scoring (fit(..., seq=, scaling=, q=, k=)); "
                    "qkviz.embed passes them. Pass seq_keys=0 for plain t-SNE."
                )
            if len(seq) != nq or (kseq is None and len(X) != 2 * nq):
                raise EmbeddingError(f"X must stack {len(seq)} queries over their keys, got {len(X)} rows.")
            qs = X[:nq] if q is None else np.asarray(q, np.float32)
            ks = X[nq:] if k is None else np.asarray(k, np.float32)
            links = sequence_links(
                qs, ks, np.asarray(seq), scaling, seq_keys, causal=causal, window=window, pos=pos, kseq=kseq
            )
            parts.append((seq_weight, links))
        if qk_neighbors > 0 and qk_weight > 0:
            if len(X) % 2:
                raise EmbeddingError("qk_neighbors needs X = queries stacked over keys (an even number of rows).")
            parts.append((qk_weight, query_key_links(X, qk_neighbors)))
        # The neighbour part keeps what the link weights leave.
        parts[0] = (1.0 - sum(w for w, _ in parts[1:]), parts[0][1])
        return mix(parts)

    def fit(
        self,
        X: np.ndarray,
        init: np.ndarray | None = None,
        *,
        seq: np.ndarray | None = None,
        scaling: float | ScoreFunction = 1.0,
        causal: bool = False,
        window: int | None = None,
        pos: np.ndarray | None = None,
        kseq: np.ndarray | None = None,
        n_tokens: int | None = None,
        q: np.ndarray | None = None,
        k: np.ndarray | None = None,
    ) -> TSNE:
        """Lay out ``X``; the keyword arguments are the head's scoring context (see ``seq_keys``)."""
        from ._knn import BACKENDS, threads

        X = check_points(X, dim=self.n_components)
        self._reference_x: np.ndarray | None = X  # what transform places new points among
        self._anchored = False
        if _is_degenerate(X):
            self.embedding_ = _degenerate_layout(len(X), self.n_components, "t-SNE")
            return self
        n = len(X)
        if init is not None:
            init = np.asarray(init, np.float64)
            if init.shape != (n, self.n_components):
                raise EmbeddingError(f"init must be [point={n}, dim={self.n_components}], got {init.shape}.")
        params = dict(self.params)
        own = {name: params.pop(name) for name in _OWN if name in params}
        # openTSNE's gradients use as many threads as this process gives a head (all cores when
        # heads run one after another here, one per pool worker); the result does not depend on it
        params.setdefault("n_jobs", threads())
        neighbors = own.get("neighbors", "auto")
        engine = own.get("engine", "auto")
        engine = tsne_engine(n, engine)
        initialization = own.get("initialization", "pca") if init is None else init
        if isinstance(initialization, str) and initialization == "pca":
            # openTSNE cannot run its own PCA init when given affinities instead of X.
            initialization = pca_init(X, self.n_components)
        import openTSNE

        if neighbors not in BACKENDS:  # openTSNE's own kNN and affinities: plain t-SNE of X
            if int(own.get("seq_keys", 0) or 0) or int(own.get("qk_neighbors", 0) or 0):
                raise EmbeddingError(
                    f"neighbors={neighbors!r} leaves the affinities to openTSNE, which cannot add query-key "
                    "links; use neighbors='auto' or seq_keys=0, qk_neighbors=0."
                )
            perplexity = self._effective_perplexity(n)
            tsne = openTSNE.TSNE(
                n_components=self.n_components,
                perplexity=30.0 if perplexity is None else perplexity,
                metric=own["metric"],
                neighbors=neighbors,
                initialization=initialization,
                random_state=self.random_state,
                **params,
            )
            emb = tsne.fit(X)
            self._tsne_embedding = emb
            self.embedding_ = np.asarray(emb, dtype=np.float32)
            return self
        P = self.affinities(
            X, seq=seq, scaling=scaling, causal=causal, window=window, pos=pos, kseq=kseq, n_tokens=n_tokens, q=q, k=k
        )
        if engine == "torch":
            self.embedding_ = self._fit_torch(P, np.asarray(initialization, np.float64), params)
            self._tsne_embedding = None
            return self
        from openTSNE.affinity import PrecomputedAffinities

        params.setdefault("negative_gradient_method", gradient_method(n))
        tsne = openTSNE.TSNE(
            n_components=self.n_components,
            initialization=initialization,
            random_state=self.random_state,
            **params,
        )
        with _quiet_opentsne():
            emb = tsne.fit(affinities=PrecomputedAffinities(P, normalize=False), initialization=initialization)
        self._tsne_embedding = emb
        self.embedding_ = np.asarray(emb, dtype=np.float32)
        return self

    def fit_transform(self, X: np.ndarray, init: np.ndarray | None = None, **context: Any) -> np.ndarray:
        self.fit(X, init=init, **context)
        assert self.embedding_ is not None
        return self.embedding_

    def _fit_torch(self, P, init: np.ndarray, params: dict) -> np.ndarray:
        """openTSNE's two phases (early exaggeration, then the main one) in :mod:`._tsne_torch`."""
        from ._tsne_torch import optimize

        if float(params.get("dof", 1)) != 1.0:
            raise EmbeddingError("engine='torch' implements the standard t-SNE kernel (dof=1) only.")
        ee_iter = int(params.get("early_exaggeration_iter", 250))
        exaggeration = params.get("exaggeration")
        ee = params.get("early_exaggeration", "auto")
        if ee == "auto":
            ee = max(12.0, float(exaggeration or 1.0))
        lr = params.get("learning_rate", "auto")
        y = init
        state: dict[str, Any] = {}  # momentum and gains go on from one phase to the next
        if ee_iter > 0:
            y = optimize(P, y, n_iter=ee_iter, exaggeration=float(ee), learning_rate=lr,
                         momentum=float(params.get("initial_momentum", 0.8)), state=state)  # fmt: skip
        n_iter = int(params.get("n_iter", 500))
        if n_iter > 0:
            y = optimize(P, y, n_iter=n_iter, exaggeration=float(exaggeration or 1.0), learning_rate=lr,
                         momentum=float(params.get("final_momentum", 0.8)), state=state)  # fmt: skip
        return np.asarray(y, np.float32)

    def transform(self, X: np.ndarray, **params: Any) -> np.ndarray:
        """Place new points into the fitted map (openTSNE's ``TSNEEmbedding.transform``).

        ``params`` go to openTSNE's ``transform`` (``perplexity``, ``n_iter``, ``learning_rate``...).
        """
        ref = getattr(self, "_reference_x", None)
        if ref is None or self.embedding_ is None:
            raise EmbeddingError("transform needs a fitted (or anchored) t-SNE map; fit first.")
        X = check_points(X, dim=self.n_components)
        if not getattr(self, "_anchored", False):
            # The fit's affinities come from a precomputed kNN graph, which cannot look up new
            # points: anchor the fitted layout on its vectors (exact kNN for the new points).
            self.anchor(ref, self.embedding_)
        with _quiet_opentsne():
            y = np.asarray(self._tsne_embedding.transform(X, **params), dtype=np.float64)
        # openTSNE's transform first moves the reference map's bounding-box centre to the origin
        # (in place) and answers in that frame: move the answer back to the layout's own frame.
        return (y + self._anchor_centre).astype(np.float32)

    def anchor(self, X: np.ndarray, Y: np.ndarray, *, candidates: np.ndarray | None = None) -> TSNE:
        """Ready :meth:`transform` for the layout ``Y`` of ``X`` without fitting again.

        Wraps ``Y`` in an openTSNE ``TSNEEmbedding`` whose affinities find each new point's
        neighbours among the rows of ``X`` exactly (:func:`qkviz.project._knn.knn_query`, the
        vector metric of the fit), so ``transform`` is openTSNE's own: perplexity-based affinities
        to the reference, a start at the median of the nearest reference points, then gradient
        steps with the reference held fixed. Used for a layout read from the cache or from disk,
        which has no fitted openTSNE object.

        Parameters
        ----------
        X : float array [point, d]
            The cloud the layout was made from.
        Y : float array [point, n_components]
            Its layout, in the reducer's own coordinates (before alignment and boxing).
        candidates : int array [candidate], optional
            Only these rows of ``X`` may be a new point's neighbours.
        """
        X = check_points(X, dim=self.n_components)
        Y = np.asarray(Y, np.float64)
        if Y.shape != (len(X), self.n_components):
            raise EmbeddingError(f"anchor: Y must be [point={len(X)}, dim={self.n_components}], got {Y.shape}.")
        self._tsne_embedding = _tsne_reference(X, Y, self.params, self.random_state, candidates)
        self._anchor_centre = (Y.max(0) + Y.min(0)) / 2.0 if len(Y) else np.zeros(self.n_components)
        self._reference_x = X
        self._anchored = True
        self.embedding_ = Y.astype(np.float32)
        return self


class UMAP(Reducer):
    """UMAP through umap-learn (cuML's UMAP on CUDA when installed).

    Parameters
    ----------
    n_components : {2, 3}
    metric : {"cosine", "euclidean"}
    n_neighbors : int
        Lowered (with a warning) when the head has fewer points.
    min_dist : float
    random_state : int or None
        With a seed umap-learn runs single-threaded, which is what makes it reproducible; heads run
        in parallel instead.
    **params
        Passed straight to :class:`umap.UMAP` (``n_epochs``, ``spread``, ``negative_sample_rate``...).
        ``neighbors="auto"`` (default) takes qkviz's neighbour graph (exact below 3,000 points,
        faiss IVF above; ``"exact"`` or ``"ivf"`` force one); ``"approximate"`` leaves it to
        umap-learn (NN-descent above 4,096 points, needed for :meth:`transform`).

    Notes
    -----
    The first UMAP fit in a process compiles numba code (about 7 s below 4,096 points, 20-25 s
    above). :func:`qkviz.project.warm_up` pays it early, in each worker, overlapping other work.
    """

    method = "umap"

    def __init__(
        self,
        n_components: int = 2,
        *,
        metric: str = "cosine",
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        random_state: int | None = 0,
        **params: Any,
    ):
        super().__init__(
            n_components, random_state=random_state, metric=metric, n_neighbors=n_neighbors, min_dist=min_dist, **params
        )

    def fit(self, X: np.ndarray, init: np.ndarray | None = None) -> UMAP:
        X = check_points(X, dim=self.n_components)
        self._reference_x = X  # what transform places new points among
        n = len(X)
        if n < 4:
            raise EmbeddingError(f"UMAP needs at least 4 points, got {n}; use method='pca'.")
        if _is_degenerate(X):
            self.embedding_ = _degenerate_layout(n, self.n_components, "UMAP")
            return self
        params = dict(self.params)
        if params["n_neighbors"] > n - 1:
            warnings.warn(
                f"n_neighbors={params['n_neighbors']} needs more than {n} points; using {n - 1}.",
                stacklevel=2,
            )
            params["n_neighbors"] = n - 1
        if init is not None:
            init = np.asarray(init, np.float64)
            if init.shape != (n, self.n_components):
                raise EmbeddingError(f"init must be [point={n}, dim={self.n_components}], got {init.shape}.")
            params["init"] = init
        if cuml_available():
            from cuml.manifold import UMAP as CuUMAP

            params.pop("init", None)
            model = CuUMAP(n_components=self.n_components, random_state=self.random_state, **params)
        else:
            try:
                import umap
            except ImportError as e:  # pragma: no cover - a declared dependency
                raise MissingDependencyError(
                    "method='umap' needs umap-learn.",
                    package="umap-learn",
                    install="pip install umap-learn",
                ) from e
            from ._knn import BACKENDS, neighbours

            backend = params.pop("neighbors", "auto")
            if backend == "exact" or (params.get("metric") in ("cosine", "euclidean") and backend in BACKENDS):
                # qkviz's neighbour graph (exact below 3,000 points, faiss IVF above): faster than
                # NN-descent and it skips pynndescent's 18-26 s numba compile in every process.
                # umap-learn counts a point as its own first neighbour, so prepend it.
                k = int(params["n_neighbors"])
                g = neighbours(X, k - 1, metric=params["metric"], backend=backend)
                idx = np.hstack([np.arange(n)[:, None], g.indices])
                dist = np.hstack([np.zeros((n, 1)), g.distances]).astype(np.float32)
                params["precomputed_knn"] = (idx, dist, None)
            with warnings.catch_warnings():
                # umap warns that a seed disables its parallelism (the point of the seed) and that
                # a precomputed kNN without a search index cannot transform (we say so ourselves).
                warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
                warnings.filterwarnings("ignore", message=".*random_state.*")
                warnings.filterwarnings("ignore", message=".*knn_search_index.*")
                warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
                model = umap.UMAP(n_components=self.n_components, random_state=self.random_state, **params)
                self.embedding_ = np.asarray(model.fit_transform(X), dtype=np.float32)
            self._model = model
            return self
        self.embedding_ = np.asarray(model.fit_transform(X), dtype=np.float32)
        self._model = model
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Place new points into the fitted map (umap-learn's ``transform``).

        Needs a fit with ``neighbors="approximate"`` (umap-learn's own search index); the default
        neighbour graph keeps no index.
        """
        if getattr(self, "_model", None) is None or self.embedding_ is None:
            raise EmbeddingError("fit the UMAP reducer (or anchor() it) before transform.")
        X = check_points(X, dim=self.n_components)
        if getattr(self._model, "_knn_search_index", 1) is None or not hasattr(self._model, "_input_hash"):
            # fitted on a precomputed kNN graph without a search index: anchor on the vectors
            if getattr(self, "_reference_x", None) is None:
                raise EmbeddingError("this UMAP map keeps no vectors to place new points among; anchor() it.")
            self.anchor(self._reference_x, self.embedding_)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            return np.asarray(self._model.transform(X), dtype=np.float32)

    def anchor(self, X: np.ndarray, Y: np.ndarray) -> UMAP:
        """Ready :meth:`transform` for the layout ``Y`` of ``X`` without optimising again.

        umap-learn's ``transform`` needs a fitted model (the fuzzy graph's parameters, the
        reference data and a neighbour search). This builds one on ``X`` with the same parameters
        and zero optimisation epochs, gives it an exact neighbour search over ``X`` (the same exact
        kNN as the fit), and sets its ``embedding_`` to ``Y``; ``transform`` is then umap-learn's
        own: fuzzy memberships to the nearest reference points, a start at their weighted mean,
        and ``n_epochs // 3`` epochs with the reference held fixed.
        """
        try:
            import umap
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise MissingDependencyError(
                "method='umap' needs umap-learn.", package="umap-learn", install="pip install umap-learn"
            ) from e
        from ._knn import exact_knn

        X = check_points(X, dim=self.n_components)
        Y = np.asarray(Y, np.float32)
        n = len(X)
        if Y.shape != (n, self.n_components):
            raise EmbeddingError(f"anchor: Y must be [point={n}, dim={self.n_components}], got {Y.shape}.")
        params = dict(self.params)
        params.pop("neighbors", None)
        params.pop("init", None)
        n_epochs = params.pop("n_epochs", None)
        params["n_neighbors"] = min(int(params["n_neighbors"]), n - 1)
        k = int(params["n_neighbors"])
        idx, dist = exact_knn(X, k - 1, metric=params["metric"])
        idx = np.hstack([np.arange(n)[:, None], idx])
        dist = np.hstack([np.zeros((n, 1)), dist]).astype(np.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            warnings.filterwarnings("ignore", message=".*random_state.*")
            # umap-learn warns that a search index other than pynndescent's cannot transform; this
            # one can (transform only calls its query method)
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            model = umap.UMAP(
                n_components=self.n_components,
                random_state=self.random_state,
                init=Y.astype(np.float64),
                n_epochs=1,  # the graph and its parameters are what is needed; Y replaces the layout
                precomputed_knn=(idx, dist, _ExactSearch(X, params["metric"])),
                **params,
            )
            model.fit(X)
        model.embedding_ = Y.copy()
        model.n_epochs = n_epochs  # transform runs n_epochs // 3 (umap-learn's default when None)
        self._model = model
        self._reference_x = X
        self.embedding_ = Y.copy()
        return self


def _check_anchor(fitted: np.ndarray, Y: np.ndarray, what: str) -> None:
    """Raise unless a refit reproduces the layout being anchored (up to float32 rounding)."""
    Y = np.asarray(Y, np.float64)
    if fitted.shape != Y.shape:
        raise EmbeddingError(f"anchor: the layout is {Y.shape} but the {what} of its cloud is {fitted.shape}.")
    scale = max(1.0, float(np.abs(Y).max()) if Y.size else 1.0)
    err = float(np.abs(fitted - Y).max()) if Y.size else 0.0
    if err > 1e-3 * scale:
        raise EmbeddingError(
            f"this layout is not the {what} of the vectors it is anchored on (max deviation {err:.3g}); "
            "the capture changed since the embedding was made. Embed it again."
        )


def _precomputed_types() -> tuple[type, ...]:
    from openTSNE.affinity import PrecomputedAffinities

    return (PrecomputedAffinities,)


def _tsne_reference(
    X: np.ndarray, Y: np.ndarray, params: dict[str, Any], random_state: int | None, candidates: np.ndarray | None
) -> Any:
    """An openTSNE ``TSNEEmbedding`` of ``Y`` whose affinities place new points among the rows of ``X``."""
    import openTSNE
    import scipy.sparse as sp
    from openTSNE.affinity import Affinities, joint_probabilities_nn

    from ._knn import knn_query

    metric = params.get("metric", "cosine")
    n_ref = len(X)
    n_cand = n_ref if candidates is None else len(candidates)

    class ReferenceAffinities(Affinities):
        """Affinities of new points to the reference (openTSNE's ``PerplexityBasedNN.to_new``, exact kNN)."""

        def __init__(self) -> None:
            super().__init__()
            # The fit's own affinities are not needed to place new points; openTSNE only checks the shape.
            self.P = sp.csr_matrix((n_ref, n_ref))

        def to_new(self, data, perplexity=5.0, return_distances=False, k_neighbors="auto"):
            k = min(n_cand, int(3 * perplexity)) if k_neighbors == "auto" else min(n_cand, int(k_neighbors))
            idx, dist = knn_query(X, data, k, metric=metric, candidates=candidates)
            P = joint_probabilities_nn(
                idx,
                dist,
                [min(float(perplexity), k / 3.0)],
                symmetrize=False,
                normalization="point-wise",
                n_reference_samples=n_ref,
                n_jobs=1,
            )
            return (P, idx, dist) if return_distances else P

    gd: dict[str, Any] = {k: params[k] for k in ("theta", "dof", "n_jobs") if k in params}
    # New points are pushed away from a *fixed* reference: openTSNE's FFT method interpolates the
    # reference's repulsion on a grid it computes once, about 10x faster than Barnes-Hut (which
    # rebuilds its tree every step) at the same placement (measured on MiniLM heads). FFT is 2-D only.
    gd["negative_gradient_method"] = "fft" if Y.shape[1] <= 2 else "bh"
    return openTSNE.TSNEEmbedding(Y, ReferenceAffinities(), random_state=random_state, **gd)


class _ExactSearch:
    """A neighbour search for umap-learn's ``transform``: exact kNN among the reference rows."""

    _angular_trees = False  # umap-learn reads it to pick a search epsilon; unused here

    def __init__(self, X: np.ndarray, metric: str):
        self.X = X
        self.metric = metric

    def query(self, data: np.ndarray, k: int, epsilon: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        from ._knn import knn_query

        idx, dist = knn_query(self.X, data, k, metric=self.metric)
        return idx.astype(np.int32), dist.astype(np.float32)
