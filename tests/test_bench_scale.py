"""bench/scale.py's logic on small inputs (no timing asserts): the synthetic store made without a
model, the HTML rows within their budget, and the streamed-capture memory rows."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("scale", ROOT / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_section(scale, tmp_path):
    args = scale.parser().parse_args(["--sections", "synthetic", "--scratch", str(tmp_path)])
    out = scale.run(args)
    row = out["synthetic"]
    assert out["machine"]["cpus"] >= 1 and len(out["load"]["before"]) == 3
    assert row["bytes_per_token_head"] == 16 * 4 * 2  # float32 q and k of d_head 16 per head
    assert row["store_bytes"] > row["tokens"] * row["heads"] * row["bytes_per_token_head"]
    page, whole = row["page"], row["whole"]
    assert page["sampled"] and page["bytes"] <= row["budget"] < whole["bytes"]
    assert page["points"] < whole["points"] == 2 * row["tokens"] * row["heads"]


def test_stream_section_rows(scale, tmp_path):
    from _models import tiny_bert

    net, tok = tiny_bert()
    net.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    args = scale.parser().parse_args(
        ["--sections", "stream", "--stream-sizes", "20,60", "--stream-model", str(tmp_path / "model"),
         "--scratch", str(tmp_path)]
    )  # fmt: skip
    row = scale.run(args)["stream"]
    small, big = row["runs"]["20"], row["runs"]["60"]
    assert small["sequences"] == 20 and big["sequences"] == 60
    assert big["store_bytes"] > small["store_bytes"] and small["peak_rss_mb"] > 0
    assert row["rss_ratio"] == pytest.approx(big["peak_rss_mb"] / small["peak_rss_mb"], abs=1e-3)
