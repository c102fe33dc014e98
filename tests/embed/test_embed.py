"""qkviz.embed end to end on small synthetic heads (fast), and the Embedding container."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pandas as pd
import pytest

import qkviz
from qkviz import Embedding, embed
from qkviz.errors import EmbeddingError, StoreError

from ._fakes import capture_from_arrays, synthetic_capture

FAST = dict(early_exaggeration_iter=15, n_iter=20)


@pytest.fixture(scope="module")
def cap():
    return synthetic_capture()


@pytest.fixture()
def cache_dir(tmp_path):
    return tmp_path / "cache"


def test_pca_embedding_contract(cap):
    emb = embed(cap, "pca", cache=False, progress=False)
    assert emb.layers == cap.layers and emb.heads == cap.heads and emb.dim == 2
    n = len(cap.tokens)
    for l, h in emb.cells:
        y = emb.coords(l, h)
        assert y.dtype == np.float32 and y.shape == (2 * n, 2)
        assert np.abs(y).max() == pytest.approx(1.0) and np.abs(y).max() <= 1.0
        nm = emb.norms(l, h)
        assert nm.shape == (2 * n,) and nm.dtype == np.float32
    assert emb.params["translate"] is True and emb.params["align"] is True
    assert emb.tokens is cap.tokens
    np.testing.assert_allclose(emb.attention(1, 2, 0), cap.attention(1, 2, 0))
    assert qkviz.embed is embed


@pytest.mark.parametrize("dim", [2, 3])
def test_same_seed_identical_coordinates_and_executor_agnostic(cap, dim):
    a = embed(cap, "tsne", dim, cache=False, progress=False, executor="serial", **FAST)
    with cf.ThreadPoolExecutor(2) as ex:
        b = embed(cap, "tsne", dim, cache=False, progress=False, executor=ex, **FAST)
    for key in a.cells:
        np.testing.assert_array_equal(a.coords(*key), b.coords(*key))
    assert a.coords(0, 0).shape[1] == dim


def test_faithfulness_table_and_chance(cap):
    emb = embed(cap, "pca", cache=False, progress=False)
    df = emb.faithfulness(k=3)
    assert list(df.columns) == ["layer", "head", "recall", "spearman", "chance_recall"]
    assert len(df) == len(cap.layers) * len(cap.heads)
    assert df["chance_recall"].between(0, 1).all() and df["recall"].between(0, 1).all()


def test_cache_hit_then_any_change_misses(cap, cache_dir):
    a = embed(cap, "tsne", cache=cache_dir, progress=False, executor="serial", **FAST)
    assert a.timings["heads_computed"] == 6
    b = embed(cap, "tsne", cache=cache_dir, progress=False, executor="serial", **FAST)
    assert b.timings["heads_cached"] == 6 and b.timings["heads_computed"] == 0
    for key in a.cells:
        np.testing.assert_array_equal(a.coords(*key), b.coords(*key))
    changes = [
        dict(perplexity=5),
        dict(random_state=1),
        dict(translate=False),
        dict(scale=2.0),
        dict(metric="euclidean"),
        dict(dim=3),
    ]
    for change in changes:
        kw = {**FAST, **change}
        c = embed(cap, "tsne", cache=cache_dir, progress=False, executor="serial", heads=[0], layers=[0], **kw)
        assert c.timings["heads_computed"] == 1, change


def test_alignment_makes_heads_look_alike(cap):
    from qkviz.project import disparity

    un = embed(cap, "pca", align=False, cache=False, progress=False)
    al = embed(cap, "pca", align=True, cache=False, progress=False)
    d_un = np.mean([disparity(un.coords(*a), un.coords(*b)) for a, b in zip(un.cells, un.cells[1:])])
    d_al = np.mean([disparity(al.coords(*a), al.coords(*b)) for a, b in zip(al.cells, al.cells[1:])])
    assert d_al < d_un
    # rotations are orthogonal and never change faithfulness
    for r in al.rotations.values():
        np.testing.assert_allclose(r @ r.T, np.eye(2), atol=1e-8)
    pd.testing.assert_frame_equal(un.faithfulness(3), al.faithfulness(3), atol=1e-9)


def test_callback_stops_early_with_partial_result(cap):
    seen = []

    def cb(done, total, head):
        seen.append((done, total, head))
        return done >= 2

    emb = embed(cap, "pca", cache=False, progress=False, callback=cb)
    assert len(emb.cells) == 2 and seen[-1][:2] == (2, 6)


def test_save_load_round_trip(cap, tmp_path):
    emb = embed(cap, "pca", dim=3, cache=False, progress=False)
    f = emb.faithfulness()
    path = emb.save(tmp_path / "e.qke")
    back = Embedding.load(path)
    assert back.capture is None and back.dim == 3 and back.method == "pca"
    for key in emb.cells:
        np.testing.assert_array_equal(back.coords(*key), emb.coords(*key))
        np.testing.assert_array_equal(back.norms(*key), emb.norms(*key))
        np.testing.assert_allclose(back.rotations[key], emb.rotations[key])
        assert back.transforms[key].scale == emb.transforms[key].scale
    pd.testing.assert_frame_equal(back.faithfulness(), f)
    pd.testing.assert_frame_equal(back.tokens, cap.tokens)
    with pytest.raises(EmbeddingError, match="capture"):
        back.faithfulness(k=2)
    with pytest.raises(EmbeddingError, match="capture"):
        back.attention(0, 0, 0)
    with pytest.raises(StoreError):
        Embedding.load(tmp_path / "missing")


def test_from_coords_boxes_each_head():
    tokens = pd.DataFrame({"seq": [0, 0, 1, 1, 1], "pos": [0, 1, 0, 1, 2]})
    rng = np.random.default_rng(0)
    emb = Embedding.from_coords({(0, 1): rng.normal(size=(10, 3)) * 50 + 7}, tokens)
    y = emb.coords(0, 1)
    assert y.shape == (10, 3) and np.abs(y).max() == pytest.approx(1.0)
    np.testing.assert_allclose((y.max(0) + y.min(0))[np.argmax(y.max(0) - y.min(0))], 0, atol=1e-6)
    assert list(emb.sequences["n_tokens"]) == [2, 3]
    assert not emb.norms(0, 1).any()
    with pytest.raises(EmbeddingError, match="point=10"):
        Embedding.from_coords({(0, 0): np.zeros((9, 2))}, tokens)
    with pytest.raises(EmbeddingError, match="no layout"):
        emb.coords(5, 5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(method="isomap"), "unknown method"),
        (dict(dim=4), "dim must be 2 or 3"),
        (dict(metric="manhattan"), "metric"),
        (dict(method="pca", metric="cosine"), "PCA"),
        (dict(layers=[9]), "not captured"),
        (dict(heads=[(0, 1)]), "heads must be a whole number"),
        (dict(layers=[0.5]), "layers must be a whole number"),
        (dict(scale="median"), "scale"),
        (dict(executor=42), "executor"),
        (dict(cache=3.5), "cache"),
    ],
)
def test_bad_arguments_are_typed_errors(cap, kw, match):
    with pytest.raises(EmbeddingError, match=match):
        embed(cap, **{"progress": False, "cache": False, **kw})


def test_not_a_capture():
    with pytest.raises(EmbeddingError, match="needs a qkviz Capture"):
        embed(np.zeros((3, 4)))


def test_non_finite_head_names_the_head():
    base = synthetic_capture(n_layers=1, n_heads=2)
    q = np.stack([[base.q(0, h) for h in base.heads]])
    k = np.stack([[base.k(0, h) for h in base.heads]])
    q[0, 1, 3, 0] = np.nan
    c = capture_from_arrays(q, k, base.tokens["seq"].to_numpy())
    with pytest.raises(EmbeddingError, match="layer 0 head 1: 1 of"):
        embed(c, "pca", cache=False, progress=False)


@pytest.mark.parametrize("neighbourhood", [{}, {"perplexity": 30}])
def test_tiny_head_tsne_neighbourhood_falls_back(recwarn, neighbourhood):
    c = synthetic_capture(n_layers=1, n_heads=1, lens=(4, 3))
    emb = embed(c, "tsne", cache=False, progress=False, **FAST, **neighbourhood)
    assert emb.coords(0, 0).shape == (14, 2)
    word = "perplexity" if neighbourhood else "n_neighbors"
    assert any(word in str(w.message) for w in recwarn)


def test_attention_method_runs_on_small_heads(cap):
    emb = embed(cap, "attention", cache=False, progress=False, executor="serial", layers=[0], heads=[0, 1], **FAST)
    assert emb.method == "attention" and emb.coords(0, 1).shape == (2 * len(cap.tokens), 2)
