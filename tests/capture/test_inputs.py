"""Bad input gives a typed error that says what to do; documented coercions do what they say."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from qkviz import capture
from qkviz._capture._inputs import to_rgb
from qkviz.errors import InputError


@pytest.fixture(scope="module")
def tiny():
    from _models import tiny_bert

    return tiny_bert()


@pytest.mark.parametrize(("inputs", "match"), [
    ([], "empty"),
    ("", "empty"),
    (["fine", "   "], "input 1 is an empty"),
    (["fine", 3], "input 1 is a int"),
    ([None], "NoneType"),
    (42, "list of strings or of images"),
    (["a text", np.zeros((8, 8, 3), np.uint8)], "mix texts and images"),
])  # fmt: skip
def test_bad_inputs(tiny, inputs, match):
    with pytest.raises(InputError, match=match):
        capture(tiny, inputs, progress=False)


@pytest.mark.parametrize(("kw", "match"), [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -2}, "batch_size"),
    ({"batch_size": 1.5}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"layers": [2]}, "layers 2 is out of range: the model has 2 layers"),
    ({"layers": [-3]}, "out of range"),
    ({"heads": [4]}, "heads 4 is out of range"),
    ({"heads": []}, "empty"),
    ({"heads": ["0"]}, "ints"),
    ({"max_length": 0}, "max_length"),
    ({"max_length": 10_000}, "exceeds the model's limit"),
    ({"truncation": "maybe"}, "truncation"),
    ({"dtype": "int8"}, "dtype"),
    ({"resume": True}, "needs out"),
])  # fmt: skip
def test_bad_options(tiny, kw, match):
    with pytest.raises(InputError, match=match):
        capture(tiny, ["A sentence."], progress=False, **kw)


def test_negative_indices_count_from_the_end(tiny):
    cap = capture(tiny, ["A sentence."], layers=-1, heads=[-1, 0], progress=False)
    assert cap.layers == (1,) and cap.heads == (0, 3)


def test_images_to_a_text_model(tiny):
    with pytest.raises(InputError, match="takes text inputs but images were given"):
        capture(tiny, [np.zeros((8, 8, 3), np.uint8)], progress=False)


def test_truncation_warns_flags_or_errors(tiny):
    long = "word " * 40
    with pytest.warns(UserWarning, match="truncated"):
        cap = capture(tiny, ["short text", long], max_length=12, progress=False)
    assert cap.sequences["truncated"].tolist() == [False, True]
    assert cap.sequences["n_tokens"].tolist()[1] == 12
    assert cap.tokens["token"][cap.tokens["seq"] == 1].iloc[-1] == "[SEP]"  # the tokenizer's own truncation
    with pytest.raises(InputError, match="would be truncated"):
        capture(tiny, [long], max_length=12, truncation="error", progress=False)


def test_text_token_table(tiny_capture):
    t = tiny_capture.tokens
    assert list(t.columns) == ["seq", "pos", "token", "display", "token_id", "special", "word_id"]
    assert str(t["seq"].dtype) == "int32" and str(t["token_id"].dtype) == "int64"
    assert t["special"].sum() == 2 * len(tiny_capture.sequences)  # [CLS] and [SEP]
    assert not t["display"].str.startswith("##").any()
    s = tiny_capture.sequences
    assert (s["offset"].to_numpy()[1:] == np.cumsum(s["n_tokens"].to_numpy())[:-1]).all()
    assert (t.groupby("seq")["pos"].max().to_numpy() == s["n_tokens"].to_numpy() - 1).all()


# ---- image coercions --------------------------------------------------------------------------


def test_grey_rgba_float_and_path_images_become_rgb(tmp_path):
    from PIL import Image

    grey = np.full((10, 12), 100, np.uint8)
    assert np.asarray(to_rgb(grey, 0)).tolist()[0][0] == [100, 100, 100]
    clear = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert np.asarray(to_rgb(clear, 0))[0, 0].tolist() == [255, 255, 255]  # composited onto white
    assert np.asarray(to_rgb(np.ones((4, 4, 3)) * 0.5, 0))[0, 0].tolist() == [128, 128, 128]
    assert to_rgb(Image.new("L", (5, 5)), 0).mode == "RGB"
    f = tmp_path / "x.png"
    Image.new("RGBA", (6, 6), (10, 20, 30, 255)).save(f)
    assert np.asarray(to_rgb(pathlib.Path(f), 0))[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize(("img", "match"), [
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 3), np.int32), "uint8"),
    (np.full((4, 4), np.nan), "NaN"),
    (pathlib.Path("/no/such/image.png"), "cannot read"),
])  # fmt: skip
def test_bad_images(img, match):
    with pytest.raises(InputError, match=match):
        to_rgb(img, 0)


def test_grey_image_capture():
    from . import _zoo

    model, proc = _zoo.build("vit")
    cap = capture((model, proc), {"grey": np.full((40, 40), 80, np.uint8)}, progress=False)
    assert cap.sequences["text"].tolist() == ["grey"]
    assert cap.images.shape[-1] == 3 and abs(int(cap.images[0, 0, 0, 0]) - 80) <= 1
    t = cap.tokens
    assert t["special"].tolist() == [True] + [False] * 16
    assert t["row"].tolist()[1:6] == [0, 0, 0, 0, 1] and t["col"].tolist()[1:6] == [0, 1, 2, 3, 0]
