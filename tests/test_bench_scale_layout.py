"""bench/scale.py's layout sections (bench/scale_layout.py): their logic on small inputs (no timing asserts): the synthetic rows, the growth
per doubling, head-by-head comparison with PCA, and how many sentences make a size."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("scale_layout")


@pytest.fixture(scope="module")
def scale():
    return _load("scale")


def test_synthetic_section_through_scale_py(scale, tmp_path):
    args = scale.parser().parse_args(["--sections", "layout_synthetic", "--scratch", str(tmp_path)])
    assert (
        args.tokens.startswith("6000") and args.e2e_sentences == 700 and args.sentences == 720
    )  # both halves' options
    out = scale.run(args)
    row = out["layout_synthetic"]
    assert out["machine"]["cpus"] >= 1 and len(out["load"]["before"]) == 3
    sizes = list(row["runs"])
    assert [int(s) for s in sizes] == [1000, 2000]  # 50 and 100 sequences of 20 tokens
    for size in sizes:
        for method in ("pca", "tsne"):
            r = row["runs"][size][method]
            assert r["points_per_head"] == 2 * int(size) and r["heads"] == [0, 1]
            assert len(r["recall5"]) == 2 and len(r["spearman"]) == 2
            assert r["recall5_mean"] > 1.5 * r["chance_recall5_mean"]  # both layouts show the attention
            assert r["s_per_head"] > 0 and r["cpu_s_per_head"] > 0 and r["peak_rss_mb"] > 0
        # the default layout beats PCA on this synthetic attention as on MiniLM's heads
        assert row["runs"][size]["tsne"]["recall5_mean"] > row["runs"][size]["pca"]["recall5_mean"]
    curve = row["curve"]["tsne"]
    assert curve["tokens"] == [1000, 2000] and len(curve["growth_per_doubling"]) == 1
    assert len(curve["recall5_minus_pca_mean"]) == 2 and "heads_below_pca" in curve
    assert set(row["goals"]) >= {"max_growth_per_doubling", "growth_goal", "mean_recall_at_least_pca_at_every_size"}


def test_growth_per_doubling(bench):
    assert bench.growth_per_doubling([1000, 2000, 4000], [1.0, 2.0, 4.0]) == [2.0, 2.0]  # linear
    assert bench.growth_per_doubling([1000, 4000], [1.0, 16.0]) == [4.0]  # quadratic, over two doublings
    assert bench.growth_per_doubling([1000, 2000], [0.0, 1.0]) == [None]


def test_recall_is_compared_with_pca_head_by_head(bench):
    pca = {"heads": [0, 1, 2], "recall5": [0.5, 0.6, 0.7]}
    other = {"heads": [2, 0], "recall5": [0.6, 0.9]}  # measured on fewer heads, in another order
    assert bench._minus_pca(other, pca).round(6).tolist() == [-0.1, 0.4]


def test_sentences_for_counts_tokens_until_the_size(bench):
    def tokenizer(text):
        return {"input_ids": text.split() + ["[CLS]", "[SEP]"]}

    texts = ["a b c", "d e", "f g h i"]  # 5, 4 and 6 tokens with the special ones
    assert bench.sentences_for(tokenizer, texts, 5) == 1
    assert bench.sentences_for(tokenizer, texts, 6) == 2
    assert bench.sentences_for(tokenizer, texts, 15) == 3
    with pytest.raises(SystemExit, match="15 tokens"):
        bench.sentences_for(tokenizer, texts, 16)


def test_the_corpus_repeats_no_sentence(bench):
    from qkviz.data import demo_sentences

    texts = bench.corpus()
    assert len(texts) == len(set(texts))  # more text, never the same text again
    assert set(texts) >= set(demo_sentences()) and len(texts) > len(set(demo_sentences()))
