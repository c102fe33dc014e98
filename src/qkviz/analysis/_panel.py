"""Per-sequence attention detail: the sentence, heatmap, aggregate and image views' numbers.

Every function here takes an :class:`AttentionSource` (an ``Embedding`` with its capture, or a
``Capture``) and returns a plain ``dict`` of numpy arrays and scalars; the widget's codec turns the
arrays into binary buffers. Nothing here imports torch. Hiding and value weighting use
:func:`qkviz.attention.renormalize`.

The widget's side panel computes its per-sequence views (sentence, heatmap, image) in the browser
from one sequence's attention and :func:`attention_context`, the same way in a notebook and in a
standalone page; :func:`sequence_detail` and :func:`image_detail` are the same views for Python
users, and the reference the browser tests hold the front end to. :func:`aggregate_detail` spans
every sequence, so the widget asks Python for it (a page embeds it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from ..attention import check_positions, overlay_strength, renormalize
from ..errors import InputError, WidgetDataError
from ._images import patch_grid

if TYPE_CHECKING:
    from .._capture import Capture

__all__ = [
    "AttentionSource",
    "attention_context",
    "sequence_detail",
    "aggregate_detail",
    "image_detail",
    "capture_of",
    "family_detail",
    "row_stats",
]


class AttentionSource(Protocol):
    """What the analyses read: a token table and exact attention per (layer, head, seq).

    Both :class:`qkviz.Embedding` (with its capture) and :class:`qkviz.Capture` are sources.
    """

    tokens: pd.DataFrame

    def attention(self, layer: int, head: int, seq: int) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------------
# helpers


def capture_of(embedding: Any) -> Capture | None:
    """The capture behind an embedding (or the object itself if it already is a capture)."""
    cap = getattr(embedding, "capture", None)
    if cap is None and hasattr(embedding, "q") and hasattr(embedding, "k"):
        cap = embedding
    return cap


def _check_head(embedding: AttentionSource, layer: int, head: int) -> None:
    layers = tuple(getattr(embedding, "layers", ()) or ())
    heads = tuple(getattr(embedding, "heads", ()) or ())
    if layers and int(layer) not in layers:
        raise InputError(f"layer {layer} was not captured; available layers: {list(layers)}.")
    if heads and int(head) not in heads:
        raise InputError(f"head {head} was not captured; available heads: {list(heads)}.")


def _seq_rows(embedding: AttentionSource, seq: int) -> np.ndarray:
    """Global token rows of sequence ``seq`` in position order: int64 [pos]."""
    tokens = embedding.tokens
    seqs = tokens["seq"].to_numpy()
    if not 0 <= int(seq) <= (int(seqs.max()) if len(seqs) else -1):
        raise InputError(
            f"seq {seq} is out of range: the embedding holds sequences 0..{int(seqs.max()) if len(seqs) else -1}."
        )
    rows = np.flatnonzero(seqs == int(seq))
    if rows.size == 0:
        raise InputError(f"seq {seq} has no tokens in this embedding.")
    order = np.argsort(tokens["pos"].to_numpy()[rows], kind="stable")
    return rows[order]


def attention_blocks(
    embedding: AttentionSource, layer: int, head: int, seqs: np.ndarray
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(seqs, lengths, attention float32 [seq, query_pos, key_pos])`` blocks of exact attention,
    zero-padded: from :meth:`qkviz.Capture.attention_blocks` (vectorised) when the source has a
    capture, else one sequence at a time. float32, as :func:`_attention` gives each sequence."""
    cap = capture_of(embedding)
    blocks = getattr(cap, "attention_blocks", None)
    if blocks is not None:
        for ids, n, a in blocks(int(layer), int(head), seqs):
            yield ids, n, a.astype(np.float32)
        return
    for s in seqs:
        a = _attention(embedding, layer, head, int(s))
        yield np.array([int(s)]), np.array([a.shape[0]]), a[None]


def _attention(embedding: AttentionSource, layer: int, head: int, seq: int) -> np.ndarray:
    """Exact attention of one sequence: float32 [query_pos, key_pos].

    An embedding without its capture raises its own `EmbeddingError` (which says how to attach one).
    """
    if not callable(getattr(embedding, "attention", None)):
        raise WidgetDataError(
            f"expected an Embedding or Capture with an attention(layer, head, seq) method; got "
            f"{type(embedding).__name__}. Pass the result of qkviz.embed(capture)."
        )
    att = np.asarray(embedding.attention(int(layer), int(head), int(seq)), dtype=np.float32)
    if att.ndim != 2 or att.shape[0] != att.shape[1]:
        raise WidgetDataError(f"attention must be square [query_pos, key_pos]; got shape {att.shape}.")
    return att


