"""Issue 15, one test per item: nothing a user saved is lost, no silent wrong result, typed errors.

Each test is the item's repro (see ``docs/data-safety.md``); all run on the tiny random BERT, so the
file takes seconds. The CLI runs in-process through ``qkviz.cli.main``.
"""

from __future__ import annotations

import json
import math
import pathlib
import resource
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import qkviz
from qkviz import cli
from qkviz.errors import (
    EmbeddingError,
    InputError,
    ModelLoadError,
    QKVizError,
    StoreError,
    WidgetDataError,
)

from .conftest import snapshot

ROOT = pathlib.Path(__file__).parents[2]


def run(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def fmt(path) -> str:
    return json.loads((pathlib.Path(path) / "meta.json").read_text())["format"]


# --- 1. --force deletes the old capture before anything is checked --------------------------------


def test_force_keeps_the_old_capture_when_the_new_run_fails(capsys, tmp_path, tiny_model_dir, texts_file):
    out = tmp_path / "run.qkv"
    assert run(capsys, "capture", tiny_model_dir, texts_file, "-o", out, "-q")[0] == 0
    before = snapshot(out)
    code, _, err = run(capsys, "capture", tmp_path / "no-such-model", texts_file, "-o", out, "--force", "-q")
    assert code == 1 and "no model folder" in err
    assert snapshot(out) == before  # untouched, not deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.qkv", "t.txt"]  # no temp left behind


def test_force_replaces_a_capture_once_the_new_one_is_complete(capsys, tmp_path, tiny_model_dir, texts_file):
    out = tmp_path / "run.qkv"
    assert run(capsys, "capture", tiny_model_dir, texts_file, "-o", out, "-q")[0] == 0
    other = tmp_path / "other.txt"
    other.write_text("Entirely different words.\n")
    assert run(capsys, "capture", tiny_model_dir, other, "-o", out, "--force", "-q")[0] == 0
    assert qkviz.load(out).sequences["text"].tolist() == ["Entirely different words."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "run.qkv", "t.txt"]


# --- 2. --force wipes any folder holding a meta.json ---------------------------------------------


@pytest.mark.parametrize("meta", ["{}", '{"format": "my.thesis"}', "[]", "not json"])
def test_force_never_replaces_a_foreign_folder_with_a_meta_json(capsys, tmp_path, tiny_model_dir, texts_file, meta):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "meta.json").write_text(meta)
    (proj / "thesis.tex").write_text("chapter 1")
    before = snapshot(proj)
    code, _, err = run(capsys, "capture", tiny_model_dir, texts_file, "-o", proj, "--force", "-q")
    assert code == 1 and "not a qkviz" in err
    assert snapshot(proj) == before


# --- 3. captures and embeddings overwrite each other -----------------------------------------------


def test_embed_output_onto_a_capture_is_refused(capsys, tmp_path, tiny_capture):
    run_ = tiny_capture.save(tmp_path / "run.qkv")
    before = snapshot(run_)
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "embed", run_, "--method", "pca", "-o", run_, "-q", *extra)
        assert code == 1 and "capture" in err, err
        assert snapshot(run_) == before


def test_saving_one_kind_over_the_other_is_refused(tmp_path, tiny_capture, tiny_pca):
    cap_dir = tiny_capture.save(tmp_path / "c.qkv")
    emb_dir = tiny_pca.save(tmp_path / "e.qke")
    with pytest.raises(StoreError, match="capture"):
        tiny_pca.save(cap_dir)
    with pytest.raises(StoreError, match="embedding"):
        tiny_capture.save(emb_dir)
    assert fmt(cap_dir) == "qkviz.capture" and fmt(emb_dir) == "qkviz.embedding"
    # the same kind is still replaced (Python's default overwrite=True)
    tiny_capture.save(cap_dir)
    tiny_pca.save(emb_dir)


def test_demo_save_capture_onto_an_embedding_is_refused(capsys, tmp_path, tiny_pca, tiny_model_dir):
    emb_dir = tiny_pca.save(tmp_path / "x.qke")
    before = snapshot(emb_dir)
    code, _, err = run(capsys, "demo", "-n", "2", "--method", "pca", "--model", tiny_model_dir,
                       "-o", tmp_path / "d.html", "--save-capture", emb_dir, "-q")  # fmt: skip
    assert code == 1 and "embedding" in err
    assert snapshot(emb_dir) == before and not (tmp_path / "d.html").exists()


