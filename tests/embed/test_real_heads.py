"""On real captures: executors (process pool over a saved store, Dask), alignment and faithfulness
on MiniLM heads."""

from __future__ import annotations

import numpy as np
import pytest

from qkviz import embed
from qkviz.project import disparity

FAST = dict(early_exaggeration_iter=15, n_iter=20)


@pytest.fixture(scope="module")
def saved_tiny(tiny_capture, tmp_path_factory):
    from qkviz._capture import load

    path = tiny_capture.save(tmp_path_factory.mktemp("cap") / "tiny.qkv")
    return load(path)


@pytest.mark.slow
def test_process_pool_reads_heads_from_the_store_and_matches_serial(saved_tiny):
    a = embed(saved_tiny, "tsne", cache=False, progress=False, executor="serial", layers=[1], **FAST)
    b = embed(saved_tiny, "tsne", cache=False, progress=False, layers=[1], **FAST)  # default pool
    for key in a.cells:
        np.testing.assert_array_equal(a.coords(*key), b.coords(*key))


@pytest.mark.slow
def test_dask_local_cluster(tiny_capture):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            host="127.0.0.1", n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        a = embed(tiny_capture, "tsne", cache=False, progress=False, executor=client, layers=[0], **FAST)
    b = embed(tiny_capture, "tsne", cache=False, progress=False, executor="serial", layers=[0], **FAST)
    for key in a.cells:
        np.testing.assert_array_equal(a.coords(*key), b.coords(*key))


def _adjacent_disparity(emb):
    return float(
        np.mean([disparity(emb.coords(l, h), emb.coords(l, h + 1)) for l in emb.layers for h in emb.heads[:-1]])
    )


@pytest.mark.slow
def test_alignment_brings_adjacent_minilm_heads_closer(minilm_capture):
    un = embed(minilm_capture, "pca", align=False, cache=False, progress=False)
    al = embed(minilm_capture, "pca", align=True, cache=False, progress=False)
    d_un, d_al = _adjacent_disparity(un), _adjacent_disparity(al)
    assert d_al < 0.8 * d_un, (d_al, d_un)


@pytest.mark.slow
def test_alignment_on_minilm_tsne_heads(minilm_capture):
    kw = dict(cache=False, progress=False, layers=[0, 1], heads=[0, 1], executor="serial", n_iter=30)
    un = embed(minilm_capture, "tsne", align=False, **kw)
    al = embed(minilm_capture, "tsne", align=True, **kw)
    assert _adjacent_disparity(al) < _adjacent_disparity(un)


@pytest.mark.slow
def test_faithfulness_of_defaults_on_minilm(minilm_capture):
    """The measured ordering behind the defaults (docs/concepts/faithfulness.md), on two heads."""
    kw = dict(cache=False, progress=False, layers=[1], heads=[0, 7], executor="serial")

    def recall(method, **extra):
        return embed(minilm_capture, method, **kw, **extra).faithfulness()

    pca_dot, pca_euc = recall("pca"), recall("pca", metric="euclidean")
    tsne, att = recall("tsne"), recall("attention")
    chance = pca_dot["chance_recall"]
    assert (chance < 0.2).all()
    assert (pca_euc["recall"] > chance + 0.05).all()
    assert pca_dot["recall"].mean() > pca_euc["recall"].mean() + 0.05  # the dot lift orders keys by q.k
    assert (tsne["recall"] > 0.35).all()  # AttentionViz's recipe: ~0.33
    assert (att["recall"] > 0.5).all() and (att["spearman"] > 0).all()


def test_saved_embedding_reattaches_its_saved_capture(saved_tiny, tmp_path):
    from qkviz import Embedding

    emb = embed(saved_tiny, "pca", cache=False, progress=False)
    back = Embedding.load(emb.save(tmp_path / "e.qke"))
    assert back.capture is not None
    np.testing.assert_allclose(back.attention(1, 2, 0), saved_tiny.attention(1, 2, 0))
    assert len(back.faithfulness(k=2)) == len(saved_tiny.layers) * len(saved_tiny.heads)
