"""A static picture of the layout: the matrix of every head and the focused head, as one PNG.

Notebook viewers that cannot run the widget show another type of an output's mime bundle: GitHub
shows its ``image/png``, and so do nbviewer and nbconvert when the notebook holds no widget state
for it, and JupyterLab for a notebook it does not trust (``docs/environments.md``).
:class:`qkviz.QKViz` puts this picture there, and into its ``_picture`` trait for a front end that
runs from saved widget state without a kernel.

It is made in numpy and encoded by Pillow — no browser: each head's points are splatted into
per-pixel query and key counts and blended over the background (a pixel covered by ``c`` points has
opacity ``1 - (1 - alpha) ** c``), in the widget's query green and key pink. It shows the layout at
a glance, not the widget's colour encodings, search or selection.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..wire import CELL_FILL, SINGLE_SCALE

if TYPE_CHECKING:
    from ..wire import View, WidgetState

__all__ = ["picture_png", "MAX_POINTS"]

# js/src/ui/palette.js QUERY and KEY (AttentionViz: greens for queries, pinks for keys)
_QUERY = np.array([0x2A, 0x9D, 0x5C], np.float32)
_KEY = np.array([0xD6, 0x45, 0x7A], np.float32)
_THEMES = {
    "light": {"bg": (255, 255, 255), "ink": (40, 40, 40), "line": (222, 222, 222), "muted": (140, 140, 140)},
    "dark": {"bg": (21, 24, 29), "ink": (230, 230, 230), "line": (58, 63, 71), "muted": (154, 163, 173)},
}
#: Points drawn per picture at most (an even sample of each head's points beyond that): the picture
#: is a glance, and it rides along with every display of the widget.
MAX_POINTS = 600_000


def _palette(colors: dict) -> Image.Image:
    """A fixed 256-colour palette: greys from the background to the ink (text, grid lines), and
    the query and key colours (and their even mix) at every coverage over the background — so
    that quantising keeps the widget's exact colours, which a fitted palette would shift."""
    bg, ink = np.asarray(colors["bg"], np.float32), np.asarray(colors["ink"], np.float32)
    t = np.linspace(0, 1, 32)[:, None]
    ramps = [bg + (ink - bg) * t]
    for c in (_QUERY, _KEY, (_QUERY + _KEY) / 2):
        ramps.append(bg + (c - bg) * np.linspace(0, 1, 72)[1:, None])
    pal = np.clip(np.concatenate(ramps) + 0.5, 0, 255).astype(np.uint8)[:256]
    img = Image.new("P", (1, 1))
    img.putpalette(pal.ravel().tolist() + [0] * (768 - pal.size))
    return img


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:  # pragma: no cover - without FreeType, the fixed bitmap font
        return ImageFont.load_default()


def _alpha(n_points: int, area_px: float) -> float:
    """Sparse heads get opaque dots; dense ones faint dots that add up where points pile."""
    return float(np.clip(0.6 * area_px / max(n_points, 1), 0.15, 1.0))


def _splat(
    px: np.ndarray, py: np.ndarray, key: np.ndarray, w: int, h: int, alpha: float, bg: tuple, dot: int = 1
) -> np.ndarray:
    """``float32 [h, w, 3]``: ``dot`` x ``dot`` dots from integer pixels ``(px, py)`` over ``bg``."""
    ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    flat = (py[ok] * w + px[ok]) + key[ok].astype(np.int64) * (w * h)
    counts = np.bincount(flat, minlength=2 * w * h).astype(np.float32).reshape(2, h, w)
    if dot > 1:  # each point also covers the dot - 1 pixels right of and below it
        pad = np.pad(counts, ((0, 0), (dot - 1, 0), (dot - 1, 0)))
        shifted = [
            pad[:, dot - 1 - dy : dot - 1 - dy + h, dot - 1 - dx : dot - 1 - dx + w]
            for dy in range(dot)
            for dx in range(dot)
        ]
        counts = np.sum(shifted, axis=0, dtype=np.float32)
    cq, ck = counts
    total = cq + ck
    cover = (1.0 - (1.0 - alpha) ** total)[..., None]
    mix = (cq[..., None] * _QUERY + ck[..., None] * _KEY) / np.maximum(total, 1.0)[..., None]
    return np.asarray(bg, np.float32) * (1.0 - cover) + mix * cover


def _sample(per: int, take: int) -> np.ndarray:
    """Evenly spread indices into ``range(per)`` (all of them when ``take >= per``)."""
    if take >= per:
        return np.arange(per)
    return np.unique(np.linspace(0, per - 1, take).astype(np.int64))


