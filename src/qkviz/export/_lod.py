"""Level of detail for standalone pages: a size budget, a sample of every head, full heads on request.

A page that would hold every point of a large grid (SmolLM2 over 700 sentences: 270 heads x 19,681
tokens, 10.6 million points) runs to tens of megabytes. Within a byte budget the page instead holds:

* **full resolution** for the heads the user names (``full=``) and the head the widget is focused
  on: every point and the top-k keys of every query;
* for every other head, the query and the key of the tokens of a **sample of whole sequences**, the
  same sequences in every head (so cells compare like with like), with their top-k keys. Whole
  sequences keep what a page can show of a drawn point complete: its attention lines go to points
  that are drawn, and its sentence view has every row. The sample is **stratified by length**
  (sequences sorted by length into strata of equal token mass, each stratum spread evenly through a
  random order), so short and long sequences are represented as in the corpus; sequences with
  points in the widget's selection come first. Points are listed in a random, interleaved draw
  order, so neither queries nor keys always cover the other;
* the exact aggregates (every sequence) and everything else a page holds.

Point indices always refer to the full capture (``docs/internals.md``, "Static pages": the
``lod`` entry), so a selection means the same in the page and in the notebook.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..wire import View, WidgetState, array_to_binary
from ._snapshot import HeadDetail, attention_wire, state_wire

__all__ = ["DEFAULT_MAX_BYTES", "Sample", "full_cells", "sample_sequences", "lod_snapshot", "describe"]

#: Default size budget of a standalone page, in bytes.
DEFAULT_MAX_BYTES = 20_000_000
#: Strata of the sequence sample (by length).
_STRATA = 10


@dataclass
class Sample:
    """What a sampled page holds of the heads that are not full.

    Attributes
    ----------
    seqs : int64 [seq]
        The sampled sequences, sorted.
    tokens : int64 [token]
        Their tokens (sorted): each token's query and key are held.
    points : uint32 [point]
        Within-cell point indices (``0..2 n_tokens - 1``: queries, then keys) of those tokens, in
        draw order.
    full : bool [cell]
        Cells held at full resolution.
    """

    seqs: np.ndarray
    tokens: np.ndarray
    points: np.ndarray
    full: np.ndarray


def full_cells(state: WidgetState, full: Iterable[Any] | None, view: View) -> np.ndarray:
    """``bool [cell]``: the heads named in ``full`` plus the view's focused head."""
    out = np.zeros(len(state.cells), bool)
    wanted = list(full or [])
    if view.layer is not None and view.head is not None:
        wanted.append((view.layer, view.head))
    for item in wanted:
        try:
            layer, head = (int(x) for x in item)
        except (TypeError, ValueError):
            raise InputError(f"full= takes (layer, head) pairs, got {item!r}") from None
        # (attn, layer, head) cells of an encoder-decoder grid: the head in every attention
        hits = [c for c, cell in enumerate(state.cells) if tuple(cell[-2:]) == (layer, head)]
        if not hits:
            raise InputError(
                f"full=: no head (layer={layer}, head={head}) in this embedding; layers are "
                f"{list(state.layers)}, heads {list(state.heads)}"
            )
        out[hits] = True
    return out


def sample_sequences(lengths: np.ndarray, budget: int, *, seed: int = 0, first: Iterable[int] = ()) -> np.ndarray:
    """Whole sequences holding at most ``budget`` tokens, stratified by length; sorted ids.

    Parameters
    ----------
    lengths : int array [seq]
        Tokens per sequence.
    budget : int
        Most tokens to hold (at least one sequence is always held).
    seed : int
        Seed of the random order within each stratum.
    first : ints
        Sequences to take before any other (e.g. those of the selected points).

    Examples
    --------
    >>> lengths = np.array([5, 50, 6, 48, 7, 52, 5, 49])
    >>> picked = sample_sequences(lengths, 70)
    >>> int(lengths[picked].sum()) <= 70, bool((lengths[picked] > 40).any() and (lengths[picked] < 10).any())
    (True, True)
    """
    lengths = np.asarray(lengths, np.int64)
    n = lengths.size
    if int(lengths.sum()) <= budget:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    by_length = np.argsort(lengths, kind="stable")
    mass = np.cumsum(lengths[by_length]) / lengths.sum()
    stratum = np.minimum((mass * _STRATA).astype(np.int64), _STRATA - 1)
    # within each stratum a random order, spread evenly over [0, 1): taking any prefix of the
    # merged order takes every stratum in proportion
    key = np.empty(n)
    for s in np.unique(stratum):
        members = by_length[stratum == s]
        key[members] = (rng.permutation(len(members)) + rng.random()) / len(members)
    order = np.argsort(key, kind="stable")
    forced = [int(s) for s in dict.fromkeys(first) if 0 <= int(s) < n]
    order = np.concatenate([np.array(forced, np.int64), order[~np.isin(order, forced)]])
    chosen, held = [], 0
    for s in order.tolist():
        if held + lengths[s] <= budget:
            chosen.append(s)
            held += int(lengths[s])
    if not chosen:  # the budget is smaller than any sequence: hold the shortest one anyway
        chosen = [int(by_length[0])]
    return np.sort(np.array(chosen, np.int64))


def make_sample(
    state: WidgetState, full: np.ndarray, budget: int, *, seed: int = 0, first: Iterable[int] = ()
) -> Sample:
    """The :class:`Sample` holding at most ``budget`` tokens per sampled head."""
    tok = state.embedding.tokens
    seq = tok["seq"].to_numpy()
    ids, lengths = np.unique(seq, return_counts=True)
    picked = ids[sample_sequences(lengths, budget, seed=seed, first=np.searchsorted(ids, list(first)))]
    tokens = np.flatnonzero(np.isin(seq, picked)).astype(np.int64)
    n = state.n_tokens
    points = np.concatenate([tokens, n + tokens]).astype(np.uint32)
    points = points[np.random.default_rng(seed + 1).permutation(points.size)]  # interleaved draw order
    return Sample(seqs=picked.astype(np.int64), tokens=tokens, points=points, full=full)