def test_every_cli_output_needs_force_to_be_replaced(capsys, tmp_path, tiny_capture, tiny_pca):
    run_ = tiny_capture.save(tmp_path / "run.qkv")
    emb_dir = tiny_pca.save(tmp_path / "run.pca.qke")
    before = snapshot(emb_dir)
    code, _, err = run(capsys, "embed", run_, "--method", "pca", "-q")
    assert code == 1 and "--force" in err and snapshot(emb_dir) == before
    assert run(capsys, "embed", run_, "--method", "pca", "-q", "--force")[0] == 0
    page = tmp_path / "r.html"
    assert run(capsys, "html", emb_dir, "-o", page, "-q")[0] == 0
    first = page.read_bytes()
    code, _, err = run(capsys, "html", emb_dir, "-o", page, "-q")
    assert code == 1 and "--force" in err and page.read_bytes() == first
    assert run(capsys, "html", emb_dir, "-o", page, "-q", "--force")[0] == 0


# --- 4. resume deletes unrelated files in the store folder -----------------------------------------


class _Stop(Exception):
    pass


def _interrupted(model, texts, out, after_calls):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += 1
        if calls["n"] > after_calls:
            raise _Stop

    handle = model[0].register_forward_pre_hook(hook)
    try:
        with pytest.raises(_Stop):
            qkviz.capture(model, texts, batch_size=3, progress=False, out=out)
    finally:
        handle.remove()


def test_resume_keeps_foreign_files(tmp_path):
    from _models import tiny_bert
    from qkviz.data import demo_sentences

    model, texts, out = tiny_bert(), demo_sentences(6), tmp_path / "run.qkv"
    _interrupted(model, texts, out, 2)
    (out / "notes.txt").write_text("my notes")
    (out / "figs").mkdir()
    (out / "figs" / "a.png").write_bytes(b"png")
    (out / "part-00007.safetensors").write_bytes(b"a stray part of a killed run")
    (out / ".part-00001.safetensors.tmp").write_bytes(b"half written")
    cap = qkviz.capture(model, texts, batch_size=3, progress=False, out=out, resume=True)
    assert len(cap.sequences) == 6
    assert (out / "notes.txt").read_text() == "my notes" and (out / "figs" / "a.png").read_bytes() == b"png"
    assert not (out / "part-00007.safetensors").exists() and not (out / ".part-00001.safetensors.tmp").exists()
    # a store holding someone's files is never replaced (that would delete them with the old folder)
    with pytest.raises(StoreError, match=r"notes\.txt"):
        cap.save(out)
    assert (out / "notes.txt").read_text() == "my notes"


# --- 5. HTML export: atomic, and --force ------------------------------------------------------------


