"""Level of detail: which points of a head are drawn when not all of them fit, and in which order.

A grid of research size (SmolLM2's 270 heads over 20k tokens: 10.8M points) cannot be drawn whole
on the matrix, and need not be: a cell is a few dozen pixels wide. The matrix draws a bounded
sample of every head and the focused head draws all its points. Both come from one ordering of a
head's points, :func:`draw_order`, built so that

* **every prefix is a stratified sample**: queries and keys are ordered separately, each by a
  nested stratification of the token table in (seq, pos) order (a randomly scrambled radical
  inverse: the first 2**j points of a kind hold one point of each of 2**j consecutive blocks of
  tokens), so any prefix spreads over the sequences in proportion to their length, and over the
  positions inside them;
* **queries and keys alternate** (in proportion to their counts), so drawing the order front to
  back never paints every key over every query, or the reverse;
* **absent points** (``valid`` False: a NaN coordinate, e.g. the decoder tokens of an encoder's
  self-attention) come last, so a prefix of the valid points is still stratified.

The matrix draws the first :func:`sample_size` points of the order in every cell; the single view
draws the whole order. Searched, selected and clicked points are always drawn as well
(:func:`with_forced`). The widget (``WidgetState``) and the standalone page (``qkviz.export``) both
sample through these functions, so a page and a notebook show the same points in the same order.

A standalone page over its size budget holds fewer points of most heads: the queries and keys of a
sample of **whole sequences** (:func:`sample_sequences`; whole, so that what the page shows of a held
point is complete: its attention lines go to held keys, its sentence has every row). Its draw order
is the same order with the held points moved first (:func:`held_first`), so a page's matrix is
still a stratified, interleaved prefix of the order the notebook draws.

Examples
--------
>>> import numpy as np
>>> seq = np.repeat(np.arange(4), 8)                 # 4 sequences of 8 tokens
>>> order = draw_order(seq)
>>> sorted(order.tolist()) == list(range(64))         # every point of the head, once
True
>>> first = order[:16]
>>> bool(((first < 32) == np.tile([True, False], 8)).all())   # queries and keys alternate
True
>>> np.bincount(seq[first % 32], minlength=4).tolist()        # two points of each sequence
[4, 4, 4, 4]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "draw_order",
    "sample_size",
    "with_forced",
    "sample_sequences",
    "held_first",
    "MATRIX_POINTS",
    "CELL_MIN",
    "CELL_MAX",
    "FORCED_POINTS",
]

#: Points the matrix draws over the whole grid (the per-cell sample is this divided by the number
#: of cells, within ``[CELL_MIN, CELL_MAX]``): about the most a software-rendered canvas draws in
#: well under a second, and more than a cell of a few dozen pixels can show.
MATRIX_POINTS = 400_000
#: Fewest points a matrix cell draws (when its head has that many), however many cells there are.
CELL_MIN = 384
#: Most points a matrix cell draws, however few cells there are.
CELL_MAX = 16_384
#: Most forced points (searched, selected) the matrix adds to its sample over the whole grid; past
#: it, the forced points of each cell are themselves taken in draw order (a stratified subset).
FORCED_POINTS = 1_000_000

#: Strata of :func:`sample_sequences` (by length).
SEQUENCE_STRATA = 10

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread uint64 hash of each value (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _nested(count: int, seed: int) -> np.ndarray:
    """int64 [count]: a permutation of ``range(count)`` whose every prefix is spread over the ranks.

    The scrambled radical inverse of each rank: its bits read from the top form a path down a
    binary tree of rank blocks; the key reverses that path (the first split becomes the lowest
    bit), after flipping the branch taken at every node by a hash of (seed, node). Sorting by key
    takes one rank from each of the 2**j blocks before a second from any (every prefix of 2**j is
    stratified), and the random flips pick which rank of each block comes first (no aliasing with
    sequences of equal length).
    """
    if count <= 0:
        return np.zeros(0, np.int64)
    bits = max(1, int(count - 1).bit_length())
    r = np.arange(count, dtype=np.uint64)
    key = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(np.uint64(seed & 0xFFFFFFFF) * _GOLDEN + np.uint64(0x632BE59BD9B4E019))
        for level in range(bits):
            shift = np.uint64(bits - 1 - level)
            branch = (r >> shift) & np.uint64(1)
            node = (r >> shift) >> np.uint64(1)  # the path above this level: one value per tree node
            flip = _mix(node * _GOLDEN + base + np.uint64(level) * np.uint64(0xD1B54A32D192ED03)) & np.uint64(1)
            key |= (branch ^ flip) << np.uint64(level)
    return np.argsort(key, kind="stable")


def draw_order(
    seq: np.ndarray,
    pos: np.ndarray | None = None,
    *,
    valid: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Every point of a head in draw order: each prefix a stratified, interleaved sample.

    Parameters
    ----------
    seq : int array [token]
        The sequence of each token (the token table's ``seq``).
    pos : int array [token], optional
        The position of each token in its sequence (default: the token table's row order).
    valid : bool array [point], optional
        False for points that a head does not draw (NaN coordinates); they go last, in index order.
    seed : int
        Chooses the scrambling; the same seed gives the same order.

    Returns
    -------
    uint32 array [point]
        A permutation of ``range(2 * n_tokens)`` (queries ``0..n-1``, keys ``n..2n-1``): queries
        and keys alternate in proportion to their (valid) counts; the queries taken so far, and the
        keys, are spread over the tokens in (seq, pos) order, one per block, blocks halving.
    """
    seq = np.asarray(seq).reshape(-1)
    n = len(seq)
    pos = np.arange(n) if pos is None else np.asarray(pos).reshape(-1)
    if len(pos) != n:
        raise ValueError(f"seq and pos must have one value per token, got {n} and {len(pos)}")
    ok = np.ones(2 * n, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    if len(ok) != 2 * n:
        raise ValueError(f"valid must have one value per point (2 * {n}), got {len(ok)}")
    ranked = np.lexsort((pos, seq))  # tokens in (seq, pos) order
    kinds = []
    for kind in (0, 1):  # queries, keys
        pts = ranked[ok[kind * n + ranked]] + kind * n
        kinds.append(pts[_nested(len(pts), seed * 2 + kind)])
    q, k = kinds
    # queries and keys alternate: merge by the share of each list already drawn (ties: query first)
    at = np.concatenate([(np.arange(len(q)) + 0.5) / max(1, len(q)), (np.arange(len(k)) + 0.5) / max(1, len(k))])
    merged = np.concatenate([q, k])[np.argsort(at, kind="stable")]
    absent = np.flatnonzero(~ok)
    return np.concatenate([merged, absent]).astype(np.uint32)


def sample_size(per_head: int, n_cells: int, total: int | None = None) -> int:
    """Points the matrix draws in each cell: ``total / n_cells`` within ``[CELL_MIN, CELL_MAX]``.

    Never more than a head has (``per_head``); a small grid is drawn whole. ``total`` defaults to
    :data:`MATRIX_POINTS` (read at each call).

    Examples
    --------
    >>> sample_size(22_000, 72), sample_size(40_000, 270), sample_size(10, 4)
    (5555, 1481, 10)
    """
    total = MATRIX_POINTS if total is None else total
    m = min(CELL_MAX, max(CELL_MIN, int(total) // max(1, int(n_cells))))
    return int(min(int(per_head), m))


def with_forced(order: np.ndarray, m: int, force: np.ndarray | None = None, limit: int | None = None) -> np.ndarray:
    """The first ``m`` points of ``order`` and every forced point, in draw order.

    Parameters
    ----------
    order : uint32 array [point]
        From :func:`draw_order`.
    m : int
        The sample size (:func:`sample_size`).
    force : int array, optional
        Points (indices within the head) that must be drawn: searched, selected or clicked.
    limit : int, optional
        Most forced points added beyond the sample; past it, those that come first in ``order``
        (a stratified subset of them).

    Returns
    -------
    uint32 array
        ``order[:m]`` followed by the forced points it lacks, sorted by their place in ``order``
        (so they stay interleaved).

    Examples
    --------
    >>> order = draw_order(np.zeros(6, int))
    >>> s = with_forced(order, 4, [int(order[-1])])
    >>> s[:4].tolist() == order[:4].tolist() and int(s[-1]) == int(order[-1]) and len(s) == 5
    True
    """
    order = np.asarray(order, np.int64)
    base = order[:m]
    if force is None or len(force) == 0:
        return base.astype(np.uint32)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    f = np.unique(np.asarray(force, np.int64))
    if f.size and (f[0] < 0 or f[-1] >= len(order)):
        raise IndexError(f"forced points must lie in [0, {len(order)})")
    f = f[rank[f] >= m]
    f = f[np.argsort(rank[f], kind="stable")]
    if limit is not None:
        f = f[: max(0, int(limit))]
    return np.concatenate([base, f]).astype(np.uint32)


def sample_sequences(lengths: np.ndarray, budget: int, *, seed: int = 0, first: Iterable[int] = ()) -> np.ndarray:
    """Whole sequences holding at most ``budget`` tokens, stratified by length; sorted ids.

    Sequences are sorted by length into :data:`SEQUENCE_STRATA` strata of equal token mass, each
    spread evenly through a random order, so any prefix of that order takes every stratum in
    proportion: short and long sequences are represented as in the corpus.

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
    stratum = np.minimum((mass * SEQUENCE_STRATA).astype(np.int64), SEQUENCE_STRATA - 1)
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


def held_first(order: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, int]:
    """A page's draw order: the ``held`` points in ``order``'s order, then every other point.

    The held points are the page's sample of every head, a prefix of the widget's own draw order
    restricted to them (stratified, queries and keys interleaved). The others are drawn only in a
    head the page holds whole, and all together, so only their paint order matters: each token's
    query then its key, in token order (interleaved as well). That tail costs a page next to
    nothing, where the scrambled order would cost 2 incompressible bytes a point.

    Parameters
    ----------
    order : uint32 array [point]
        From :func:`draw_order`.
    held : bool array [point]
        The points a page holds (e.g. the queries and keys of :func:`sample_sequences`' tokens).

    Returns
    -------
    (uint32 array [point], int)
        The page's order (a permutation of ``range(2 * n_tokens)``) and how many of its first
        points are held.

    Examples
    --------
    >>> order = draw_order(np.repeat(np.arange(4), 4))
    >>> held = np.zeros(32, bool); held[[0, 1, 2, 3, 16, 17, 18, 19]] = True   # sequence 0
    >>> out, m = held_first(order, held)
    >>> m, out[:m].tolist() == [p for p in order.tolist() if held[p]]     # the sample, in draw order
    (8, True)
    >>> out[m:m + 4].tolist()                                             # then query, key, query, key
    [4, 20, 5, 21]
    """
    order = np.asarray(order)
    held = np.asarray(held, bool)
    n = len(order) // 2
    mask = held[order]
    tail = np.stack([np.arange(n), n + np.arange(n)], axis=1).reshape(-1)
    return np.concatenate([order[mask], tail[~held[tail]]]).astype(np.uint32), int(mask.sum())
