"""Image captures: where each patch sits, every image tiled into one atlas, each patch's colour.

Functions take a capture (``images`` uint8 [seq, h, w, 3] and a token table with ``row``/``col``,
−1 for CLS and register tokens) and return plain numpy arrays.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import InputError, WidgetDataError

if TYPE_CHECKING:
    from .._capture import Capture

__all__ = ["patch_grid", "patch_atlas", "patch_colors"]


def patch_grid(tokens: pd.DataFrame, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Patch row and column of each token and the grid's size.

    Parameters
    ----------
    tokens : pandas.DataFrame
        An image capture's token table (``row``, ``col``; −1 for non-patch tokens).
    rows : int array [token], optional
        Only these token rows (e.g. one image's); default all.

    Returns
    -------
    row, col : int64 array [token]
    n_rows, n_cols : int
        The patch grid (from the largest row and column index).

    Raises
    ------
    WidgetDataError
        Not an image capture, or no patch token at all.
    """
    if "row" not in tokens or "col" not in tokens:
        raise WidgetDataError(
            "this is not an image capture: the token table has no 'row'/'col' columns; "
            "use the sentence view for text models."
        )
    r = tokens["row"].to_numpy().astype(np.int64)
    c = tokens["col"].to_numpy().astype(np.int64)
    if rows is not None:
        r, c = r[rows], c[rows]
    patch = (r >= 0) & (c >= 0)
    if not patch.any():
        raise WidgetDataError("no patch tokens (every row/col is -1).")
    return r, c, int(r[patch].max()) + 1, int(c[patch].max()) + 1


def _image_table(capture: Capture) -> tuple[np.ndarray, pd.DataFrame]:
    images = getattr(capture, "images", None)
    if images is None:
        raise WidgetDataError(
            "this capture stores no images (capture.images is None); patch thumbnails and colours "
            "need an image capture."
        )
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise WidgetDataError(f"capture.images must be uint8 [seq, h, w, 3]; got {images.dtype} {images.shape}.")
    return images, capture.tokens


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average resize of uint8 [h, w, 3] (Pillow's BOX filter: each output pixel a mean)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX), dtype=np.uint8)


def patch_atlas(
    capture: Capture, *, thumb: int | None = None, max_side: int = 4096, max_bytes: int = 4 << 20
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
    r, c, n_rows, n_cols = patch_grid(tokens)
    s = tokens["seq"].to_numpy().astype(np.int64)
    patch = (r >= 0) & (c >= 0)
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


def patch_colors(capture: Capture) -> dict[str, np.ndarray]:
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
    r, c, n_rows, n_cols = patch_grid(tokens)
    s = tokens["seq"].to_numpy().astype(np.int64)
    patch = (r >= 0) & (c >= 0)
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
