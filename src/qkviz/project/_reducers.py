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

from ..errors import EmbeddingError, MissingDependencyError

__all__ = ["Reducer", "PCA", "TSNE", "UMAP", "check_points", "cuml_available", "pca_init", "query_key_links"]

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


def query_key_links(X: np.ndarray, m: int):
    """Affinities linking each query to its ``m`` highest-dot-product keys (symmetric, sum 1).

    Parameters
    ----------
    X : float array [point, d]
        Queries stacked over keys (``point = 2n``). With the dot lift, ``q̃·k̃ ∝ q·k / ‖q‖``,
        which orders each query's keys exactly as ``q·k`` does.
    m : int
        Keys per query.

    Returns
    -------
    scipy.sparse.csr_matrix [point, point]
    """
    import scipy.sparse as sp
    import torch

    from ._knn import device

    n = len(X) // 2
    m = max(1, min(int(m), n))
    dev = device()
    q = torch.as_tensor(np.asarray(X[:n], np.float32), device=dev)
    k = torch.as_tensor(np.asarray(X[n:], np.float32), device=dev)
    cols = np.empty((n, m), np.int64)
    for start in range(0, n, 4096):  # bounded memory: [block, n] scores at a time
        s = q[start : start + 4096] @ k.T
        cols[start : start + 4096] = torch.topk(s, m, dim=1).indices.cpu().numpy()
    rows = np.repeat(np.arange(n), m)
    p = sp.csr_matrix((np.ones(n * m), (rows, cols.ravel() + n)), shape=(2 * n, 2 * n))
    p = p + p.T
    return p / p.sum()


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


