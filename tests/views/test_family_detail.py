"""The side panel's view of a head's score function: sink share, content and position parts."""

from __future__ import annotations

import numpy as np
import pytest

import qkviz
from capture import _zoo
from qkviz._capture._run import capture
from qkviz.analysis import family_detail, row_stats, sequence_detail
from qkviz.data import demo_sentences


@pytest.fixture(scope="module")
def caps():
    out = {}
    for name in ("gpt_oss", "bloom", "mpnet_big", "bert"):
        model, tok = _zoo.build(name)
        out[name] = capture((model, tok), demo_sentences(4), batch_size=4, progress=False)
    return out


def test_sink_heads_report_each_querys_share(caps):
    cap = caps["gpt_oss"]
    d = sequence_detail(cap, 1, 2, 1)
    assert d["family"] == "sink"
    np.testing.assert_allclose(d["raw"].sum(1) + d["sink"], 1.0, atol=1e-5)
    assert d["position"] is None


@pytest.mark.parametrize("name, family", [("bloom", "alibi"), ("mpnet_big", "relative")])
def test_position_heads_report_both_parts_of_their_scores(caps, name, family):
    cap = caps[name]
    d = family_detail(cap, 0, 1, 2)
    assert d["family"] == family
    content, position = d["content"], d["position"]
    n = content.shape[0]
    assert position.shape == (n, n) and np.abs(position).max() > 0
    if family == "alibi":  # + m · p_j: the same for every query, growing with the key's position
        np.testing.assert_allclose(position, d["alibi"] * np.arange(n)[None, :].repeat(n, 0), rtol=1e-5)
    assert ((d["position_effect"] >= 0) & (d["position_effect"] <= 1)).all()


def test_plain_heads_add_nothing(caps):
    d = family_detail(caps["bert"], 0, 0, 0)
    assert d["family"] == "plain" and d["sink"] is None and d["position"] is None


def test_row_stats_cover_every_query(caps):
    cap = caps["gpt_oss"]
    r = row_stats(cap, 0, 3)
    assert r["sink"].shape == (cap.n_tokens,) and np.isfinite(r["sink"]).all()
    assert r["position_effect"] is None
    first = int(cap.sequences["n_tokens"][0])
    np.testing.assert_allclose(r["sink"][:first], cap.sink_share(0, 3, 0))


def test_static_page_embeds_what_each_family_adds(caps, tmp_path):
    from qkviz.export._snapshot import snapshot
    from qkviz.wire import View, WidgetState

    emb = qkviz.embed(caps["mpnet_big"], method="pca", executor="serial", cache=False, progress=False)
    snap = snapshot(WidgetState.from_embedding(emb), View(), top_k=3)
    fam = snap["families"]
    assert len(fam) == len(emb.cells) and all(e["family"] == "relative" for e in fam)
    assert "offset_bias" in fam[0] and "position_effect" in fam[0] and "sink" not in fam[0]
    plain = qkviz.embed(caps["bert"], method="pca", executor="serial", cache=False, progress=False)
    assert snapshot(WidgetState.from_embedding(plain), View())["families"] is None
    assert qkviz.save_html(emb, tmp_path / "mpnet.html").stat().st_size > 10_000


def test_the_panels_attention_request_carries_the_family_detail(caps):
    from qkviz.widget._commands import dispatch
    from qkviz.wire import WidgetState

    emb = qkviz.embed(caps["gpt_oss"], method="pca", executor="serial", cache=False, progress=False)
    reply, _ = dispatch(WidgetState.from_embedding(emb), {"kind": "attention", "layer": 0, "head": 1, "seq": 2,
                                                          "detail": True})  # fmt: skip
    assert reply["family"] == "sink" and reply["sink"] is not None and reply["position"] is None
