"""Analyses of a head's exact attention: per-sequence detail, aggregates, and image patches.

Pure numpy over anything that can give a token table and exact attention (a
:class:`~qkviz.Capture` or an :class:`~qkviz.Embedding` with its capture), so it sits below the
model stack: ``Capture`` and the widget both call it.

* :func:`attention_context` — what the widget's side panel needs besides a sequence's attention;
* :func:`sequence_detail` — one sequence of one head: tokens and (re-normalised) attention;
* :func:`aggregate_detail` — one head's attention averaged over every sequence, by position and by
  relative offset, with previous/self/next/first scores;
* :class:`Aggregator`, :func:`attention_blocks` — the same aggregate fed block by block from one
  pass over a head's attention (the standalone export computes every head's top-k keys and
  aggregate from that one pass);
* :func:`image_detail` — one image patch's attention on its image's patch grid;
* :func:`family_detail`, :func:`row_stats` — what a head's score function adds: each query's sink
  share, the content and position parts of its scores, how much its attention owes to position;
* :func:`patch_grid`, :func:`patch_atlas`, :func:`patch_colors` — image captures' patches;
* :func:`patch_grid`, :func:`patch_atlas`, :func:`patch_colors` — image captures' patches;
* :func:`head_scores` — the head atlas: previous-token, first-token, self, special, entropy, mean
  distance and induction scores of every head, pooled over every query (``docs/concepts/head-scores.md``);
* :func:`head_distances`, :func:`similar_heads_map` — how alike two heads attend (Jensen–Shannon);
* :func:`compare_heads` — the same heads in two captures of the same texts.
"""

from ._heads import (
    SCORES,
    classical_mds,
    compare_heads,
    head_distances,
    head_scores,
    js_divergence,
    match_sequences,
    similar_heads_map,
)
from ._images import patch_atlas, patch_colors, patch_grid
from ._panel import (
    Aggregator,
    AttentionSource,
    aggregate_detail,
    attention_blocks,
    attention_context,
    capture_of,
    family_detail,
    image_detail,
    row_stats,
    sequence_detail,
)

__all__ = [
    "AttentionSource",
    "attention_context",
    "sequence_detail",
    "aggregate_detail",
    "Aggregator",
    "attention_blocks",
    "image_detail",
    "patch_grid",
    "patch_atlas",
    "patch_colors",
    "capture_of",
    "family_detail",
    "row_stats",
    "ARROW_MIN_WEIGHT",
    "SCORES",
    "head_scores",
    "head_distances",
    "similar_heads_map",
    "classical_mds",
    "compare_heads",
    "match_sequences",
    "js_divergence",
]