# --------------------------------------------------------------------------------------------------
# what the side panel needs besides the attention


def attention_context(embedding: AttentionSource, layer: int, head: int, seq: int) -> dict[str, Any]:
    """What the side panel derives its sentence, heatmap and image views from, besides one
    sequence's attention (which the front end fetches with it).

    Parameters
    ----------
    embedding : Embedding
        With its capture.
    layer, head : int
        The head, model numbering.
    seq : int
        The sequence (text or image).

    Returns
    -------
    dict
        ``value_norms`` float32 [key_pos] (``‖v_j‖``, for value weighting) or ``None`` when the
        capture has no values; for image captures also ``row``/``col`` int32 [pos] (the patch grid;
        −1 for CLS) and ``image`` uint8 [h, w, 3] with its ``image_size`` [h, w] (``None`` when the
        capture holds no pixels); and what the head's score function adds (:func:`family_detail`:
        ``family``, ``sink``, ``content``, ``position``, ``position_effect``, ``alibi``, ``softcap``).
    """
    _check_head(embedding, layer, head)
    rows = _seq_rows(embedding, seq)
    out: dict[str, Any] = {
        "value_norms": _maybe_value_norms(embedding, layer, head, rows),
        **family_detail(capture_of(embedding), layer, head, seq),
    }
    if "row" in embedding.tokens and "col" in embedding.tokens:
        r, c, _, _ = patch_grid(embedding.tokens, rows)
        images = getattr(capture_of(embedding), "images", None)
        image = None
        if images is not None and 0 <= int(seq) < len(images):
            image = np.ascontiguousarray(images[int(seq)], dtype=np.uint8)
        out.update(
            row=r.astype(np.int32),
            col=c.astype(np.int32),
            image=image,
            image_size=list(image.shape[:2]) if image is not None else None,
        )
    return out


# --------------------------------------------------------------------------------------------------
# sentence / heatmap


def sequence_detail(
    embedding: AttentionSource,
    layer: int,
    head: int,
    seq: int,
    *,
    hide_keys: Iterable[int] = (),
    hide_queries: Iterable[int] = (),
    hide_special: bool = False,
    hide_first: bool = False,
    value_weighted: bool = False,
) -> dict[str, Any]:
    """Tokens and (re-normalised) attention of one sequence in one head.

    Parameters
    ----------
    embedding : Embedding
        Must carry its capture (exact attention comes from the stored q/k).
    layer, head : int
        The head, model numbering.
    seq : int
        The sequence (text or image) to show.
    hide_keys, hide_queries : iterable of int
        Positions (``pos``) to hide; see `renormalize`.
    hide_special : bool
        Also hide every special token ([CLS], [SEP], ...) as key and query.
    hide_first : bool
        Also hide position 0 (the attention sink of decoders) as key and query.
    value_weighted : bool
        Weight each key by its value-vector norm ``‖v_j‖`` and renormalise rows; needs a capture
        made with ``values=True``.

    Returns
    -------
    dict
        ``token`` uint32 [pos] (global token rows), ``display`` list[str] [pos], ``special`` uint8 [pos],
        ``raw`` float32 [query_pos, key_pos] (the model's attention), ``attention`` float32
        [query_pos, key_pos] (after weighting and hiding), ``value_norms`` float32 [key_pos] or
        ``None``, ``hidden_keys`` / ``hidden_queries`` uint8 [pos] masks, and the scalars ``layer``,
        ``head``, ``seq``, ``causal``, ``modality`` (``"text"`` or ``"image"``).
    """
    _check_head(embedding, layer, head)
    rows = _seq_rows(embedding, seq)
    raw = _attention(embedding, layer, head, seq)
    n = raw.shape[0]
    if n != rows.size:
        raise WidgetDataError(f"seq {seq} has {rows.size} tokens but its attention is {n}×{n}.")
    tokens = embedding.tokens
    special = tokens["special"].to_numpy()[rows].astype(bool) if "special" in tokens else np.zeros(n, dtype=bool)
    display_col = "display" if "display" in tokens else "token"
    display = [str(s) for s in tokens[display_col].to_numpy()[rows]]

    hk = np.zeros(n, dtype=bool)
    hq = np.zeros(n, dtype=bool)
    hk[check_positions(hide_keys, n, "hidden key")] = True
    hq[check_positions(hide_queries, n, "hidden query")] = True
    if hide_special:
        hk |= special
        hq |= special
    if hide_first:
        hk[0] = hq[0] = True

    value_norms = (
        _value_norms(embedding, layer, head, rows)
        if value_weighted
        else _maybe_value_norms(embedding, layer, head, rows)
    )
    att = renormalize(
        raw,
        key_weights=value_norms if value_weighted else None,
        hidden_keys=np.flatnonzero(hk),
        hidden_queries=np.flatnonzero(hq),
    )
    cap = capture_of(embedding)
    return {
        **family_detail(cap, layer, head, seq),
        "layer": int(layer),
        "head": int(head),
        "seq": int(seq),
        "causal": bool(getattr(cap, "causal", False)),
        "modality": "image" if "row" in tokens else "text",
        "token": rows.astype(np.uint32),
        "display": display,
        "special": special.astype(np.uint8),
        "raw": np.ascontiguousarray(raw, dtype=np.float32),
        "attention": att,
        "value_norms": value_norms,
        "hidden_keys": hk.astype(np.uint8),
        "hidden_queries": hq.astype(np.uint8),
    }


