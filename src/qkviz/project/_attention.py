"""The attention-guided layout (``method="attention"``): t-SNE on the head's real attention.

Vector-only layouts (PCA, t-SNE, UMAP on the joint q/k cloud) place a query near the keys whose
*vectors* are similar to it; attention, however, is a softmax of dot products inside one sequence,
so "near" and "attended" agree only in part (recall@5 around 0.3-0.5 on MiniLM; 0.68 with this
method and ``embed``'s defaults ``attention_weight=0.9, top_keys=5``). This method builds
the t-SNE affinities from two sources and optimises one layout for both:

* **attention** (weight ``attention_weight``): query ``i`` → key ``j`` of the same sequence with the
  head's attention probability ``a_ij`` (each query row keeps its ``top_keys`` strongest keys,
  renormalised),
  symmetrised so a key is also pulled towards the queries that attend to it;
* **vector geometry** (weight ``1 - attention_weight``): perplexity-calibrated kNN affinities among
  the queries (q–q) and among the keys (k–k), so tokens with similar vectors still group together
  and the map keeps the shape of each cloud.

What such a layout means: a query sits near the keys it attends to *in its own sequence*, and
queries/keys with similar vectors sit near each other. What it does not mean: distance between
points of *different* sequences says nothing about attention (no query ever attends across
sequences), and a query-key distance is not a monotone function of ``q·k`` — the map is a picture of
the attention graph plus vector neighbourhoods, not a metric embedding of the vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..attention import ScoreFunction
from ..errors import EmbeddingError
from ._reducers import Reducer, _quiet_opentsne, _tsne_reference, check_points, pca_init

__all__ = ["AttentionMap", "attention_affinities"]


def attention_affinities(
    qn: np.ndarray,
    kn: np.ndarray,
    seq: np.ndarray,
    scaling: float | ScoreFunction,
    *,
    causal: bool = False,
    window: int | None = None,
    attention_weight: float = 0.5,
    top_keys: int = 10,
    perplexity: float = 30.0,
    metric: str = "cosine",
    n_jobs: int = 1,
    x: np.ndarray | None = None,
):
    """The joint affinity matrix of the attention-guided layout.

    Parameters
    ----------
    qn, kn : float array [token, d_head]
        The head's (normalised) queries and keys.
    seq : int array [token]
        Sequence of each token (contiguous runs).
    scaling, causal, window
        How the model scores: ``softmax(scaling · q·k + mask)``, or with the head's whole
        :class:`~qkviz.attention.ScoreFunction` (then ``qn``, ``kn`` are the vectors as captured).
    attention_weight : float in [0, 1]
        Share of the affinity mass given to attention (the rest goes to q–q and k–k kNN).
    top_keys : int
        Attention entries kept per query row (the strongest).
    perplexity : float
        Of the q–q and k–k neighbourhoods.
    metric : {"cosine", "euclidean"}
        Of the q–q and k–k neighbourhoods.
    x : float array [point, d], optional
        The cloud to take the q–q / k–k neighbourhoods in (e.g. the dot lift); default ``[qn; kn]``.

    Returns
    -------
    scipy.sparse.csr_matrix [point, point]
        Symmetric, non-negative, summing to 1; rows ``0..n-1`` queries, ``n..2n-1`` keys.
    """
    import scipy.sparse as sp
    from openTSNE.affinity import joint_probabilities_nn

    from ..attention import attention_rows, sequence_slices, visible
    from ._knn import exact_knn

    n = len(qn)
    if not 0.0 <= attention_weight <= 1.0:
        raise EmbeddingError(f"attention_weight must be in [0, 1], got {attention_weight!r}.")
    rows, cols, vals = [], [], []
    for sl in sequence_slices(seq):
        m = sl.stop - sl.start
        a = attention_rows(qn[sl], kn[sl], scaling, causal, window)
        a = np.where(visible(m, causal, window), a, 0.0)
        keep = min(max(1, int(top_keys)), m)
        idx = np.argpartition(-a, keep - 1, axis=1)[:, :keep]
        r = np.repeat(np.arange(m), keep)
        c = idx.ravel()
        v = a[r, c]
        rows.append(r + sl.start)
        cols.append(c + sl.start + n)
        vals.append(v / np.maximum(a[r, c].reshape(m, keep).sum(1), 1e-300).repeat(keep))
    pa = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(2 * n, 2 * n))
    pa = pa + pa.T
    pa = pa / pa.sum()

    def knn_p(x: np.ndarray) -> sp.csr_matrix:
        perp = min(float(perplexity), (len(x) - 1) / 3.0)
        kk = max(1, min(len(x) - 1, int(3 * perp)))
        idx, dist = exact_knn(x, kk, metric=metric)
        return joint_probabilities_nn(idx, dist, [perp], symmetrize=True, n_jobs=n_jobs)

    xq, xk = (qn, kn) if x is None else (x[:n], x[n:])
    pv = sp.block_diag([knn_p(xq), knn_p(xk)], format="csr")
    pv = pv / pv.sum()
    p = attention_weight * pa + (1.0 - attention_weight) * pv
    return p.tocsr()


class AttentionMap(Reducer):
    """t-SNE on attention + vector-neighbourhood affinities (see the module docstring).

    Parameters
    ----------
    n_components : {2, 3}
    attention_weight, top_keys, perplexity, metric
        See :func:`attention_affinities`.
    random_state : int or None
    **params
        Passed to :class:`openTSNE.TSNE` (``early_exaggeration_iter``, ``n_iter``, ``learning_rate``,
        ``theta``, ``n_jobs``...).

    Notes
    -----
    ``fit`` needs the head's sequence ids and scoring (``seq``, ``scaling``, ``causal``,
    ``window``) besides the stacked vectors, and the head's queries and keys (``q``, ``k``) when
    ``X`` is not simply ``[q; k]`` (e.g. the dot lift).
    """

    method = "attention"

    def __init__(
        self,
        n_components: int = 2,
        *,
        attention_weight: float = 0.5,
        top_keys: int = 10,
        perplexity: float = 30.0,
        metric: str = "cosine",
        random_state: int | None = 0,
        **params: Any,
    ):
        params.setdefault("early_exaggeration_iter", 125)
        params.setdefault("n_iter", 250)
        super().__init__(
            n_components,
            random_state=random_state,
            attention_weight=attention_weight,
            top_keys=top_keys,
            perplexity=perplexity,
            metric=metric,
            **params,
        )

    def fit(
        self,
        X: np.ndarray,
        init: np.ndarray | None = None,
        *,
        seq: np.ndarray | None = None,
        scaling: float | ScoreFunction = 1.0,
        causal: bool = False,
        window: int | None = None,
        n_tokens: int | None = None,
        q: np.ndarray | None = None,
        k: np.ndarray | None = None,
    ) -> AttentionMap:
        import openTSNE
        from openTSNE.affinity import PrecomputedAffinities

        X = check_points(X, dim=self.n_components)
        if seq is None:
            raise EmbeddingError("method='attention' needs the token->sequence ids (seq=...).")
        n = len(X) // 2 if n_tokens is None else int(n_tokens)
        if len(X) != 2 * n or len(seq) != n:
            raise EmbeddingError(f"X must stack {len(seq)} queries over {len(seq)} keys, got {len(X)} rows.")
        if n < 4:
            raise EmbeddingError(f"method='attention' needs at least 4 tokens, got {n}; use method='pca'.")
        p = dict(self.params)
        aff_kw = {name: p.pop(name) for name in ("attention_weight", "top_keys", "perplexity", "metric")}
        # Attention comes from the head's own vectors; X (possibly lifted) gives the neighbourhoods.
        qa = X[:n] if q is None else np.asarray(q, np.float32)
        ka = X[n:] if k is None else np.asarray(k, np.float32)
        P = attention_affinities(
            qa,
            ka,
            np.asarray(seq),
            scaling,
            causal=causal,
            window=window,
            n_jobs=int(p.get("n_jobs", 1)),
            x=X,
            **aff_kw,
        )
        initialization = p.pop("initialization", "pca") if init is None else np.asarray(init, np.float64)
        if isinstance(initialization, str) and initialization == "pca":
            initialization = pca_init(X, self.n_components)
        tsne = openTSNE.TSNE(n_components=self.n_components, random_state=self.random_state, **p)
        emb = tsne.fit(affinities=PrecomputedAffinities(P), initialization=initialization)
        self.embedding_ = np.asarray(emb, dtype=np.float32)
        return self

    def fit_transform(self, X: np.ndarray, init: np.ndarray | None = None, **context: Any) -> np.ndarray:
        self.fit(X, init=init, **context)
        assert self.embedding_ is not None
        return self.embedding_

    def anchor(self, X: np.ndarray, Y: np.ndarray) -> AttentionMap:
        """Ready :meth:`transform` for the layout ``Y`` of ``X`` (queries stacked over keys).

        Attention never crosses sequences, so a new sentence has no attention to the reference
        tokens: new points are placed by the *vector* half of this method's affinities only, with
        openTSNE's ``transform``: a new query among the reference queries' neighbourhoods (q–q), a
        new key among the reference keys' (k–k), in the same vector space as the fit.
        """
        X = check_points(X, dim=self.n_components)
        Y = np.asarray(Y, np.float64)
        if len(X) % 2 or Y.shape != (len(X), self.n_components):
            raise EmbeddingError(f"anchor: X must stack queries over keys and Y match it; got {X.shape}, {Y.shape}.")
        n = len(X) // 2
        p = {"metric": self.params.get("metric", "cosine"), **self.params}
        self._placers = (
            _tsne_reference(X, Y, p, self.random_state, np.arange(n)),
            _tsne_reference(X, Y, p, self.random_state, np.arange(n, 2 * n)),
        )
        self._anchor_centre = (Y.max(0) + Y.min(0)) / 2.0
        self.embedding_ = Y.astype(np.float32)
        return self

    def transform(self, X: np.ndarray, **params: Any) -> np.ndarray:
        """Place new queries stacked over their keys (see :meth:`anchor`); ``params`` go to
        openTSNE's ``transform``."""
        if getattr(self, "_placers", None) is None:
            raise EmbeddingError("anchor() the attention map on its vectors and layout before transform.")
        X = check_points(X, dim=self.n_components)
        if len(X) % 2:
            raise EmbeddingError(f"X must stack new queries over their keys (an even number of rows), got {len(X)}.")
        m = len(X) // 2
        with _quiet_opentsne():
            yq = np.asarray(self._placers[0].transform(X[:m], **params), np.float64)
            yk = np.asarray(self._placers[1].transform(X[m:], **params), np.float64)
        # openTSNE answers in a frame whose bounding-box centre is the origin: move back
        return (np.concatenate([yq, yk]) + self._anchor_centre).astype(np.float32)