def lod_snapshot(
    state: WidgetState,
    view: View,
    details: list[HeadDetail | None],
    top_k: int,
    sample: Sample,
    selection: np.ndarray | None = None,
) -> dict[str, Any]:
    """A snapshot whose grid holds :class:`Sample` (``docs/internals.md``, "Static pages").

    The page's ``_meta`` gets ``order`` (the sample's points first, in draw order, then the
    others) and ``sample_points`` (how many of them the page holds per sampled head); ``sample``
    holds those points of every cell, ``points`` only the full heads, and the top-k tables keep
    the rows of the held tokens (the others are empty).
    """
    wire = state_wire(state, view, selection)
    n = state.n_tokens
    per = 2 * n
    m = len(sample.points)
    rest = np.setdiff1d(np.arange(per, dtype=np.uint32), sample.points, assume_unique=True)
    order = np.concatenate([sample.points, rest]).astype(np.uint32)
    wire["_meta"] = {**wire["_meta"], "order": array_to_binary(order, "uint32"), "sample_points": m}
    held = np.zeros(n, bool)
    held[sample.tokens] = True
    if not sample.full.any():
        # no head shows the other tokens: their strings would only weigh on the page
        toks = dict(wire["_tokens"])
        toks["token"] = [t if h else "" for t, h in zip(toks["token"], held.tolist())]
        toks["display"] = [t if h else "" for t, h in zip(toks["display"], held.tolist())]
        wire["_tokens"] = toks
    chunk = state.chunk_points
    points = []
    for c in np.flatnonzero(sample.full & (state.missing == 0)).tolist():
        for start in range(c * per, (c + 1) * per, chunk):
            p = state.points(start, min(start + chunk, (c + 1) * per))
            points.append(
                {
                    "start": p["start"],
                    "stop": p["stop"],
                    "coords": array_to_binary(p["coords"], "float32"),
                    "norms": array_to_binary(p["norms"], "uint8"),
                }
            )
    step = max(1, chunk // max(1, m))  # cells per "sample" reply, as the front end asks for them
    cells = len(state.cells)
    chunks = []
    for start in range(0, cells, step):
        stop = min(start + step, cells)
        idx = (np.arange(start, stop)[:, None] * per + sample.points[None, :].astype(np.int64)).reshape(-1)
        chunks.append(
            {
                "start": start,
                "stop": stop,
                "coords": array_to_binary(state.coords[idx].reshape(stop - start, m, state.dim), "float32"),
                "norms": array_to_binary(state.norms[idx].reshape(stop - start, m), "uint8"),
            }
        )
    rows = [d if d is None or sample.full[c] else _held_rows(d, ~held) for c, d in enumerate(details)]
    held_points = sum(per if sample.full[c] else m for c in range(cells) if not state.missing[c])
    lod = {
        "tokens": array_to_binary(sample.tokens, "uint32"),
        "seqs": array_to_binary(sample.seqs, "uint32"),
        "full": array_to_binary(sample.full.astype(np.uint8), "uint8"),
        "n_points": int(held_points),
    }
    return {"state": wire, "points": points, "sample": chunks, **attention_wire(state, rows, top_k), "lod": lod}


def _held_rows(d: HeadDetail, unheld: np.ndarray) -> HeadDetail:
    """A head's detail with empty top-k rows for the tokens the page does not hold (whole
    sequences, so the empty rows form long runs that gzip packs to almost nothing)."""
    keys = None if d.keys is None else np.where(unheld[:, None], np.uint32(_NONE), d.keys)
    weights = None if d.weights is None else np.where(unheld[:, None], np.float32(0), d.weights)
    return HeadDetail(keys, weights, d.aggregate, d.cls)


_NONE = np.iinfo(np.uint32).max


def describe(state: WidgetState, sample: Sample | None) -> dict[str, Any]:
    """What a page holds, in numbers and in one sentence (shown above the widget)."""
    n, cells = state.n_tokens, len(state.cells)
    present = int(cells - state.missing.sum())
    if sample is None:
        return {
            "sampled": False,
            "tokens_total": n,
            "tokens_per_sampled_head": n,
            "points": int(2 * n * present),
            "points_total": int(2 * n * present),
            "full": [list(c[-2:]) for c, m in zip(state.cells, state.missing) if not m],
            "note": "",
        }
    full = [tuple(state.cells[c][-2:]) for c in np.flatnonzero(sample.full)]
    n_full = len(full)
    sampled = present - sum(1 for c in np.flatnonzero(sample.full) if not state.missing[c])
    points = 2 * n * (present - sampled) + 2 * len(sample.tokens) * sampled
    n_seqs = int(len(state.embedding.sequences))
    heads = f"{sampled} of {present} heads" if n_full else "every head"
    note = (
        f"This page holds {heads} at {len(sample.tokens):,} of {n:,} tokens: the queries and keys of "
        f"{len(sample.seqs):,} of {n_seqs:,} whole sequences, sampled by length to keep the file small "
        "(save_html's max_bytes= and full= hold more)."
    )
    if n_full:
        note += " Full resolution: " + ", ".join(f"L{la} H{he}" for la, he in full) + "."
    return {
        "sampled": True,
        "tokens_total": n,
        "tokens_per_sampled_head": int(len(sample.tokens)),
        "points": int(points),
        "points_total": int(2 * n * present),
        "full": [list(c) for c in full],
        "note": note,
    }
