"""Texts from a ``datasets.Dataset`` / ``IterableDataset``, a DataFrame, a generator or dict rows:
the same capture as the list of texts, read lazily (one batch at a time), streamed to a store and
resumed; bad inputs raise :class:`InputError` saying what to do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qkviz import capture
from qkviz._capture import _source, load
from qkviz.data import demo_sentences
from qkviz.errors import InputError, StoreError

from ._zoo import optional
from .test_stream import Interrupt, _equal, _stop_after

TEXTS = demo_sentences(10)


@pytest.fixture(scope="module")
def model():
    from _models import tiny_bert

    return tiny_bert()


@pytest.fixture(scope="module")
def reference(model):
    return capture(model, TEXTS, batch_size=3, progress=False)


def _dataset(**columns):
    datasets = optional("datasets", "datasets")
    return datasets.Dataset.from_dict(columns or {"text": TEXTS, "label": list(range(len(TEXTS)))})


def _counting(texts, log):
    """A generator of ``texts`` that records how many it has handed out."""
    for t in texts:
        log["read"] += 1
        yield t


def test_streams_give_the_list_capture(model, reference):
    frame = pd.DataFrame({"id": range(len(TEXTS)), "body": TEXTS})
    sources = [
        (frame, "body"),
        ((t for t in TEXTS), None),
        ([{"text": t, "n": i} for i, t in enumerate(TEXTS)], None),
        (({"body": t} for t in TEXTS), "body"),
    ]
    for src, column in sources:
        cap = capture(model, src, text_column=column, batch_size=3, progress=False)
        _equal(reference, cap)
        assert cap.sequences["text"].tolist() == TEXTS
    assert capture(model, (t for t in TEXTS), progress=False).params["n_inputs"] is None  # no progress total


def test_datasets_give_the_list_capture(model, reference):
    ds = _dataset()
    for src in (ds, ds.to_iterable_dataset()):
        cap = capture(model, src, batch_size=3, progress=False)
        _equal(reference, cap)
    assert capture(model, ds, batch_size=3, progress=False).params["n_inputs"] == len(TEXTS)  # a progress total
    assert capture(model, ds.to_iterable_dataset(), batch_size=3, progress=False).params["n_inputs"] is None


def test_a_stream_is_read_one_batch_at_a_time(model):
    """When the model runs on batch ``b``, at most ``b + 1`` batches (and the first-row peek) are read."""
    log = {"read": 0}
    seen = []
    handle = model[0].register_forward_pre_hook(lambda *_: seen.append(log["read"]))
    try:
        capture(model, _counting(TEXTS, log), batch_size=3, progress=False, check=False)
    finally:
        handle.remove()
    assert seen == [3, 6, 9, 10]


def test_a_dataset_is_read_lazily(model, monkeypatch):
    datasets = optional("datasets", "datasets")
    log = {"read": 0}

    def rows():
        for t in TEXTS:
            log["read"] += 1
            yield {"text": t}

    ds = datasets.IterableDataset.from_generator(rows)
    monkeypatch.setattr(_source, "_READ", 2)  # rows per read from the dataset
    seen = []
    handle = model[0].register_forward_pre_hook(lambda *_: seen.append(log["read"]))
    try:
        capture(model, ds, batch_size=3, progress=False, check=False)
    finally:
        handle.remove()
    assert seen[0] < len(TEXTS) and all(r <= 3 * (i + 1) + 2 for i, r in enumerate(seen)), seen


def test_a_stream_goes_to_a_store_and_resumes(model, reference, tmp_path):
    ds = _dataset()
    out = tmp_path / "run.qkv"
    handle = _stop_after(model[0], 3)  # batch 1, its eager check, batch 2; batch 3 fails
    try:
        with pytest.raises(Interrupt):
            capture(model, ds.to_iterable_dataset(), batch_size=3, progress=False, out=out)
    finally:
        handle.remove()
    with pytest.warns(UserWarning, match="partial capture"):
        assert len(load(out).sequences) == 6
    with pytest.raises(StoreError, match="other inputs"):
        capture(model, (t for t in TEXTS[::-1]), batch_size=3, progress=False, out=out, resume=True)
    done = capture(model, ds.to_iterable_dataset(), batch_size=3, progress=False, out=out, resume=True)
    _equal(reference, done)


def test_bad_streams_say_what_to_do(model):
    cases = [
        (((t for t in ["a text", "  ", "more"]),), {}, "row 1 is an empty.*filter"),
        (([{"text": "fine"}, {"body": "no text key"}],), {}, "row 1 has no 'text'"),
        (([{"text": "fine"}, {"text": 3}],), {}, "row 1, column 'text' holds a int"),
        (((t for t in []),), {}, "empty"),
        (([],), {"text_column": "text"}, "empty"),
        ((pd.DataFrame({"n": [1, 2]}),), {}, "which column"),
    ]
    for args, kw, match in cases:
        with pytest.raises(InputError, match=match):
            capture(model, *args, progress=False, **kw)


def test_bad_datasets_say_what_to_do(model):
    datasets = optional("datasets", "datasets")
    ds = _dataset()
    cases = [
        (ds, {"text_column": "body"}, "no column 'body'.*pass text_column="),
        (ds, {"text_column": "label"}, "does not hold text.*\\['text'\\]"),
        (ds.select([]), {}, "empty"),
        (_dataset(a=["x"], b=["y"]), {}, "which column.*\\['a', 'b'\\]"),
        (datasets.DatasetDict({"train": ds}), {}, "pass one split.*'train'"),
        (datasets.IterableDataset.from_generator(_rows_without_text), {}, "rows have no column 'text'"),
    ]
    for src, kw, match in cases:
        with pytest.raises(InputError, match=match):
            capture(model, src, progress=False, **kw)


def _rows_without_text():
    yield {"body": "a text"}


def test_lists_and_images_keep_their_path(model):
    """Lists of texts are not sources; a generator of images is read whole as before."""
    src, inputs = _source.open_source(TEXTS, None)
    assert src is None and inputs is TEXTS
    images = (np.zeros((8, 8, 3), np.uint8) for _ in range(2))
    src, inputs = _source.open_source(images, None)
    assert src is None and isinstance(inputs, list) and len(inputs) == 2


# ---- the capture plan (sample=, max_tokens=, shard=) over datasets and streams -------------------


def _same(a, b):
    """Same sequences (inputs mapped back), tokens and bit-identical vectors."""
    pd.testing.assert_frame_equal(a.sequences, b.sequences)
    pd.testing.assert_frame_equal(a.tokens, b.tokens)
    _equal(a, b)


@pytest.mark.parametrize("sample", [4, 0.5])
def test_sample_of_a_dataset_is_the_sample_of_the_list(model, sample):
    ds = _dataset()
    frame = pd.DataFrame({"text": TEXTS})
    want = capture(model, TEXTS, batch_size=3, sample=sample, random_state=3, progress=False)
    for src in (ds, frame, [{"text": t} for t in TEXTS]):
        _same(want, capture(model, src, batch_size=3, sample=sample, random_state=3, progress=False))


def test_sample_of_a_stream_of_unknown_length_is_refused(model):
    datasets = optional("datasets", "datasets")
    for src in ((t for t in TEXTS), datasets.Dataset.from_dict({"text": TEXTS}).to_iterable_dataset()):
        with pytest.raises(InputError, match=r"sample= draws from a known number.*shuffle\(seed=0\)\.take\(n\)"):
            capture(model, src, sample=3, progress=False)


@pytest.mark.parametrize("max_tokens", [40, 150, 10_000])
def test_max_tokens_over_a_stream_is_the_list_capture(model, max_tokens):
    """Counted batch by batch as the stream is read; the same whole leading sequences as a list."""
    want = capture(model, TEXTS, batch_size=3, max_tokens=max_tokens, progress=False)
    for src in ((t for t in TEXTS), _dataset(), _dataset().to_iterable_dataset()):
        got = capture(model, src, batch_size=3, max_tokens=max_tokens, progress=False)
        _same(want, got)
        assert got.n_tokens <= max_tokens
    both = capture(model, TEXTS, batch_size=3, sample=7, max_tokens=150, progress=False)
    _same(both, capture(model, _dataset(), batch_size=3, sample=7, max_tokens=150, progress=False))


def test_max_tokens_stops_reading_the_stream(model):
    log = {"read": 0}
    cap = capture(model, _counting(TEXTS * 100, log), batch_size=3, max_tokens=150, progress=False)
    assert cap.n_tokens <= 150 and log["read"] <= 6  # up to the batch that crossed, not the 1000 texts
    with pytest.raises(InputError, match="smaller than the first input"):
        capture(model, (t for t in TEXTS), max_tokens=2, progress=False)


def test_shards_of_a_dataset_merge_to_one_capture(model, tmp_path):
    import qkviz

    ds = _dataset()
    one = capture(model, TEXTS, batch_size=3, progress=False)
    paths = [tmp_path / f"s{i}.qkv" for i in range(3)]
    for i, p in enumerate(paths):
        shard = capture(model, ds, batch_size=3, shard=(i, 3), out=p, progress=False)
        _same(capture(model, TEXTS, batch_size=3, shard=(i, 3), progress=False), shard)
    merged = qkviz.merge(paths, tmp_path / "all.qkv")
    _same(one, merged)
    with pytest.raises(InputError, match=r"shard 4 of 5 has no batch.*at most 4 shards"):
        capture(model, ds, batch_size=3, shard=(4, 5), progress=False)


def test_shards_of_a_stream_without_a_batch_count_are_refused(model):
    with pytest.raises(InputError, match=r"shard= needs the number of batches.*does not know how many"):
        capture(model, (t for t in TEXTS), shard=(0, 2), progress=False)
    with pytest.raises(InputError, match=r"shard= needs the number of batches.*max_tokens= is counted"):
        capture(model, _dataset(), shard=(0, 2), max_tokens=50, progress=False)


def test_a_sampled_stream_resumes(model, tmp_path):
    ds = _dataset()
    out = tmp_path / "run.qkv"
    handle = _stop_after(model[0], 3)
    try:
        with pytest.raises(Interrupt):
            capture(model, ds, batch_size=2, sample=7, progress=False, out=out)
    finally:
        handle.remove()
    done = capture(model, ds, batch_size=2, sample=7, progress=False, out=out, resume=True)
    _same(capture(model, TEXTS, batch_size=2, sample=7, progress=False), done)
