"""Kernel-only tests of QKViz: wire format, validation, selection API, commands (no browser)."""

from __future__ import annotations

import pathlib
import re

import anywidget
import numpy as np
import pandas as pd
import pytest

from qkviz.errors import WidgetDataError
from qkviz.export._snapshot import snapshot
from qkviz.widget import COLOR_FIELDS, QKViz, _commands
from qkviz.wire import MAX_MESSAGE_BYTES, array_to_binary, binary_to_array, pack_buffers, unpack_selection

from ._fakes import make_embedding

ROOT = pathlib.Path(__file__).parents[2]


# ---- codec -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "uint32", "int32", "uint8"])
def test_codec_round_trip(dtype):
    a = (np.arange(24).reshape(4, 3, 2) * 3).astype(dtype)
    wire = array_to_binary(a)
    assert wire["dtype"] == dtype and wire["shape"] == [4, 3, 2]
    back = binary_to_array({**wire, "view": bytes(wire["view"])})
    np.testing.assert_array_equal(back, a)


def test_codec_rejects_other_dtypes_and_bad_sizes():
    with pytest.raises(WidgetDataError, match="float64"):
        array_to_binary(np.zeros(3))
    with pytest.raises(WidgetDataError, match="bytes"):
        binary_to_array({"view": b"\0" * 5, "dtype": "float32", "shape": [2]})
    with pytest.raises(WidgetDataError, match="dtype"):
        binary_to_array({"view": b"\0" * 8, "dtype": "float64", "shape": [1]})


def test_non_contiguous_input_is_made_contiguous():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(binary_to_array(array_to_binary(a)), a)


def test_pack_buffers_references_arrays():
    msg, bufs = pack_buffers({"a": [np.ones(2, np.uint8), {"b": np.zeros((1, 2), np.float32)}], "k": np.int64(3)})
    assert msg == {
        "a": [
            {"$buffer": 0, "dtype": "uint8", "shape": [2]},
            {"b": {"$buffer": 1, "dtype": "float32", "shape": [1, 2]}},
        ],
        "k": 3,
    }
    assert [b.nbytes for b in bufs] == [2, 8]


