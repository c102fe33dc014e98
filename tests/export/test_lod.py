"""Standalone pages at scale: a size budget, a sample of whole sequences per head, full heads on request.

Runs on a synthetic capture made without a model (``Capture.from_arrays``, saved and read back as a
store), large enough that the default page would not fit the small budgets used here.
"""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from test_pack import from_key_delta, from_page, unpack

import qkviz
from qkviz import Capture, HeadGeometry, export
from qkviz.errors import InputError
from qkviz.export import _lod
from qkviz.export._pack import _TO_PAGE
from qkviz.project import Embedding
from qkviz.wire import WidgetState

LAYERS, HEADS, D = 3, 4, 8


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A synthetic capture store: 400 sequences of 3 to 70 tokens, structured q/k, no model."""
    import pandas as pd

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 70, 400)
    seq = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    pos = np.concatenate([np.arange(n) for n in lengths]).astype(np.int32)
    words = np.array(["the", "a", "cat", "sat", "on", "mat", ".", "dog"])
    tokens = pd.DataFrame({"seq": seq, "pos": pos, "token": words[rng.integers(0, 8, seq.size)]})
    tokens["display"] = tokens["token"]
    n = len(tokens)
    base = rng.normal(size=(n, D)) + np.sin(pos[:, None] / 5.0)
    geometry = HeadGeometry(
        layers=tuple(range(LAYERS)), heads=tuple(range(HEADS)), n_heads=HEADS, n_kv_heads=HEADS, d_head=D,
        causal=True, scaling={la: D**-0.5 for la in range(LAYERS)},
    )  # fmt: skip
    q, k = {}, {}
    for la in range(LAYERS):
        for h in range(HEADS):
            r = np.linalg.qr(rng.normal(size=(D, D)))[0]
            q[(la, h)] = base @ r + 0.3 * rng.normal(size=(n, D))
            k[(la, h)] = 1.3 * base @ r + 0.3 * rng.normal(size=(n, D))
    cap = Capture.from_arrays(q, k, tokens, geometry, model={"name": "synthetic"})
    return cap.save(tmp_path_factory.mktemp("lod") / "big.qkv")


@pytest.fixture(scope="module")
def emb(store):
    return qkviz.embed(qkviz.load(store), method="pca", progress=False, cache=False)


def read_page(path):
    """``(meta, unpacked state)`` of a written page (the runtime's decoding, in Python)."""
    text = path.read_bytes().decode("latin-1")  # one character per byte
    meta = json.loads(re.search(r'id="qkviz-meta">(.*?)</script>', text, re.DOTALL).group(1))
    data = re.search(r'id="qkviz-data">(.*?)</script>', text, re.DOTALL).group(1)
    return meta, unpack(meta, from_page(data.translate(_TO_PAGE)))


def arr(wire):
    return np.frombuffer(wire["view"], np.dtype(wire["dtype"]).newbyteorder("<")).reshape(wire["shape"])


@pytest.fixture(scope="module")
def sampled(emb, tmp_path_factory):
    path = tmp_path_factory.mktemp("pages") / "sampled.html"
    page = export.save_html(emb, path, max_bytes=1_000_000, full=[(1, 2)], top_k=3)
    return page, read_page(path)


def test_page_fits_the_budget_and_says_what_it_holds(sampled, emb):
    page, (meta, state) = sampled
    n = emb.n_tokens
    assert page.sampled and page.size == page.path.stat().st_size <= 1_000_000
    assert page.size > 0.8 * 1_000_000  # the budget is used, not wasted
    assert page.tokens_total == n and 0 < page.tokens_per_sampled_head < n
    assert page.full == [[1, 2]]
    assert page.points == 2 * n + 11 * 2 * page.tokens_per_sampled_head
    assert page.points_total == 12 * 2 * n
    text = page.path.read_bytes().decode("latin-1")
    assert '<p class="qkviz-page-note">This page holds 11 of 12 heads at' in text
    assert html.escape(page.note) in text and "Full resolution: L1 H2." in page.note
    assert page.summary.startswith(str(page.path)) and "MB" in page.summary
    # it stands in for the path of the file
    assert str(page) == str(page.path) and page == page.path and page.stat().st_size == page.size
    with open(page, "rb") as fh:  # stands in for a path
        assert fh.read(15).lower() == b"<!doctype html>"


def test_sample_is_whole_sequences_indexed_into_the_full_capture(sampled, emb):
    page, (meta, snap) = sampled
    emb_data, state = snap["embedded"], WidgetState.from_embedding(emb)
    lod, page_meta = emb_data["lod"], snap["state"]["_meta"]
    n, per = emb.n_tokens, 2 * emb.n_tokens
    tokens, seqs = arr(lod["tokens"]), arr(lod["seqs"])
    seq = emb.tokens["seq"].to_numpy()
    # whole sequences: every token of a sampled sequence is held, no other token
    np.testing.assert_array_equal(tokens, np.flatnonzero(np.isin(seq, seqs)))
    # the draw order holds the sample first (each held token's query and key), then the rest
    order, m = arr(page_meta["order"]), page_meta["sample_points"]
    assert m == 2 * len(tokens) == 2 * page.tokens_per_sampled_head
    np.testing.assert_array_equal(np.sort(order), np.arange(per))
    np.testing.assert_array_equal(np.sort(order[:m]), np.sort(np.concatenate([tokens, n + tokens])))
    # one draw order: the page's sample is the widget's order, restricted to the held points
    is_held = np.zeros(per, bool)
    is_held[order[:m]] = True
    np.testing.assert_array_equal(order[:m], state.order[is_held[state.order]])
    # "sample": those points of every cell, as the front end asks for them (chunk_points // m cells)
    step = max(1, state.chunk_points // m)
    chunks = emb_data["sample"]
    assert [(c["start"], c["stop"]) for c in chunks] == [(a, min(a + step, 12)) for a in range(0, 12, step)]
    for c in chunks:
        xy = arr(c["coords"])
        for cell in range(c["start"], c["stop"]):
            exact = state.coords[cell * per + order[:m].astype(np.int64)]
            np.testing.assert_allclose(xy[cell - c["start"]], exact, atol=1.1 / 2047)  # 11-bit layouts
    # "points": the full head only, every one of its points
    full = state.cells.index((1, 2))
    held = sorted((c["start"], c["stop"]) for c in emb_data["points"])
    assert held[0][0] == full * per and held[-1][1] == (full + 1) * per
    assert sum(b - a for a, b in held) == per
    assert arr(lod["full"]).tolist() == [int(c == full) for c in range(12)]
    # the page's selection indices and the notebook's mean the same points: cell * 2n + point
    assert page_meta["n_points"] == state.n_points == 12 * per


def test_sampled_heads_keep_the_top_k_of_their_tokens(sampled, emb):
    _, (meta, snap) = sampled
    lod, topk = snap["embedded"]["lod"], snap["embedded"]["topk"]
    held = np.zeros(emb.n_tokens, bool)
    held[arr(lod["tokens"])] = True
    state = WidgetState.from_embedding(emb)
    for c in (0, state.cells.index((1, 2))):
        la, he = state.cells[c]
        keys, weights = from_key_delta(topk[c], emb.n_tokens)
        rows = np.flatnonzero(held) if (la, he) != (1, 2) else np.arange(emb.n_tokens)
        if (la, he) != (1, 2):  # a sampled head: the other tokens' rows are empty
            assert not weights[~held].any()
        for t in rows[[0, len(rows) // 2, -1]]:
            s = int(emb.tokens["seq"].iloc[t])
            first = int(emb.sequences["offset"].iloc[s])
            a = emb.attention(la, he, s)[t - first]
            top = np.argsort(-a, kind="stable")[: min(3, len(a))]
            got = keys[t][keys[t] != 2**32 - 1]
            np.testing.assert_array_equal(np.sort(got), np.sort(top))
            np.testing.assert_allclose(np.sort(weights[t][: len(got)]), np.sort(a[top]), atol=2.5e-3)


def test_aggregates_stay_exact_over_every_sequence(sampled, emb):
    _, (meta, snap) = sampled
    agg = snap["embedded"]["aggregate"]
    assert agg["n_seqs"] == len(emb.sequences)
    exact = qkviz.analysis.aggregate_detail(emb, 2, 3, max_pos=512)
    got = arr(agg["cells"][2 * HEADS + 3]["by_offset"])
    np.testing.assert_allclose(got, exact["by_offset"], atol=2 * float(exact["by_offset"].max()) / 4095)


def test_sample_is_stratified_and_drawn_interleaved(emb):
    lengths = emb.sequences["n_tokens"].to_numpy()
    budget = int(lengths.sum()) // 5
    picked = _lod.sample_sequences(lengths, budget, seed=0)
    assert lengths[picked].sum() <= budget
    # every length stratum is represented about in proportion to its tokens
    cuts = np.quantile(np.repeat(lengths, lengths), [0.25, 0.5, 0.75])
    share_all = np.bincount(np.searchsorted(cuts, lengths), weights=lengths, minlength=4) / lengths.sum()
    share = np.bincount(np.searchsorted(cuts, lengths[picked]), weights=lengths[picked], minlength=4)
    share = share / share.sum()
    assert np.abs(share - share_all).max() < 0.1
    assert not np.array_equal(picked, _lod.sample_sequences(lengths, budget, seed=1))
    np.testing.assert_array_equal(picked, _lod.sample_sequences(lengths, budget, seed=0))
    # draw order: queries and keys interleaved, neither all before the other
    state = WidgetState.from_embedding(emb)
    sample = _lod.make_sample(state, np.zeros(len(state.cells), bool), budget)
    is_key = sample.points >= state.n_tokens
    half = len(is_key) // 2
    assert 0.4 < is_key[:half].mean() < 0.6 and 0.4 < is_key[half:].mean() < 0.6


def test_selection_sequences_and_the_focused_head_are_kept(emb, tmp_path):
    n = emb.n_tokens
    # a selected point of sequence 7, in cell 5: its sequence is in the sample
    seq7 = int(np.flatnonzero(emb.tokens["seq"].to_numpy() == 7)[0])
    viz = qkviz.QKViz(emb, layer=2, head=1)
    viz.select([5 * 2 * n + seq7])
    page = export.save_html(viz, tmp_path / "v.html", max_bytes=1_000_000)
    _, snap = read_page(tmp_path / "v.html")
    lod = snap["embedded"]["lod"]
    assert 7 in arr(lod["seqs"]).tolist()
    assert page.full == [[2, 1]]


def test_small_grids_are_written_whole(tmp_path):
    from _fakes import synthetic_capture

    small = qkviz.embed(synthetic_capture(), method="pca", progress=False, cache=False)
    a = export.save_html(small, tmp_path / "a.html")
    b = export.save_html(small, tmp_path / "b.html", max_bytes=None)
    assert not a.sampled and a.points == a.points_total
    assert a.path.read_bytes() == b.path.read_bytes()
    _, snap = read_page(tmp_path / "a.html")
    assert "lod" not in snap["embedded"] and "sample" not in snap["embedded"] and snap["embedded"]["points"]


def test_exports_are_reproducible(emb, tmp_path):
    a = export.save_html(emb, tmp_path / "a.html", max_bytes=800_000)
    b = export.save_html(emb, tmp_path / "b.html", max_bytes=800_000)
    assert a.sampled and a.path.read_bytes() == b.path.read_bytes()


def test_a_budget_too_small_warns_and_still_writes(emb, tmp_path):
    with pytest.warns(UserWarning, match="over max_bytes"):
        page = export.save_html(emb, tmp_path / "x.html", max_bytes=100_000)
    assert page.sampled and page.tokens_per_sampled_head <= emb.sequences["n_tokens"].min()


def test_bad_budget_and_full_heads(emb, tmp_path):
    with pytest.raises(InputError, match="max_bytes"):
        export.save_html(emb, tmp_path / "x.html", max_bytes=0)
    with pytest.raises(InputError, match="no head"):
        export.save_html(emb, tmp_path / "x.html", full=[(9, 0)])
    with pytest.raises(InputError, match="pairs"):
        export.save_html(emb, tmp_path / "x.html", full=[3])
    assert not (tmp_path / "x.html").exists()


def test_head_details_match_the_per_sequence_definitions(emb):
    """The vectorised pass gives each query's top-k and each head's aggregate as the per-sequence code."""
    from qkviz.export._snapshot import head_details

    state = WidgetState.from_embedding(emb)
    details = head_details(state, 4, workers=2)
    for c in (0, 7):
        la, he = state.cells[c]
        agg = qkviz.analysis.aggregate_detail(_PerSeq(emb), la, he, max_pos=16)
        np.testing.assert_allclose(details[c].aggregate["by_offset"], agg["by_offset"], atol=1e-6)
        for s in (0, 11, 399):
            first = int(emb.sequences["offset"].iloc[s])
            a = emb.attention(la, he, s).astype(np.float32)
            kk = min(4, len(a))
            top = np.argsort(-a, axis=1, kind="stable")[:, :kk]
            np.testing.assert_array_equal(details[c].keys[first : first + len(a), :kk], top)
            np.testing.assert_allclose(details[c].weights[first : first + len(a), :kk], np.take_along_axis(a, top, 1))


@pytest.mark.parametrize("t", [1, 2, 5, 31, 256, 300])
def test_top_k_orders_as_the_stable_sort(t):
    """``_top`` (sorted unique keys for short rows) picks and orders each row's keys exactly as a
    stable argsort of the weights: largest first, ties (zeros of masked and padded keys included) by
    lower position."""
    from qkviz.export._snapshot import _top

    rng = np.random.default_rng(t)
    a = rng.dirichlet(np.ones(t), size=64).astype(np.float32)
    a[::3, t // 2 :] = 0.0  # masked keys
    a[1::4, : t // 3] = a[1::4, :1]  # ties
    a[::7] = 0.0  # padded query rows
    for k in {1, min(5, t), t}:
        order, w = _top(a.copy(), k)
        ref = np.argsort(-a, axis=-1, kind="stable")[:, :k]
        if t <= 256:  # long rows partition first: ties at the cut may pick another position
            np.testing.assert_array_equal(order, ref)
        np.testing.assert_array_equal(w, np.take_along_axis(a, ref, axis=-1))
        assert w.dtype == np.float32


class _PerSeq:
    """An attention source without a capture: the analyses fall back to one sequence at a time."""

    def __init__(self, emb: Embedding) -> None:
        self.tokens, self.layers, self.heads, self._emb = emb.tokens, emb.layers, emb.heads, emb

    def attention(self, layer, head, seq):
        return self._emb.attention(layer, head, seq)


def test_cli_budget_and_full_heads(store, tmp_path, capsys):
    from qkviz.cli import main

    out = tmp_path / "x.html"
    # two full heads and the page's fixed part (the front end's bundle) take most of 1 MB: 1.2 MB
    # leaves room for a sample of the other ten
    assert main(["html", str(store), "--method", "pca", "-o", str(out), "--max-mb", "1.2", "--full", "1:2,0:0"]) == 0
    said = capsys.readouterr().err  # the stage lines; stdout holds the path only
    assert out.stat().st_size <= 1_200_000 and "over max_bytes" not in said
    assert "This page holds 10 of 12 heads" in said and "Full resolution: L0 H0, L1 H2." in said
    assert main(["html", str(store), "--method", "pca", "-o", str(out), "--max-mb", "0", "--force"]) == 0
    assert out.stat().st_size > 1_200_000 and "This page holds" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:  # argparse: a usage error
        main(["html", str(store), "--method", "pca", "-o", str(out), "--full", "1-2"])
    assert bad.value.code == 2 and "layer:head" in capsys.readouterr().err
