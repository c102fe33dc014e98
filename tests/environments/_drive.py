"""Browser actions and checks shared by the environment tests (work through shadow roots too).

Screen positions come from the widget's test hook ``qkScreenPositions()`` on ``.qk-root`` (CSS px
from the canvas' top-left, ``[point * 2]``), so the tests need no copy of the embedding.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np

from _browser import click_at, drag_rectangle

from ._kernel import CELL, HEAD, LAYER
from .conftest import ARTIFACTS

READY = ".qk-root[data-qk-ready='1']"


def wait_ready(page, timeout=60.0) -> None:
    """Wait until the widget has drawn (``data-qk-ready``); fail at once on a front-end error."""
    t0 = time.time()
    ready = page.locator(READY)
    while not ready.count():
        assert not page.qk_errors, page.qk_errors
        assert time.time() - t0 < timeout, "the widget never became ready"
        page.wait_for_timeout(100)


def ink(page) -> dict:
    """Counts of drawn pixels in the canvas as shown: any ink, query green, key pink (from a screenshot)."""
    from PIL import Image

    png = page.locator("canvas.qk-canvas").screenshot()
    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return {
        "ink": int((np.abs(px - 255).sum(-1) > 60).sum()),
        "green": int(((g - r > 40) & (g - b > 20)).sum()),
        "pink": int(((r - g > 60) & (b - g > 20)).sum()),
        "pixels": int(r.size),
    }


def screen_positions(page) -> np.ndarray:
    """``float [point, 2]`` CSS px of the focused head's points, relative to the canvas."""
    flat = page.locator(".qk-root").evaluate("(r) => Array.from(r.qkScreenPositions())")
    return np.asarray(flat, float).reshape(-1, 2)


def click_isolated_query(page) -> int:
    """Click the query point farthest from any other point; returns its point index (``0..2n-1``)."""
    page.locator("canvas.qk-canvas").scroll_into_view_if_needed()  # a click below the fold hits nothing
    pos = screen_positions(page)
    n = len(pos) // 2
    d = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    p = max(range(n), key=lambda i: d[i].min())
    assert d[p].min() > 4, "no query point stands apart enough to click"
    box = page.locator("canvas.qk-canvas").bounding_box()
    click_at(page, box["x"] + pos[p, 0], box["y"] + pos[p, 1])
    return p


def lasso_rectangle(page, frac=(0.1, 0.1, 0.55, 0.9)) -> tuple[set, set]:
    """Lasso a rectangle (fractions of the canvas); returns (points surely inside, points within 1.5 px
    of its edge), as global indices."""
    pos = screen_positions(page)
    box = page.locator("canvas.qk-canvas").bounding_box()
    x0, y0 = round(box["x"] + frac[0] * box["width"]), round(box["y"] + frac[1] * box["height"])
    x1, y1 = round(box["x"] + frac[2] * box["width"]), round(box["y"] + frac[3] * box["height"])
    page.locator(".qk-lasso").click()
    drag_rectangle(page, x0, y0, x1, y1)
    sx, sy = pos[:, 0] + box["x"], pos[:, 1] + box["y"]
    margin = np.minimum.reduce([np.abs(sx - x0), np.abs(sx - x1), np.abs(sy - y0), np.abs(sy - y1)])
    inside = (sx > x0) & (sx < x1) & (sy > y0) & (sy < y1)
    base = CELL * len(pos)
    sure = {base + int(i) for i in np.flatnonzero(inside & (margin > 1.5))}
    edge = {base + int(i) for i in np.flatnonzero(margin <= 1.5)}
    return sure, edge


def parse_report(text: str) -> dict:
    """The dict after ``QK-SELECTED`` in a kernel output (see ``_kernel.selection_report``)."""
    return json.loads(text.split("QK-SELECTED", 1)[1].strip().strip("`"))


def check_panel(page, report: dict) -> None:
    """The sentence view shows the selected point's sequence: one row per token on both sides."""
    from playwright.sync_api import expect

    length = report["seq_len"][0]
    expect(page.locator(".qkv-col-q .qkv-tok")).to_have_count(length, timeout=30_000)
    expect(page.locator(".qkv-col-k .qkv-tok")).to_have_count(length)
    title = page.locator(".qkv-title").inner_text()
    assert title.startswith(f"layer {LAYER} head {HEAD} · sequence {report['seq'][0]} ({length} tokens)"), title


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
