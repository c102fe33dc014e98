"""Streaming to disk: same result as in memory; an interrupted run leaves a readable store and resumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qkviz import capture
from qkviz._capture import load
from qkviz.data import demo_sentences
from qkviz.errors import StoreError


@pytest.fixture(scope="module")
def texts():
    return demo_sentences(10)


@pytest.fixture(scope="module")
def model():
    from _models import tiny_bert

    return tiny_bert()


def _equal(a, b):
    pd.testing.assert_frame_equal(a.tokens, b.tokens)
    pd.testing.assert_frame_equal(a.sequences, b.sequences)
    for layer in a.layers:
        for h in a.heads:
            np.testing.assert_array_equal(a.q(layer, h), b.q(layer, h))
            np.testing.assert_array_equal(a.k(layer, h), b.k(layer, h))


def test_stream_equals_memory(model, texts, tmp_path):
    mem = capture(model, texts, batch_size=3, progress=False)
    disk = capture(model, texts, batch_size=3, progress=False, out=tmp_path / "s.qkv")
    assert len(list(tmp_path.glob("s.qkv/part-*.safetensors"))) == 4  # one part per batch
    _equal(mem, disk)
    _equal(mem, load(tmp_path / "s.qkv"))


class Interrupt(Exception):
    pass


def _stop_after(net, n_calls):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise Interrupt

    return net.register_forward_pre_hook(hook)


def test_interrupted_stream_is_readable_and_resumes(model, texts, tmp_path):
    out = tmp_path / "run.qkv"
    handle = _stop_after(model[0], 3)  # batch 1, its eager check, batch 2; batch 3 fails
    try:
        with pytest.raises(Interrupt):
            capture(model, texts, batch_size=3, progress=False, out=out)
    finally:
        handle.remove()
    with pytest.warns(UserWarning, match="partial capture"):
        part = load(out)
    assert len(part.sequences) == 6 and part.sequences["seq"].tolist() == list(range(6))
    mem = capture(model, texts, batch_size=3, progress=False)
    np.testing.assert_array_equal(part.q(1, 2), mem.q(1, 2)[: len(part.tokens)])

    with pytest.raises(StoreError, match="resume=True"):
        capture(model, texts, batch_size=3, progress=False, out=out)
    with pytest.raises(StoreError, match="other settings"):
        capture(model, texts, batch_size=4, progress=False, out=out, resume=True)
    with pytest.raises(StoreError, match="other inputs"):
        capture(model, texts[::-1], batch_size=3, progress=False, out=out, resume=True)

    done = capture(model, texts, batch_size=3, progress=False, out=out, resume=True)
    _equal(mem, done)
    # resuming a complete store just opens it
    _equal(mem, capture(model, texts, batch_size=3, progress=False, out=out, resume=True))


def test_stray_temp_files_of_a_killed_run_are_dropped(model, texts, tmp_path):
    out = tmp_path / "run.qkv"
    handle = _stop_after(model[0], 2)  # batch 1 and its eager check; batch 2 fails
    try:
        with pytest.raises(Interrupt):
            capture(model, texts, batch_size=5, progress=False, out=out)
    finally:
        handle.remove()
    (out / ".part-00001.safetensors.tmp").write_bytes(b"half written")
    (out / "part-00001.tokens.parquet").write_bytes(b"half written")
    done = capture(model, texts, batch_size=5, progress=False, out=out, resume=True)
    assert len(done.sequences) == 10
    assert not list(out.glob(".*.tmp"))
