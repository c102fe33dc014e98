"""Capture at scale: sampling, max_tokens, storage size, shards and merging them (also on Dask)."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pandas as pd
import pytest

import qkviz
from qkviz import capture
from qkviz.data import demo_sentences
from qkviz.errors import InputError, StoreError

from . import _zoo


@pytest.fixture(scope="module")
def texts():
    return demo_sentences(11)


@pytest.fixture(scope="module")
def model():
    from _models import tiny_bert

    return tiny_bert()


@pytest.fixture(scope="module")
def full(model, texts):
    return capture(model, texts, batch_size=3, progress=False)


def _identical(a, b):
    """Same tokens, sequences, geometry, and bit-identical vectors."""
    pd.testing.assert_frame_equal(a.tokens, b.tokens)
    pd.testing.assert_frame_equal(a.sequences, b.sequences)
    assert a.geometry == b.geometry
    for layer in a.layers:
        for h in a.heads:
            np.testing.assert_array_equal(a.q(layer, h), b.q(layer, h))
            np.testing.assert_array_equal(a.k(layer, h), b.k(layer, h))


def _tree_digest(root: pathlib.Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        h.update(str(f.relative_to(root)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


# ---- sample -----------------------------------------------------------------------------------


def test_sample_is_reproducible_and_maps_back(model, texts, full):
    a = capture(model, texts, sample=5, random_state=3, batch_size=3, progress=False)
    b = capture(model, texts, sample=5 / 11, random_state=3, batch_size=3, progress=False)
    c = capture(model, texts, sample=5, random_state=4, batch_size=3, progress=False)
    assert list(a.sequences["input"]) == list(b.sequences["input"])  # same seed, same draw (count or share)
    assert list(a.sequences["input"]) != list(c.sequences["input"])
    inputs = a.sequences["input"].to_numpy()
    assert len(inputs) == 5 and (np.diff(inputs) > 0).all()  # kept in input order
    assert list(a.sequences["seq"]) == list(range(5))
    assert list(a.sequences["text"]) == [texts[i] for i in inputs]
    assert a.params["sample"] == 5 and a.params["random_state"] == 3
    # each sampled sequence's tokens are the ones a full capture gives that input
    for seq, i in enumerate(inputs):
        mine = a.tokens[a.tokens["seq"] == seq]["token_id"].tolist()
        theirs = full.tokens[full.tokens["seq"] == i]["token_id"].tolist()
        assert mine == theirs
    assert list(full.sequences["input"]) == list(range(len(texts)))


@pytest.mark.parametrize(
    ("sample", "match"),
    [(0, "at least 1"), (12, "only 11 inputs"), (1.5, "in \\(0, 1\\]"), (0.0, "in \\(0, 1\\]"), (True, "number")],
)
def test_sample_errors(model, texts, sample, match):
    with pytest.raises(InputError, match=match):
        capture(model, texts, sample=sample, progress=False)


def test_random_state_must_be_an_int(model, texts):
    with pytest.raises(InputError, match="random_state"):
        capture(model, texts, sample=3, random_state=np.random.default_rng(0), progress=False)


# ---- max_tokens -------------------------------------------------------------------------------


def test_max_tokens_keeps_whole_leading_sequences(model, texts, full):
    lengths = full.sequences["n_tokens"].to_numpy()
    limit = int(lengths[:4].sum()) + int(lengths[4]) - 1  # the 5th sequence does not quite fit
    cap = capture(model, texts, max_tokens=limit, batch_size=3, progress=False)
    assert cap.n_tokens == int(lengths[:4].sum()) <= limit
    assert list(cap.sequences["input"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(cap.tokens, full.tokens.iloc[: cap.n_tokens])
    exact = capture(model, texts, max_tokens=int(lengths[:5].sum()), batch_size=3, progress=False)
    assert len(exact.sequences) == 5  # a limit met exactly keeps the sequence that meets it


def test_max_tokens_after_sample(model, texts):
    cap = capture(model, texts, sample=8, random_state=1, max_tokens=100, progress=False)
    drawn = capture(model, texts, sample=8, random_state=1, progress=False)
    n = len(cap.sequences)
    assert cap.n_tokens <= 100 < cap.n_tokens + int(drawn.sequences["n_tokens"].iloc[n])
    assert list(cap.sequences["input"]) == list(drawn.sequences["input"][:n])


def test_max_tokens_smaller_than_the_first_input(model, texts):
    with pytest.raises(InputError, match="smaller than the first input"):
        capture(model, texts, max_tokens=3, progress=False)
    with pytest.raises(InputError, match="max_tokens"):
        capture(model, texts, max_tokens=0, progress=False)


def test_max_tokens_images_keep_whole_images():
    net, proc = _zoo.build("vit")
    images = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(5)]
    full = capture(net, images, processor=proc, batch_size=2, progress=False)
    per = int(full.sequences["n_tokens"].iloc[0])
    cap = capture(net, images, processor=proc, batch_size=2, max_tokens=3 * per + per // 2, progress=False)
    assert len(cap.sequences) == 3 and cap.n_tokens == 3 * per
    assert cap.images is not None and len(cap.images) == 3
    np.testing.assert_array_equal(cap.q(1, 2), full.q(1, 2)[: 3 * per])


# ---- storage size -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_bytes_per_token_and_head(model, texts, dtype, tmp_path):
    cap = capture(model, texts, dtype=dtype, values=True, progress=False, out=tmp_path / "s.qkv")
    item = 4 if dtype == "float32" else 2
    per_layer = len(cap.heads) + 2 * len(cap.kv_heads)  # q per head, k and v per kv head
    assert cap.storage_dtype == dtype
    assert cap.nbytes == cap.n_tokens * cap.d_head * item * len(cap.layers) * per_layer
    assert cap.bytes_per_token_head == cap.nbytes / (cap.n_tokens * len(cap.layers) * len(cap.heads))
    stored = sum(f.stat().st_size for f in (tmp_path / "s.qkv").glob("*.safetensors"))
    assert cap.nbytes <= stored < cap.nbytes * 1.1  # what the store holds, give or take headers


def test_info_reports_storage(model, texts, tmp_path, capsys):
    from qkviz.cli import main

    capture(model, texts, dtype="float16", progress=False, out=tmp_path / "s.qkv")
    assert main(["info", str(tmp_path / "s.qkv")]) == 0
    out = capsys.readouterr().out
    assert "float16" in out and "bytes per token and head" in out


# ---- shards and merge -------------------------------------------------------------------------


def test_shards_take_whole_batches_round_robin(model, texts):
    seen = []
    for i in range(3):
        cap = capture(model, texts, batch_size=3, shard=(i, 3), progress=False)
        inputs = cap.sequences["input"].tolist()
        assert inputs == [j for b in range(i, 4, 3) for j in range(3 * b, min(3 * b + 3, 11))]
        assert list(cap.sequences["seq"]) == list(range(len(inputs)))  # a shard is a capture of its own
        seen += inputs
    assert sorted(seen) == list(range(11))


def test_more_shards_than_batches(model, texts, full, tmp_path):
    paths = [tmp_path / f"s{i}.qkv" for i in range(4)]
    for i, p in enumerate(paths[:3]):
        capture(model, texts, batch_size=4, shard=(i, 4), out=p, progress=False)  # 11 inputs: 3 batches
    with pytest.raises(InputError, match=r"shard 3 of 4 has no batch.*at most 3 shards"):
        capture(model, texts, batch_size=4, shard=(3, 4), out=paths[3], progress=False)
    assert not paths[3].exists()
    one = capture(model, texts, batch_size=4, progress=False)
    _identical(one, qkviz.merge(paths[:3], tmp_path / "all.qkv"))


@pytest.mark.parametrize("shard", [(3, 3), (-1, 2), (0, 0), (1.0, 2), "0/2", (0, 1, 2)])
def test_shard_errors(model, texts, shard):
    with pytest.raises(InputError, match="shard"):
        capture(model, texts, shard=shard, progress=False)


@pytest.fixture(scope="module")
def shards(model, texts, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    paths = [root / f"run-{i}.qkv" for i in range(3)]
    for i, p in enumerate(paths):
        capture(model, texts, batch_size=3, shard=(i, 3), out=p, progress=False)
    return paths


def test_merge_equals_one_capture(shards, full, tmp_path):
    before = [_tree_digest(p) for p in shards]
    merged = qkviz.merge(shards[::-1], tmp_path / "all.qkv")  # any order
    _identical(full, merged)
    assert merged.path == tmp_path / "all.qkv"
    assert "shard" not in merged.params
    _identical(full, qkviz.load(tmp_path / "all.qkv"))
    assert [_tree_digest(p) for p in shards] == before  # the shards are untouched
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary left


def test_merge_of_saved_in_memory_shards(model, texts, full, tmp_path):
    paths = []
    for i in range(2):
        capture(model, texts, batch_size=3, shard=(i, 2), progress=False).save(tmp_path / f"s{i}.qkv")
        paths.append(tmp_path / f"s{i}.qkv")
    _identical(full, qkviz.merge(paths, tmp_path / "all.qkv"))


def test_merge_sampled_float16_shards(model, texts, tmp_path):
    kw = dict(batch_size=2, sample=7, random_state=5, dtype="float16", progress=False)
    one = capture(model, texts, **kw)
    paths = [tmp_path / f"s{i}.qkv" for i in range(2)]
    for i, p in enumerate(paths):
        capture(model, texts, shard=(i, 2), out=p, **kw)
    merged = qkviz.merge(paths, tmp_path / "all.qkv")
    _identical(one, merged)
    assert merged.storage_dtype == "float16"


def test_merge_refuses_what_is_not_one_capture(shards, model, texts, tmp_path):
    with pytest.raises(StoreError, match=r"shard\(s\) \[1\] of 3 are missing"):
        qkviz.merge([shards[0], shards[2]], tmp_path / "a.qkv")
    with pytest.raises(StoreError, match="both shard 0"):
        qkviz.merge([shards[0], shards[0], shards[1], shards[2]], tmp_path / "a.qkv")
    other = tmp_path / "other.qkv"
    capture(model, texts, batch_size=3, shard=(1, 3), dtype="float16", out=other, progress=False)
    with pytest.raises(StoreError, match="other settings"):
        qkviz.merge([shards[0], other, shards[2]], tmp_path / "a.qkv")
    plain = tmp_path / "plain.qkv"
    capture(model, texts, out=plain, progress=False)
    with pytest.raises(StoreError, match="not a shard"):
        qkviz.merge([plain], tmp_path / "a.qkv")
    with pytest.raises(InputError, match="one of the shards"):
        qkviz.merge(shards, shards[1])
    assert not (tmp_path / "a.qkv").exists()


def test_merge_refuses_a_partial_shard(model, texts, tmp_path):
    path = tmp_path / "s0.qkv"
    capture(model, texts, batch_size=3, shard=(0, 2), out=path, progress=False)
    meta = (path / "meta.json").read_text().replace('"complete"', '"partial"')
    (path / "meta.json").write_text(meta)
    other = tmp_path / "s1.qkv"
    capture(model, texts, batch_size=3, shard=(1, 2), out=other, progress=False)
    with pytest.warns(UserWarning, match="partial"), pytest.raises(StoreError, match="partial shard"):
        qkviz.merge([path, other], tmp_path / "all.qkv")


def test_merge_replaces_only_a_capture_store(shards, full, model, tmp_path):
    target = tmp_path / "all.qkv"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="is not a qkviz capture; refusing to replace it"):
        qkviz.merge(shards, target, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine"
    store = tmp_path / "old.qkv"
    capture(model, ["A short one."], out=store, progress=False)
    with pytest.raises(StoreError, match="overwrite=True"):
        qkviz.merge(shards, store)
    assert len(qkviz.load(store).sequences) == 1
    _identical(full, qkviz.merge(shards, store, overwrite=True))


def test_resume_a_shard(model, texts, tmp_path):
    path = tmp_path / "s1.qkv"
    capture(model, texts, batch_size=2, shard=(1, 2), out=path, progress=False)
    meta = (path / "meta.json").read_text()
    # drop the last part as if the run had stopped before writing it
    import json

    m = json.loads(meta)
    m["parts"], m["status"] = m["parts"][:1], "partial"
    (path / "meta.json").write_text(json.dumps(m))
    resumed = capture(model, texts, batch_size=2, shard=(1, 2), out=path, resume=True, progress=False)
    whole = capture(model, texts, batch_size=2, shard=(1, 2), progress=False)
    _identical(whole, resumed)


# ---- Dask -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_shards_on_a_dask_cluster_merge_to_one_capture(texts, tmp_path):
    distributed = pytest.importorskip("distributed")
    from _models import tiny_bert

    net, tok = tiny_bert()
    folder = tmp_path / "model"
    net.save_pretrained(folder)
    tok.save_pretrained(folder)
    one = capture(str(folder), texts, batch_size=3, device="cpu", progress=False)
    paths = [str(tmp_path / f"run-{i}.qkv") for i in range(2)]
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = [
            client.submit(
                capture, str(folder), texts, batch_size=3, shard=(i, 2), out=p, device="cpu", progress=False, pure=False
            )
            for i, p in enumerate(paths)
        ]
        done = client.gather(futures)
    assert [str(c.path) for c in done] == paths
    _identical(one, qkviz.merge(paths, tmp_path / "all.qkv"))


def test_cli_shards_and_merge(texts, full, tmp_path, capsys):
    from _models import tiny_bert
    from qkviz.cli import main

    net, tok = tiny_bert()
    folder = tmp_path / "model"
    net.save_pretrained(folder)
    tok.save_pretrained(folder)
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(texts) + "\n")
    common = [str(folder), str(corpus), "--batch-size", "3", "--device", "cpu", "-q"]
    for i in range(2):
        assert main(["capture", *common, "--shard", f"{i}/2", "-o", str(tmp_path / f"s{i}.qkv")]) == 0
    assert main(["merge", str(tmp_path / "s1.qkv"), str(tmp_path / "s0.qkv"), "-o", str(tmp_path / "m.qkv")]) == 0
    _identical(full, qkviz.load(tmp_path / "m.qkv"))
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "s0.qkv"), str(tmp_path / "s1.qkv"), "-o", str(tmp_path / "m.qkv")]) == 1
    assert "pass --force to replace it" in capsys.readouterr().err  # an existing capture needs --force
    assert main(["merge", str(tmp_path / "s0.qkv"), str(tmp_path / "s1.qkv"), "-o", str(tmp_path / "m.qkv"), "-f"]) == 0
    args = ["--sample", "0.5", "--seed", "2", "--max-tokens", "80", "--dtype", "bfloat16"]
    assert main(["capture", *common, *args, "-o", str(tmp_path / "x.qkv")]) == 0
    cap = qkviz.load(tmp_path / "x.qkv")
    assert cap.n_tokens <= 80 and cap.storage_dtype == "bfloat16"
    assert cap.params["sample"] == 0.5 and cap.params["random_state"] == 2
    assert main(["capture", *common, "--shard", "2/2", "-o", str(tmp_path / "y.qkv")]) == 1