def _limited_child(code: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose files cannot grow past ``limit`` bytes (a full disk)."""

    def cap_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env_path = str(ROOT / "src") + ":" + str(ROOT / "tests")
    import os

    env = {**os.environ, "PYTHONPATH": env_path}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          preexec_fn=cap_files, env=env, timeout=300)  # fmt: skip


def test_full_disk_html_keeps_the_previous_page(tmp_path, tiny_pca):
    emb_dir = tiny_pca.save(tmp_path / "run.qke")
    page = tmp_path / "report.html"
    qkviz.save_html(qkviz.load(emb_dir), page, top_k=0)
    good = page.read_bytes()
    proc = _limited_child(
        f"""
        import qkviz
        try:
            qkviz.save_html(qkviz.load({str(emb_dir)!r}), {str(page)!r})
        except qkviz.QKVizError as e:
            print("typed", type(e).__name__, e)
        """,
        limit=len(good) // 2,
    )
    assert "typed StoreError" in proc.stdout and "unchanged" in proc.stdout, proc.stdout + proc.stderr
    assert page.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "run.qke"]


def test_html_force_never_replaces_a_page_qkviz_did_not_write(capsys, tmp_path, tiny_pca):
    emb_dir = tiny_pca.save(tmp_path / "run.qke")
    mine = tmp_path / "index.html"
    mine.write_text("<!DOCTYPE html><title>my site</title>")
    code, _, err = run(capsys, "html", emb_dir, "-o", mine, "--force", "-q")
    assert code == 1 and "not a qkviz page" in err
    assert mine.read_text() == "<!DOCTYPE html><title>my site</title>"
    with pytest.raises(StoreError, match="not a qkviz page"):
        qkviz.save_html(qkviz.load(emb_dir), mine)


def test_full_disk_store_saves_are_typed_and_leave_the_old_store(tmp_path, tiny_capture, tiny_pca):
    for name, obj in (("c.qkv", tiny_capture), ("e.qke", tiny_pca)):
        dest = obj.save(tmp_path / name)
        before = snapshot(dest)
        kind = "capture" if name == "c.qkv" else "embedding"
        proc = _limited_child(
            f"""
            import qkviz
            from _models import tiny_bert
            from qkviz.data import demo_sentences
            cap = qkviz.capture(tiny_bert(), demo_sentences(6), values=True, progress=False)
            obj = cap if {kind!r} == "capture" else qkviz.embed(cap, method="pca", progress=False, cache=False)
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
            try:
                obj.save({str(dest)!r})
            except qkviz.QKVizError as e:
                print("typed", type(e).__name__, e)
            """,
            limit=10**9,
        )
        assert "typed StoreError" in proc.stdout, proc.stdout + proc.stderr
        assert snapshot(dest) == before
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- 6. hidden leftovers of a killed save ----------------------------------------------------------


def test_stale_leftovers_of_a_dead_writer_are_cleaned_by_the_next_save(tmp_path, tiny_capture):
    from qkviz import _fs

    dest = tiny_capture.save(tmp_path / "run.qkv")
    dead = _dead_pid()
    stale_tmp = tmp_path / f".run.qkv.qkviz-{dead}-0123abcd.tmp"
    stale_old = tmp_path / f".run.qkv.qkviz-{dead}-4567cdef.old"
    for d in (stale_tmp, stale_old):
        d.mkdir()
        (d / "meta.json").write_text('{"format": "qkviz.capture"}')
        (d / "part-00000.safetensors").write_bytes(b"x")
    live = tmp_path / f".run.qkv.qkviz-{_fs.os.getpid()}-89abcdef.tmp"  # a writer still running
    live.mkdir()
    lookalike = tmp_path / f".run.qkv.qkviz-{dead}-fedcba98.tmp"  # our name, not our content
    lookalike.mkdir()
    (lookalike / "thesis.tex").write_text("keep")
    with pytest.warns(UserWarning, match="thesis.tex"):
        tiny_capture.save(dest)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["run.qkv", live.name, lookalike.name])
    assert (lookalike / "thesis.tex").read_text() == "keep"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_crash_between_the_two_renames_is_recovered(tmp_path, tiny_capture, monkeypatch):
    """The two-rename fallback (no renameat2): killed after the first rename, readers still find it."""
    from qkviz import _fs

    dest = tiny_capture.save(tmp_path / "run.qkv")
    other = qkviz.capture(_tiny(), ["Something else entirely."], progress=False)
    monkeypatch.setattr(_fs, "_exchange", lambda a, b: False)
    real = _fs.os.rename

    class Killed(BaseException):
        pass

    def rename(a, b):
        real(a, b)
        if str(b).endswith(".old"):
            raise Killed  # stands in for SIGKILL (tests/safety/test_crash.py kills for real)

    monkeypatch.setattr(_fs.os, "rename", rename)
    monkeypatch.setattr(_fs, "_remove", lambda entry: None)  # a killed process cleans nothing up
    with pytest.raises(Killed):
        other.save(dest)
    monkeypatch.undo()
    monkeypatch.setattr(_fs, "_pid_alive", lambda pid: False)  # the writer is gone
    assert not dest.exists()
    back = qkviz.load(dest)  # recovered: the complete new store rolls forward
    assert back.sequences["text"].tolist() == ["Something else entirely."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.qkv"]


def _tiny():
    from _models import tiny_bert

    return tiny_bert()


# --- 7. an embedding attaches whatever capture now sits at its path -------------------------------


def test_embedding_refuses_another_capture_at_its_recorded_path(tmp_path, tiny_capture):
    from qkviz.data import demo_sentences

    cap_dir = tiny_capture.save(tmp_path / "run.qkv")
    emb = qkviz.embed(qkviz.load(cap_dir), method="pca", progress=False, cache=False)
    emb.save(tmp_path / "run.qke")
    other = qkviz.capture(_tiny(), demo_sentences(9)[6:], progress=False)
    other.save(cap_dir)
    with pytest.warns(UserWarning, match="not the capture this embedding was made from"):
        back = qkviz.Embedding.load(tmp_path / "run.qke")
    assert back.capture is None
    with pytest.raises(EmbeddingError, match="attention"):
        back.attention(0, 0, 0)
    with pytest.raises(EmbeddingError, match="not the capture"):
        qkviz.Embedding.load(tmp_path / "run.qke", capture=qkviz.load(cap_dir))
    # the right capture, passed explicitly or found at its path, attaches
    tiny_capture.save(cap_dir)
    assert qkviz.Embedding.load(tmp_path / "run.qke").capture is not None
    assert qkviz.Embedding.load(tmp_path / "run.qke", capture=tiny_capture).capture is tiny_capture


def test_an_intact_embedding_loads_without_its_damaged_capture(capsys, tmp_path, tiny_capture):
    cap_dir = tiny_capture.save(tmp_path / "run.qkv")
    qkviz.embed(qkviz.load(cap_dir), method="pca", progress=False, cache=False).save(tmp_path / "run.qke")
    (cap_dir / "part-00000.tokens.parquet").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="part-00000.tokens.parquet"):
        back = qkviz.Embedding.load(tmp_path / "run.qke")
    assert back.capture is None and back.coords(0, 0).shape[0] == 2 * back.n_tokens
    code, out, err = run(capsys, "info", tmp_path / "run.qke")
    assert code == 0 and "kind" in out
    assert "run.qkv" in err and "run.qke is not" not in err


# --- 8. max_length ------------------------------------------------------------------------------------


def test_max_length_below_the_special_tokens_is_refused():
    with pytest.raises(InputError, match="max_length"):
        qkviz.capture(_tiny(), ["The cat sat on the mat."], max_length=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cap = qkviz.capture(_tiny(), ["The cat sat on the mat."], max_length=3, progress=False)
    assert len(cap.tokens) == 3 and bool(cap.sequences["truncated"][0])


def test_a_very_long_text_is_truncated_or_refused_never_a_model_error():
    long = " ".join(["word"] * 10_000)
    with pytest.raises(InputError):
        qkviz.capture(_tiny(), [long], max_length=1, progress=False)
    with pytest.warns(UserWarning, match="truncated"):
        cap = qkviz.capture(_tiny(), [long], progress=False)
    assert len(cap.tokens) == 128  # the tiny model's position table


# --- 9, 10. images ----------------------------------------------------------------------------------


def test_a_bare_image_array_is_one_image():
    from qkviz._capture._inputs import normalize_inputs

    for shape in ((48, 64, 3), (48, 64), (48, 64, 4), (48, 64, 1)):
        _, items, _ = normalize_inputs(np.zeros(shape, np.uint8))
        assert len(items) == 1, shape
    _, items, _ = normalize_inputs(np.zeros((5, 48, 64, 3), np.uint8))
    assert len(items) == 5
    with pytest.raises(InputError, match="list"):
        normalize_inputs(np.zeros((4, 48, 64, 7), np.uint8))


def test_float_images_outside_0_1_are_refused():
    from qkviz._capture._inputs import to_rgb

    a = np.random.default_rng(0).uniform(0, 255, (32, 32, 3))
    with pytest.raises(InputError, match="255"):
        to_rgb(a, 0)
    assert np.asarray(to_rgb(a / 255, 0)).max() > 200


def test_decompression_bombs_are_typed(tmp_path):
    from PIL import Image

    from qkviz.cli._inputs import read_inputs

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 48 kB on disk, 400 Mpx decoded
    with pytest.raises(InputError, match=r"bomb\.png"):
        read_inputs(folder)
    from qkviz._capture._inputs import to_rgb

    with pytest.raises(InputError, match=r"bomb\.png"):
        to_rgb(folder / "bomb.png", 0)


# --- 11, 13. devices -----------------------------------------------------------------------------------


def test_device_is_applied_to_an_already_loaded_model(monkeypatch):
    lm = qkviz.load_model(_tiny(), device=None)
    moved = []
    real = type(lm.model).to

    def spy(self, *args, **kwargs):
        moved.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(lm.model), "to", spy)
    qkviz.load_model(lm)  # "auto" leaves a loaded model where it is
    assert moved == []
    qkviz.load_model(lm, device="cpu")  # a named device moves it, as the docstring promises
    assert [str(a[0]) for a in moved] == ["cpu"]
    qkviz.capture(lm, ["A cat."], device="cpu", progress=False)
    assert [str(a[0]) for a in moved] == ["cpu", "cpu"]


@pytest.mark.parametrize("device", ["bogus", "cuda", "cuda:7", "meta", "mps", 3])
def test_bad_devices_are_typed(device):
    import torch

    if device in ("cuda", "cuda:7") and torch.cuda.is_available():
        pytest.skip("a CUDA machine has cuda")
    lm = qkviz.load_model(_tiny(), device=None)
    with pytest.raises(InputError, match="device"):
        qkviz.capture(lm, ["A cat."], device=device, progress=False)
    with pytest.raises(InputError, match="device"):
        qkviz.load_model(lm, device=device)
    assert next(lm.model.parameters()).device.type == "cpu"  # refused before any move


# --- 12. embedding integrity ------------------------------------------------------------------------


def test_embedding_checksums_catch_edits(tmp_path, tiny_pca):
    from safetensors.numpy import load_file, save_file

    d = tiny_pca.save(tmp_path / "e.qke")
    f = d / "coords.safetensors"
    t = load_file(f)
    t["coords.0.0"][3] = [0.5, -0.5]
    save_file(t, f)
    with pytest.raises(StoreError, match=r"coords\.0\.0"):
        qkviz.Embedding.load(d)
    tiny_pca.save(d)
    t = load_file(f)
    t["norms.0.0"][:] = np.nan
    save_file(t, f)
    with pytest.raises(StoreError):
        qkviz.Embedding.load(d)
    tiny_pca.save(d)
    tok = d / "tokens.parquet"
    raw = bytearray(tok.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    tok.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"tokens\.parquet"):
        qkviz.Embedding.load(d)


def test_widget_names_nan_norms_as_such(tiny_capture):
    from qkviz.project._embedding import Embedding

    n = tiny_capture.n_tokens
    coords = {(0, 0): np.random.default_rng(0).normal(size=(2 * n, 2))}
    with pytest.raises(EmbeddingError, match="NaN"):
        Embedding.from_coords(coords, tiny_capture.tokens, norms={(0, 0): np.full(2 * n, np.nan)})


# --- 13. typed errors -----------------------------------------------------------------------------------


CAPTURE_META_EDITS = {
    "no parts": lambda m: m.pop("parts"),
    "parts=3": lambda m: m.__setitem__("parts", 3),
    "files missing": lambda m: m["parts"][0].pop("files"),
    "crc32 missing": lambda m: m["parts"][0].pop("crc32"),
    "n_tokens='x'": lambda m: m["parts"][0].__setitem__("n_tokens", "x"),
    "model=[]": lambda m: m.__setitem__("model", []),
    "params=None": lambda m: m.__setitem__("params", None),
    "status=1": lambda m: m.__setitem__("status", 1),
}


@pytest.mark.parametrize("edit", list(CAPTURE_META_EDITS))
def test_damaged_capture_meta_is_a_store_error(tmp_path, tiny_capture, edit):
    d = tiny_capture.save(tmp_path / "c.qkv")
    meta = json.loads((d / "meta.json").read_text())
    CAPTURE_META_EDITS[edit](meta)
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"meta\.json"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = qkviz.load(d)
        c.attention(c.layers[0], c.heads[0], 0)


EMBEDDING_META_EDITS = {
    "no heads": lambda m: m.pop("heads"),
    "no method": lambda m: m.pop("method"),
    "transforms=1": lambda m: m.__setitem__("transforms", 1),
    "heads=[[0]]": lambda m: m.__setitem__("heads", [[0]]),
    "rotations bad": lambda m: m.__setitem__("rotations", {"x": 1}),
    "dim=7": lambda m: m.__setitem__("dim", 7),
    "faithfulness=[]": lambda m: m.__setitem__("faithfulness", []),
}


@pytest.mark.parametrize("edit", list(EMBEDDING_META_EDITS))
def test_damaged_embedding_meta_is_a_store_error(tmp_path, tiny_pca, edit):
    d = tiny_pca.save(tmp_path / "e.qke")
    meta = json.loads((d / "meta.json").read_text())
    EMBEDDING_META_EDITS[edit](meta)
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"meta\.json"):
        qkviz.Embedding.load(d)


@pytest.mark.parametrize(
    "method, params",
    [
        ("tsne", {"perplexity": 0}),
        ("tsne", {"perplexity": -5}),
        ("tsne", {"perplexity": "x"}),
        ("tsne", {"perplexity": math.nan}),
        ("tsne", {"foo": 1}),
        ("tsne", {"n_iter": -1}),
        ("umap", {"n_neighbors": 1}),
        ("umap", {"min_dist": -1.0}),
        ("attention", {"attention_weight": 2.0}),
        ("pca", {"foo": 1}),
        ("tsne", {"random_state": "x"}),
        ("pca", {"random_state": "x"}),
        ("pca", {"random_state": True}),
    ],
)
def test_bad_method_parameters_are_embedding_errors(tiny_capture, method, params):
    with pytest.raises(EmbeddingError):
        qkviz.embed(tiny_capture, method, layers=[0], heads=[0], progress=False, cache=False,
                    executor="serial", **params)  # fmt: skip


def test_model_folders_that_transformers_cannot_read_are_model_load_errors(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("this is not json")
    with pytest.raises(ModelLoadError, match="garbage"):
        qkviz.load_model(garbage)
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="no-weights"):
        qkviz.load_model(empty)


# --- 20. validation gaps ------------------------------------------------------------------------------


@pytest.fixture
def viz():
    from widget._fakes import make_embedding

    return qkviz.QKViz(make_embedding(n_layers=2, n_heads=3))


def test_focus_takes_whole_numbers_only(viz):
    with pytest.raises(WidgetDataError, match="whole number"):
        viz.focus(True, False)
    with pytest.raises(WidgetDataError, match=r"whole number.*'0'"):
        viz.focus("0", "0")
    with pytest.raises(WidgetDataError):
        viz.layer = True
    assert viz.layer is None and viz.head is None


def test_setting_layer_or_head_alone_focuses_a_head(viz):
    viz.layer = 1
    assert (viz.layer, viz.head) == (1, 0)
    viz.head = 2
    assert (viz.layer, viz.head) == (1, 2)
    viz.layer = None
    assert (viz.layer, viz.head) == (None, None)
    viz.head = 1
    assert (viz.layer, viz.head) == (0, 1)
    viz.focus(1, 2)
    assert (viz.layer, viz.head) == (1, 2)


def test_selection_takes_integer_indices_only(viz):
    with pytest.raises(WidgetDataError, match="whole"):
        viz.selection = np.array([1.7, 2.9])
    viz.selection = np.array([1.0, 2.0])  # integral floats are indices
    assert viz.selection.tolist() == [1, 2]


def test_search_and_thresholds_are_checked(viz):
    with pytest.raises(WidgetDataError, match="str"):
        viz.search(5)
    with pytest.raises(WidgetDataError, match="threshold"):
        viz.lines_threshold = math.nan
    with pytest.raises(WidgetDataError, match="lines_threshold"):
        qkviz.QKViz(viz.embedding, lines_threshold=math.inf)


@pytest.mark.parametrize(
    ("name", "value"),
    [("color_mod", 0), ("color", 0), ("height", 5), ("lines_k", 0), ("size_by_norm", 3), ("layer", "0"),
     ("selection", [1, 2]), ("theme", None)],
)  # fmt: skip
def test_trait_type_and_range_errors_are_widget_errors(viz, name, value):
    """Found by the fuzz test: traitlets' own type/range checks raised ``TraitError``, not a
    ``QKVizError`` (``viz.color_by("kind", 0)`` too)."""
    before = getattr(viz, name)
    with pytest.raises(WidgetDataError, match=f"viz.{name}"):
        setattr(viz, name, value)
    assert np.array_equal(getattr(viz, name), before)
    with pytest.raises(WidgetDataError, match="color_mod"):
        viz.color_by("position_mod", 0)


def test_a_huge_top_k_costs_no_more_than_every_key(tiny_pca):
    """Found by the fuzz test: ``qkviz html --top-k 2147483648`` allocated [token, top_k] (44 TiB)."""
    from qkviz.export import to_html

    assert len(to_html(tiny_pca, top_k=2**31)) < 2 * len(to_html(tiny_pca, top_k=64))


def test_thumbnail_must_be_positive(vit_images):
    with pytest.raises(InputError, match="thumbnail"):
        images = list(vit_images.values()) if isinstance(vit_images, dict) else list(vit_images)
        qkviz.capture("vit-s14", images[:1], thumbnail=0, progress=False)


def test_a_text_of_only_special_tokens_warns():
    with pytest.warns(UserWarning, match="special tokens only"):
        qkviz.capture(_tiny(), ["\u200b\u200b", "A cat."], progress=False)


def test_html_title_names_model_and_method(tiny_pca):
    import re

    from qkviz.export import to_html

    html = to_html(qkviz.QKViz(tiny_pca), top_k=0)
    title = re.search(r"<title>(.*?)</title>", html).group(1)
    assert "BertModel" in title and "pca" in title


def test_a_capture_prints_as_one_line(tiny_capture):
    """Item 19: ``repr(cap)`` is one line (like an embedding's), not two whole DataFrames."""
    text = repr(tiny_capture)
    assert "\n" not in text and len(text) < 200, text
    assert text.startswith("Capture(") and f"sequences={len(tiny_capture.sequences)}" in text


def test_the_hub_error_is_whole():
    with pytest.raises(ModelLoadError) as info:
        qkviz.load_model("someone/not-a-real-model-name-xyz")
    text = str(info.value)
    assert "\n" not in text
    assert "'https://)" not in text  # not cut in the middle of a URL


def test_load_of_a_store_of_the_wrong_kind_names_both_kinds(tmp_path, tiny_pca):
    d = tiny_pca.save(tmp_path / "e.qke")
    from qkviz._capture._container import load as load_capture

    with pytest.raises(StoreError, match="embedding"):
        load_capture(d)


def test_every_error_above_is_a_qkviz_error():
    for cls in (StoreError, InputError, EmbeddingError, ModelLoadError, WidgetDataError):
        assert issubclass(cls, QKVizError)


# --- score terms of a streaming capture (found while fixing item 6) -----------------------------------


def test_a_stream_killed_after_new_score_terms_still_loads_and_resumes(tmp_path, monkeypatch):
    """The terms file is rewritten when a longer batch extends a table; it used to be replaced in
    place before meta.json listed it, so a run killed in between left a store that no longer loaded."""
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "tests"))
    from capture import _zoo
    from qkviz._capture import _store

    model, tok = _zoo.build("mpnet")
    texts = ["Short.", "A much longer sentence than the first one, with many more words in it.", "Mid length text."]
    out = tmp_path / "run.qkv"
    written = []
    real_terms, real_append = _store.StoreWriter.set_terms, _store.StoreWriter.append

    def set_terms(self, arrays):
        real_terms(self, arrays)
        if self.terms:
            written.append(self.terms["file"])

    calls = {"n": 0}

    def append(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # killed after the new terms file, before meta.json lists batch 2
            raise _Stop
        real_append(self, *a, **k)

    monkeypatch.setattr(_store.StoreWriter, "set_terms", set_terms)
    monkeypatch.setattr(_store.StoreWriter, "append", append)
    with pytest.raises(_Stop):
        qkviz.capture((model, tok), texts, batch_size=1, progress=False, out=out)
    monkeypatch.undo()
    assert len(written) == 2, written  # the second batch did extend the tables
    with pytest.warns(UserWarning, match="partial"):
        assert len(qkviz.load(out).sequences) == 1
    done = qkviz.capture((model, tok), texts, batch_size=1, progress=False, out=out, resume=True)
    whole = qkviz.capture((model, tok), texts, batch_size=1, progress=False)
    np.testing.assert_array_equal(done.attention(0, 1, 1), whole.attention(0, 1, 1))
    assert len(list(out.glob("terms*.safetensors"))) == 1
