"""How faithfully a 2-D/3-D layout shows a head's attention.

A joint query-key layout is meant to be read as "a query sits near the keys it attends to". These
metrics measure how true that reading is for one head, within each sequence:

* **recall@k**: for each query, the share of its ``k`` most-attended keys (same sequence) that are
  among its ``k`` nearest keys (same sequence) in the layout.
* **Spearman**: per query row, the rank correlation between attention weight and *negative* layout
  distance over the keys of its sequence, averaged over rows.
* **chance recall@k**: the expected recall@k of a uniformly random layout. For a query that can see
  ``n`` keys, the ``k`` nearest keys of a random layout are a uniformly random ``k``-subset, so the
  expected recall is exactly ``k / n``; averaging it over queries gives the baseline without the
  noise of drawing one random layout.

Rows whose query sees ``n <= k`` keys are skipped by recall (they would score 1 whatever the
layout); rows with ``n < 3`` visible keys are skipped by Spearman. In a causal model a query sees
only the keys at or before its own position, and both its attention and its layout neighbours are
taken among those keys.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> q, k = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
>>> seq = np.repeat([0, 1], 20)
>>> coords = np.concatenate([q[:, :2], k[:, :2]])     # a "layout": the first two vector axes
>>> f = head_faithfulness(coords, q, k, seq, scaling=1.0, k=5)
>>> 0.0 <= f.recall <= 1.0 and f.chance_recall == 0.25
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attention import ScoreFunction, attention_rows, sequence_slices, visible
from .errors import EmbeddingError

__all__ = ["Faithfulness", "head_faithfulness"]


@dataclass(frozen=True)
class Faithfulness:
    """Faithfulness scores of one head's layout.

    Attributes
    ----------
    recall : float
        Mean recall@k over the scored queries (``nan`` if no query sees more than ``k`` keys).
    spearman : float
        Mean per-row Spearman correlation between attention and negative layout distance.
    chance_recall : float
        Expected recall@k of a uniformly random layout over the same rows.
    n_rows : int
        Number of query rows scored by recall.
    """

    recall: float
    spearman: float
    chance_recall: float
    n_rows: int


def _ranks_desc(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rank of each entry within its row, largest first; invalid entries rank after all valid ones."""
    v = np.where(valid, values, -np.inf)
    order = np.argsort(-v, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(v.shape[0])[:, None]
    ranks[rows, order] = np.arange(v.shape[1])[None, :]
    return ranks


def _sequence_scores(
    attn: np.ndarray, dist: np.ndarray, valid: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row recall, chance, Spearman and row masks for one sequence."""
    n_vis = valid.sum(axis=1)
    r_att = _ranks_desc(attn, valid)
    r_near = _ranks_desc(-dist, valid)
    hits = ((r_att < k) & (r_near < k) & valid).sum(axis=1)
    scored = n_vis > k
    recall = hits / k
    chance = k / np.maximum(n_vis, 1)
    # Spearman = Pearson correlation of the ranks over each row's visible keys. Ranks of visible
    # keys are exactly 0..n_vis-1, so their mean is (n_vis-1)/2.
    ra = r_att.astype(np.float64)
    rn = r_near.astype(np.float64)
    mean = ((n_vis - 1) / 2.0)[:, None]
    w = valid.astype(np.float64)
    cov = (w * (ra - mean) * (rn - mean)).sum(axis=1)
    var = (w * (ra - mean) ** 2).sum(axis=1)  # same for both: a permutation of 0..n_vis-1
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = cov / var
    rho_ok = n_vis >= 3
    return recall, chance, rho, np.stack([scored, rho_ok])


def head_faithfulness(
    coords: np.ndarray,
    q: np.ndarray,
    keys: np.ndarray,
    seq: np.ndarray,
    scaling: float | ScoreFunction,
    *,
    causal: bool = False,
    window: int | None = None,
    k: int = 5,
    key_seq: np.ndarray | None = None,
) -> Faithfulness:
    """Score one head's layout against its attention.

    Parameters
    ----------
    coords : float array [point, dim]
        The layout: rows ``0..n-1`` are the queries of tokens ``0..n-1``, rows ``n..2n-1`` the keys.
    q, keys : float array [token, d_head]
        The head's queries and keys (raw or jointly normalised: the attention is the same).
    seq : int array [token]
        Sequence id of each token (contiguous runs).
    scaling : float or ScoreFunction
        The model's score factor for this layer, or the head's whole score function (soft-capping,
        sinks, position terms): recall is measured against the head's true attention. Then ``q``
        and ``keys`` must be the vectors as captured.
    causal : bool
        Whether query ``i`` sees only the keys ``j <= i`` of its sequence.
    window : int, optional
        Sliding attention window of this layer (query ``i`` sees keys ``j > i - window``).
    k : int
        Neighbourhood size of recall@k.
    key_seq : int array [key], optional
        When the keys are other tokens than the queries (cross-attention: the encoder's tokens
        for the decoder's queries), the sequence of each key; ``coords`` then stacks the
        ``len(seq)`` queries over these keys.

    Returns
    -------
    Faithfulness
    """
    coords = np.asarray(coords, np.float64)
    n = len(seq)
    qseq = np.asarray(seq)
    kseq = qseq if key_seq is None else np.asarray(key_seq)
    nk = len(kseq)
    if coords.ndim != 2 or coords.shape[0] != n + nk:
        raise EmbeddingError(
            f"coords must be [point={n + nk}, dim] (queries of {n} tokens, then keys of {nk}), got shape {coords.shape}."
        )
    if q.shape[0] != n or keys.shape[0] != nk:
        raise EmbeddingError(f"q and keys must have {n} and {nk} rows, got {q.shape}, {keys.shape}.")
    if k < 1:
        raise EmbeddingError(f"k must be >= 1, got {k}.")
    recs, chas, rhos, oks = [], [], [], []
    qslices = sequence_slices(qseq)
    kslices = qslices if key_seq is None else sequence_slices(kseq)
    if len(qslices) != len(kslices):
        raise EmbeddingError("queries and keys must come from the same sequences, in the same order.")
    for sl, kl in zip(qslices, kslices):
        attn = attention_rows(q[sl], keys[kl], scaling, causal, window)
        cq, ck = coords[sl], coords[n + kl.start : n + kl.stop]
        d2 = (cq**2).sum(1)[:, None] + (ck**2).sum(1)[None, :] - 2.0 * cq @ ck.T
        if key_seq is None:
            valid = visible(sl.stop - sl.start, causal, window)
        else:
            valid = attn > 0 if (causal or window) else np.ones(attn.shape, bool)
        r, c, s, mask = _sequence_scores(attn, d2, valid, k)
        recs.append(r)
        chas.append(c)
        rhos.append(s)
        oks.append(mask)
    if not recs:
        raise EmbeddingError("no tokens to score.")
    rec, cha, rho = np.concatenate(recs), np.concatenate(chas), np.concatenate(rhos)
    scored, rho_ok = np.concatenate(oks, axis=1)
    rho_ok &= np.isfinite(rho)
    nan = float("nan")
    return Faithfulness(
        recall=float(rec[scored].mean()) if scored.any() else nan,
        spearman=float(rho[rho_ok].mean()) if rho_ok.any() else nan,
        chance_recall=float(cha[scored].mean()) if scored.any() else nan,
        n_rows=int(scored.sum()),
    )