# ---- state sent to the front end ----------------------------------------------------------------
def _state_bytes(viz):
    def size(v):
        if isinstance(v, memoryview):
            return v.nbytes
        if isinstance(v, dict):
            return sum(size(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return sum(size(x) for x in v)
        return len(str(v))

    return sum(size(getattr(viz, k)) for k in viz.trait_names(sync=True) if k not in ("_esm", "_css"))


def test_no_json_number_lists_and_small_state(emb):
    viz = QKViz(emb)
    # numbers travel only as buffers: the only lists in the wire traits are strings / small ints (the grid's
    # layers and heads, and one small record per attention)
    for name in ("_meta", "_tokens", "_columns"):
        for k, v in getattr(viz, name).items():
            if isinstance(v, list):
                assert all(isinstance(x, str) for x in v) or k in ("layers", "heads", "attns"), (name, k)
    assert _state_bytes(viz) < 5 * 2**20


def test_grid_points_are_chunked_under_the_budget(monkeypatch):
    from qkviz.wire import WidgetState

    emb = make_embedding(n_layers=2, n_heads=2, lengths=(50,) * 4)
    viz = QKViz(emb)
    assert viz._meta["chunk_points"] * 9 <= MAX_MESSAGE_BYTES
    monkeypatch.setattr(WidgetState, "chunk_points", property(lambda self: 150))  # force several chunks
    st = snapshot(viz.state, viz.view())
    chunks = st["points"]
    assert len(chunks) == int(np.ceil(viz._meta["n_points"] / 150))
    coords = np.concatenate([binary_to_array(c["coords"]) for c in chunks])
    n = emb.n_tokens
    for c, (la, he) in enumerate(viz.state.cells):
        np.testing.assert_array_equal(coords[c * 2 * n : (c + 1) * 2 * n], emb.coords(la, he)[:, :2])
    msg, bufs = _commands.dispatch(viz.state, {"kind": "points", "start": 150, "stop": 300})
    assert msg["start"] == 150 and sum(b.nbytes for b in bufs) == 150 * 9


def test_norms_quantised_per_head(emb):
    viz = QKViz(emb)
    n = emb.n_tokens
    nm = emb.norms(1, 2)
    c = viz.state.cells.index((1, 2))
    q = viz.state.norms[c * 2 * n : (c + 1) * 2 * n]
    assert q[nm.argmin()] == 0 and q[nm.argmax()] == 255
    np.testing.assert_allclose(q / 255, (nm - nm.min()) / (nm.max() - nm.min()), atol=1 / 255)


def _js_typed_traits() -> list[str]:
    """The keys of the ``QKVizTraits`` typedef in js/src/model.js (the front end's model interface)."""
    text = (ROOT / "js" / "src" / "model.js").read_text()
    block = re.search(r"@typedef \{object\} QKVizTraits\n(.*?)\*/", text, re.S)
    assert block, "js/src/model.js lost its QKVizTraits typedef"
    return re.findall(r"@property \{[^}]*\} (\w+)", block.group(1))


def test_js_model_typedef_declares_exactly_the_synced_traits(emb):
    """js/src/model.js types every synced trait the front end can see, and only those (the JS tests
    make sure the front end reads no name outside that typedef)."""
    js = _js_typed_traits()
    assert len(js) == len(set(js)), "a trait is declared twice"
    widget = QKViz(emb)
    py = set(widget.trait_names(sync=True))
    # ipywidgets' and anywidget's own synced traits (widget machinery, not qkviz state)
    machinery = set(anywidget.AnyWidget().trait_names(sync=True))
    assert set(js) == py - machinery
    assert not set(js) & machinery


# ---- bad input ---------------------------------------------------------------------------------
def test_bad_inputs_fail_before_anything_is_sent(emb, monkeypatch):
    opened = []
    monkeypatch.setattr(QKViz, "open", lambda self: opened.append(self))
    with pytest.raises(WidgetDataError, match="one per token"):
        QKViz(emb, columns={"freq": np.arange(emb.n_tokens + 1)})
    with pytest.raises(WidgetDataError, match="unknown colour field 'nope'"):
        QKViz(emb, color="nope")
    with pytest.raises(WidgetDataError, match="expected a qkviz Embedding"):
        QKViz(np.zeros((3, 2)))
    with pytest.raises(WidgetDataError, match="clashes"):
        QKViz(emb, columns={"kind": np.zeros(emb.n_tokens)})
    with pytest.raises(WidgetDataError, match="no head"):
        QKViz(emb, layer=5, head=0)
    with pytest.raises(WidgetDataError, match="theme"):
        QKViz(emb, theme="pink")
    assert opened == []


def test_degenerate_embeddings_are_shown():
    # one head, one token (2 points), and every point at the same place: valid, if dull
    one = make_embedding(n_layers=1, n_heads=1, lengths=(1,))
    viz = QKViz(one)
    assert viz._meta["n_points"] == 2 and viz._meta["layers"] == [0]
    same = make_embedding(n_layers=1, n_heads=2, lengths=(3,), coords=lambda la, he: np.zeros((6, 2)))
    viz = QKViz(same, color="norm")
    viz.focus(0, 1)
    viz.select(np.ones(6, bool))
    assert len(viz.selected) == 6 and (viz.selected[["x", "y"]].to_numpy() == 0).all()


def test_user_columns_numeric_and_categorical(emb):
    freq = np.linspace(0, 1, emb.n_tokens)
    pos_tag = np.where(emb.tokens["display"] == ".", "PUNCT", "X")
    viz = QKViz(emb, columns=pd.DataFrame({"freq": freq, "tag": pos_tag}), color="tag")
    assert viz._columns["freq"]["type"] == "numeric"
    assert viz._columns["tag"]["categories"] == ["PUNCT", "X"]
    np.testing.assert_array_equal(binary_to_array(viz._columns["tag"]["values"]), (pos_tag == "X").astype(int))
    viz.color_by("freq")
    viz.select([0, 1])
    np.testing.assert_allclose(viz.selected["freq"], freq[[0, 1]])
    assert list(viz.selected["tag"]) == list(pos_tag[[0, 1]])


# ---- navigation, colour, search ---------------------------------------------------------------
def test_focus_show_matrix_and_validation(emb):
    viz = QKViz(emb)
    seen = []
    viz.observe(lambda c: seen.append((c["name"], c["new"])), names=["layer", "head"])
    viz.focus(1, 2)
    assert (viz.layer, viz.head) == (1, 2) and seen == [("layer", 1), ("head", 2)]
    with pytest.raises(WidgetDataError, match="no head"):
        viz.focus(1, 9)
    viz.show_matrix()
    assert viz.layer is None and viz.head is None
    with pytest.raises(WidgetDataError):
        viz.head = 7  # as if the page sent a head that does not exist


def test_color_by(emb):
    viz = QKViz(emb)
    for field in COLOR_FIELDS:
        viz.color_by(field)
        assert viz.color == field
    viz.color_by("position_mod", n=3)
    assert (viz.color, viz.color_mod) == ("position_mod", 3)
    with pytest.raises(WidgetDataError, match="unknown colour field"):
        viz.color_by("frequency")


def test_search_counts_tokens(emb):
    viz = QKViz(emb)
    display = emb.tokens["display"]
    assert viz.search("THE") == int(display.str.lower().str.contains("the").sum())
    assert viz.search_query == "THE"
    assert viz.search(r"^t", regex=True) == int(display.str.match(r"(?i)t").sum())
    assert viz.search("") == 0
    with pytest.raises(WidgetDataError, match="regular expression"):
        viz.search("(", regex=True)


# ---- selection -----------------------------------------------------------------------------------
def test_selection_from_the_page_reaches_python(emb):
    viz = QKViz(emb)
    events = []
    viz.observe(lambda c: events.append(c["new"]), names="selection")
    n = emb.n_tokens
    picked = np.array([2 * n * 4 + 3, 5, 2 * n * 4 + n + 1], np.uint32)  # cell 4 = (layer 1, head 1)
    viz._selection = array_to_binary(picked)  # what the front end writes
    assert events and events[-1].tolist() == sorted(picked.tolist())
    df = viz.selected
    assert df.index.tolist() == sorted(picked.tolist())
    row = df.loc[2 * n * 4 + n + 1]
    assert (row["kind"], row["layer"], row["head"], row["token"]) == ("key", 1, 1, emb.tokens.token[1])
    assert row.x == emb.coords(1, 1)[n + 1, 0] and row.norm == pytest.approx(emb.norms(1, 1)[n + 1])
    assert df.loc[5, "kind"] == "query" and df.loc[5, "layer"] == 0 and df.loc[5, "head"] == 0
    assert list(df.columns[:10]) == ["token", "display", "seq", "pos", "kind", "layer", "head", "x", "y", "norm"]


def test_page_indices_out_of_range_are_dropped(emb):
    viz = QKViz(emb)
    viz._selection = array_to_binary(np.array([1, 10**6], np.uint32))
    assert viz.selection.tolist() == [1]


def test_select_from_python(emb):
    viz = QKViz(emb)
    n = emb.n_tokens
    viz.select([7, 3, 3])
    assert viz.selection.tolist() == [3, 7]
    assert unpack_selection(viz._selection, viz.state.n_points).tolist() == [3, 7]  # mirrored to the wire
    mask = np.zeros(viz._meta["n_points"], bool)
    mask[[0, 9]] = True
    viz.select(mask)
    assert viz.selection.tolist() == [0, 9]
    viz.focus(0, 1)
    local = np.zeros(2 * n, bool)
    local[n] = True
    viz.select(local)
    assert viz.selection.tolist() == [2 * n + n]
    viz.select("cat")
    toks = np.flatnonzero(emb.tokens["display"].str.contains("cat"))
    assert viz.selection.tolist() == sorted((2 * n + np.r_[toks, toks + n]).tolist())
    assert set(viz.selected["display"]) == {"cat"}
    with pytest.raises(WidgetDataError, match="boolean mask"):
        viz.select(np.ones(5, bool))
    with pytest.raises(WidgetDataError, match="global point indices"):
        viz.select([10**6])


# ---- commands ------------------------------------------------------------------------------------
def test_attention_command_is_exact(emb):
    viz = QKViz(emb)
    msg, bufs = _commands.dispatch(viz.state, {"kind": "attention", "layer": 1, "head": 0, "seq": 2})
    w = np.frombuffer(bufs[0], np.float32).reshape(msg["weights"]["shape"])
    np.testing.assert_array_equal(w, emb.attention(1, 0, 2))


def test_bad_requests_answer_with_an_error(emb):
    viz = QKViz(emb)
    assert "unknown request kind" in _commands.dispatch(viz.state, {"kind": "nope"})[0]["error"]
    assert "error" in _commands.dispatch(viz.state, {"kind": "attention", "layer": 9, "head": 0, "seq": 0})[0]
    assert "error" in _commands.dispatch(viz.state, {"kind": "points", "start": 0, "stop": 10**9})[0]
    assert "error" in _commands.dispatch(viz.state, "points")[0]
    no_cap = QKViz(make_embedding(capture=False))
    assert not no_cap._meta["has_attention"]
    assert (
        "no capture"
        in _commands.dispatch(no_cap.state, {"kind": "attention", "layer": 0, "head": 0, "seq": 0})[0]["error"]
    )


def test_static_state_embeds_topk(emb):
    viz = QKViz(emb)
    st = snapshot(viz.state, viz.view(), 3)
    assert {"_meta", "_tokens", "layer", "color", "_selection"} <= set(st["state"])
    assert "_esm" not in st["state"]
    cell = st["topk"][viz.state.cells.index((1, 2))]
    keys, weights = binary_to_array(cell["keys"]), binary_to_array(cell["weights"])
    a = emb.attention(1, 2, 1)
    first = int(np.flatnonzero(emb.tokens.seq == 1)[0])
    np.testing.assert_array_equal(keys[first], np.argsort(-a[0], kind="stable")[:3])
    np.testing.assert_allclose(weights[first], np.sort(a[0])[::-1][:3])
    assert snapshot(viz.state, viz.view())["topk"] is None


def test_three_d_layouts_send_z():
    emb = make_embedding(
        n_layers=1, n_heads=2, lengths=(4,), coords=lambda la, he: np.random.default_rng(he).uniform(-1, 1, (8, 3))
    )
    viz = QKViz(emb)
    assert viz._meta["dim"] == 3 and viz._meta["chunk_points"] * 13 <= MAX_MESSAGE_BYTES
    msg, bufs = _commands.dispatch(viz.state, {"kind": "points", "start": 8, "stop": 16})
    assert msg["coords"]["shape"] == [8, 3]
    np.testing.assert_array_equal(np.frombuffer(bufs[0], np.float32).reshape(8, 3), emb.coords(0, 1))
    viz.select([9])
    assert viz.selected["z"].iloc[0] == emb.coords(0, 1)[1, 2]


def test_bundle_has_no_network_imports():
    bundle = ROOT / "src" / "qkviz" / "_bundle" / "widget.js"
    if not bundle.exists():
        pytest.skip("bundle not built (cd js && npm run build)")
    text = bundle.read_text()
    # static imports, re-exports and dynamic import() of remote URLs
    assert not re.search(r"""(?:\bfrom|\bimport)\s*\(?\s*["'`]https?://""", text)
    assert "export default" in text or re.search(r"export\s*\{[^}]*as default", text)


@pytest.mark.slow
def test_real_capture_attention_and_selection(tiny_capture):
    """The widget over a real (tiny BERT) capture: lines use the capture's exact attention."""
    from qkviz import Embedding

    coords = {}
    for la in tiny_capture.layers:
        for he in tiny_capture.heads:
            x = np.concatenate([tiny_capture.q(la, he), tiny_capture.k(la, he)]).astype(np.float64)
            x -= x.mean(axis=0)
            coords[(la, he)] = x @ np.linalg.svd(x, full_matrices=False)[2][:2].T  # PCA to 2-D
    emb = Embedding.from_coords(coords, tiny_capture.tokens, capture=tiny_capture)
    viz = QKViz(emb, faithfulness=True)
    assert viz._meta["has_faithfulness"] and (binary_to_array(viz._meta["recall"]) >= 0).all()
    la, he = tiny_capture.layers[-1], tiny_capture.heads[-1]
    msg, bufs = _commands.dispatch(viz.state, {"kind": "attention", "layer": la, "head": he, "seq": 1})
    w = np.frombuffer(bufs[0], np.float32).reshape(msg["weights"]["shape"])
    np.testing.assert_array_equal(w, tiny_capture.attention(la, he, 1))
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-5)
    viz.focus(la, he)
    viz.select("[CLS]")
    df = viz.selected
    assert len(df) == 2 * int((tiny_capture.tokens["display"] == "[CLS]").sum())
    assert set(df["kind"]) == {"query", "key"} and (df["pos"] == 0).all()


# ---- image captures ----------------------------------------------------------------------------
def test_text_embedding_has_no_patch_fields(emb):
    viz = QKViz(emb)
    assert viz._meta["has_images"] is False
    assert not {"row", "col", "brightness"} & set(viz._columns)
    with pytest.raises(WidgetDataError, match="unknown colour field 'patch_color'"):
        viz.color_by("patch_color")
    with pytest.raises(WidgetDataError, match="clashes"):
        QKViz(emb, columns={"patch_color": np.zeros(len(emb.tokens))})


def test_image_embedding_offers_patch_fields_and_keeps_user_columns():
    from qkviz import Embedding
    from views._fakes import image_embedding

    fake, colours = image_embedding(n_images=2, grid=(2, 3), px=4)
    n = len(fake.tokens)
    emb = Embedding.from_coords(
        {(0, 0): np.random.default_rng(0).uniform(-1, 1, (2 * n, 2))},
        fake.tokens,
        norms={(0, 0): np.ones(2 * n)},
        capture=fake.capture,
    )
    mine = np.arange(n, dtype=float)
    viz = QKViz(emb, columns={"hue": mine}, color="patch_color")
    assert viz._meta["has_images"] is True
    assert {"row", "col", "mean_r", "mean_g", "mean_b", "brightness", "saturation"} <= set(viz._columns)
    np.testing.assert_array_equal(binary_to_array(viz._columns["hue"]["values"]), mine)  # the user's wins
    red = binary_to_array(viz._columns["mean_r"]["values"])
    tok = fake.tokens
    patch = tok["row"].to_numpy() >= 0
    np.testing.assert_allclose(
        red[patch], colours[tok["seq"][patch], tok["row"][patch], tok["col"][patch], 0] / 255, atol=1e-6
    )
    # the patch fields come back in viz.selected like user columns
    viz.select(np.array([1]))
    assert viz.selected["row"].iloc[0] == tok["row"][1]
