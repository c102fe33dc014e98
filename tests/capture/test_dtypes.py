"""float16 and bfloat16 storage: faithful bits, float32 on read, and attention within the derived bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qkviz import capture
from qkviz._capture import _dtypes
from qkviz.attention import attention_rows
from qkviz.data import demo_sentences
from qkviz.errors import InputError


@pytest.fixture(scope="module")
def texts():
    return demo_sentences(8)


@pytest.fixture(scope="module")
def model():
    from _models import tiny_bert

    return tiny_bert()


def test_encode_matches_torch_rounding():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.normal(size=5000).astype(np.float32) * 10.0 ** rng.integers(-8, 8, 5000),
            # exact ties between two bfloat16 neighbours round to the even one
            (np.arange(1, 200, dtype=np.uint32) << 16 | 0x8000).view(np.float32),
            np.array([0.0, -0.0, 1e-40, 3e38], np.float32),
        ]
    ).astype(np.float32)
    for dtype, tdt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        mine = _dtypes.decode(_dtypes.encode(x, dtype))
        theirs = torch.from_numpy(x).to(tdt).to(torch.float32).numpy()
        np.testing.assert_array_equal(mine, theirs)
        host = _dtypes.host_array(_dtypes.to_storage(torch.from_numpy(x), dtype))
        np.testing.assert_array_equal(_dtypes.decode(host), theirs)
    assert _dtypes.host_array(_dtypes.to_storage(torch.ones(2), "bfloat16")).dtype == np.uint16


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_store_round_trip_is_bit_exact(model, texts, dtype, tmp_path):
    mem = capture(model, texts, dtype=dtype, batch_size=3, progress=False)
    disk = capture(model, texts, dtype=dtype, batch_size=3, progress=False, out=tmp_path / "s.qkv")
    ref = capture(model, texts, batch_size=3, progress=False)
    for cap in (mem, disk):
        assert cap.storage_dtype == dtype and cap.params["dtype"] == dtype
        q = cap.q(1, 2)
        assert q.dtype == np.float32
        np.testing.assert_array_equal(q, _dtypes.decode(_dtypes.encode(ref.q(1, 2), dtype)))
        np.testing.assert_array_equal(cap.k(0, 1), _dtypes.decode(_dtypes.encode(ref.k(0, 1), dtype)))
    saved = mem.save(tmp_path / "saved.qkv")
    from qkviz import load

    np.testing.assert_array_equal(load(saved).q(0, 3), mem.q(0, 3))
    assert load(saved).storage_dtype == dtype


def test_float16_refuses_values_it_cannot_hold(model, texts):
    net, tok = model
    import copy

    loud = copy.deepcopy(net)
    with torch.no_grad():
        loud.encoder.layer[1].attention.self.query.weight.mul_(1e6)
    with pytest.raises(InputError, match="bfloat16"):
        capture((loud, tok), texts[:2], dtype="float16", check=False, progress=False)
    cap = capture((loud, tok), texts[:2], dtype="bfloat16", check=False, progress=False)
    assert np.isfinite(cap.q(1, 0)).all() and np.abs(cap.q(1, 0)).max() > 65504


def test_dtype_names():
    assert _dtypes.storage_dtype(torch.bfloat16) == "bfloat16"
    assert _dtypes.storage_dtype("half") == "float16"
    with pytest.raises(InputError, match="bfloat16"):
        _dtypes.storage_dtype("int8")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_bound_holds_on_random_heads(dtype):
    """Random heads with large norms and a wide spread of magnitudes (subnormals included)."""
    rng = np.random.default_rng(1)
    worst = 0.0
    for trial in range(40):
        n, d = int(rng.integers(2, 40)), int(rng.choice([8, 32, 64]))
        scale = 10.0 ** rng.uniform(-6, 1.2)
        q = (rng.normal(size=(n, d)) * scale * rng.lognormal(0, 1, size=(n, d))).astype(np.float32)
        k = (rng.normal(size=(n, d)) * scale * rng.lognormal(0, 1, size=(n, d))).astype(np.float32)
        causal, window = bool(trial % 2), (None if trial % 3 else 4)
        exact = attention_rows(q, k, d**-0.5, causal, window)
        qs, ks = (_dtypes.decode(_dtypes.encode(a, dtype)) for a in (q, k))
        stored = attention_rows(qs, ks, d**-0.5, causal, window)
        bound = _dtypes.attention_error_bound(q, k, d**-0.5, dtype, exact, causal, window)
        err = np.abs(stored.astype(np.float64) - exact)
        assert (err <= bound).all(), (trial, float((err - bound).max()))
        worst = max(worst, float(np.divide(err, bound, out=np.zeros_like(err), where=bound > 0).max()))
    assert worst > 1e-3  # the bound is not vacuous: errors reach a visible share of it


def _real_heads_within_bound(lm, texts):
    """Capture in float32, float16 and bfloat16; every head's attention within the bound."""
    ref = capture(lm, texts, batch_size=8, progress=False)
    out = {}
    for dtype in ("float16", "bfloat16"):
        cap = capture(lm, texts, batch_size=8, progress=False, dtype=dtype)
        worst_err, worst_share = 0.0, 0.0
        for layer in ref.layers:
            for head in ref.heads:
                q, k = ref.q(layer, head), ref.k(layer, head)
                for seq in range(len(ref.sequences)):
                    off, n = (int(ref.sequences[c].iloc[seq]) for c in ("offset", "n_tokens"))
                    exact = ref.attention(layer, head, seq)
                    bound = _dtypes.attention_error_bound(
                        q[off : off + n], k[off : off + n], ref.scaling[layer], dtype, exact,
                        ref.causal, ref.geometry.window(layer),
                    )  # fmt: skip
                    err = np.abs(cap.attention(layer, head, seq).astype(np.float64) - exact)
                    assert (err <= bound).all(), (dtype, layer, head, seq, float(err.max()))
                    worst_err = max(worst_err, float(err.max()))
                    share = np.divide(err, bound, out=np.zeros_like(err), where=bound > 0)
                    worst_share = max(worst_share, float(share.max()))
        out[dtype] = (worst_err, worst_share)
    print(f"{lm.spec['name']}: worst |error| and error/bound per dtype: {out}")
    # bfloat16 keeps 3 fewer bits than float16: its worst error is larger
    assert out["bfloat16"][0] > out["float16"][0] > 0
    return out


@pytest.mark.slow
def test_bound_on_real_minilm_heads(texts):
    from qkviz.models import load_model

    worst = _real_heads_within_bound(load_model("minilm", device="cpu"), texts)
    assert worst["float16"][0] < 1e-2  # every one of 72 heads: attention to ~2 decimals or better


@pytest.mark.slow
def test_bound_on_real_smollm2_heads(texts):
    from qkviz.models import load_model

    _real_heads_within_bound(load_model("smollm2", device="cpu"), texts[:4])
