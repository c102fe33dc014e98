"""``Embedding.place``: new inputs into existing layouts, through each reducer's own transform.

Fast tests use a tiny random BERT (a model object, so the capture's weak handle is exercised);
the slow ones measure the placement tolerance of t-SNE, UMAP and the attention map on MiniLM.
"""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from _models import tiny_bert
from qkviz import Embedding, EmbeddingError, capture, embed
from qkviz.data import demo_sentences
from qkviz.joint import dot_lift
from qkviz.project._knn import knn_query

TEXTS = demo_sentences(12)
FAST_TSNE = dict(n_iter=30)


@pytest.fixture(scope="module")
def model():
    return tiny_bert()


@pytest.fixture(scope="module")
def cap(model):
    return capture(model, TEXTS, progress=False)


def _displacement(emb, placed, seq, placed_seq=0):
    """Per point of ``seq`` (queries and keys, every head): distance between its two positions."""
    cap = emb.capture
    off, n = cap._seq_rows(seq)
    p_off, p_n = placed.capture._seq_rows(placed_seq)
    assert n == p_n
    out = []
    for key in emb.cells:
        a, b = emb.coords(*key), placed.coords(*key)
        old = np.concatenate([a[off : off + n], a[cap.n_tokens + off : cap.n_tokens + off + n]])
        new = np.concatenate([b[p_off : p_off + n], b[placed.n_tokens + p_off : placed.n_tokens + p_off + n]])
        out.append(np.linalg.norm(old - new, axis=1))
    return np.concatenate(out)


def test_pca_places_a_known_sentence_exactly_where_it_is(cap):
    emb = embed(cap, "pca", cache=False, progress=False)
    placed = emb.place([TEXTS[5], "A sentence the corpus has never seen."])
    assert placed.cells == emb.cells and placed.dim == emb.dim
    assert placed.n_tokens == len(placed.capture.tokens) and placed.params["placed"] is True
    assert _displacement(emb, placed, 5).max() < 1e-4
    for key in emb.cells:  # the frame is the head's: queries then keys, same transform and rotation
        assert placed.coords(*key).shape == (2 * placed.n_tokens, 2)
        assert placed.transforms[key] is emb.transforms[key]
        np.testing.assert_array_equal(placed.frames[key].rotation, emb.frames[key].rotation)
    # the new sentence has its own exact attention for the lines
    assert placed.attention(0, 0, 1).shape[0] == int(placed.sequences["n_tokens"].iloc[1])


def test_pca_dot_and_euclidean_3d_are_exact_too(cap):
    for kw in (dict(metric="euclidean"), dict(dim=3), dict(align=False)):
        emb = embed(cap, "pca", cache=False, progress=False, **kw)
        assert _displacement(emb, emb.place([TEXTS[2]]), 2).max() < 1e-4, kw


def test_tsne_places_a_known_sentence_next_to_itself(cap):
    emb = embed(cap, "tsne", cache=False, progress=False, executor="serial", layers=[1], **FAST_TSNE)
    d = _displacement(emb, emb.place([TEXTS[7]]), 7)
    # the box is [-1, 1]: the median point lands within 2.5% of its width of its own position
    assert np.median(d) < 0.05, np.median(d)


def test_a_cache_hit_places_like_a_fresh_fit(cap, tmp_path):
    """A layout from the cache has no fitted reducer: place anchors one, so both agree."""
    kw = dict(cache=tmp_path, progress=False, executor="serial", layers=[0], **FAST_TSNE)
    fresh = embed(cap, "tsne", **kw)
    hit = embed(cap, "tsne", **kw)
    assert hit.timings["heads_cached"] == len(hit.cells)
    a, b = fresh.place([TEXTS[1]]), hit.place([TEXTS[1]])
    for key in fresh.cells:
        np.testing.assert_allclose(a.coords(*key), b.coords(*key), atol=1e-5)


def test_saved_embedding_keeps_frames_and_places(cap, tmp_path):
    path = cap.save(tmp_path / "cap.qkv")
    from qkviz import load

    disk = load(path)
    emb = embed(disk, "pca", cache=False, progress=False)
    scores = emb.head_scores()
    emb.save(tmp_path / "emb")
    back = Embedding.load(tmp_path / "emb")
    for key in emb.cells:
        f, g = emb.frames[key], back.frames[key]
        np.testing.assert_allclose(f.origin, g.origin)
        np.testing.assert_allclose(f.rotation, g.rotation)
        assert f.scale == pytest.approx(g.scale)
    np.testing.assert_allclose(back.head_scores()["entropy"], scores["entropy"])
    # the loaded capture has no live model handle: the model is passed
    with pytest.raises(EmbeddingError, match="model="):
        back.place(["x y z"])


