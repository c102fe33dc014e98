"""The scaling machinery on synthetic vectors: kNN backends, the BH/FFT switch, the in-sequence links,
the torch optimiser against openTSNE, the default layout's faithfulness, and interrupted runs.

Properties only (agreement, recall against PCA and chance, which heads are kept); the timings live in
``bench/scale.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from qkviz import embed
from qkviz.attention import ScoreFunction, attention_rows
from qkviz.errors import EmbeddingError
from qkviz.project import PCA, TSNE, _driver, _knn, _tsne_torch
from qkviz.project._affinity import sequence_links
from qkviz.project._knn import EXACT_BELOW, exact_knn, ivf_knn, knn_backend, neighbours
from qkviz.project._reducers import FFT_FROM, gradient_method, tsne_engine
from qkviz.project._tsne_torch import DEVICE_MAX_POINTS, kl_divergence

from ._fakes import capture_from_arrays


def _clustered_cloud(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    """The perf-baselines generator: 24 anisotropic clusters, a q/k-like offset, two massive dims."""
    rng = np.random.default_rng(seed)
    scales = 1 / np.sqrt(1 + np.arange(d))
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
    centres = rng.normal(size=(24, d)) * 3 * scales
    x = centres[rng.integers(0, 24, n)] + rng.normal(size=(n, d)) * scales * 0.8
    x[n // 2 :] += rng.normal(size=d) * 4 * scales
    x = x @ rot
    x[:, :2] *= 4
    return x.astype(np.float32)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(x, y)) for x, y in zip(a, b)]) / b.shape[1])


def _qk_capture(n_seq=60, length=20, d=16, n_heads=2, seed=0):
    """Heads whose queries and keys share token types and a positional signal (attention is local)."""
    rng = np.random.default_rng(seed)
    seq = np.repeat(np.arange(n_seq), length)
    n = len(seq)
    types = rng.integers(0, 12, n)
    pos = np.tile(np.arange(length), n_seq)
    pe = np.stack([np.sin(pos / (3 + i)) for i in range(d)], 1)
    q = np.empty((1, n_heads, n, d))
    k = np.empty_like(q)
    for h in range(n_heads):
        cq, ck = rng.normal(size=(12, d)) * 2, rng.normal(size=(12, d)) * 2
        q[0, h] = cq[types] + pe + 0.5 * rng.normal(size=(n, d))
        k[0, h] = ck[types] + pe + 1.0 + 0.5 * rng.normal(size=(n, d))
    return capture_from_arrays(q, k, seq)


# -- kNN ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_ivf_agrees_with_exact_knn(metric):
    x = _clustered_cloud(5000)
    ie, de = exact_knn(x, 15, metric=metric)
    ia, da = ivf_knn(x, 15, metric=metric)
    assert ia.shape == ie.shape and (ia != np.arange(len(x))[:, None]).all()  # never oneself
    assert _overlap(ia, ie) > 0.9  # 0.92-0.97 on MiniLM and SmolLM2 heads, 4 cells searched
    # sorted nearest first, the same distance where the same neighbour was found, and never
    # nearer than the exact j-th neighbour (an approximate search can only miss neighbours)
    assert (np.diff(da, axis=1) >= -1e-6).all()
    same = ia[:, 0] == ie[:, 0]
    assert same.mean() > 0.95
    np.testing.assert_allclose(da[same, 0], de[same, 0], rtol=1e-3, atol=1e-4)
    assert (da >= de - 1e-3 * (1 + de)).all()


def test_backend_choice_by_size_and_device():
    assert knn_backend(EXACT_BELOW - 1) == "exact"
    assert knn_backend(EXACT_BELOW) == "ivf"
    assert knn_backend(10**6, on_device="cuda") == "exact"  # the GPU does the products
    assert knn_backend(100, "ivf") == "ivf"
    with pytest.raises(EmbeddingError, match="neighbors"):
        knn_backend(100, "annoy")


def test_neighbours_are_memoised_and_sliced():
    x = _clustered_cloud(400, seed=1)
    big = neighbours(x, 12)
    small = neighbours(x, 5)
    np.testing.assert_array_equal(small.indices, big.indices[:, :5])
    assert np.shares_memory(small.indices, big.indices)  # served from the memo, not recomputed
    other = neighbours(x + 1.0, 5)  # different bytes: a different graph
    assert not np.shares_memory(other.indices, big.indices)


def test_neighbours_without_faiss_fall_back_to_exact(monkeypatch):
    monkeypatch.setattr(_knn, "_faiss", lambda: None)
    assert knn_backend(10**5) == "exact"


# -- gradients ------------------------------------------------------------------------------------


def test_fft_above_the_threshold_bh_below(monkeypatch):
    assert gradient_method(FFT_FROM - 1) == "bh" and gradient_method(FFT_FROM) == "fft"
    import openTSNE

    seen = []
    real = openTSNE.TSNE.__init__

    def spy(self, *a, **kw):
        seen.append(kw.get("negative_gradient_method"))
        real(self, *a, **kw)

    monkeypatch.setattr(openTSNE.TSNE, "__init__", spy)
    x = _clustered_cloud(300)
    TSNE(perplexity=None, early_exaggeration_iter=0, n_iter=2).fit(x)
    assert seen == ["bh"]
    TSNE(perplexity=None, early_exaggeration_iter=0, n_iter=2, negative_gradient_method="fft").fit(x)
    assert seen[-1] == "fft"  # an explicit choice wins


def test_torch_optimiser_matches_opentsne_on_the_same_affinities():
    x = _clustered_cloud(600, d=10, seed=2)
    init = PCA(2).fit_transform(x).astype(np.float64)
    init /= init[:, 0].std()
    kw = dict(perplexity=None, early_exaggeration_iter=0, n_iter=40, exaggeration=2.0, metric="euclidean")
    ref = TSNE(2, engine="opentsne", negative_gradient_method="bh", theta=0.05, **kw)
    y_ref = ref.fit_transform(x, init)
    y = TSNE(2, engine="torch", **kw).fit_transform(x, init)
    P = ref.affinities(x)
    kl_ref, kl, kl0 = kl_divergence(P, y_ref), kl_divergence(P, y), kl_divergence(P, init)
    assert kl < kl0 - 0.3  # it optimises
    assert abs(kl - kl_ref) < 0.02 * kl_ref  # and reaches what openTSNE reaches
    from scipy.spatial import procrustes

    assert procrustes(y_ref, y)[2] < 1e-2  # the same picture (up to rotation and scale)


def test_torch_engine_runs_the_early_exaggeration_phase_too():
    x = _clustered_cloud(200, d=8, seed=3)
    y = TSNE(2, engine="torch", perplexity=10, early_exaggeration_iter=5, n_iter=5).fit_transform(x)
    assert y.shape == (200, 2) and np.isfinite(y).all()
    with pytest.raises(EmbeddingError, match="engine"):
        TSNE(engine="cuml").fit(x)


def test_torch_optimiser_carries_momentum_and_gains_between_phases():
    x = _clustered_cloud(300, d=8, seed=6)
    P = TSNE(2, perplexity=None).affinities(x)
    y0 = PCA(2).fit_transform(x)
    once = _tsne_torch.optimize(P, y0, n_iter=20, exaggeration=2.0, device="cpu")
    state: dict = {}
    half = _tsne_torch.optimize(P, y0, n_iter=10, exaggeration=2.0, device="cpu", state=state)
    twice = _tsne_torch.optimize(P, half, n_iter=10, exaggeration=2.0, device="cpu", state=state)
    np.testing.assert_allclose(twice, once, rtol=1e-4, atol=1e-4)  # one run, split in two
    fresh = _tsne_torch.optimize(P, half, n_iter=10, exaggeration=2.0, device="cpu")
    assert np.abs(fresh - once).max() > 1e-3  # restarting the gains would give another layout


def test_the_gpu_gets_the_torch_optimiser_and_exact_knn_the_cpu_opentsne_and_ivf():
    # What runs on CUDA is chosen by these two functions; the torch engine itself runs on the CPU
    # in the tests above. No test here has run on a GPU.
    assert tsne_engine(200_000, on_device="cuda") == "torch"
    assert tsne_engine(DEVICE_MAX_POINTS + 1, on_device="cuda") == "opentsne"  # quadratic repulsion
    assert tsne_engine(200_000, on_device="cpu") == "opentsne"
    assert tsne_engine(10, "torch", on_device="cpu") == "torch"
    assert knn_backend(200_000, on_device="cuda") == "exact"
    assert knn_backend(200_000, on_device="cpu") == "ivf"


def test_exact_knn_in_bounded_blocks_gives_the_same_neighbours(monkeypatch):
    x = _clustered_cloud(700, seed=7)
    whole = exact_knn(x, 10)
    monkeypatch.setattr(_knn, "_BLOCK_ELEMENTS", 700 * 64)  # 64 rows at a time
    blocked = exact_knn(x, 10)
    np.testing.assert_array_equal(blocked[0], whole[0])
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-5)


def test_device_methods_run_serially_on_cuda(monkeypatch):
    monkeypatch.setattr(_driver, "_cuda", lambda: True)
    ex, owned, workers = _driver._executor_for(None, 10, "tsne")
    assert isinstance(ex, _driver._Serial) and workers == 1
    monkeypatch.setattr(_driver, "_cuda", lambda: False)
    ex, owned, workers = _driver._executor_for(None, 10, "tsne")
    try:
        assert not isinstance(ex, _driver._Serial)
    finally:
        ex.shutdown()


# -- in-sequence links ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "score, causal, window",
    [(0.5, False, None), (0.5, True, None), (0.5, True, 3), (ScoreFunction(scaling=0.5, alibi=0.7), True, None)],
)
def test_sequence_links_are_each_querys_top_attended_keys(score, causal, window):
    rng = np.random.default_rng(4)
    lens = (7, 5, 9)
    seq = np.repeat(np.arange(3), lens)
    q, k = rng.normal(size=(len(seq), 6)), rng.normal(size=(len(seq), 6))
    m = 3
    p = sequence_links(q, k, seq, score, m, causal=causal, window=window).toarray()
    n = len(seq)
    np.testing.assert_allclose(p, p.T)
    assert p.sum() == pytest.approx(1.0)
    start = 0
    for length in lens:
        sl = slice(start, start + length)
        a = attention_rows(q[sl], k[sl], score, causal, window)
        for i in range(length):
            linked = set(np.flatnonzero(p[start + i, n + start : n + start + length]))
            order = np.argsort(-a[i], kind="stable")
            top = set(order[: min(m, int((a[i] > 0).sum()))])
            assert linked == top  # exactly the keys the head attends to most, none it cannot see
        start += length
    assert not p[:n, :n].any() and not p[n:, n:].any()  # query-key links only


def test_sequence_links_of_a_cross_attention_stay_in_the_sequence():
    rng = np.random.default_rng(5)
    qseq, kseq = np.repeat([0, 1], [3, 4]), np.repeat([0, 1], [6, 2])
    q, k = rng.normal(size=(7, 4)), rng.normal(size=(8, 4))
    p = sequence_links(q, k, qseq, 1.0, 2, kseq=kseq).toarray()
    assert p.shape == (15, 15)
    links = p[:7, 7:] > 0
    assert (links.sum(1) == 2).all()
    assert not links[qseq[:, None] != kseq[None, :]].any()


# -- the default layout ---------------------------------------------------------------------------


def test_default_layout_is_at_least_as_faithful_as_pca():
    cap = _qk_capture()
    pca = embed(cap, "pca", cache=False, progress=False).faithfulness(5)
    default = embed(cap, cache=False, progress=False, executor="serial")
    f = default.faithfulness(5)
    assert default.method == "tsne" and default.params["metric"] == "dot"
    assert (f["recall"].to_numpy() >= pca["recall"].to_numpy()).all()
    assert (f["recall"] > 2 * f["chance_recall"]).all()
    # the in-sequence links are what lifts it: plain t-SNE of the same cloud scores lower
    plain = embed(cap, cache=False, progress=False, executor="serial", seq_keys=0).faithfulness(5)
    assert f["recall"].mean() > plain["recall"].mean() + 0.05


def test_default_layout_needs_the_sequences_when_called_alone():
    x = _clustered_cloud(100)
    with pytest.raises(EmbeddingError, match="seq_keys"):
        TSNE(perplexity=None, seq_keys=5).fit(x)


# -- interrupted runs -----------------------------------------------------------------------------


def _interrupt_after(n_heads: int):
    def callback(done, total, cell):
        if done == n_heads:
            raise KeyboardInterrupt

    return callback


def test_ctrl_c_keeps_finished_heads_and_a_rerun_resumes_from_the_cache(tmp_path):
    cap = _qk_capture(n_seq=10, length=10, n_heads=4)
    kw = dict(method="pca", cache=tmp_path, progress=False, executor="serial")
    with pytest.warns(UserWarning, match="interrupted after 2 of 4 heads"):
        part = embed(cap, callback=_interrupt_after(2), **kw)
    assert not part.complete and len(part.cells) == 2
    again = embed(cap, **kw)
    assert again.complete and len(again.cells) == 4
    assert again.timings["heads_cached"] == 2 and again.timings["heads_computed"] == 2
    for cell in part.cells:  # the kept heads are the ones a full run makes (before alignment)
        assert again.has(*cell)


def test_ctrl_c_inside_a_head_stops_the_run(monkeypatch):
    cap = _qk_capture(n_seq=10, length=10, n_heads=3)
    calls = []
    real = _driver.project_one

    def project_one(src, spec, cache_dir):
        calls.append(src.head)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, spec, cache_dir)

    monkeypatch.setattr(_driver, "project_one", project_one)
    with pytest.warns(UserWarning, match="interrupted after 1 of 3"):
        emb = embed(cap, "pca", cache=False, progress=False, executor="serial")
    assert calls == [0, 1]  # the third head never started
    assert emb.cells == [(0, 0)] and not emb.complete


def test_ctrl_c_before_any_head_finished_stops_embed(monkeypatch):
    cap = _qk_capture(n_seq=10, length=10, n_heads=2)

    def project_one(src, spec, cache_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(_driver, "project_one", project_one)
    with pytest.raises(KeyboardInterrupt):  # nothing to return: the interrupt goes on
        embed(cap, "pca", cache=False, progress=False, executor="serial")


def test_serial_runs_stop_right_after_the_callback_asks(monkeypatch):
    cap = _qk_capture(n_seq=10, length=10, n_heads=4)
    calls = []
    real = _driver.project_one

    def project_one(src, spec, cache_dir):
        calls.append(src.head)
        return real(src, spec, cache_dir)

    monkeypatch.setattr(_driver, "project_one", project_one)
    emb = embed(cap, "pca", cache=False, progress=False, executor="serial", callback=lambda done, total, cell: True)
    assert calls == [0] and emb.cells == [(0, 0)] and not emb.complete  # no head computed in vain


@pytest.mark.slow
def test_ctrl_c_with_the_process_pool_keeps_finished_heads(tmp_path):
    cap = _qk_capture(n_seq=10, length=10, n_heads=4)
    with pytest.warns(UserWarning, match="interrupted after 1 of 4"):
        emb = embed(cap, cache=tmp_path, progress=False, callback=_interrupt_after(1), n_iter=5)
    assert len(emb.cells) == 1 and not emb.complete
