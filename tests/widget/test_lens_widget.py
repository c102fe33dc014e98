"""The research lens on the Python side of the widget: atlas and map on the wire, value norms, the
probe trait and command, ``qkviz.compare``, and what a standalone page embeds of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import qkviz
from _models import tiny_bert
from qkviz import QKViz, WidgetDataError
from qkviz.data import demo_sentences
from qkviz.wire import WidgetState, binary_to_array

from ._fakes import make_embedding


@pytest.fixture(scope="module")
def model():
    return tiny_bert()


@pytest.fixture(scope="module")
def emb(model):
    cap = qkviz.capture(model, demo_sentences(8), values=True, progress=False)
    return qkviz.embed(cap, "pca", progress=False)


def test_atlas_and_map_on_the_wire(emb):
    viz = QKViz(emb)
    meta = viz._meta
    names = meta["scores"]["names"]
    assert names[:7] == list(qkviz.analysis.SCORES) and "entropy_vw" in names
    values = binary_to_array(meta["scores"]["values"]).reshape(len(names), -1)
    scores = emb.head_scores()
    for c, (la, he) in enumerate(viz.state.cells):
        row = scores[(scores["layer"] == la) & (scores["head"] == he)].iloc[0]
        assert values[names.index("entropy"), c] == pytest.approx(row["entropy"], rel=1e-6)
    near = binary_to_array(meta["similar"]["nearest"]).reshape(len(viz.state.cells), -1)
    assert near.shape[1] == 3 and (near >= 0).all()
    assert all(c not in near[c] for c in range(len(near)))  # never a head itself
    xy = binary_to_array(meta["similar"]["xy"]).reshape(-1, 2)
    assert np.isfinite(xy).all()
    assert meta["has_values"] and meta["can_probe"]
    assert viz.head_scores is not None


def test_scores_can_be_off_given_or_refused_without_a_capture(emb):
    assert QKViz(emb, scores=False)._meta["scores"] is None
    custom = pd.DataFrame({"layer": [0, 1], "head": [0, 0], "my_score": [0.25, 0.75]})
    meta = QKViz(emb, scores=custom)._meta
    assert meta["scores"]["names"] == ["my_score"]
    v = binary_to_array(meta["scores"]["values"]).reshape(-1)
    assert v[0] == 0.25 and np.isnan(v[1])  # (0, 1) has no value
    bare = make_embedding(capture=False)
    assert QKViz(bare)._meta["scores"] is None and not QKViz(bare)._meta["can_probe"]
    with pytest.raises(WidgetDataError, match="capture"):
        QKViz(bare, scores=True)


def test_value_norm_colour_and_points(emb):
    viz = QKViz(emb)
    viz.color_by("value_norm")
    st = viz.state
    p = st.points(0, 2 * st.n_tokens)
    v = np.linalg.norm(emb.capture.v(*st.cells[0]), axis=1)
    expected = np.rint((v - v.min()) / (v.max() - v.min()) * 255)
    np.testing.assert_array_equal(p["vnorms"][: st.n_tokens], expected)
    np.testing.assert_array_equal(p["vnorms"][st.n_tokens :], expected)  # a key carries its token's ‖v‖ too
    no_values = make_embedding()
    with pytest.raises(WidgetDataError, match="value_norm"):
        QKViz(no_values, color="value_norm")


def test_probe_sets_the_trait_and_clears(emb):
    viz = QKViz(emb)
    placed = viz.probe("The cat sat on the mat.")
    wire = viz._probe
    m = placed.n_tokens
    assert wire["n_tokens"] == m == 9 and wire["display"][2] == "cat"
    coords = binary_to_array(wire["coords"]).reshape(len(viz.state.cells), 2 * m, 2)
    for c, key in enumerate(viz.state.cells):
        np.testing.assert_array_equal(coords[c], placed.coords(*key))
    att = binary_to_array(wire["attention"]).reshape(len(viz.state.cells), -1)
    np.testing.assert_allclose(att[3].reshape(m, m), placed.attention(*viz.state.cells[3], 0), rtol=1e-6)
    reply, _ = viz._qk_fetch({"kind": "probe", "text": "A dog."}, [])
    assert reply == {"n_tokens": viz.probed.n_tokens} and viz._probe["texts"] == ["A dog."]
    reply, _ = viz._qk_fetch({"kind": "probe", "text": ""}, [])
    assert reply == {"n_tokens": 0} and viz._probe == {} and viz.probed is None


def test_a_probe_that_cannot_be_placed_answers_with_an_error(emb):
    other = qkviz.capture(tiny_bert(seed=2), demo_sentences(4), progress=False)
    lone = qkviz.embed(other, "pca", progress=False)
    viz = QKViz(lone, model=tiny_bert(seed=9))  # not the model that made it
    reply, _ = viz._qk_fetch({"kind": "probe", "text": "hello"}, [])
    assert "does not reproduce" in reply["error"] and viz._probe == {}


def test_compare_links_two_widgets_and_scores_the_difference(emb, model):
    cap_b = qkviz.capture(tiny_bert(seed=4), demo_sentences(8), values=True, progress=False)
    emb_b = qkviz.embed(cap_b, "pca", progress=False)
    cmp = qkviz.compare(emb, emb_b)
    assert cmp.linked_points
    assert {"js", "delta_entropy"} <= set(cmp.scores.columns) and (cmp.scores["js"] > 0).all()
    for w in (cmp.left, cmp.right):
        assert "js" in w._meta["scores"]["names"] and w._meta["link_hover"]
    links = {(lk.source[1], lk.target[1]) for lk in _links(cmp)}
    assert {("layer", "layer"), ("head", "head"), ("_selection", "_selection"), ("_hover", "_hover")} <= links
    # the right embedding was rotated onto the left one: its layouts sit closer than unaligned
    from qkviz.project import disparity

    key = emb.cells[0]
    assert (
        disparity(cmp.right.embedding.coords(*key), emb.coords(*key))
        <= disparity(emb_b.coords(*key), emb.coords(*key)) + 1e-9
    )
    cmp.focus(1, 2)
    assert (cmp.right.layer, cmp.right.head) == (1, 2)


def test_compare_of_two_corpora_links_only_the_view(emb):
    cap_b = qkviz.capture(emb.capture._model_handle.get(), demo_sentences(14)[8:], progress=False)
    cmp = qkviz.compare(emb, qkviz.embed(cap_b, "pca", progress=False))
    assert not cmp.linked_points and cmp.scores["js"].isna().all()
    links = {lk.source[1] for lk in _links(cmp)}
    assert "layer" in links and "_selection" not in links


def _links(cmp):
    return cmp.links


def test_align_to_keeps_frames_so_placement_still_works(emb):
    model_b = tiny_bert(seed=4)
    cap_b = qkviz.capture(model_b, demo_sentences(8), progress=False)
    emb_b = qkviz.embed(cap_b, "pca", progress=False)
    aligned = qkviz.project.align_to(emb_b, emb)
    placed = aligned.place([demo_sentences(8)[3]], model=model_b)
    off, n = cap_b._seq_rows(3)
    for key in aligned.cells:
        np.testing.assert_allclose(placed.coords(*key)[:n], aligned.coords(*key)[off : off + n], atol=1e-4)


def test_the_page_embeds_atlas_map_and_value_norms(emb, tmp_path):
    from qkviz.export import snapshot

    st = WidgetState.from_embedding(emb)
    snap = snapshot(st, qkviz.wire.View(), top_k=2)
    meta = snap["state"]["_meta"]
    assert meta["scores"] is not None and meta["similar"] is not None
    assert "vnorms" in snap["points"][0]
    assert "_probe" not in snap["state"]  # a page has no kernel: no probe box
    path = QKViz(emb).save_html(tmp_path / "lens.html")
    assert path.stat().st_size > 0