class TSNE(Reducer):
    """t-SNE through openTSNE (cuML's TSNE on CUDA when installed).

    Parameters
    ----------
    n_components : {2, 3}
    metric : {"cosine", "euclidean"}
        Distance in the vector space. Cosine ignores the joint norm scaling.
    perplexity : float
        Effective neighbourhood size. Lowered (with a warning) when the head has too few points.
    random_state : int or None
    **params
        Passed straight to :class:`openTSNE.TSNE` (``early_exaggeration_iter``, ``n_iter``,
        ``learning_rate``, ``exaggeration``, ``theta``, ``dof``, ``n_jobs``,
        ``negative_gradient_method``...). ``neighbors="exact"`` (the default here) computes the
        kNN graph exactly with BLAS, which beats Annoy at head sizes and is reproducible.
        ``qk_neighbors=m`` (default 0: plain t-SNE) additionally links every query to the ``m``
        keys with the largest dot product with it — the keys it would attend to most — with a
        share ``qk_weight`` (default 0.3) of the affinity mass; ``X`` must then be queries stacked
        over keys. This uses only the vectors, never attention probabilities.

    Notes
    -----
    ``fit(X, init=...)`` takes an initial layout [point, n_components], used as given (openTSNE's
    convention is a standard deviation of 1e-4 followed by early exaggeration; a full-scale start
    with a short schedule refines it instead). Without one, the PCA of ``X`` at 1e-4 is used, as
    openTSNE does. On CUDA with cuML installed, cuML's TSNE runs instead: it takes no array
    initialisation and no ``qk_neighbors`` links (its results are plain t-SNE).
    """

    method = "tsne"

    def __init__(
        self,
        n_components: int = 2,
        *,
        metric: str = "cosine",
        perplexity: float = 30.0,
        random_state: int | None = 0,
        **params: Any,
    ):
        super().__init__(n_components, random_state=random_state, metric=metric, perplexity=perplexity, **params)

    def _effective_perplexity(self, n: int) -> float:
        perplexity = float(self.params["perplexity"])
        if n < 4:
            raise EmbeddingError(f"t-SNE needs at least 4 points, got {n}; use method='pca'.")
        limit = (n - 1) / 3.0
        if perplexity > limit:
            warnings.warn(
                f"perplexity={perplexity:g} needs more than {n} points; using {limit:.3g} instead "
                "(perplexity must stay below (points - 1) / 3).",
                stacklevel=3,
            )
            return limit
        return perplexity

    def _affinities(self, X: np.ndarray, perplexity: float, qk_neighbors: int, qk_weight: float):
        from openTSNE import affinity
        from openTSNE.nearest_neighbors import PrecomputedNeighbors

        from ._knn import exact_knn

        k = min(len(X) - 1, max(1, int(3 * perplexity)))
        idx, dist = exact_knn(X, k, metric=self.params["metric"])
        n_jobs = int(self.params.get("n_jobs", 1))
        aff = affinity.PerplexityBasedNN(
            perplexity=perplexity, knn_index=PrecomputedNeighbors(idx, dist), n_jobs=n_jobs
        )
        if qk_neighbors <= 0 or qk_weight <= 0:
            return aff
        if len(X) % 2:
            raise EmbeddingError("qk_neighbors needs X = queries stacked over keys (an even number of rows).")
        p = (1.0 - qk_weight) * aff.P + qk_weight * query_key_links(X, qk_neighbors)
        return affinity.PrecomputedAffinities(p.tocsr())

    def fit(self, X: np.ndarray, init: np.ndarray | None = None) -> TSNE:
        X = check_points(X, dim=self.n_components)
        self._reference_x: np.ndarray | None = X  # what transform places new points among
        self._anchored = False
        if _is_degenerate(X):
            self.embedding_ = _degenerate_layout(len(X), self.n_components, "t-SNE")
            return self
        perplexity = self._effective_perplexity(len(X))
        params = dict(self.params)
        metric = params.pop("metric")
        params.pop("perplexity")
        neighbors = params.pop("neighbors", "exact")
        qk_neighbors = int(params.pop("qk_neighbors", 0))
        qk_weight = float(params.pop("qk_weight", 0.3))
        if init is not None:
            init = np.asarray(init, np.float64)
            if init.shape != (len(X), self.n_components):
                raise EmbeddingError(f"init must be [point={len(X)}, dim={self.n_components}], got {init.shape}.")
        if cuml_available() and neighbors != "annoy":
            self.embedding_ = self._fit_cuml(X, perplexity, metric, init, params)
            return self
        import openTSNE

        initialization = params.pop("initialization", "pca") if init is None else init
        if isinstance(initialization, str) and initialization == "pca":
            # openTSNE cannot run its own PCA init when given affinities instead of X.
            initialization = pca_init(X, self.n_components)
        if neighbors == "exact" and metric in ("cosine", "euclidean"):
            aff = self._affinities(X, perplexity, qk_neighbors, qk_weight)
            tsne = openTSNE.TSNE(
                n_components=self.n_components,
                initialization=initialization,
                random_state=self.random_state,
                **params,
            )
            with _quiet_opentsne():
                emb = tsne.fit(affinities=aff, initialization=initialization)
        else:
            tsne = openTSNE.TSNE(
                n_components=self.n_components,
                perplexity=perplexity,
                metric=metric,
                neighbors=neighbors,
                initialization=initialization,
                random_state=self.random_state,
                **params,
            )
            emb = tsne.fit(X)
        self._tsne_embedding = emb
        self._anchored = False
        self.embedding_ = np.asarray(emb, dtype=np.float32)
        return self

    def fit_affinities(self, affinities, n_points: int, init: np.ndarray | None = None) -> TSNE:
        """Optimise a layout for precomputed affinities (``openTSNE.affinity.Affinities``)."""
        import openTSNE

        params = dict(self.params)
        for name in ("metric", "perplexity", "neighbors", "qk_neighbors", "qk_weight"):
            params.pop(name, None)
        initialization = params.pop("initialization", "spectral") if init is None else init
        tsne = openTSNE.TSNE(
            n_components=self.n_components, random_state=self.random_state, initialization=initialization, **params
        )
        emb = tsne.fit(affinities=affinities, initialization=initialization)
        self._tsne_embedding = emb
        self._reference_x = None  # cuML keeps no vectors: transform is unavailable
        self._anchored = False
        self.embedding_ = np.asarray(emb, dtype=np.float32)
        return self

    def _fit_cuml(self, X, perplexity, metric, init, params) -> np.ndarray:
        # cuML's TSNE has its own parameter names; pass through the ones it shares with openTSNE.
        from cuml.manifold import TSNE as CuTSNE

        kw = {
            k: v
            for k, v in params.items()
            if k in ("learning_rate", "n_iter", "early_exaggeration", "exaggeration_iter", "theta", "n_neighbors")
        }
        if "n_iter" in kw:
            kw["n_iter"] = kw["n_iter"] + int(params.get("early_exaggeration_iter", 250))
        model = CuTSNE(
            n_components=self.n_components,
            perplexity=perplexity,
            metric=metric,
            random_state=self.random_state,
            init="pca" if init is None else "random",
            method="fft" if self.n_components == 2 else "exact",
            **kw,
        )
        return np.asarray(model.fit_transform(X), dtype=np.float32)

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
        ``neighbors="exact"`` (default) computes the kNN graph by BLAS; ``"approximate"`` leaves it
        to umap-learn (NN-descent above 4,096 points, needed for :meth:`transform`).

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
            if params.get("metric") in ("cosine", "euclidean") and params.pop("neighbors", "exact") == "exact":
                # Exact kNN by BLAS: faster than NN-descent at head sizes and it skips
                # pynndescent's 18-22 s numba compile. umap-learn counts a point as its own first
                # neighbour, so prepend it.
                from ._knn import exact_knn

                k = int(params["n_neighbors"])
                idx, dist = exact_knn(X, k - 1, metric=params["metric"])
                idx = np.hstack([np.arange(n)[:, None], idx])
                dist = np.hstack([np.zeros((n, 1)), dist]).astype(np.float32)
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
        exact kNN keeps no index.
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