def _matrix(state: WidgetState, cell_px: int, colors: dict) -> Image.Image:
    n_rows, n_cols = len(state.layers), len(state.heads)
    w, h = cell_px * n_cols, cell_px * n_rows
    per, n_cells = 2 * state.n_tokens, len(state.cells)
    local = _sample(per, max(200, MAX_POINTS // n_cells))
    idx = (np.arange(n_cells)[:, None] * per + local[None, :]).ravel()
    cell = idx // per
    half = cell_px / 2 * CELL_FILL
    # the same points of every head, read head by head (the state holds no whole-grid array)
    xy = state.sample(0, n_cells, local)["coords"].reshape(-1, state.dim)[:, :2]
    # missing heads are parked at 100, far outside their cell: keep each point inside its own cell
    inside = (np.abs(xy) <= 1.0).all(axis=1)
    px = np.floor((cell % n_cols + 0.5) * cell_px + xy[:, 0] * half).astype(np.int64)
    py = np.floor((cell // n_cols + 0.5) * cell_px - xy[:, 1] * half).astype(np.int64)
    px[~inside] = -1
    rgb = _splat(px, py, (idx % per) >= state.n_tokens, w, h, _alpha(len(local), (2 * half) ** 2), colors["bg"])
    img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for c in range(1, n_cols):
        draw.line([(c * cell_px, 0), (c * cell_px, h)], fill=colors["line"])
    for r in range(1, n_rows):
        draw.line([(0, r * cell_px), (w, r * cell_px)], fill=colors["line"])
    for m in np.flatnonzero(state.missing).tolist():
        x0, y0 = (m % n_cols) * cell_px, (m // n_cols) * cell_px
        draw.line([(x0 + 3, y0 + 3), (x0 + cell_px - 3, y0 + cell_px - 3)], fill=colors["muted"])
    return img


def _single(state: WidgetState, cell: int, size: int, colors: dict) -> Image.Image:
    per = 2 * state.n_tokens
    local = _sample(per, MAX_POINTS)
    xy = state.head_coords(cell)[local, :2]
    half = size / 2 * SINGLE_SCALE
    px = np.floor(size / 2 + xy[:, 0] * half).astype(np.int64)
    py = np.floor(size / 2 - xy[:, 1] * half).astype(np.int64)
    key = local >= state.n_tokens
    # a single head is shown large: dots of 2 x 2 pixels
    rgb = _splat(px, py, key, size, size, _alpha(4 * len(local), (2 * half) ** 2), colors["bg"], dot=2)
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))


def picture_png(state: WidgetState, view: View | None = None, *, width: int = 760) -> bytes:
    """The matrix of every head and, when one is focused, that head, as PNG bytes.

    Parameters
    ----------
    state : WidgetState
        The layouts.
    view : View, optional
        The focused head (``layer``, ``head``) and the theme (``"dark"``: dark background; others
        light); defaults: the matrix alone, light.
    width : int
        Width of the picture in pixels, about.

    Returns
    -------
    bytes
        A palette PNG (256 colours, fixed: see ``_palette``).

    Examples
    --------
    >>> from qkviz.wire import View
    >>> png = picture_png(state, View(layer=0, head=1))      # doctest: +SKIP
    >>> png[:4]                                              # doctest: +SKIP
    b'\\x89PNG'
    """
    colors = _THEMES["dark" if view is not None and view.theme == "dark" else "light"]
    focused = None
    if view is not None and view.layer is not None and view.head is not None:
        focused = state.cell_index(view.layer, view.head)
    n_rows, n_cols = len(state.layers), len(state.heads)
    label_w, top, gap, foot = 30, 34, 24, 22
    matrix_w = (width - label_w - gap) // 2 if focused is not None else width - label_w
    cell_px = int(np.clip(matrix_w // n_cols, 6, 96))
    matrix = _matrix(state, cell_px, colors)
    single_px = int(np.clip(matrix.height, 240, 360)) if focused is not None else 0
    small, title = _font(10), _font(13)
    note = f"{state.n_tokens} tokens: queries green, keys pink. Static picture; run the notebook for the interactive widget."
    heading = f"{n_rows} layers x {n_cols} heads (rows: layers, columns: heads)"
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = int(max(measure.textlength(note, font=small), measure.textlength(heading, font=title))) + 8
    out_w = max(label_w + matrix.width + (gap + single_px if focused is not None else 0), label_w + text_w)
    out_h = top + max(matrix.height, single_px) + foot
    img = Image.new("RGB", (out_w, out_h), colors["bg"])
    img.paste(matrix, (label_w, top))
    draw = ImageDraw.Draw(img)
    # layer numbers down the left, head numbers along the top (every k-th when the cells are small)
    every = max(1, int(np.ceil(14 / cell_px)))
    for r in range(0, n_rows, every):
        draw.text(
            (label_w - 4, top + (r + 0.5) * cell_px),
            str(state.layers[r]),
            fill=colors["muted"],
            font=small,
            anchor="rm",
        )
    for c in range(0, n_cols, every):
        draw.text(
            (label_w + (c + 0.5) * cell_px, top - 3), str(state.heads[c]), fill=colors["muted"], font=small, anchor="md"
        )
    draw.text(
        (label_w, 4), f"{n_rows} layers x {n_cols} heads (rows: layers, columns: heads)", fill=colors["ink"], font=title
    )
    if focused is not None:
        r, c = divmod(focused, n_cols)
        x0, y0 = label_w + c * cell_px, top + r * cell_px
        draw.rectangle([x0, y0, x0 + cell_px - 1, y0 + cell_px - 1], outline=colors["ink"], width=2)
        sx = label_w + matrix.width + gap
        img.paste(_single(state, focused, single_px, colors), (sx, top))
        draw.rectangle([sx, top, sx + single_px - 1, top + single_px - 1], outline=colors["line"])
        draw.text((sx, 4), f"layer {view.layer}, head {view.head}", fill=colors["ink"], font=title)  # type: ignore[union-attr]
    draw.text((label_w, out_h - foot + 5), note, fill=colors["muted"], font=small)
    buf = io.BytesIO()
    # an 8-bit palette keeps the file small: a flat background, greys and two colour ramps
    # zlib level 6: within 3 % of the smallest file, 7x faster than optimize=True
    img.quantize(palette=_palette(colors), dither=Image.Dither.NONE).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
