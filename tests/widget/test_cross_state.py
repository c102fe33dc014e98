"""The widget state of an encoder-decoder embedding: cells per attention, absent points parked."""

from __future__ import annotations

import numpy as np
import pytest

import qkviz
from capture import _zoo
from qkviz._capture._run import capture
from qkviz.data import demo_sentences
from qkviz.wire import WidgetState

TARGETS = ["Le chat.", "Un chien aboie.", "Il pleut beaucoup aujourd'hui."]


@pytest.fixture(scope="module")
def emb():
    model, tok = _zoo.build("bart")
    cap = capture((model, tok), demo_sentences(3), targets=TARGETS, batch_size=3, progress=False)
    return qkviz.embed(cap, method="pca", layers=[0], heads=[1, 2], executor="serial", cache=False, progress=False)


def test_cells_are_numbered_attention_after_attention(emb):
    st = WidgetState.from_embedding(emb)
    assert [a["name"] for a in st.attns] == ["encoder", "decoder", "cross"]
    assert [a["cell_offset"] for a in st.attns] == [0, 2, 4]
    assert st.cells[4] == ("cross", 0, 1)
    assert st.cell_index(0, 2, "cross") == 5
    assert st.n_points == 6 * 2 * emb.n_tokens
    meta = st.meta_wire()
    assert meta["attns"][2]["query_stream"] == 1 and meta["attns"][2]["key_stream"] == 0
    assert meta["streams"] == ["encoder", "decoder"]


def test_absent_points_are_parked_outside_every_cell(emb):
    st = WidgetState.from_embedding(emb)
    n = emb.n_tokens
    ok = emb.present("cross")
    c = st.cell_index(0, 1, "cross")
    xy = st.coords[c * 2 * n : (c + 1) * 2 * n]
    assert (xy[~ok] == 100).all()
    np.testing.assert_allclose(xy[ok], emb.coords(0, 1, "cross")[ok])


def test_selection_names_the_attention(emb):
    st = WidgetState.from_embedding(emb)
    n = emb.n_tokens
    c = st.cell_index(0, 2, "cross")
    dec_query = int(np.flatnonzero(emb.tokens["stream"].to_numpy() == 1)[0])
    df = st.selected(np.array([c * 2 * n + dec_query]))
    assert df["attn"].tolist() == ["cross"] and df["kind"].tolist() == ["query"] and df["head"].tolist() == [2]
    assert np.isfinite(df["norm"]).all()


def test_attention_requests_name_the_attention(emb):
    from qkviz.widget._commands import dispatch

    st = WidgetState.from_embedding(emb)
    reply, _ = dispatch(st, {"kind": "attention", "layer": 0, "head": 1, "seq": 1, "attn": "cross"})
    assert "error" not in reply
    seq = emb.sequences.iloc[1]
    n_enc, n = int(seq["n_encoder"]), int(seq["n_tokens"])
    w = reply["weights"]
    shape = list(w["shape"]) if isinstance(w, dict) else list(np.shape(w))
    assert shape == [n - n_enc, n_enc]  # decoder queries x encoder keys


def test_static_page_embeds_top_keys_per_attention(emb, tmp_path):
    from qkviz.export._snapshot import snapshot
    from qkviz.wire import View

    st = WidgetState.from_embedding(emb)
    snap = snapshot(st, View(), top_k=3)
    assert [t.get("attn") for t in snap["topk"]][:2] == ["encoder", "encoder"]
    path = qkviz.save_html(emb, tmp_path / "bart.html")
    assert path.stat().st_size > 10_000


def test_each_attention_has_its_own_draw_order_and_sample(emb, monkeypatch):
    """Level of detail per attention: cross-attention's sample holds decoder queries and encoder
    keys only (the points it has), interleaved; a sample request stays within one attention."""
    from qkviz.wire import _lod

    monkeypatch.setattr(_lod, "CELL_MIN", 8)
    monkeypatch.setattr(_lod, "MATRIX_POINTS", 6 * 12)
    st = WidgetState.from_embedding(emb)
    n = emb.n_tokens
    for name in ("encoder", "decoder", "cross"):
        ok = emb.present(name)
        order, m = st.orders[name], st.sample_sizes[name]
        assert sorted(order.tolist()) == list(range(2 * n)) and m == min(36, int(ok.sum()))  # 72 over 2 cells
        assert ok[order[: ok.sum()]].all()  # the points it has come first
        first = order[:m]
        # queries and keys alternate in proportion to the counts the attention has of each
        nq, nk = int(ok[:n].sum()), int(ok[n:].sum())
        assert abs(int((first < n).sum()) - m * nq / (nq + nk)) <= 1
    a = st.attns[2]
    s = st.sample(a["cell_offset"], a["cell_offset"] + 2)
    assert s["coords"].shape == (2, st.sample_sizes["cross"], 2)
    assert (np.abs(s["coords"]) <= 1).all()  # no parked point in the cross sample
    meta = st.meta_wire()
    assert meta["attns"][2]["sample_points"] == st.sample_sizes["cross"]
    with pytest.raises(IndexError):
        st.sample(0, 6)  # the default sample of cells of several attentions is not one sample


def test_a_sampled_page_holds_each_attentions_own_points_in_its_draw_order(emb):
    """A page over its size budget: per attention, the held points it has, in its own draw order,
    first; its sample chunks start at its first cell and hold no parked point."""
    from qkviz.export import _lod
    from qkviz.export._snapshot import head_details
    from qkviz.wire import View, binary_to_array

    st = WidgetState.from_embedding(emb)
    n = emb.n_tokens
    sample = _lod.make_sample(st, np.zeros(len(st.cells), bool), budget=n // 3)
    assert 0 < len(sample.seqs) < len(emb.sequences)
    held = np.zeros(2 * n, bool)
    held[sample.tokens] = held[n + sample.tokens] = True
    snap = _lod.lod_snapshot(st, View(), head_details(st, 2), 2, sample)
    meta = snap["state"]["_meta"]
    for a, wire in zip(st.attns, meta["attns"]):
        order, m = binary_to_array(wire["order"]), wire["sample_points"]
        ok = emb.present(a["name"])
        want = st.orders[a["name"]][(held & ok)[st.orders[a["name"]]]]
        np.testing.assert_array_equal(order[:m], want)  # the widget's order, restricted
        assert m > 0 and np.array_equal(np.sort(order), np.arange(2 * n))
        chunks = [c for c in snap["sample"] if a["cell_offset"] <= c["start"] < a["cell_offset"] + 2]
        assert chunks[0]["start"] == a["cell_offset"]
        for c in chunks:
            xy = binary_to_array(c["coords"])
            assert xy.shape[1] == m and (np.abs(xy) <= 1.0 + 1e-6).all()  # nothing parked at 100
