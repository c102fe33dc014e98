"""The state packing of qkviz.export: buffers out, placeholders in, and the exact bytes back."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkviz import export
from qkviz.errors import InputError, WidgetDataError
from qkviz.export import _pack
from qkviz.export._pack import page_bytes


def expand(raw, enc):
    """Python mirror of the runtime's ``expand`` (compact buffers back to their dtype)."""
    q = np.frombuffer(raw, np.dtype(enc["as"]).newbyteorder("<")).astype(np.float64)
    if enc["to"] == "float32":
        out = enc["min"] + q * ((enc["max"] - enc["min"]) / enc["levels"])
        if "exact" in enc:
            out[q == enc["levels"] + 1] = enc["exact"]
        return out.astype("<f4").tobytes()
    if enc["to"] == "uint8":
        return np.floor(q * 255 / enc["levels"] + 0.5).astype(np.uint8).tobytes()
    cap = np.iinfo(enc["as"]).max
    out = np.where(enc["none"] & (q == cap), 2**32 - 1, q + enc["add"])
    return out.astype(np.dtype(enc["to"]).newbyteorder("<")).tobytes()


def unpack(meta, blob):
    """Python mirror of the page runtime: gunzip, unshuffle, expand, put buffers back."""
    if meta["compressed"]:
        blob = gzip.decompress(blob)
    views = []
    for spec in meta["buffers"]:
        raw = blob[spec["offset"] : spec["offset"] + spec["length"]]
        s = spec["shuffle"]
        if s > 1:
            raw = np.frombuffer(raw, np.uint8).reshape(s, -1).T.tobytes()
        if "encoding" in spec:
            raw = expand(raw, spec["encoding"])
        views.append(raw)

    def revive(v):
        if isinstance(v, dict):
            if set(v) == {"$qkbuf"}:
                return views[v["$qkbuf"]]
            return {k: revive(x) for k, x in v.items()}
        if isinstance(v, list):
            return [revive(x) for x in v]
        return v

    return revive(meta["state"])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 300),
    dtype=st.sampled_from(["float32", "uint32", "int32", "uint8"]),
    compress=st.booleans(),
    extra=st.binary(max_size=50),
)
def test_round_trip_restores_every_byte(n, dtype, compress, extra):
    rng = np.random.default_rng(n)
    arr = (rng.standard_normal(n) * 1000).astype(dtype)
    wire = {"view": memoryview(arr.view(np.uint8)), "dtype": dtype, "shape": [n]}
    state = {"a": wire, "nested": [{"b": extra}], "n": np.int64(3), "name": "x"}
    meta, blob = _pack.pack_state(state, compress=compress)
    json.dumps(meta, allow_nan=False)  # the meta block must be plain JSON
    back = unpack(meta, blob)
    assert back["a"]["view"] == arr.tobytes()
    assert back["a"]["dtype"] == dtype and back["a"]["shape"] == [n]
    assert back["nested"][0]["b"] == extra
    assert back["n"] == 3 and back["name"] == "x"
    # typed arrays need aligned offsets (Float32Array over a DataView's byteOffset)
    assert all(s["offset"] % 8 == 0 for s in meta["buffers"])


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 2**32 - 1), min_size=16, max_size=200),
    none_share=st.floats(0, 1),
    span=st.sampled_from([10, 200, 255, 256, 60_000, 65_535, 2**31]),
    dtype=st.sampled_from(["uint32", "int32"]),
)
def test_compact_integers_are_lossless(values, none_share, span, dtype):
    rng = np.random.default_rng(len(values))
    a = (np.array(values, np.int64) % span) - (span // 2 if dtype == "int32" else 0)
    if dtype == "uint32":
        a[rng.random(a.size) < none_share] = 2**32 - 1  # the "no key" marker of the top-k table
    arr = a.astype(dtype)
    meta, blob = _pack.pack_state({"a": arr}, compact=True)
    assert np.array_equal(np.frombuffer(unpack(meta, blob)["a"]["view"], dtype), arr)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(16, 500),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    shift=st.floats(-10, 10),
    bits=st.sampled_from([None, 8, 12, 16]),
)
def test_compact_floats_stay_within_the_documented_error(n, scale, shift, bits):
    arr = (np.random.default_rng(n).uniform(-1, 1, n) * scale + shift).astype(np.float32)
    meta, blob = _pack.pack_state({"a": arr}, compact=True, float_bits={"a": bits} if bits else None)
    back = np.frombuffer(unpack(meta, blob)["a"]["view"], np.float32)
    span = float(arr.max()) - float(arr.min())
    levels = 2 ** (bits or 16) - 1
    # documented bound (max - min) / (2 * levels), plus float32 rounding of the result
    assert np.abs(back - arr).max() <= span / (2 * levels) + 4 * np.finfo(np.float32).eps * np.abs(arr).max()
    assert back.min() == pytest.approx(arr.min(), abs=1e-6 * max(1.0, abs(float(arr.min()))))


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(1, 7), n=st.integers(64, 400))
def test_compact_uint8_keeps_the_documented_levels(bits, n):
    norms = np.random.default_rng(n).integers(0, 256, n).astype(np.uint8)
    norms[:2] = 0, 255
    wire = {"view": memoryview(norms), "dtype": "uint8", "shape": [n]}
    meta, blob = _pack.pack_state({"norms": wire}, compact=True, float_bits={"norms": bits})
    back = np.frombuffer(unpack(meta, blob)["norms"]["view"], np.uint8).astype(int)
    levels = 2**bits - 1
    assert np.abs(back - norms).max() <= 255 / (2 * levels) + 1
    assert back[0] == 0 and back[1] == 255  # the ends of the ramp stay the ends


