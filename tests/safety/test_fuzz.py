"""Property-based fuzzing of every entry point: only ``QKVizError`` subclasses escape, and no input
file changes.

Hypothesis draws the arguments of ``qkviz.capture``, ``qkviz.embed``, ``QKViz`` (its constructor, its
methods and its public traits) and the command line from pools that mix valid values with hostile
ones (wrong types, out-of-range and non-finite numbers, bools where ints go, empty and odd inputs,
paths to foreign files and to artefacts of the other kind). Whatever it draws:

* the call returns, or raises a :class:`qkviz.QKVizError` subclass (the CLI exits 0, 1 or 2, and
  never prints "a bug in qkviz");
* every file in the folder of inputs (texts, a capture, an embedding, a page, a folder of the user's
  with a ``meta.json`` of its own) is byte-identical afterwards.

Everything runs on a 1-layer, 2-head random BERT over two short texts, with ``derandomize=True``
(the same examples on every run, so CI is reproducible) and a bounded number of examples: the file
takes well under a minute. UMAP is fuzzed only with parameters it must refuse: its first fit
compiles numba code for a minute, and its valid parameters are covered by ``tests/embed``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pathlib
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qkviz
from qkviz import cli
from qkviz.errors import QKVizError

from .conftest import snapshot

TEXTS = ["The cat sat on the mat.", "A dog barked."]

FUZZ = settings(
    max_examples=int(os.environ.get("QKVIZ_FUZZ_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- the world: a tiny model, inputs to protect, scratch for outputs ---------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from _models import tiny_bert

    root = tmp_path_factory.mktemp("fuzz")
    model = tiny_bert(num_hidden_layers=1, num_attention_heads=2)
    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    (inputs / "data.jsonl").write_text('{"text": "The cat sat."}\n{"text": "A dog."}\n')
    cap = qkviz.capture(model, TEXTS, progress=False)
    cap.save(inputs / "run.qkv")
    emb = qkviz.embed(cap, method="pca", progress=False, cache=False)
    emb.save(inputs / "run.qke")
    qkviz.save_html(emb, inputs / "page.html", top_k=0)
    proj = inputs / "proj"  # a folder of the user's that happens to hold a meta.json
    proj.mkdir()
    (proj / "meta.json").write_text("{}")
    (proj / "thesis.tex").write_text("\\documentclass{article}")
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(inputs / "red.png")
    model_dir = root / "tiny-bert"  # the same model as a folder, for the command line
    model[0].save_pretrained(model_dir)
    model[1].save_pretrained(model_dir)
    return {
        "root": root,
        "inputs": inputs,
        "model": model,
        "model_dir": model_dir,
        "cap": qkviz.load(inputs / "run.qkv"),
        "mem_cap": cap,
        "emb": emb,
        "before": snapshot(inputs),
        "n": [0],
    }


@contextlib.contextmanager
def guarded(world):
    """Run one example in a fresh scratch folder (the working directory); afterwards the inputs are
    unchanged."""
    world["n"][0] += 1
    scratch = world["root"] / f"scratch-{world['n'][0]}"
    scratch.mkdir()
    # artefacts an output may replace (the same kind): copies, so that the inputs stay as they are
    shutil.copytree(world["inputs"] / "run.qkv", scratch / "old.qkv")
    shutil.copytree(world["inputs"] / "run.qke", scratch / "old.qke")
    shutil.copy(world["inputs"] / "page.html", scratch / "old.html")
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield scratch
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
        after = snapshot(world["inputs"])
        # a new file beside the inputs (e.g. `qkviz embed inputs/run.qkv` -> inputs/run.pca.qke) is
        # fine, and removed for the next example; every input must be as it was
        for extra in {pathlib.Path(k).parts[0] for k in after} - {pathlib.Path(k).parts[0] for k in world["before"]}:
            target = world["inputs"] / extra
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    changed = sorted(k for k, v in world["before"].items() if after.get(k) != v)
    assert not changed, f"input files changed: {changed}"


def typed_only(fn, *args, **kwargs):
    """Call ``fn``; a ``QKVizError`` is fine, anything else fails the example."""
    try:
        return fn(*args, **kwargs)
    except QKVizError:
        return None


# ---- value pools ----------------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
junk = st.sampled_from([None, True, False, -1, 0, 1, 2, 3, 10**9, -(10**9), 0.5, 1.0, NAN, INF, -INF, "", "x", "0",
                        [], [0], [0, 1], [-1], ["0"], {}, {"a": 1}, (1, 2), b"\x00", np.int64(1), np.float32(NAN)])  # fmt: skip
small_int = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, -(2**40)]))
number = st.one_of(small_int, st.floats(allow_nan=True, allow_infinity=True), junk)


def paths(world, kinds=("new", "texts", "embedding", "page", "proj", "missing_dir", "old", "old_emb", "old_page")):
    """Paths an argument may name. Artefacts in the folder of inputs are only ever offered where a
    write must refuse them (another kind, or no --force); same-kind targets are scratch copies."""
    inputs = world["inputs"]
    pool = {
        "new": "new-output",
        "texts": inputs / "texts.txt",
        "jsonl": inputs / "data.jsonl",
        "capture": inputs / "run.qkv",
        "embedding": inputs / "run.qke",
        "page": inputs / "page.html",
        "proj": inputs / "proj",
        "png": inputs / "red.png",
        "inputs": inputs,
        "missing_dir": "no/such/folder/out",
        # copies in the scratch folder, which an output of the same kind may replace
        "old": "old.qkv",
        "old_emb": "old.qke",
        "old_page": "old.html",
        "html": "out.html",
    }
    return st.sampled_from([pool[k] for k in kinds])


text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
text_inputs = st.one_of(
    st.lists(text, min_size=1, max_size=3),
    st.lists(st.sampled_from(["", " ", "\u200b\u200b", "[CLS]", "word " * 300, "é" * 50]), min_size=1, max_size=3),
    st.sampled_from([[], "", "one bare string", [None], [1, 2], [["nested"]], {"a": "x"}, {"img": 3}]),
    st.builds(
        lambda shape, dtype: np.zeros(shape, dtype),
        st.sampled_from([(0,), (4,), (8, 8), (8, 8, 3), (2, 8, 8, 3), (8, 8, 5), (1, 1, 1, 1, 1)]),
        st.sampled_from([np.uint8, np.float32, np.float64, bool, np.int64]),
    ),
)


# ---- capture --------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_capture_raises_only_typed_errors(world, data):
    kwargs = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "max_length": st.one_of(small_int, junk),
                "batch_size": st.one_of(small_int, junk),
                "layers": st.one_of(st.lists(small_int, max_size=3), junk),
                "heads": st.one_of(st.lists(small_int, max_size=3), junk),
                "dtype": st.sampled_from(["float32", "float16", "bfloat16", "int8", None, 3]),
                "truncation": st.sampled_from(["warn", "error", "silent", "bogus", None, True]),
                "device": st.sampled_from(["cpu", "auto", None, "bogus", "cuda", "cuda:3", "meta", "mps", 3, -1]),
                "thumbnail": st.one_of(small_int, junk),
                "values": st.one_of(st.booleans(), junk),
                "check": st.booleans(),
                "out": paths(world),
                "resume": st.booleans(),
                "overwrite": st.booleans(),
            },
        )
    )
    inputs = data.draw(st.one_of(text_inputs, paths(world, ("texts", "png", "inputs", "capture"))))
    with guarded(world):
        cap = typed_only(qkviz.capture, world["model"], inputs, progress=False, **kwargs)
        if cap is not None:
            assert isinstance(cap, qkviz.Capture)


# ---- embed ----------------------------------------------------------------------------------------------

method_params = {
    "pca": st.fixed_dictionaries({}, optional={"whiten": junk, "n_iter": number}),
    "tsne": st.fixed_dictionaries(
        {},
        optional={
            "perplexity": number,
            "n_iter": number,
            "learning_rate": number,
            "early_exaggeration": number,
            "foo": junk,
        },
    ),
    "attention": st.fixed_dictionaries({}, optional={"n_iter": number, "bar": junk}),
    # refused before any fit (a fit compiles numba code for a minute)
    "umap": st.fixed_dictionaries({"n_neighbors": st.sampled_from([1, 0, -3, "x", NAN, 2.5, True])}),
}


@FUZZ
@given(data=st.data())
def test_embed_raises_only_typed_errors(world, data):
    method = data.draw(st.sampled_from([*method_params, "bogus", "", None, 3]))
    params = data.draw(method_params.get(method, st.just({})))
    kwargs = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "dim": st.sampled_from([1, 2, 3, 4, 2.0, "2", None, True]),
                "metric": st.sampled_from(["dot", "cosine", "euclidean", "bogus", None, 1]),
                "random_state": st.one_of(small_int, junk),
                "layers": st.one_of(st.lists(small_int, max_size=2), junk),
                "heads": st.one_of(st.lists(small_int, max_size=2), junk),
                "executor": st.sampled_from([None, "serial", "bogus", 3]),
                "translate": st.one_of(st.booleans(), junk),
                "align": st.one_of(st.booleans(), junk),
            },
        )
    )
    source = data.draw(st.sampled_from(["disk", "memory", "embedding", "texts", "none"]))
    cap = {"disk": world["cap"], "memory": world["mem_cap"], "embedding": world["emb"], "texts": TEXTS,
           "none": None}[source]  # fmt: skip
    with guarded(world):
        emb = typed_only(qkviz.embed, cap, method=method, progress=False, cache=False, **kwargs, **params)
        if emb is not None:
            assert isinstance(emb, qkviz.Embedding)
            assert all(np.isfinite(emb.coords(*c)).all() for c in emb.cells)


# ---- the widget -----------------------------------------------------------------------------------------

widget_calls = st.lists(
    st.one_of(
        st.tuples(st.just("focus"), st.one_of(small_int, junk), st.one_of(small_int, junk)),
        st.tuples(
            st.just("select"),
            st.one_of(
                junk, text, st.lists(number, max_size=4), st.builds(lambda n: np.ones(n, bool), st.integers(0, 200))
            ),
        ),
        st.tuples(st.just("search"), st.one_of(text, junk, st.sampled_from(["(", "[", "a+", "\\"])), st.booleans()),
        st.tuples(
            st.just("color_by"),
            st.one_of(st.sampled_from(["kind", "position", "norm", "bogus"]), junk),
            st.one_of(st.none(), small_int, junk),
        ),
        st.tuples(st.just("show_matrix")),
        st.tuples(st.just("show_attention"), st.one_of(text, junk)),
        st.tuples(
            st.just("set"),
            st.sampled_from(
                [
                    "layer",
                    "head",
                    "color",
                    "color_mod",
                    "size_by_norm",
                    "search_query",
                    "search_regex",
                    "lines_k",
                    "lines_threshold",
                    "theme",
                    "height",
                    "selection",
                    "attn",
                    "fallback",
                ]
            ),
            number,
        ),
        st.tuples(st.just("selected")),
    ),
    max_size=6,
)


@FUZZ
@given(data=st.data())
def test_widget_raises_only_typed_errors(world, data):
    kwargs = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "color": st.one_of(st.sampled_from(["kind", "position_mod", "sequence", "bogus"]), junk),
                "color_mod": st.one_of(small_int, junk),
                "size_by_norm": st.one_of(st.booleans(), junk),
                "faithfulness": st.one_of(st.booleans(), junk),
                "lines_k": st.one_of(small_int, junk),
                "lines_threshold": number,
                "theme": st.sampled_from(["auto", "light", "dark", "bogus", None, 1]),
                "height": st.one_of(small_int, junk),
                "layer": st.one_of(small_int, junk),
                "head": st.one_of(small_int, junk),
                "attn": st.one_of(st.sampled_from(["", "self", "cross"]), junk),
                "fallback": st.sampled_from(["image", "page", "none", "bogus", None]),
                "columns": st.sampled_from(
                    [None, {}, {"x": [1.0]}, {"x": list(range(15))}, {"c": ["a"] * 15}, 3, {"kind": list(range(15))}]
                ),
            },
        )
    )
    calls = data.draw(widget_calls)
    with guarded(world):
        viz = typed_only(qkviz.QKViz, world["emb"], **kwargs)
        if viz is None:
            return
        for call in calls:
            if call[0] == "set":
                typed_only(setattr, viz, call[1], call[2])
            elif call[0] == "selected":
                typed_only(lambda: viz.selected)
            else:
                typed_only(getattr(viz, call[0]), *call[1:])


# ---- the command line -----------------------------------------------------------------------------------


def _argv(world):
    p = lambda *kinds: paths(world, kinds).map(str)  # noqa: E731
    model = st.sampled_from([str(world["model_dir"]), "no-such-model-xyz", str(world["inputs"] / "texts.txt"), ""])
    opt = lambda name, values: st.one_of(st.just([]), values.map(lambda v: [name, str(v)]))  # noqa: E731
    flag = lambda name: st.sampled_from([[], [name]])  # noqa: E731
    nums = st.one_of(small_int, st.sampled_from(["x", "nan", "1e9", "-0", "0.5", ""]))
    methods = st.sampled_from(["pca", "tsne", "attention", "umap", "bogus"])
    common = st.tuples(flag("-q"), flag("--debug"))
    capture = st.tuples(
        st.just(["capture"]), model.map(lambda m: [m]), p("texts", "jsonl", "png", "inputs", "capture").map(lambda x: [x]),
        st.one_of(st.just([]), p("new", "old", "old_emb", "embedding", "proj", "texts", "missing_dir").map(lambda x: ["-o", x])),
        opt("--max-length", nums), opt("--batch-size", nums), opt("--layers", st.sampled_from(["0", "0,-1", "9", "x", ","])),
        opt("--heads", st.sampled_from(["1", "0,1", "-9", "a"])), opt("--dtype", st.sampled_from(["float16", "int8"])),
        opt("--limit", nums), opt("--field", st.sampled_from(["text", "nope"])), flag("--force"), flag("--resume"),
        flag("--values"), opt("--device", st.sampled_from(["cpu", "bogus", "cuda"])),
    )  # fmt: skip
    embed = st.tuples(
        st.just(["embed"]), p("capture", "embedding", "texts", "proj", "missing_dir").map(lambda x: [x]),
        opt("--method", methods), opt("--dim", st.sampled_from(["2", "3", "4", "x"])), opt("--seed", nums),
        st.one_of(st.just([]), p("new", "old", "old_emb", "capture", "page", "texts").map(lambda x: ["-o", x])),
        flag("--force"),
    )  # fmt: skip
    html = st.tuples(
        st.just(["html"]), p("capture", "embedding", "texts", "page", "missing_dir").map(lambda x: [x]),
        p("html", "old_page", "texts", "capture", "embedding", "proj", "inputs", "missing_dir").map(lambda x: ["-o", x]),
        opt("--method", st.sampled_from(["pca", "bogus"])), opt("--top-k", nums), flag("--exact"), flag("--force"),
    )  # fmt: skip
    info = st.tuples(
        st.just(["info"]), p("capture", "embedding", "texts", "page", "proj", "missing_dir").map(lambda x: [x])
    )
    demo = st.tuples(
        st.just(["demo", "--model", str(world["model_dir"]), "--method", "pca"]),
        opt("-n", st.sampled_from(["1", "2", "0", "-1", "x"])),
        st.one_of(st.just([]), p("html", "old_page", "texts", "embedding", "missing_dir").map(lambda x: ["-o", x])),
        st.one_of(st.just([]), p("new", "old", "embedding", "page", "proj").map(lambda x: ["--save-capture", x])),
        opt("--top-k", nums), flag("--force"),
    )  # fmt: skip
    junk_argv = st.lists(
        st.sampled_from(["bogus", "--help-me", "-o", "", "capture", "--force", "-x", "info"]), max_size=4
    )
    return st.tuples(common, st.one_of(capture, embed, html, info, demo, junk_argv.map(lambda a: (a,)))).map(
        lambda t: [a for part in (*t[0], *t[1]) for a in part]
    )


def test_cli_argv_strategy_is_sane(world):
    """The strategy draws each subcommand (a guard against a pool that silently tests nothing)."""
    seen = set()

    @settings(max_examples=60, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(_argv(world))
    def collect(argv):
        seen.update(a for a in argv if a in ("capture", "embed", "html", "info", "demo"))

    collect()
    assert seen == {"capture", "embed", "html", "info", "demo"}


@FUZZ
@given(data=st.data())
def test_cli_exits_cleanly(world, data):
    argv = data.draw(_argv(world))
    with guarded(world):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse: usage errors and --help
                code = e.code
            except (QKVizError, OSError):
                # --debug re-raises what the CLI otherwise prints as "error: ..." (exit 1); anything
                # else (a bug) still escapes and fails the example
                assert "--debug" in argv, argv
                code = 1
        text = err.getvalue()
        assert code in (0, 1, 2), (argv, code, text[-2000:])
        assert "bug in qkviz" not in text and "Traceback" not in text, (argv, text[-2000:])
