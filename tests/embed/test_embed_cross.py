"""embed() of an encoder-decoder capture: every attention laid out, absent points NaN and kept apart."""

from __future__ import annotations

import numpy as np
import pytest

import qkviz
from capture import _zoo
from qkviz._capture._run import capture
from qkviz.data import demo_sentences

TARGETS = ["Le chat.", "Un chien aboie.", "Il pleut beaucoup aujourd'hui.", "Bonjour tout le monde."]


@pytest.fixture(scope="module")
def cap():
    model, tok = _zoo.build("t5")
    return capture((model, tok), demo_sentences(4), targets=TARGETS, batch_size=2, progress=False)


@pytest.fixture(scope="module")
def emb(cap):
    return qkviz.embed(cap, method="pca", layers=[1], executor="serial", cache=False, progress=False)


def test_every_attention_has_its_heads(cap, emb):
    assert emb.attns == ("encoder", "decoder", "cross")
    assert emb.cells == [(a, 1, h) for a in ("encoder", "decoder", "cross") for h in range(4)]
    with pytest.raises(qkviz.EmbeddingError, match="attn="):
        emb.coords(1, 0)


@pytest.mark.parametrize("attn, q_stream, k_stream", [("encoder", 0, 0), ("decoder", 1, 1), ("cross", 1, 0)])
def test_absent_points_are_nan_and_only_those(cap, emb, attn, q_stream, k_stream):
    stream = cap.tokens["stream"].to_numpy()
    ok = np.concatenate([stream == q_stream, stream == k_stream])
    np.testing.assert_array_equal(emb.present(attn), ok)
    y = emb.coords(1, 2, attn=attn)
    assert y.shape == (2 * cap.n_tokens, 2)
    assert np.isfinite(y[ok]).all() and np.isnan(y[~ok]).all()
    assert np.abs(y[ok]).max() == pytest.approx(1.0)
    n = emb.norms(1, 2, attn=attn)
    assert np.isfinite(n[ok]).all() and np.isnan(n[~ok]).all()


def test_cross_faithfulness_scores_decoder_queries_against_encoder_keys(emb):
    df = emb.faithfulness(k=3)
    assert list(df.columns[:3]) == ["attn", "layer", "head"]
    assert set(df["attn"]) == {"encoder", "decoder", "cross"}
    assert df["recall"].between(0, 1).all() and df["recall"].notna().all()


def test_save_and_load_keep_the_attentions(tmp_path, emb, cap):
    back = qkviz.Embedding.load(emb.save(tmp_path / "e"), capture=cap)
    assert back.cells == emb.cells and back.attns == emb.attns
    np.testing.assert_array_equal(back.coords(1, 3, attn="cross"), emb.coords(1, 3, attn="cross"))
    np.testing.assert_array_equal(back.present("cross"), emb.present("cross"))
    np.testing.assert_array_equal(back.attention(1, 3, 2, attn="cross"), cap.attention(1, 3, 2, attn="cross"))


def test_one_attention_can_be_embedded_alone(cap):
    one = qkviz.embed(cap, method="pca", attn="cross", executor="serial", cache=False, progress=False)
    assert one.attns == ("cross",)
    assert one.cells[0] == ("cross", 0, 0)


def test_attention_guided_layout_of_cross_attention_is_refused_with_the_alternatives(cap):
    with pytest.raises(qkviz.EmbeddingError, match="method='tsne'"):
        qkviz.embed(cap, method="attention", attn="cross", executor="serial", cache=False, progress=False)