def family_detail(cap: Any, layer: int, head: int, seq: int, attn: str | None = None) -> dict[str, Any]:
    """What a head's score function adds, for the side panel (see ``docs/concepts/attention-families.md``).

    Returns
    -------
    dict
        ``family`` (``"plain"``, ``"soft-capped"``, ``"sink"``, ``"alibi"``, ``"relative"``,
        ``"disentangled"``), ``softcap`` and ``alibi`` (the cap and the slope, or ``None``),
        ``sink`` float32 [query_pos] (each query's share given to the sink) or ``None``,
        ``content`` and ``position`` float32 [query_pos, key_pos] (the two parts of the scores,
        before the cap and the mask) and ``position_effect`` float32 [query_pos] (how much each
        query's attention owes to the position term, 0..1) for heads with a position term, else
        ``None``. Empty for a source without a capture.
    """
    if cap is None or not callable(getattr(cap, "score", None)):
        return {}
    f = cap.score(int(layer), int(head), attn)
    out: dict[str, Any] = {
        "family": f.family,
        "softcap": f.softcap,
        "alibi": f.alibi,
        "sink": None,
        "content": None,
        "position": None,
        "position_effect": None,
    }
    if f.sink is not None:
        out["sink"] = cap.sink_share(int(layer), int(head), int(seq), attn)
    if f.has_position_term:
        out["content"], out["position"] = cap.score_terms(int(layer), int(head), int(seq), attn)
        out["position_effect"] = cap.position_effect(int(layer), int(head), int(seq), attn)
    return out


def row_stats(cap: Any, layer: int, head: int, attn: str | None = None) -> dict[str, Any]:
    """Per-query numbers of one head over every sequence: ``sink`` and ``position_effect``, float32
    [token] each (NaN for tokens without a query in this attention), or ``None`` when the head has
    no sink / no position term."""
    f = cap.score(int(layer), int(head), attn)
    n = len(cap.tokens)
    rows = cap.query_rows(attn)
    seqs = cap.tokens["seq"].to_numpy()[rows]
    out: dict[str, Any] = {"layer": int(layer), "head": int(head), "sink": None, "position_effect": None}
    wanted = {"sink": f.sink is not None, "position_effect": f.has_position_term}
    for name, on in wanted.items():
        if not on:
            continue
        v = np.full(n, np.nan, np.float32)
        for s in np.unique(seqs):
            at = rows[seqs == s]
            if name == "sink":
                v[at] = cap.sink_share(int(layer), int(head), int(s), attn)
            else:
                v[at] = cap.position_effect(int(layer), int(head), int(s), attn)
        out[name] = v
    return out


_NO_VALUES = (
    "value weighting needs value vectors, which this capture lacks; capture again with qkviz.capture(..., values=True)."
)


def _value_norms(embedding: AttentionSource, layer: int, head: int, rows: np.ndarray) -> np.ndarray:
    """‖v_j‖ of the given token rows: float32 [pos]."""
    v_of = getattr(capture_of(embedding), "v", None)
    if v_of is None:
        raise WidgetDataError(_NO_VALUES)
    try:
        v = v_of(int(layer), int(head))
    except (LookupError, ValueError) as exc:  # Capture.v raises InputError when not captured
        raise WidgetDataError(_NO_VALUES) from exc
    if v is None:
        raise WidgetDataError(_NO_VALUES)
    return np.linalg.norm(np.asarray(v, dtype=np.float32)[rows], axis=1).astype(np.float32)


def _maybe_value_norms(embedding: AttentionSource, layer: int, head: int, rows: np.ndarray) -> np.ndarray | None:
    """Value norms when the capture has them (so the front end can toggle weighting locally)."""
    try:
        return _value_norms(embedding, layer, head, rows)
    except (WidgetDataError, AttributeError, NotImplementedError):
        return None


