"""embed() on captures of every score family: layouts from the right vectors, recall against true attention."""

from __future__ import annotations

import numpy as np
import pytest

import qkviz
from capture import _zoo
from qkviz._capture._run import capture
from qkviz.data import demo_sentences


@pytest.fixture(scope="module")
def caps():
    texts = demo_sentences(6)
    out = {}
    for name in ("bloom", "gpt_oss", "deberta_v2", "gemma2"):
        model, tok = _zoo.build(name)
        out[name] = capture((model, tok), texts, batch_size=3, progress=False)
    return out


@pytest.mark.parametrize("method", ["pca", "attention"])
@pytest.mark.parametrize("name", ["bloom", "gpt_oss", "deberta_v2", "gemma2"])
def test_every_family_embeds(caps, name, method):
    cap = caps[name]
    kw = {"n_iter": 30, "early_exaggeration_iter": 10} if method == "attention" else {}
    emb = qkviz.embed(cap, method=method, layers=[1], executor="serial", cache=False, progress=False, **kw)
    assert emb.cells == [(1, h) for h in cap.heads]
    for cell in emb.cells:
        y = emb.coords(*cell)
        assert y.shape == (2 * cap.n_tokens, 2) and np.isfinite(y).all()
    df = emb.faithfulness(k=3)
    assert df["recall"].between(0, 1).all() and df["recall"].notna().all()


def test_alibi_layout_sees_the_augmented_vectors(caps):
    """An ALiBi head's layout norms are those of [q, 1/c] and [k, m·p_j] after the joint transform."""
    cap = caps["bloom"]
    emb = qkviz.embed(cap, method="pca", layers=[0], heads=[0], executor="serial", cache=False, progress=False)
    qa, ka = cap.layout_vectors(0, 0)
    t = emb.transforms[(0, 0)]
    assert t.shift.shape == (cap.d_head + 1,)
    qn, kn = t.apply(qa, ka)
    norms = np.concatenate([np.linalg.norm(qn, axis=1), np.linalg.norm(kn, axis=1)])
    np.testing.assert_allclose(emb.norms(0, 0), norms, rtol=1e-5)
