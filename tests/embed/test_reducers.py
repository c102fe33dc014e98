"""Reducer contracts: shapes, determinism, pass-through parameters, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from qkviz.errors import EmbeddingError
from qkviz.project import PCA, TSNE, UMAP, AttentionMap, exact_knn, make_reducer


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 10)) * 4
    return (centres[rng.integers(0, 4, 160)] + rng.normal(size=(160, 10))).astype(np.float32)


FAST_TSNE = dict(early_exaggeration_iter=20, n_iter=30)


def test_pca_matches_numpy_and_is_sign_stable(cloud):
    y = PCA(2).fit_transform(cloud)
    c = cloud - cloud.mean(0)
    w, v = np.linalg.eigh(np.cov(c.T))
    ref = c @ v[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(y), np.abs(ref), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(PCA(2).fit_transform(cloud.copy()), y)
    assert PCA(3).fit(cloud).transform(cloud[:5]).shape == (5, 3)


@pytest.mark.parametrize("dim", [2, 3])
def test_tsne_same_seed_same_coordinates(cloud, dim):
    a = TSNE(dim, random_state=3, **FAST_TSNE).fit_transform(cloud)
    b = TSNE(dim, random_state=3, **FAST_TSNE).fit_transform(cloud)
    assert a.shape == (160, dim) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_tsne_params_pass_through(cloud):
    # a different perplexity must give a different layout (it is really used)
    a = TSNE(perplexity=5, **FAST_TSNE).fit_transform(cloud)
    b = TSNE(perplexity=30, **FAST_TSNE).fit_transform(cloud)
    assert not np.allclose(a, b)
    with pytest.raises(TypeError):
        TSNE(not_a_parameter=1).fit(cloud)


def test_exact_knn_matches_brute_force(cloud):
    idx, dist = exact_knn(cloud, 5)
    d = np.linalg.norm(cloud[:, None] - cloud[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_allclose(dist, np.sort(d, 1)[:, :5], rtol=1e-4, atol=1e-4)
    idx_c, dist_c = exact_knn(cloud, 5, metric="cosine")
    u = cloud / np.linalg.norm(cloud, axis=1, keepdims=True)
    dc = 1 - u @ u.T
    np.fill_diagonal(dc, np.inf)
    np.testing.assert_allclose(dist_c, np.sort(dc, 1)[:, :5], atol=1e-4)


def test_perplexity_too_large_falls_back_with_warning():
    x = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="perplexity"):
        y = TSNE(perplexity=50, **FAST_TSNE).fit_transform(x)
    assert y.shape == (20, 2)


def test_too_few_points_is_a_typed_error():
    x = np.ones((3, 4), np.float32) * np.arange(3)[:, None]
    for r in (TSNE(), UMAP()):
        with pytest.raises(EmbeddingError, match="at least 4 points"):
            r.fit(x)


def test_nan_and_inf_are_typed_errors(cloud):
    bad = cloud.copy()
    bad[7, 2] = np.nan
    bad[9, 0] = np.inf
    for r in (PCA(), TSNE(), UMAP()):
        with pytest.raises(EmbeddingError, match="2 of 160 vectors contain NaN or inf"):
            r.fit(bad)


def test_identical_vectors_fall_back_to_origin_with_warning():
    x = np.ones((30, 4), np.float32)
    for r in (TSNE(**FAST_TSNE), UMAP()):
        with pytest.warns(UserWarning, match="identical"):
            y = r.fit_transform(x)
        assert y.shape == (30, 2) and not y.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not PCA().fit_transform(x).any()  # PCA handles it natively: all zeros


@pytest.mark.parametrize("dim", [1, 4, "2"])
def test_bad_dim(dim):
    with pytest.raises(EmbeddingError, match="dim"):
        PCA(dim)


def test_unknown_method():
    with pytest.raises(EmbeddingError, match="unknown method 'isomap'"):
        make_reducer("isomap", 2, {}, 0)


def test_attention_map_needs_sequences(cloud):
    with pytest.raises(EmbeddingError, match="seq"):
        AttentionMap().fit(cloud)


@pytest.mark.slow
def test_umap_same_seed_same_coordinates_and_small_n_neighbors_fallback(cloud):
    a = UMAP(n_epochs=20).fit_transform(cloud)
    b = UMAP(n_epochs=20).fit_transform(cloud)
    np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="n_neighbors"):
        y = UMAP(n_neighbors=50, n_epochs=10).fit_transform(cloud[:20])
    assert y.shape == (20, 2)
