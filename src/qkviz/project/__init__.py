"""Reducers, cross-head alignment, the all-heads driver and the layout cache.

Composable stages (each usable alone):

* reducers — :class:`PCA`, :class:`TSNE`, :class:`UMAP`, :class:`AttentionMap`: estimators with
  ``fit`` / ``fit_transform`` / ``transform`` and an explicit ``random_state``;
* alignment — :func:`generalized_procrustes`, :func:`procrustes_rotation`, :func:`disparity`;
* :func:`run_heads` — every head through an executor, with the on-disk :class:`LayoutCache`.

:func:`qkviz.embed` is the short recipe over them.

Examples
--------
>>> import numpy as np
>>> from qkviz.project import PCA
>>> X = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
>>> PCA(2).fit_transform(X).dtype
dtype('float32')
"""

from ._align import disparity, generalized_procrustes, procrustes_rotation, standardize
from ._attention import AttentionMap, attention_affinities
from ._cache import LayoutCache, default_cache_dir, layout_key
from ._driver import METHODS, HeadResult, HeadSource, HeadSpec, make_reducer, run_heads, warm_up
from ._knn import exact_knn
from ._reducers import PCA, TSNE, UMAP, Reducer, cuml_available, pca_init

__all__ = [
    "PCA", "TSNE", "UMAP", "AttentionMap", "Reducer", "make_reducer", "METHODS",
    "attention_affinities", "exact_knn", "pca_init", "cuml_available",
    "generalized_procrustes", "procrustes_rotation", "disparity", "standardize",
    "run_heads", "HeadSpec", "HeadSource", "HeadResult", "warm_up",
    "LayoutCache", "default_cache_dir", "layout_key",
]
