"""Per-sequence attention detail for the widget's side panel (sentence, heatmap, aggregate, image views).

Every function here takes an `Embedding` (or anything with its ``tokens``, ``sequences``,
``attention(layer, head, seq)`` and ``capture``) and returns a plain ``dict`` of numpy arrays and
scalars; the widget's codec turns the arrays into binary buffers. Nothing here imports torch.

Hiding and value weighting follow AttentionViz (and BertViz): a weight ``a[i, j]`` becomes

    a'[i, j] = a[i, j] * w[j] * m[j] / sum_j' (a[i, j'] * w[j'] * m[j'])

with ``w`` the value-vector norms (or ones) and ``m`` 0 for hidden keys, 1 otherwise; hidden queries
get a zero row (the shape never changes with a flag, so ``query_pos`` stays an index into the
sequence). A row whose visible weight is zero stays zero rather than dividing by zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import InputError, WidgetDataError

__all__ = [
    "sequence_detail",
    "aggregate_detail",
    "image_detail",
    "patch_atlas",
    "patch_colors",
    "overlay_strength",
    "renormalize",
]

#: Attention weights below this are not worth an arrow in the image view (AttentionViz uses 0.05).
ARROW_MIN_WEIGHT = 0.05


# --------------------------------------------------------------------------------------------------
# helpers


def _capture_of(embedding: Any) -> Any:
    """The capture behind an embedding (or the object itself if it already is a capture)."""
    cap = getattr(embedding, "capture", None)
    if cap is None and hasattr(embedding, "q") and hasattr(embedding, "k"):
        cap = embedding
    return cap


def _check_head(embedding: Any, layer: int, head: int) -> None:
    layers = tuple(getattr(embedding, "layers", ()) or ())
    heads = tuple(getattr(embedding, "heads", ()) or ())
    if layers and int(layer) not in layers:
        raise InputError(f"layer {layer} was not captured; available layers: {list(layers)}.")
    if heads and int(head) not in heads:
        raise InputError(f"head {head} was not captured; available heads: {list(heads)}.")


def _seq_rows(embedding: Any, seq: int) -> np.ndarray:
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


def _attention(embedding: Any, layer: int, head: int, seq: int) -> np.ndarray:
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


def _positions(values: Iterable[int] | None, n: int, what: str) -> np.ndarray:
    """Validated position indices as int64 [k]."""
    idx = np.asarray(list(values) if values is not None else [], dtype=np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise InputError(f"{what} positions {bad.tolist()} are out of range for a sequence of {n} tokens.")
    return idx


def renormalize(
    attention: np.ndarray,
    *,
    key_weights: np.ndarray | None = None,
    hidden_keys: Iterable[int] = (),
    hidden_queries: Iterable[int] = (),
) -> np.ndarray:
    """Reweight keys, hide keys/queries, and renormalise each row.

    Parameters
    ----------
    attention : float32 [query_pos, key_pos]
        Row-stochastic attention of one sequence.
    key_weights : float32 [key_pos], optional
        Multiplier per key (the value-vector norms for Kobayashi-style weighting); ``None`` = ones.
    hidden_keys, hidden_queries : iterable of int
        Positions to hide. A hidden key's column becomes zero and each row is renormalised over the
        remaining keys; a hidden query's row becomes zero.

    Returns
    -------
    float32 [query_pos, key_pos]
        Rows sum to 1 (or 0 where nothing visible is left).

    Examples
    --------
    >>> a = np.array([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]], np.float32)
    >>> renormalize(a, hidden_keys=[0]).round(3).tolist()[0]
    [0.0, 0.5, 0.5]
    """
    a = np.asarray(attention, dtype=np.float64)
    n_q, n_k = a.shape
    mask = np.ones(n_k)
    mask[_positions(hidden_keys, n_k, "hidden key")] = 0.0
    if key_weights is not None:
        w = np.asarray(key_weights, dtype=np.float64).reshape(-1)
        if w.shape != (n_k,):
            raise InputError(f"key_weights must have one weight per key ({n_k}); got shape {w.shape}.")
        mask = mask * w
    out = a * mask[None, :]
    total = out.sum(axis=1, keepdims=True)
    out = np.divide(out, total, out=np.zeros_like(out), where=total > 0)
    out[_positions(hidden_queries, n_q, "hidden query")] = 0.0
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# sentence / heatmap


def sequence_detail(
    embedding: Any,
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
    special = (
        tokens["special"].to_numpy()[rows].astype(bool) if "special" in tokens else np.zeros(n, dtype=bool)
    )
    display_col = "display" if "display" in tokens else "token"
    display = [str(s) for s in tokens[display_col].to_numpy()[rows]]

    hk = np.zeros(n, dtype=bool)
    hq = np.zeros(n, dtype=bool)
    hk[_positions(hide_keys, n, "hidden key")] = True
    hq[_positions(hide_queries, n, "hidden query")] = True
    if hide_special:
        hk |= special
        hq |= special
    if hide_first:
        hk[0] = hq[0] = True

    value_norms = _value_norms(embedding, layer, head, rows) if value_weighted else _maybe_value_norms(
        embedding, layer, head, rows
    )
    att = renormalize(
        raw,
        key_weights=value_norms if value_weighted else None,
        hidden_keys=np.flatnonzero(hk),
        hidden_queries=np.flatnonzero(hq),
    )
    cap = _capture_of(embedding)
    return {
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


_NO_VALUES = (
    "value weighting needs value vectors, which this capture lacks; "
    "capture again with qkviz.capture(..., values=True)."
)


def _value_norms(embedding: Any, layer: int, head: int, rows: np.ndarray) -> np.ndarray:
    """‖v_j‖ of the given token rows: float32 [pos]."""
    v_of = getattr(_capture_of(embedding), "v", None)
    if v_of is None:
        raise WidgetDataError(_NO_VALUES)
    try:
        v = v_of(int(layer), int(head))
    except (LookupError, ValueError) as exc:  # Capture.v raises InputError when not captured
        raise WidgetDataError(_NO_VALUES) from exc
    if v is None:
        raise WidgetDataError(_NO_VALUES)
    return np.linalg.norm(np.asarray(v, dtype=np.float32)[rows], axis=1).astype(np.float32)


def _maybe_value_norms(embedding: Any, layer: int, head: int, rows: np.ndarray) -> np.ndarray | None:
    """Value norms when the capture has them (so the front end can toggle weighting locally)."""
    try:
        return _value_norms(embedding, layer, head, rows)
    except (WidgetDataError, AttributeError, NotImplementedError):
        return None


# --------------------------------------------------------------------------------------------------
# aggregate


def aggregate_detail(embedding: Any, layer: int, head: int, *, max_pos: int = 512) -> dict[str, Any]:
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
    longest = int(lengths.max())
    size = min(longest, max_pos)
    total = np.zeros((size, size), dtype=np.float64)
    count = np.zeros((size, size), dtype=np.int32)
    off_sum = np.zeros(2 * longest - 1, dtype=np.float64)
    off_count = np.zeros(2 * longest - 1, dtype=np.int64)
    n_queries = 0
    first_mass = 0.0
    offset_index: dict[int, np.ndarray] = {}  # n -> (j - i) + longest - 1 for an n × n matrix, raveled
    for s in seqs:
        a = _attention(embedding, layer, head, int(s)).astype(np.float64)
        n = a.shape[0]
        m = min(n, size)
        total[:m, :m] += a[:m, :m]
        count[:m, :m] += 1
        d = offset_index.get(n)
        if d is None:
            i, j = np.indices((n, n))
            d = offset_index[n] = (j - i).ravel() + longest - 1
        off_sum += np.bincount(d, weights=a.ravel(), minlength=off_sum.size)
        # every (i, j) pair exists, so offset k occurs n - |k| times in this sequence
        k = np.arange(-(n - 1), n)
        off_count[k + longest - 1] += n - np.abs(k)
        n_queries += n
        first_mass += float(a[:, 0].sum())
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    row = mean.sum(axis=1, keepdims=True)
    by_pos = np.divide(mean, row, out=np.zeros_like(mean), where=row > 0)
    by_offset = off_sum / max(n_queries, 1)
    by_offset_mean = np.divide(off_sum, off_count, out=np.zeros_like(off_sum), where=off_count > 0)
    zero = longest - 1

    def share(d: int) -> float:
        return float(by_offset[zero + d]) if 0 <= zero + d < by_offset.size else 0.0

    first = first_mass / max(n_queries, 1)
    return {
        "layer": int(layer),
        "head": int(head),
        "n_seqs": int(seqs.size),
        "by_position": by_pos.astype(np.float32),
        "count": count,
        "offsets": np.arange(-(longest - 1), longest, dtype=np.int32),
        "by_offset": by_offset.astype(np.float32),
        "by_offset_mean": by_offset_mean.astype(np.float32),
        "scores": {"previous": share(-1), "self": share(0), "next": share(1), "first": first},
    }


# --------------------------------------------------------------------------------------------------
# images


def _grid(tokens: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    if "row" not in tokens or "col" not in tokens:
        raise WidgetDataError(
            "this is not an image capture: the token table has no 'row'/'col' columns; "
            "use the sentence view for text models."
        )
    r = tokens["row"].to_numpy()[rows].astype(np.int64)
    c = tokens["col"].to_numpy()[rows].astype(np.int64)
    patch = (r >= 0) & (c >= 0)
    if not patch.any():
        raise WidgetDataError("this image sequence has no patch tokens (every row/col is -1).")
    return r, c, int(r[patch].max()) + 1, int(c[patch].max()) + 1


def overlay_strength(heat: np.ndarray) -> np.ndarray:
    """AttentionViz's darkening factor per patch: ``((a − 0.25·min) / max(a − 0.25·min)) ** 0.5``.

    Parameters
    ----------
    heat : float [...]
        Attention weights (any shape).

    Returns
    -------
    float32 [...]
        In [0, 1]; 1 at the most-attended patch. Multiply the patch's pixels by it.
    """
    a = np.asarray(heat, dtype=np.float64)
    if a.size == 0:
        return a.astype(np.float32)
    a = a - 0.25 * a.min()
    top = a.max()
    a = a / top if top > 0 else np.zeros_like(a)
    return np.sqrt(np.clip(a, 0.0, 1.0)).astype(np.float32)


def image_detail(
    embedding: Any, layer: int, head: int, seq: int, patch: int, *, kind: str = "query"
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
    r, c, n_rows, n_cols = _grid(embedding.tokens, rows)
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
    cap = _capture_of(embedding)
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


def _image_table(capture: Any) -> tuple[np.ndarray, Any]:
    images = getattr(capture, "images", None)
    if images is None:
        raise WidgetDataError(
            "this capture stores no images (capture.images is None); patch thumbnails and colours "
            "need an image capture."
        )
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise WidgetDataError(
            f"capture.images must be uint8 [seq, h, w, 3]; got {images.dtype} {images.shape}."
        )
    tokens = capture.tokens
    if "row" not in tokens or "col" not in tokens:
        raise WidgetDataError("the token table has no 'row'/'col' columns; is this an image capture?")
    return images, tokens


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average resize of uint8 [h, w, 3] (Pillow's BOX filter: each output pixel a mean)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BOX), dtype=np.uint8)


def patch_atlas(
    capture: Any, *, thumb: int | None = None, max_side: int = 4096, max_bytes: int = 4 << 20
) -> tuple[np.ndarray, np.ndarray]:
    """One texture holding every patch as a small thumbnail, and where each token's patch lies in it.

    The atlas tiles whole downscaled images (each ``rows·thumb × cols·thumb``), so a patch's
    thumbnail is simply its cell of its image: no per-patch copies, and neighbouring patches stay
    neighbours if a renderer samples with some bleed.

    Parameters
    ----------
    capture : Capture
        An image capture (``images`` uint8 [seq, h, w, 3]; tokens with ``row``/``col``).
    thumb : int, optional
        Thumbnail side in pixels. By default the largest of 32, 24, 16, 12, 8, 6, 4 that keeps the
        atlas within ``max_side`` and ``max_bytes``.
    max_side : int
        Largest atlas side (WebGL guarantees 4096 on every device we target).
    max_bytes : int
        Largest atlas size in bytes (it travels to the browser; messages stay well under 10 MiB).

    Returns
    -------
    atlas : uint8 [height, width, 4]
        RGBA, alpha 255 where an image lies.
    uv : float32 [token, 4]
        ``(u0, v0, u1, v1)`` texture coordinates of each token's thumbnail (0..1, v down);
        ``-1`` for non-patch tokens (CLS), which the renderer draws as a marker.
    """
    images, tokens = _image_table(capture)
    n_img = images.shape[0]
    r = tokens["row"].to_numpy().astype(np.int64)
    c = tokens["col"].to_numpy().astype(np.int64)
    s = tokens["seq"].to_numpy().astype(np.int64)
    patch = (r >= 0) & (c >= 0)
    if not patch.any():
        raise WidgetDataError("no patch tokens (every row/col is -1): nothing to put in an atlas.")
    n_rows, n_cols = int(r[patch].max()) + 1, int(c[patch].max()) + 1
    per_row = max(1, math.ceil(math.sqrt(n_img * n_rows / n_cols)))  # near-square atlas

    def shape_for(t: int) -> tuple[int, int]:
        cols_of_images = min(per_row, n_img)
        lines = math.ceil(n_img / cols_of_images)
        return lines * n_rows * t, cols_of_images * n_cols * t

    if thumb is None:
        for t in (32, 24, 16, 12, 8, 6, 4, 2, 1):
            h, w = shape_for(t)
            if max(h, w) <= max_side and h * w * 4 <= max_bytes:
                thumb = t
                break
        else:
            raise WidgetDataError(
                f"{n_img} images of {n_rows}×{n_cols} patches do not fit a {max_side}px atlas even at "
                "1 px per patch; show fewer images."
            )
    if thumb < 1:
        raise InputError(f"thumb must be a positive number of pixels; got {thumb}.")
    h, w = shape_for(thumb)
    if max(h, w) > max_side:
        raise InputError(f"thumb={thumb} makes a {w}×{h} atlas, over max_side={max_side}; pick a smaller thumb.")
    cols_of_images = min(per_row, n_img)
    atlas = np.zeros((h, w, 4), dtype=np.uint8)
    bh, bw = n_rows * thumb, n_cols * thumb
    for i in range(n_img):
        y0, x0 = (i // cols_of_images) * bh, (i % cols_of_images) * bw
        atlas[y0 : y0 + bh, x0 : x0 + bw, :3] = _resize(images[i], bh, bw)
        atlas[y0 : y0 + bh, x0 : x0 + bw, 3] = 255
    uv = np.full((len(tokens), 4), -1.0, dtype=np.float32)
    y = (s // cols_of_images) * bh + r * thumb
    x = (s % cols_of_images) * bw + c * thumb
    uv[patch, 0] = x[patch] / w
    uv[patch, 1] = y[patch] / h
    uv[patch, 2] = (x[patch] + thumb) / w
    uv[patch, 3] = (y[patch] + thumb) / h
    return atlas, uv


def patch_colors(capture: Any) -> dict[str, np.ndarray]:
    """Mean colour, brightness, hue and saturation of every patch, as per-token colour-by columns.

    Parameters
    ----------
    capture : Capture
        An image capture.

    Returns
    -------
    dict of float32 [token]
        ``mean_r``, ``mean_g``, ``mean_b`` (0..1), ``brightness`` (Rec. 601 luma, 0..1), ``hue``
        (0..1, HSV), ``saturation`` (0..1). NaN for non-patch tokens (CLS), which colour maps show
        as missing.
    """
    images, tokens = _image_table(capture)
    r = tokens["row"].to_numpy().astype(np.int64)
    c = tokens["col"].to_numpy().astype(np.int64)
    s = tokens["seq"].to_numpy().astype(np.int64)
    patch = (r >= 0) & (c >= 0)
    if not patch.any():
        raise WidgetDataError("no patch tokens (every row/col is -1): no patch colours to compute.")
    n_rows, n_cols = int(r[patch].max()) + 1, int(c[patch].max()) + 1
    # exact block means where the image divides evenly into patches, an area resize otherwise
    means = np.zeros((images.shape[0], n_rows, n_cols, 3), dtype=np.float64)
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        if h % n_rows == 0 and w % n_cols == 0:
            means[i] = im.reshape(n_rows, h // n_rows, n_cols, w // n_cols, 3).mean(axis=(1, 3))
        else:
            means[i] = _resize(im, n_rows, n_cols)
    rgb = np.full((len(tokens), 3), np.nan)
    rgb[patch] = means[s[patch], r[patch], c[patch]] / 255.0
    mx, mn = rgb.max(axis=1), rgb.min(axis=1)
    delta = mx - mn
    hue = np.full(len(tokens), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rr, gg, bb = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        h6 = np.where(
            mx == rr, ((gg - bb) / delta) % 6, np.where(mx == gg, (bb - rr) / delta + 2, (rr - gg) / delta + 4)
        )
        hue = np.where(delta > 0, h6 / 6.0, 0.0)
        sat = np.where(mx > 0, delta / mx, 0.0)
    hue[~patch] = np.nan
    sat[~patch] = np.nan
    return {
        "mean_r": rgb[:, 0].astype(np.float32),
        "mean_g": rgb[:, 1].astype(np.float32),
        "mean_b": rgb[:, 2].astype(np.float32),
        "brightness": (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32),
        "hue": hue.astype(np.float32),
        "saturation": sat.astype(np.float32),
    }


# --------------------------------------------------------------------------------------------------
# request handlers: the front end's fetchDetail({kind, ...}) lands here through qkviz._commands


def _embedding_of(widget: Any) -> Any:
    for name in ("embedding", "_embedding", "_emb"):
        emb = getattr(widget, name, None)
        if emb is not None:
            return emb
    raise WidgetDataError("this widget holds no embedding, so no attention detail can be computed.")


def _flag(request: dict, name: str) -> bool:
    return bool(request.get(name, False))


def _register() -> None:
    """Register the side-panel request kinds with the widget's command router."""
    try:
        from ._commands import handler
    except ImportError:  # the widget module is optional for the pure functions above
        return

    @handler("sequence")
    def _sequence(widget: Any, request: dict) -> dict:
        return sequence_detail(
            _embedding_of(widget),
            int(request["layer"]),
            int(request["head"]),
            int(request["seq"]),
            hide_keys=[int(i) for i in request.get("hide_keys", ()) or ()],
            hide_queries=[int(i) for i in request.get("hide_queries", ()) or ()],
            hide_special=_flag(request, "hide_special"),
            hide_first=_flag(request, "hide_first"),
            value_weighted=_flag(request, "value_weighted"),
        )

    @handler("aggregate")
    def _aggregate(widget: Any, request: dict) -> dict:
        return aggregate_detail(_embedding_of(widget), int(request["layer"]), int(request["head"]))

    @handler("image")
    def _image(widget: Any, request: dict) -> dict:
        emb = _embedding_of(widget)
        patch = request.get("patch")
        if patch is None:  # the clicked token's global row instead of its position
            patch = int(emb.tokens["pos"].to_numpy()[int(request["token"])])
        return image_detail(
            emb,
            int(request["layer"]),
            int(request["head"]),
            int(request["seq"]),
            int(patch),
            kind=str(request.get("point_kind", "query")),
        )

    @handler("atlas")
    def _atlas(widget: Any, request: dict) -> dict:
        emb = _embedding_of(widget)
        cap = _capture_of(emb)
        # stay under the widget's message budget (4 MiB) with room for the uv table
        atlas, uv = patch_atlas(cap, max_bytes=3 << 20)
        # typed arrays lose their shape on the way: send it alongside
        return {"atlas": atlas, "atlas_shape": list(atlas.shape), "uv": uv, "colors": patch_colors(cap)}


_register()