def from_key_delta(entry, n_tokens):
    """Python mirror of transport.js ``fromKeyDelta``."""
    gaps = np.frombuffer(entry["keys"]["view"], np.uint32).reshape(-1, n_tokens).T.astype(np.int64)
    w = np.frombuffer(entry["weights"]["view"], np.float32).reshape(-1, n_tokens).T
    keys = np.cumsum(gaps, axis=1)
    none = np.zeros_like(gaps, bool)
    none[:, 1:] = gaps[:, 1:] == 0
    return np.where(none, 2**32 - 1, keys), np.where(none, 0, w)


@pytest.mark.parametrize("held", [1.0, 0.2])
def test_topk_key_delta_layout_is_lossless(held):
    """Lossless, whether most rows have keys or (a sampled page) most have none, and both ways of
    computing it agree on the rows that have keys."""
    from qkviz.wire import array_to_binary

    rng = np.random.default_rng(0)
    n, k = 40, 5
    lengths = np.array([3] * 10 + [30] * 30)  # short sequences leave "no key" slots
    keys = np.full((n, k), 2**32 - 1, np.uint32)
    weights = np.zeros((n, k), np.float32)
    for t in range(n):
        kk = min(k, lengths[t])
        keys[t, :kk] = rng.choice(lengths[t], kk, replace=False)
        weights[t, :kk] = np.sort(rng.random(kk))[::-1]
    dense = _pack.key_delta({"keys": array_to_binary(keys, "uint32"), "weights": array_to_binary(weights, "float32")})
    unheld = rng.random(n) >= held  # a sampled page empties the rows of the tokens it does not hold
    keys[unheld], weights[unheld] = 2**32 - 1, 0.0
    entry = {
        "layer": 0,
        "head": 1,
        "keys": array_to_binary(keys, "uint32"),
        "weights": array_to_binary(weights, "float32"),
    }
    out = _pack.key_delta(entry)
    assert out["layout"] == "key-delta" and out["layer"] == 0
    back_k, back_w = from_key_delta(out, n)
    # the same (key, weight) pairs per query, now in position order (a row without keys reads as
    # key 0 at weight 0: the first gap is a position)
    for t in np.flatnonzero(~unheld).tolist():
        assert dict(zip(back_k[t].tolist(), back_w[t].tolist())) == dict(zip(keys[t].tolist(), weights[t].tolist()))
    for name, dtype in (("keys", np.uint32), ("weights", np.float32)):
        mine = np.frombuffer(out[name]["view"], dtype).reshape(k, n)
        np.testing.assert_array_equal(
            mine[:, ~unheld], np.frombuffer(dense[name]["view"], dtype).reshape(k, n)[:, ~unheld]
        )
        assert not mine[:, unheld].any()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(16, 500), parked=st.floats(0, 1), bits=st.sampled_from([8, 11, 16]))
def test_compact_keeps_parked_points_exact_and_the_layout_at_full_resolution(n, parked, bits):
    # a cross-attention or sampled page parks the points a head does not draw at PARKED (100): they
    # come back exact, and the others keep the resolution of their own range, not of [-1, 100]
    rng = np.random.default_rng(n)
    arr = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    arr[rng.random(n) < parked] = _pack.PARKED
    meta, blob = _pack.pack_state(
        {"coords": arr}, compact=True, float_bits={"coords": bits}, float_exact=_pack.COMPACT_EXACT
    )
    back = np.frombuffer(unpack(meta, blob)["coords"]["view"], np.float32).reshape(n, 2)
    kept = arr == _pack.PARKED
    assert np.array_equal(back[kept], arr[kept])
    if (~kept).any():
        rest = arr[~kept]
        levels = 2**bits - (2 if kept.any() else 1)
        span = float(rest.max()) - float(rest.min())
        assert np.abs(back[~kept] - rest).max() <= span / (2 * levels) + 4 * np.finfo(np.float32).eps


def test_a_cross_attention_page_draws_every_point_where_the_layout_puts_it():
    # the layout of a head with parked points, through the exporter's own settings: within the
    # documented 5e-4 of the [-1, 1] box (0.16 px in a 640-pixel view), parked points exact
    from qkviz.export._pack import COMPACT_BITS, COMPACT_EXACT

    xy = np.random.default_rng(0).uniform(-1, 1, (400, 2)).astype(np.float32)
    xy[::3] = _pack.PARKED  # the encoder tokens' queries of a cross-attention head
    meta, blob = _pack.pack_state(
        {"points": [{"coords": xy}]}, compact=True, float_bits=COMPACT_BITS, float_exact=COMPACT_EXACT
    )
    back = np.frombuffer(unpack(meta, blob)["points"][0]["coords"]["view"], np.float32).reshape(xy.shape)
    drawn = xy[:, 0] != _pack.PARKED
    assert np.abs(back[drawn] - xy[drawn]).max() <= 5e-4
    assert (back[~drawn] == _pack.PARKED).all()


