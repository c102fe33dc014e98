"""Store round trips are bit-exact; damaged stores raise StoreError; saving never half-overwrites."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import qkviz._capture._store as store
from qkviz._capture import load
from qkviz.errors import InputError, StoreError


def _same(a, b):
    pd.testing.assert_frame_equal(a.tokens, b.tokens)
    pd.testing.assert_frame_equal(a.sequences, b.sequences)
    for attr in (
        "layers",
        "heads",
        "n_heads",
        "n_kv_heads",
        "d_head",
        "causal",
        "scaling",
        "sliding_window",
        "model",
        "params",
    ):
        assert getattr(a, attr) == getattr(b, attr), attr
    for layer in a.layers:
        for h in a.heads:
            for kind in ("q", "k") + (("v",) if a.has_values else ()):
                x, y = getattr(a, kind)(layer, h), getattr(b, kind)(layer, h)
                assert x.dtype == y.dtype == np.float32
                assert x.tobytes() == y.tobytes(), (kind, layer, h)  # bit-exact
    if a.images is None:
        assert b.images is None
    else:
        assert a.images.tobytes() == b.images.tobytes()


def test_round_trip_is_bit_exact(tiny_capture, tmp_path):
    p = tiny_capture.save(tmp_path / "run.qkv")
    back = load(p)
    _same(tiny_capture, back)
    assert back.has_values
    # a loaded (disk-backed) capture saves again identically
    _same(back, load(back.save(tmp_path / "again.qkv")))


def test_image_round_trip(vit_capture, tmp_path):
    back = load(vit_capture.save(tmp_path / "img.qkv"))
    _same(vit_capture, back)
    assert back.images.shape == (3, 128, 128, 3) and back.images.dtype == np.uint8
    assert list(back.tokens.columns) == ["seq", "pos", "token", "display", "special", "row", "col"]


def test_float16_storage(tiny_capture, tmp_path):
    from _models import tiny_bert
    from qkviz import capture

    half = capture(tiny_bert(), list(tiny_capture.sequences["text"]), dtype="float16", progress=False)
    assert half.q(0, 0).dtype == np.float32
    np.testing.assert_allclose(half.q(1, 2), tiny_capture.q(1, 2), rtol=2e-3, atol=2e-3)
    back = load(half.save(tmp_path / "h.qkv"))
    assert back.q(1, 2).tobytes() == half.q(1, 2).tobytes()


def test_one_head_loads_without_the_rest(tiny_capture, tmp_path, monkeypatch):
    back = load(tiny_capture.save(tmp_path / "run.qkv"))
    read = []
    from qkviz._capture._store import DiskTensors

    real = DiskTensors._entry

    def spy(self, i, key):
        read.append(key)
        return real(self, i, key)

    monkeypatch.setattr(DiskTensors, "_entry", spy)
    back.q(1, 3)
    assert read == ["q.1.3"]


def test_missing_and_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="no capture store"):
        load(tmp_path / "nope.qkv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a qkviz capture store"):
        load(tmp_path / "empty")


def test_truncated_tensor_file(tiny_capture, tmp_path):
    p = tiny_capture.save(tmp_path / "run.qkv")
    f = p / "part-00000.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(StoreError, match="truncated"):
        load(p)


def test_corrupted_tensor_bytes(tiny_capture, tmp_path):
    p = tiny_capture.save(tmp_path / "run.qkv")
    f = p / "part-00000.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-10] ^= 0xFF  # same size, one flipped byte in the last tensor's data
    f.write_bytes(bytes(raw))
    cap = load(p)  # sizes match, so it opens; the damaged tensor is caught when read
    with pytest.raises(StoreError, match="corrupted"):
        for layer in cap.layers:
            for h in cap.heads:
                cap.q(layer, h), cap.k(layer, h), cap.v(layer, h)


def test_corrupted_meta_and_table(tiny_capture, tmp_path):
    p = tiny_capture.save(tmp_path / "run.qkv")
    t = p / "part-00000.tokens.parquet"
    raw = bytearray(t.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    t.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupted"):
        load(p)
    (p / "meta.json").write_text('{"format": "qkviz.capture", "vers')
    with pytest.raises(StoreError, match="truncated or corrupted"):
        load(p)


def test_unknown_version(tiny_capture, tmp_path):
    p = tiny_capture.save(tmp_path / "run.qkv")
    meta = json.loads((p / "meta.json").read_text())
    meta["version"] = 99
    (p / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="version 99"):
        load(p)


def test_failed_save_leaves_old_store_intact(tiny_capture, tmp_path, monkeypatch):
    p = tiny_capture.save(tmp_path / "run.qkv")
    before = {f.name: f.read_bytes() for f in p.iterdir()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store.StoreWriter, "append", boom)
    with pytest.raises(OSError, match="disk full"):
        tiny_capture.save(p)
    assert {f.name: f.read_bytes() for f in p.iterdir()} == before
    assert [f.name for f in tmp_path.iterdir()] == ["run.qkv"]  # no temp folders left behind


def test_save_refuses_to_replace_foreign_folder(tiny_capture, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a qkviz capture"):
        tiny_capture.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="exists"):
        tiny_capture.save(tiny_capture.save(tmp_path / "run.qkv"), overwrite=False)


def test_accessors_reject_uncaptured(tiny_capture):
    with pytest.raises(InputError, match="layer 7"):
        tiny_capture.q(7, 0)
    with pytest.raises(InputError, match="head 9"):
        tiny_capture.k(0, 9)
    with pytest.raises(InputError, match="seq"):
        tiny_capture.attention(0, 0, 999)


def test_no_values_error(minilm_capture):
    assert not minilm_capture.has_values
    with pytest.raises(InputError, match="values=True"):
        minilm_capture.v(0, 0)


def test_attention_rows_are_distributions(minilm_capture):
    a = minilm_capture.attention(3, 5, 2)
    n = int(minilm_capture.sequences["n_tokens"][2])
    assert a.shape == (n, n) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(1), 1, atol=1e-5)


def test_multi_part_save_round_trip(tmp_path, monkeypatch):
    """Saving writes one part per group of batches; both in-memory and disk-backed captures."""
    from _models import tiny_bert
    from qkviz import capture
    from qkviz.data import demo_sentences

    cap = capture(tiny_bert(), demo_sentences(5), batch_size=2, values=True, progress=False)
    orig = store.MemoryTensors.parts
    monkeypatch.setattr(store.MemoryTensors, "parts", lambda self: orig(self, max_bytes=1))
    back = load(cap.save(tmp_path / "a.qkv"))
    assert len(list((tmp_path / "a.qkv").glob("part-*.safetensors"))) == 3
    _same(cap, back)
    again = load(back.save(tmp_path / "b.qkv"))
    assert len(list((tmp_path / "b.qkv").glob("part-*.safetensors"))) == 3
    _same(cap, again)


def test_returned_arrays_are_the_callers(tmp_path):
    """Editing what q() returns never changes the capture (in memory or read from a store)."""
    from _models import tiny_bert
    from qkviz import capture

    cap = capture(tiny_bert(), ["One sentence.", "And another one."], heads=[1], progress=False)
    for c in (cap, load(cap.save(tmp_path / "r.qkv"))):
        before = c.q(0, 1).copy()
        c.q(0, 1)[:] = 0
        c.k(0, 1)[:] = 0
        np.testing.assert_array_equal(c.q(0, 1), before)


def test_uncopied_reads_are_read_only_and_equal(tmp_path):
    """``get(copy=False)`` (the static export's attention) hands out the stored vectors read-only:
    equal to what ``get`` copies, never writable, and the copies ``q()`` returns stay writable."""
    from _models import tiny_bert
    from qkviz import capture

    cap = capture(tiny_bert(), ["One sentence.", "And another one."], heads=[1], progress=False)
    for c in (cap, load(cap.save(tmp_path / "r.qkv"))):
        src = c._source()
        for _ in range(2):  # the first read and a cache hit
            view = src.get("q", 0, 1, copy=False)
            np.testing.assert_array_equal(view, src.get("q", 0, 1))
            with pytest.raises(ValueError, match="read-only"):
                view[:] = 0
        c.q(0, 1)[:] = 0  # a writable copy, as before
        np.testing.assert_array_equal(src.get("q", 0, 1, copy=False), view)


def test_version_1_stores_still_load(tmp_path, tiny_capture):
    """Stores written before score terms existed (format version 1) read as plain captures."""
    import json

    import qkviz

    path = tiny_capture.save(tmp_path / "v1")
    meta = json.loads((path / "meta.json").read_text())
    meta["version"] = 1
    for key in ("softcap", "terms", "terms_file"):
        meta.pop(key, None)
    (path / "meta.json").write_text(json.dumps(meta))
    back = qkviz.load(path)
    assert back.terms == {} and back.geometry.family(0) == "plain"
    np.testing.assert_array_equal(back.attention(1, 2, 0), tiny_capture.attention(1, 2, 0))


def test_damaged_terms_are_caught(tmp_path):
    import qkviz

    from . import _zoo

    model, tok = _zoo.build("bloom")
    path = qkviz.capture((model, tok), ["A short sentence.", "Two."], progress=False).save(tmp_path / "b")
    f = next(path.glob("terms*.safetensors"))
    data = bytearray(f.read_bytes())
    data[-2] ^= 0xFF  # flip bits inside the last tensor, keep the size
    f.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="checksum"):
        qkviz.load(path)
