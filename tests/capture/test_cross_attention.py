"""Encoder-decoder models (issue 12): encoder self-, decoder self- and cross-attention, all exact.

Captures run padded batches of unequal source *and* target lengths; the reference runs each pair
alone. T5 adds its relative buckets to both self-attentions (not to cross-attention); Whisper reads
numpy waveforms.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qkviz._capture._run import capture
from qkviz.data import demo_sentences
from qkviz.errors import InputError

from . import _zoo
from ._reference import max_error_seq2seq

TOL = 1e-4
TARGETS = [
    "Le chat.",
    "Un chien aboie fort dans la nuit noire.",
    "Oui.",
    "Il pleut beaucoup aujourd'hui sur la ville.",
    "Bonjour.",
    "Une phrase assez longue pour tester le rembourrage des cibles.",
]


@pytest.fixture(scope="module")
def sources():
    return demo_sentences(5) + ["Short one."]


@pytest.fixture(scope="module")
def pairs(sources):
    out = {}
    for name in _zoo.SEQ2SEQ:
        model, tok = _zoo.build(name)
        out[name] = (capture((model, tok), sources, targets=TARGETS, batch_size=4, progress=False), model, tok)
    return out


@pytest.mark.parametrize("name", _zoo.SEQ2SEQ)
def test_every_attention_of_an_encoder_decoder_is_exact(pairs, name):
    cap, model, _ = pairs[name]
    assert list(cap.attns) == ["encoder", "decoder", "cross"]
    assert cap.streams == ("encoder", "decoder")
    errors = max_error_seq2seq(cap, model)
    assert max(errors.values()) < TOL, errors
    g = cap.attns
    assert (g["encoder"].causal, g["decoder"].causal, g["cross"].causal) == (False, True, False)
    assert (g["cross"].query_stream, g["cross"].key_stream) == (1, 0)


def test_t5_relative_buckets_are_needed_and_cross_attention_has_none(pairs):
    cap, model, _ = pairs["t5"]
    assert {a: g.family(0) for a, g in cap.attns.items()} == {
        "encoder": "relative",
        "decoder": "relative",
        "cross": "plain",
    }
    assert all(s == 1.0 for g in cap.attns.values() for s in g.scaling.values())  # T5 does not scale q·k
    bare = {a: dataclasses.replace(g, terms={}) for a, g in cap.attns.items()}
    errors = max_error_seq2seq(dataclasses.replace(cap, attns=bare, terms={}), model)
    assert errors["encoder"] > 100 * TOL and errors["decoder"] > 100 * TOL


def test_rows_and_shapes_follow_the_streams(pairs, sources):
    cap, _, tok = pairs["bart"]
    seqs = cap.sequences
    assert list(seqs["target"]) == TARGETS and list(seqs["text"]) == sources
    for s in range(len(seqs)):
        n_enc, n = int(seqs["n_encoder"][s]), int(seqs["n_tokens"][s])
        assert cap.attention(1, 0, s, attn="encoder").shape == (n_enc, n_enc)
        assert cap.attention(1, 0, s, attn="decoder").shape == (n - n_enc, n - n_enc)
        assert cap.attention(1, 0, s, attn="cross").shape == (n - n_enc, n_enc)
    # the decoder reads its start token, then the target
    dec = cap.tokens[(cap.tokens["seq"] == 2) & (cap.tokens["stream"] == 1)]["token_id"].tolist()
    assert dec[0] == 2 and dec[1:] == tok(text_target=TARGETS[2])["input_ids"]
    assert len(cap.query_rows("cross")) == len(cap.q(0, 0, attn="cross")) == int((cap.tokens["stream"] == 1).sum())
    assert len(cap.key_rows("cross")) == len(cap.k(0, 0, attn="cross")) == int((cap.tokens["stream"] == 0).sum())


def test_one_attention_must_be_named(pairs):
    cap, _, _ = pairs["bart"]
    with pytest.raises(InputError, match="attn="):
        cap.attention(0, 0, 0)
    with pytest.raises(InputError, match="attn="):
        _ = cap.layers


def test_streamed_and_saved_encoder_decoder_captures_equal_the_in_memory_one(tmp_path, pairs, sources):
    import qkviz

    cap, model, tok = pairs["t5"]
    disk = capture((model, tok), sources, targets=TARGETS, batch_size=4, progress=False, out=tmp_path / "run")
    saved = qkviz.load(cap.save(tmp_path / "saved"))
    for other in (disk, saved):
        assert other.attns == cap.attns and other.streams == cap.streams
        for name in cap.attns:
            for s in (0, 5):
                np.testing.assert_array_equal(other.attention(1, 3, s, attn=name), cap.attention(1, 3, s, attn=name))


def test_pairs_as_inputs(pairs, sources):
    cap, model, tok = pairs["bart"]
    again = capture((model, tok), list(zip(sources, TARGETS)), batch_size=4, progress=False)
    np.testing.assert_array_equal(again.q(1, 1, attn="cross"), cap.q(1, 1, attn="cross"))


def test_an_encoder_decoder_without_targets_says_what_to_pass(sources):
    model, tok = _zoo.build("bart")
    with pytest.raises(InputError, match="targets="):
        capture((model, tok), sources, progress=False)
    with pytest.raises(InputError, match="one target per input"):
        capture((model, tok), sources, targets=TARGETS[:2], progress=False)
    bert, btok = _zoo.build("bert")
    with pytest.raises(InputError, match="encoder-decoder"):
        capture((bert, btok), sources, targets=TARGETS, progress=False)


# ---- speech -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech():
    model, fe = _zoo.build("whisper")
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    waves = [
        (0.1 * np.sin(2 * np.pi * 220 * t[:8000]) + 0.02 * rng.normal(size=8000)).astype(np.float32),
        (0.1 * rng.normal(size=12800)).astype(np.float32),
        (0.1 * np.sin(2 * np.pi * 440 * t[:4000])).astype(np.float32),
    ]
    cap = capture(model, waves, targets=TARGETS[:3], processor=fe, tokenizer=_zoo.tokenizer(), batch_size=2,
                  progress=False)  # fmt: skip
    return cap, model, fe, waves


def test_whisper_from_numpy_waveforms_is_exact(speech):
    cap, model, fe, waves = speech
    feats = [fe([w], sampling_rate=16000, return_tensors="pt")["input_features"] for w in waves]
    errors = max_error_seq2seq(cap, model, features=feats)
    assert max(errors.values()) < TOL, errors


def test_whisper_frames_are_tokens_with_times(speech):
    cap, _, _, waves = speech
    frames = cap.tokens[cap.tokens["stream"] == 0]
    assert len(frames) == 3 * 50  # every frame of the 1-second window, padding silence included
    first = frames[frames["seq"] == 0]
    assert first["time"].tolist() == pytest.approx([0.02 * f for f in range(50)])
    # 0.5 s of audio: frames from 0.5 s on are the padded silence, marked special
    assert first["special"].tolist() == [t >= 0.5 for t in first["time"]]
    assert cap.attention(0, 0, 2, attn="cross").shape[1] == 50


def test_audio_at_another_rate_is_refused(speech):
    model, fe = _zoo.build("whisper")
    with pytest.raises(InputError, match="16000 Hz"):
        capture(model, [np.zeros(8000, np.float32)], targets=["x"], processor=fe, tokenizer=_zoo.tokenizer(),
                sampling_rate=8000, progress=False)  # fmt: skip


def test_verify_checks_every_attention(pairs):
    cap, model, tok = pairs["t5"]
    df = cap.verify((model, tok), batch_size=4)
    assert set(df["attn"]) == {"encoder", "decoder", "cross"}
    assert df.attrs["max"] < TOL
    other, _ = _zoo.build("t5", seed=1)
    assert cap.verify((other, tok), seqs=[0, 1]).attrs["max"] > 10 * TOL


def test_verify_a_speech_capture_with_its_waveforms(speech):
    from qkviz.models import load_model

    cap, model, fe, waves = speech
    df = cap.verify(load_model(model, _zoo.tokenizer(), processor=fe), waves)
    assert df.attrs["max"] < TOL
