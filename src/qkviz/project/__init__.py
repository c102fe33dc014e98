"""The project stage: every head's joint query-key cloud becomes a 2-D/3-D layout (an Embedding).

Composable stages (each usable alone):

* reducers — :class:`PCA`, :class:`TSNE`, :class:`UMAP`, :class:`AttentionMap`: estimators with
  ``fit`` / ``fit_transform`` / ``transform`` and an explicit ``random_state``;
* alignment — :func:`generalized_procrustes`, :func:`procrustes_rotation`, :func:`disparity`, and
  :func:`align_to` (one embedding's heads onto another's, for side-by-side comparison);
* :func:`run_heads` — every head through an executor, with the on-disk :class:`LayoutCache`;
* the methods registry — :data:`METHODS` (one :class:`Method` record per method);
* :class:`Embedding` — the result container (save/load), and :func:`embed`, the short recipe over
  the stages above (``qkviz.embed``).

Examples
--------
>>> import numpy as np
>>> from qkviz.project import PCA
>>> X = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
>>> PCA(2).fit_transform(X).dtype
dtype('float32')
"""

from ._align import align_to, disparity, generalized_procrustes, procrustes_rotation, standardize
from ._attention import AttentionMap, attention_affinities
from ._cache import LayoutCache, default_cache_dir, layout_key
from ._driver import HeadResult, HeadSource, HeadSpec, make_reducer, run_heads, warm_up
from ._embedding import Embedding, Frame, to_box
from ._knn import exact_knn
from ._methods import DEFAULT_METHOD, METHODS, Method, get_method
from ._recipe import embed
from ._reducers import PCA, TSNE, UMAP, Reducer, cuml_available, pca_init

__all__ = [
    "embed",
    "Embedding",
    "Frame",
    "to_box",
    "align_to",
    "METHODS",
    "DEFAULT_METHOD",
    "Method",
    "get_method",
    "PCA",
    "TSNE",
    "UMAP",
    "AttentionMap",
    "Reducer",
    "make_reducer",
    "attention_affinities",
    "exact_knn",
    "pca_init",
    "cuml_available",
    "generalized_procrustes",
    "procrustes_rotation",
    "disparity",
    "standardize",
    "run_heads",
    "HeadSpec",
    "HeadSource",
    "HeadResult",
    "warm_up",
    "LayoutCache",
    "default_cache_dir",
    "layout_key",
]