def test_compact_keeps_non_finite_floats_exact():
    arr = np.linspace(0, 1, 64, dtype=np.float32)
    arr[3] = np.nan
    meta, blob = _pack.pack_state({"a": arr}, compact=True)
    assert "encoding" not in meta["buffers"][0]
    assert np.array_equal(np.frombuffer(unpack(meta, blob)["a"]["view"], np.float32), arr, equal_nan=True)


def test_numpy_arrays_become_wire_dicts():
    meta, blob = _pack.pack_state({"m": np.arange(6, dtype=np.uint32).reshape(2, 3)}, compress=False)
    back = unpack(meta, blob)
    assert back["m"]["dtype"] == "uint32" and back["m"]["shape"] == [2, 3]
    assert np.frombuffer(back["m"]["view"], np.uint32).tolist() == list(range(6))


def test_non_finite_floats_become_null():
    meta, _ = _pack.pack_state({"x": float("nan"), "y": [1.5, float("inf")]}, compress=False)
    assert meta["state"] == {"x": None, "y": [1.5, None]}


def test_shuffle_makes_smooth_floats_smaller():
    # a realistic layout: smooth float32 coordinates in [-1, 1]
    xy = np.sin(np.linspace(0, 40, 200_000, dtype=np.float32)).reshape(-1, 2)
    wire = {"view": memoryview(xy.view(np.uint8).reshape(-1)), "dtype": "float32", "shape": list(xy.shape)}
    _, shuffled = _pack.pack_state({"xy": wire})
    plain = gzip.compress(xy.tobytes(), compresslevel=6, mtime=0)
    assert len(shuffled) < 0.9 * len(plain)


def test_script_json_cannot_close_the_script_tag():
    text = export._script_json({"code": "a</script><script>alert(1)</script>&"})
    assert "</" not in text and "<" not in text and "&" not in text
    assert json.loads(text)["code"] == "a</script><script>alert(1)</script>&"


def _write_page(state, path, title="qkviz", **kw):
    """A page around any trait state (the runtime does not care what the widget's traits are)."""
    path.write_bytes(page_bytes(export.page_html({"state": state}, title=title, **kw)))
    return path


def test_to_html_is_self_contained(tmp_path, monkeypatch):
    bundle = tmp_path / "widget.js"
    bundle.write_text('export default { render({ el }) { el.textContent = "</script> ok"; } };')
    monkeypatch.setattr(export, "BUNDLE", bundle)
    out = _write_page({"k": b"\x00\x01<\r="}, tmp_path / "x.html", title="t<1> é")
    raw = out.read_bytes()
    # ASCII outside the data block: the page is windows-1252, and nothing else may be misread
    data = re.search(rb'id="qkviz-data">(.*?)</script>', raw, re.DOTALL).group(1)
    assert raw.replace(data, b"").isascii()
    text = raw.decode("latin-1")
    assert "<title>t&lt;1&gt; &#233;</title>" in text
    assert text.count("</script>") == 4  # the page's own four script blocks, none from the bundle
    # nothing is loaded from elsewhere: no src/href attributes, no http(s) imports
    assert not re.search(r"""<[a-z]+[^>]*\s(src|href)\s*=""", text)
    assert not re.search(r"""(import|from)\s*\(?\s*["']https?://""", text)


def from_page(text):
    """Python mirror of the runtime's ``fromPage``: windows-1252 characters back to bytes, unescaped."""
    raw = _pack.page_bytes(text)
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x3D:
            out.append((0x00, 0x0D, 0x3C, 0x3D)[raw[i + 1] - 0x30])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=2000))
def test_data_block_round_trips_every_byte(blob):
    text = _pack.embed_bytes(blob + bytes(range(256)))
    # nothing the HTML parser would alter or stop at
    assert "\x00" not in text and "\r" not in text and "<" not in text
    assert from_page(text) == blob + bytes(range(256))
    assert len(text) <= 1.02 * len(blob) + 300


def test_save_html_rejects_other_objects(tmp_path):
    with pytest.raises(InputError, match="QKViz widget or a qkviz Embedding"):
        export.save_html({"not": "a widget"}, tmp_path / "x.html")


def test_save_html_needs_an_existing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        export.save_html(object(), tmp_path / "nope" / "x.html")


def test_negative_top_k_is_refused():
    with pytest.raises(InputError, match="top_k"):
        export.to_html(object(), top_k=-1)


def test_missing_bundle_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "BUNDLE", tmp_path / "absent.js")
    with pytest.raises(WidgetDataError, match="npm run build"):
        export.page_html({"state": {}}, title="x")
