"""Level of detail without a browser: the draw order, the sample, forced points, lazy heads.

The sampler (``qkviz.wire._lod``) is tested for the properties the matrix relies on (a bounded,
stratified, interleaved prefix; forced points kept), and ``WidgetState`` for answering every point
request from the embedding one head at a time, on synthetic grids made without a model.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from _fakes import capture_from_arrays
from qkviz import Embedding
from qkviz.widget import QKViz, _commands
from qkviz.wire import WidgetState, _lod, binary_to_array
from qkviz.wire._lod import CELL_MAX, CELL_MIN, draw_order, sample_size, with_forced


def uneven_tokens(n_seqs=300, seed=0, lo=3, hi=60):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi, n_seqs)
    seq = np.repeat(np.arange(n_seqs), lengths)
    pos = np.concatenate([np.arange(x) for x in lengths])
    return seq, pos, lengths


def synthetic_embedding(n_layers, n_heads, n_seqs=40, seed=0, capture=None, norms=True, lengths=(5, 40)):
    seq, pos, _ = uneven_tokens(n_seqs, seed, *lengths)
    n = len(seq)
    tokens = pd.DataFrame(
        {"seq": seq.astype("int32"), "pos": pos.astype("int32"), "token": [f"w{i % 97}" for i in range(n)]}
    )
    tokens["display"] = tokens["token"]
    rng = np.random.default_rng(seed)
    cells = [(la, he) for la in range(n_layers) for he in range(n_heads)]
    coords = {c: rng.uniform(-1, 1, (2 * n, 2)).astype(np.float32) for c in cells}
    nm = {c: rng.uniform(0.5, 2, 2 * n).astype(np.float32) for c in cells} if norms else None
    return Embedding.from_coords(coords, tokens, norms=nm, capture=capture)


# ---- the draw order -------------------------------------------------------------------------------


def test_draw_order_is_every_point_once_with_queries_and_keys_alternating():
    seq, pos, _ = uneven_tokens()
    n = len(seq)
    order = draw_order(seq, pos)
    assert order.dtype == np.uint32 and sorted(order.tolist()) == list(range(2 * n))
    is_key = (order >= n).astype(int)
    # in every prefix the two kinds differ by at most one point: neither covers the other
    drawn_keys = np.cumsum(is_key)
    drawn = np.arange(1, 2 * n + 1)
    assert np.abs(drawn - 2 * drawn_keys).max() <= 1


@pytest.mark.parametrize("m", [64, 500, 1481, 4000])
def test_every_prefix_is_stratified_by_sequence(m):
    seq, pos, lengths = uneven_tokens(seed=1)
    n = len(seq)
    order = draw_order(seq, pos, seed=3)
    for kind in (0, 1):
        first = order[:m]
        pts = first[(first >= n) == bool(kind)] - kind * n
        counts = np.bincount(seq[pts], minlength=len(lengths))
        share = lengths * len(pts) / n
        # a stratified sample gives each sequence its share to within a couple of points; a plain
        # random sample of the same size misses by far more (the check can fail)
        assert np.abs(counts - share).max() <= 3, (m, kind)
        rng = np.random.default_rng(0)
        random = np.bincount(seq[rng.choice(n, len(pts), replace=False)], minlength=len(lengths))
        assert np.abs(counts - share).mean() < np.abs(random - share).mean()


def test_no_aliasing_with_sequences_of_equal_length():
    # 1000 sequences of 32 tokens: a systematic step would keep hitting the same positions
    seq, pos = np.repeat(np.arange(1000), 32), np.tile(np.arange(32), 1000)
    order = draw_order(seq, pos)
    first = order[:2048]
    q = first[first < 32_000]
    hist = np.bincount(pos[q], minlength=32)
    assert hist.min() > 0.5 * hist.mean() and hist.max() < 1.6 * hist.mean()


def test_same_seed_same_order_and_seeds_differ():
    seq, pos, _ = uneven_tokens(50)
    np.testing.assert_array_equal(draw_order(seq, pos, seed=1), draw_order(seq, pos, seed=1))
    assert not np.array_equal(draw_order(seq, pos, seed=1), draw_order(seq, pos, seed=2))


def test_absent_points_go_last_and_the_rest_stays_stratified():
    seq, pos, lengths = uneven_tokens(100, seed=2)
    n = len(seq)
    valid = np.ones(2 * n, bool)
    valid[:n][seq % 3 == 0] = False  # queries of every third sequence do not take part (NaN)
    order = draw_order(seq, pos, valid=valid)
    n_valid = int(valid.sum())
    assert valid[order[:n_valid]].all() and not valid[order[n_valid:]].any()
    first = order[:400]
    q = first[first < n]
    assert (seq[q] % 3 != 0).all()
    with pytest.raises(ValueError):
        draw_order(seq, pos, valid=valid[:-1])


def test_sample_size_is_bounded():
    for per, cells in [(40_000, 270), (40_000, 1024), (200_000, 4), (10, 4), (22_000, 72)]:
        m = sample_size(per, cells)
        assert m <= min(per, CELL_MAX)
        assert m >= min(per, CELL_MIN)
        assert m * cells <= max(_lod.MATRIX_POINTS, cells * CELL_MIN)


def test_with_forced_keeps_the_sample_and_adds_forced_points_in_draw_order():
    seq, pos, _ = uneven_tokens(30)
    order = draw_order(seq, pos)
    rank = np.argsort(order)
    force = np.array([int(order[-1]), int(order[5]), int(order[-7]), int(order[-300])])
    s = with_forced(order, 100, force)
    np.testing.assert_array_equal(s[:100], order[:100])
    extra = s[100:]
    assert set(extra.tolist()) == {int(order[-1]), int(order[-7]), int(order[-300])}  # order[5] was in
    assert (np.diff(rank[extra]) > 0).all()  # interleaving kept
    assert len(with_forced(order, 100, force, limit=1)) == 101
    with pytest.raises(IndexError):
        with_forced(order, 10, [len(order)])


# ---- the widget state answers from the embedding, one head at a time --------------------------------


@pytest.fixture
def small_budget(monkeypatch):
    """A matrix budget small enough that a small grid is sampled (60 points per cell here)."""
    monkeypatch.setattr(_lod, "MATRIX_POINTS", 6 * 60)
    monkeypatch.setattr(_lod, "CELL_MIN", 16)


def test_sample_reply_is_the_draw_order_prefix_of_every_cell(small_budget):
    emb = synthetic_embedding(2, 3)
    st = WidgetState.from_embedding(emb)
    per = 2 * emb.n_tokens
    assert st.sample_points == 60 < per
    s = st.sample(1, 4)
    assert s["coords"].shape == (3, 60, 2) and s["norms"].shape == (3, 60)
    for i, c in enumerate(range(1, 4)):
        np.testing.assert_array_equal(s["coords"][i], emb.coords(*st.cells[c])[st.order[:60]])
        np.testing.assert_array_equal(s["norms"][i], st.head_norms(c)[st.order[:60]])
    # searched points: the same explicit points of every cell
    pts = [3, per - 1]
    s = st.sample(0, 6, pts)
    np.testing.assert_array_equal(s["coords"][5], emb.coords(*st.cells[5])[pts])
    meta = QKViz(emb)._meta
    assert meta["sample_points"] == 60 and meta["forced_points"] == _lod.FORCED_POINTS
    np.testing.assert_array_equal(binary_to_array(meta["order"]), st.order)


def test_point_requests_through_the_handlers(small_budget):
    emb = synthetic_embedding(2, 2)
    viz = QKViz(emb)
    st = viz.state
    per = 2 * st.n_tokens
    msg, bufs = _commands.dispatch(st, {"kind": "sample", "start": 0, "stop": 4})
    coords = np.frombuffer(bufs[0], np.float32).reshape(4, st.sample_points, 2)
    np.testing.assert_array_equal(coords[3], emb.coords(1, 1)[st.order[: st.sample_points]])
    ids = [5, per + 7, 3 * per + per - 1]
    msg, bufs = _commands.dispatch(st, {"kind": "points_at", "points": ids})
    got = np.frombuffer(bufs[0], np.float32).reshape(3, 2)
    np.testing.assert_array_equal(got, np.stack([emb.coords(0, 0)[5], emb.coords(0, 1)[7], emb.coords(1, 1)[per - 1]]))
    # a focused head whole, across a chunk boundary inside it
    msg, bufs = _commands.dispatch(st, {"kind": "points", "start": 2 * per + 10, "stop": 3 * per})
    np.testing.assert_array_equal(np.frombuffer(bufs[0], np.float32).reshape(-1, 2), emb.coords(1, 0)[10:])
    for bad in (
        {"kind": "sample", "start": 0, "stop": 9},
        {"kind": "sample", "start": 0, "stop": 1, "points": [per]},
        {"kind": "points_at", "points": [4 * per]},
        {"kind": "points_at", "points": "1,2"},
    ):
        assert "error" in _commands.dispatch(st, bad)[0]


def test_selected_rows_read_the_full_data(small_budget):
    emb = synthetic_embedding(2, 2)
    viz = QKViz(emb)
    per = 2 * emb.n_tokens
    far = int(viz.state.order[-1])  # the last point in draw order: never in the matrix sample
    viz.select([per + far])
    row = viz.selected.iloc[0]
    assert row["x"] == emb.coords(0, 1)[far, 0] and row["layer"] == 0 and row["head"] == 1


def test_missing_heads_come_back_parked_and_are_marked():
    emb = synthetic_embedding(1, 2)
    coords = {(0, 0): emb.coords(0, 0)}
    part = Embedding(coords, emb.tokens)  # head (0, 1) never made it: only layer 0 head 0
    big = Embedding({**coords, (1, 1): emb.coords(0, 1)}, emb.tokens)  # grid 2x2 with two holes
    st = WidgetState.from_embedding(big)
    assert st.missing.tolist() == [0, 1, 1, 0]
    assert (st.sample(1, 2)["coords"] == 100).all()  # parked outside every cell
    assert (st.points(st.n_points // 4, st.n_points // 2)["coords"] == 100).all()
    assert WidgetState.from_embedding(part).missing.tolist() == [0]


def test_state_memory_does_not_grow_with_the_grid():
    """Building the state and serving one head keep no per-point array of the whole grid."""

    def measure(n_layers):
        emb = synthetic_embedding(n_layers, 8, n_seqs=60)
        tracemalloc.start()
        st = WidgetState.from_embedding(emb)
        st.meta_wire()
        retained = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        per = 2 * st.n_tokens
        st.points(3 * per, 4 * per)  # a focused head
        st.sample(0, 4)  # one message of the matrix sample
        st.points_at(np.arange(0, st.n_points, 997))  # selected points all over the grid
        served = tracemalloc.get_traced_memory()[1] - retained
        tracemalloc.stop()
        grid_bytes = st.n_points * 9  # what a whole-grid state holds: float32 x, y and a uint8 norm
        return retained, served, grid_bytes, len(st.cells), per

    r1, s1, g1, c1, per = measure(2)
    r8, s8, g8, c8, _ = measure(16)
    assert g8 == 8 * g1
    # retained: the token table and a few numbers per cell, nothing per point of the grid
    assert r8 - r1 < 200 * (c8 - c1) and r8 < g8 / 10
    # serving: about one head at a time, whatever the grid (the selected points grow with it)
    assert s8 < 4 * per * 9 + 8 * 40 * (g8 / 9 / 997) and s8 < g8 / 4


def test_heads_are_read_from_the_capture_store_one_at_a_time(tmp_path, monkeypatch):
    """An embedding without stored norms computes them from its capture store: the state reads
    each head once (for its norm range) and serves points afterwards without reading the store
    again. (What the store itself keeps is its own bounded cache.)"""
    rng = np.random.default_rng(0)
    seq, _, _ = uneven_tokens(30, lo=5, hi=30)
    n, d = len(seq), 64
    q = rng.normal(size=(3, 4, n, d)).astype(np.float32)
    k = rng.normal(size=(3, 4, n, d)).astype(np.float32)
    capture_from_arrays(q, k, seq).save(tmp_path / "cap")
    from qkviz import load

    cap = load(tmp_path / "cap")
    cells = [(la, he) for la in range(3) for he in range(4)]
    emb = Embedding.from_coords({c: rng.uniform(-1, 1, (2 * n, 2)) for c in cells}, cap.tokens, capture=cap)
    reads = []
    real_q = type(cap).q
    monkeypatch.setattr(
        type(cap), "q", lambda self, la, he, *a, **k: reads.append((la, he)) or real_q(self, la, he, *a, **k)
    )
    st = WidgetState.from_embedding(emb, scores=False)  # (head scores read the capture on their own)
    assert sorted(reads) == cells  # each head once
    reads.clear()
    per = 2 * st.n_tokens
    c = st.cell_index(2, 1)
    st.points(c * per, (c + 1) * per)
    st.sample(0, len(cells))
    assert reads == []
    want = np.concatenate([np.linalg.norm(q[2, 1], axis=1), np.linalg.norm(k[2, 1], axis=1)])
    lo, hi = st.norm_range[c]
    np.testing.assert_allclose(lo, want.min(), rtol=1e-5)
    np.testing.assert_allclose(st.head_norms(c), np.rint((want - lo) / (hi - lo) * 255), atol=1)


def test_a_page_without_every_point_embeds_the_sample_chunks(small_budget):
    from qkviz.export._snapshot import sample_wire, snapshot

    emb = synthetic_embedding(2, 3)
    st = WidgetState.from_embedding(emb)
    chunks = sample_wire(st)
    per_msg = max(1, st.chunk_points // st.sample_points)
    assert [(c["start"], c["stop"]) for c in chunks] == [
        (a, min(a + per_msg, 6)) for a in range(0, 6, per_msg)
    ]  # what the front end asks for, message by message
    got = np.concatenate([binary_to_array(c["coords"]) for c in chunks])
    np.testing.assert_array_equal(got, st.sample(0, 6)["coords"])
    assert "sample" not in snapshot(st, viz_view(st))  # every point embedded: the page gathers it


def viz_view(st):
    from qkviz.wire import View

    return st.check_view(View())