def test_the_frame_maps_raw_layouts_to_drawn_ones(cap):
    emb = embed(cap, "pca", cache=False, progress=False)
    for key in emb.cells:
        f = emb.frames[key]
        drawn = emb.coords(*key)
        np.testing.assert_allclose(f.apply(f.invert(drawn)), drawn, atol=1e-6)
        assert np.abs(drawn).max() == pytest.approx(1.0, abs=1e-6)


def test_model_resolution_and_the_same_model_check(cap, model):
    emb = embed(cap, "pca", cache=False, progress=False, layers=[0])
    other = tiny_bert(seed=1)
    with pytest.raises(EmbeddingError, match="does not reproduce"):
        emb.place(["another text"], model=other)
    # a capture made from a model object forgets it when the model is gone
    m, tok = tiny_bert(seed=3)
    lone = capture((m, tok), TEXTS[:4], progress=False)
    lone_emb = embed(lone, "pca", cache=False, progress=False)
    del m
    gc.collect()
    with pytest.raises(EmbeddingError, match="no longer alive"):
        lone_emb.place(["text"])


def test_from_coords_embeddings_cannot_place(cap):
    xy = {(0, 0): np.random.default_rng(0).normal(size=(2 * cap.n_tokens, 2))}
    emb = Embedding.from_coords(xy, cap.tokens, capture=cap)
    with pytest.raises(EmbeddingError, match="custom"):
        emb.place(["text"])
    with pytest.raises(EmbeddingError, match="needs the capture"):
        Embedding.from_coords(xy, cap.tokens).place(["text"])


def test_captures_pickle_without_their_model(cap):
    assert cap._model_handle is not None
    back = pickle.loads(pickle.dumps(cap))
    assert back._model_handle is None and back._memo == {}
    np.testing.assert_array_equal(back.q(0, 0), cap.q(0, 0))


def test_dot_lift_of_new_points_uses_the_reference_norm():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    ref = dot_lift(q, k)
    m = float(np.linalg.norm(k, axis=1).max())
    again = dot_lift(q[:2], k[:2], max_norm=m)
    np.testing.assert_allclose(again[:2], ref[:2], atol=1e-6)
    np.testing.assert_allclose(again[2:], ref[5:7], atol=1e-6)


def test_knn_query_finds_duplicates_and_respects_candidates():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 6)).astype(np.float32)
    for metric in ("euclidean", "cosine"):
        idx, dist = knn_query(ref, ref[[3, 7]], 4, metric=metric)
        assert idx[:, 0].tolist() == [3, 7]
        assert (dist[:, 0] < 5e-3).all()  # 0 up to the rounding of |a|² - 2a·b + |b|²
        assert (np.diff(dist, axis=1) >= -1e-6).all()
        idx, _ = knn_query(ref, ref[[3]], 5, metric=metric, candidates=np.arange(25, 50))
        assert (idx >= 25).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tsne", "umap", "attention"])
def test_placement_tolerance_on_minilm(minilm_capture, demo_texts, method):
    """Measured (docs/how-to/probe.md): a sentence of the corpus lands close to its own points.

    With embed's defaults on MiniLM (84 sentences), the median point moved by 0.011 (t-SNE), 0.007
    (UMAP) and 0.08 (attention-guided: placed by vector neighbourhoods alone) in the [-1, 1] box.
    """
    emb = embed(minilm_capture, method, progress=False, layers=[0, 3], heads=[2, 7])
    d = _displacement(emb, emb.place([demo_texts[40]]), 40)
    limit = {"tsne": 0.03, "umap": 0.03, "attention": 0.2}[method]
    assert np.median(d) < limit, (method, float(np.median(d)))


@pytest.mark.slow
def test_named_model_is_reloaded_for_a_loaded_capture(minilm_capture, demo_texts, tmp_path):
    from qkviz import load

    disk = load(minilm_capture.save(tmp_path / "m.qkv"))
    emb = embed(disk, "pca", progress=False, layers=[1])
    placed = emb.place([demo_texts[0]])
    assert _displacement(emb, placed, 0).max() < 1e-4


@pytest.mark.parametrize("family", ["bloom", "gemma2", "gpt_oss"])
def test_score_families_place_and_score_exactly(family):
    """ALiBi (augmented vectors), soft-capping (no key translation) and sinks: a corpus sentence
    placed again lands on its own PCA points, and the head scores read the family's attention."""
    from capture import _zoo

    model = _zoo.build(family)
    texts = TEXTS[:6]
    cap = capture(model, texts, progress=False)
    emb = embed(cap, "pca", cache=False, progress=False)
    assert _displacement(emb, emb.place([texts[4]]), 4).max() < 1e-4
    scores = cap.head_scores()
    for _, row in scores.head(2).iterrows():
        a = [cap.attention(int(row["layer"]), int(row["head"]), s) for s in range(len(texts))]
        first = np.concatenate([x[:, 0] for x in a]).mean()
        assert row["first_token"] == pytest.approx(first, rel=1e-5)
