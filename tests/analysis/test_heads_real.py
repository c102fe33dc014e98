"""The head atlas on the packaged models: properties measured, not assumed.

Measured on this machine (qkviz's demo sentences; ``notebooks/07-findings.ipynb`` recomputes them):

* MiniLM layer 0 head 2 puts 0.9995 of every query's attention on the previous token (mean
  distance 0.97): a textbook previous-token head.
* SmolLM2's first-token sink: about 0.11 of the attention in layers 0-1, 0.55 in layers 3-9, a dip
  in layers 10-11 and 0.6-0.9 in most deeper layers: it grows with depth, though not monotonically.
* On repeated random spans SmolLM2 has strong induction heads (layer 18 head 6: 0.86; layer 17
  head 4: 0.73), all in the second half of the network, far above the 0.03 of uniform attention.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from qkviz import load_model

    return load_model("smollm2", device="cpu")


def test_minilm_has_a_previous_token_head_in_layer_0(minilm_capture):
    df = minilm_capture.head_scores()
    best = df.loc[df["previous_token"].idxmax()]
    assert best["previous_token"] > 0.9
    assert best["layer"] == 0
    assert best["mean_distance"] < 1.2  # one step back, nothing else
    assert best["entropy"] < 0.1
    # and it is an outlier: the typical head attends back one step far less
    assert df["previous_token"].median() < 0.2


def test_smollm2_first_token_sink_grows_with_depth(smollm2, demo_texts):
    from qkviz import capture

    cap = capture(smollm2, demo_texts[:12], progress=False)
    by_layer = cap.head_scores().groupby("layer")["first_token"].mean()
    n = len(by_layer)
    rho = spearmanr(by_layer.index, by_layer.to_numpy()).statistic
    assert rho > 0.4, rho
    assert by_layer.iloc[-n // 3 :].mean() > 3 * by_layer.iloc[:2].mean()


def test_smollm2_induction_heads_on_repeated_random_spans(smollm2):
    from qkviz import capture
    from qkviz.data import induction_inputs

    length = 20
    texts = induction_inputs(smollm2.tokenizer, n=6, length=length, seed=0)
    cap = capture(smollm2, texts, progress=False)
    df = cap.head_scores()
    assert df.attrs["n_induction"] == 6 * length  # each token of the repeat has one earlier copy
    chance = np.mean(1.0 / np.arange(length + 1, 2 * length + 1))  # uniform causal attention
    top = df.nlargest(3, "induction")
    assert (top["induction"] > 10 * chance).all()
    assert (top["layer"] >= len(cap.layers) // 2).all()


def test_induction_inputs_round_trip_through_both_tokenizers(smollm2):
    from qkviz import load_model
    from qkviz.data import induction_inputs

    for tok in (smollm2.tokenizer, load_model("minilm").tokenizer):
        texts = induction_inputs(tok, n=3, length=7, seed=1)
        assert texts == induction_inputs(tok, n=3, length=7, seed=1)
        for t in texts:
            ids = tok(t, add_special_tokens=False)["input_ids"]
            assert len(ids) == 14 and ids[:7] == ids[7:] and len(set(ids[:7])) == 7