# --------------------------------------------------------------------------------------------------
# aggregate


def aggregate_detail(embedding: AttentionSource, layer: int, head: int, *, max_pos: int = 512) -> dict[str, Any]:
    """The head's attention averaged over every sequence, by position and by relative offset.

    Parameters
    ----------
    embedding : Embedding
        Must carry its capture.
    layer, head : int
        The head.
    max_pos : int
        Positions at or beyond this are left out of the position matrix (it is ``max_pos²`` floats);
        offsets still use every token.

    Returns
    -------
    dict
        ``by_position`` float32 [query_pos, key_pos]: the mean over sequences of ``a[i, j]``,
        row-normalised; ``count`` int32 [query_pos, key_pos]: sequences that have both positions;
        ``offsets`` int32 [offset] (``key_pos - query_pos``, from ``-(L-1)`` to ``L-1``);
        ``by_offset`` float32 [offset]: the share of all attention mass at each offset (sums to 1);
        ``by_offset_mean`` float32 [offset]: the mean weight at an offset where it exists;
        ``scores`` dict of floats ``previous`` (offset −1), ``self`` (0), ``next`` (+1), ``first``
        (key_pos 0), each a share of the attention mass; ``n_seqs`` int.

    Notes
    -----
    A previous-token head shows ``by_offset`` peaking at −1; an attention-sink head a column at
    key_pos 0 in ``by_position`` and a large ``first`` score.
    """
    _check_head(embedding, layer, head)
    if max_pos < 1:
        raise InputError(f"max_pos must be at least 1; got {max_pos}.")
    seqs, lengths = np.unique(embedding.tokens["seq"].to_numpy(), return_counts=True)
    if seqs.size == 0:
        raise InputError("the embedding holds no tokens, so there is nothing to aggregate.")
    acc = Aggregator(lengths, max_pos)
    for _, _, a in attention_blocks(embedding, layer, head, seqs):
        acc.add(a)
    return acc.result(layer, head)


class Aggregator:
    """The sums behind :func:`aggregate_detail`, fed a block of sequences' attention at a time.

    Parameters
    ----------
    lengths : int array [seq]
        Tokens of every sequence that will be added (counts and offsets follow from them).
    max_pos : int
        As in :func:`aggregate_detail`.
    """

    def __init__(self, lengths: np.ndarray, max_pos: int) -> None:
        lengths = np.asarray(lengths, np.int64)
        self.n_seqs = int(lengths.size)
        self.longest = longest = int(lengths.max())
        self.size = min(longest, max_pos)
        self.total = np.zeros((self.size, self.size), dtype=np.float64)
        self.off_sum = np.zeros(2 * longest - 1, dtype=np.float64)
        self.first_mass = 0.0
        self.n_queries = int(lengths.sum())
        n_at = np.bincount(lengths, minlength=longest + 1).astype(np.int64)
        above = np.cumsum(n_at[::-1])[::-1]  # above[x] = #(n >= x)
        above_n = np.cumsum((n_at * np.arange(longest + 1))[::-1])[::-1]  # Σ n over n >= x
        # sequences that have both positions i and j: those longer than max(i, j)
        self.count = above[np.maximum.outer(np.arange(self.size), np.arange(self.size)) + 1].astype(np.int32)
        # offset k occurs n - |k| times in a sequence of n tokens
        k = np.abs(np.arange(-(longest - 1), longest))
        self.off_count = above_n[k + 1] - k * above[k + 1]
        self._offset_index: dict[int, np.ndarray] = {}  # t -> (j - i) + longest - 1 of a t × t matrix

    def add(self, a: np.ndarray) -> None:
        """Add [seq, query_pos, key_pos] attention, zero past each sequence's end."""
        t = a.shape[-1]
        m = min(t, self.size)
        summed = a.sum(axis=0, dtype=np.float64)  # zero-padded, so a block adds like its sequences one by one
        self.total[:m, :m] += summed[:m, :m]
        d = self._offset_index.get(t)
        if d is None:
            i, j = np.indices((t, t))
            d = self._offset_index[t] = (j - i).ravel() + self.longest - 1
        self.off_sum += np.bincount(d, weights=summed.ravel(), minlength=self.off_sum.size)
        self.first_mass += float(a[:, :, 0].sum(dtype=np.float64))

    def result(self, layer: int, head: int) -> dict[str, Any]:
        """What :func:`aggregate_detail` returns."""
        total, count, off_sum, longest = self.total, self.count, self.off_sum, self.longest
        n_queries = self.n_queries
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        row = mean.sum(axis=1, keepdims=True)
        by_pos = np.divide(mean, row, out=np.zeros_like(mean), where=row > 0)
        by_offset = off_sum / max(n_queries, 1)
        by_offset_mean = np.divide(off_sum, self.off_count, out=np.zeros_like(off_sum), where=self.off_count > 0)
        zero = longest - 1

        def share(d: int) -> float:
            return float(by_offset[zero + d]) if 0 <= zero + d < by_offset.size else 0.0

        first = self.first_mass / max(n_queries, 1)
        return {
            "layer": int(layer),
            "head": int(head),
            "n_seqs": self.n_seqs,
            "by_position": by_pos.astype(np.float32),
            "count": count,
            "offsets": np.arange(-(longest - 1), longest, dtype=np.int32),
            "by_offset": by_offset.astype(np.float32),
            "by_offset_mean": by_offset_mean.astype(np.float32),
            "scores": {"previous": share(-1), "self": share(0), "next": share(1), "first": first},
        }


# --------------------------------------------------------------------------------------------------
# images


def image_detail(
    embedding: AttentionSource, layer: int, head: int, seq: int, patch: int, *, kind: str = "query"
) -> dict[str, Any]:
    """The attention of one image patch, laid out on the image's patch grid.

    Parameters
    ----------
    embedding : Embedding
        Of an image capture (token table with ``row``/``col``).
    layer, head : int
        The head.
    seq : int
        The image.
    patch : int
        Position (``pos``) of the clicked token in that image (the CLS token is a valid choice).
    kind : {"query", "key"}
        ``"query"``: where this patch looks (its attention row). ``"key"``: who looks at it (its
        column, each query's weight on it).

    Returns
    -------
    dict
        ``grid`` [rows, cols]; ``row``/``col`` int32 [pos]; ``patch_row``/``patch_col`` of the clicked
        token (−1 for CLS); ``heat`` float32 [rows, cols]: the weights on patches; ``strength``
        float32 [rows, cols]: the darkening factor (`overlay_strength`); ``to_special`` float32
        [n_special]: the weight on each non-patch token (CLS first); ``cls_heat`` float32 [rows, cols]:
        the CLS query's attention over the patches; ``argmax`` int32 [pos]: each query's most
        attended position, ``argmax_weight`` float32 [pos]; ``image`` uint8 [h, w, 3] or ``None`` and its ``image_size`` [h, w];
        ``token`` uint32 [pos]; scalars ``layer``, ``head``, ``seq``, ``patch``, ``kind``.
    """
    if kind not in ("query", "key"):
        raise InputError(f"kind must be 'query' or 'key'; got {kind!r}.")
    _check_head(embedding, layer, head)
    rows = _seq_rows(embedding, seq)
    r, c, n_rows, n_cols = patch_grid(embedding.tokens, rows)
    att = _attention(embedding, layer, head, seq)
    n = att.shape[0]
    if not 0 <= int(patch) < n:
        raise InputError(f"patch {patch} is out of range for image {seq}, which has {n} tokens (pos 0..{n - 1}).")
    weights = att[int(patch)] if kind == "query" else att[:, int(patch)]
    is_patch = (r >= 0) & (c >= 0)
    heat = np.zeros((n_rows, n_cols), dtype=np.float32)
    heat[r[is_patch], c[is_patch]] = weights[is_patch]
    specials = np.flatnonzero(~is_patch)
    cls_heat = np.zeros((n_rows, n_cols), dtype=np.float32)
    if specials.size:
        cls_heat[r[is_patch], c[is_patch]] = att[specials[0]][is_patch]
    cap = capture_of(embedding)
    images = getattr(cap, "images", None)
    image = None
    if images is not None and 0 <= int(seq) < len(images):
        image = np.ascontiguousarray(images[int(seq)], dtype=np.uint8)
    return {
        "layer": int(layer),
        "head": int(head),
        "seq": int(seq),
        "patch": int(patch),
        "kind": kind,
        "grid": [n_rows, n_cols],
        "row": r.astype(np.int32),
        "col": c.astype(np.int32),
        "patch_row": int(r[int(patch)]),
        "patch_col": int(c[int(patch)]),
        "token": rows.astype(np.uint32),
        "heat": heat,
        "strength": overlay_strength(heat),
        "to_special": weights[specials].astype(np.float32),
        "cls_heat": cls_heat,
        "argmax": att.argmax(axis=1).astype(np.int32),
        "argmax_weight": att.max(axis=1).astype(np.float32),
        "image": image,
        "image_size": list(image.shape[:2]) if image is not None else None,
    }
