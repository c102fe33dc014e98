"""Regenerate the documentation screenshots (``docs/img/*.png``) from the current widget.

Run from the repository root after ``make install`` (it needs Debian's Chromium, ``js/node_modules``
and the offline weights; no network)::

    .venv/bin/python docs/_screenshots.py              # every shot
    .venv/bin/python docs/_screenshots.py head dark    # only these

The widget is driven the way ``tests/views`` drives it: the front end is bundled now from ``js/src``
(esbuild), mounted in headless Chromium by ``tests/views/harness/widget.html`` with a fake anywidget
model, and every request of the page is answered over HTTP by ``qkviz.widget._commands.dispatch`` on a
real ``QKViz``. Each shot is cropped to the widget (or to its side panel) and reduced to a palette
with Pillow so that it stays under :data:`MAX_BYTES`.

Data: MiniLM over the first 84 demo sentences with ``qkviz.embed``'s default projection (t-SNE;
cached on disk after the first run, which takes a few minutes on 2 cores), and ViT-S/14 over 3 demo
images. mkdocs skips this file (``exclude_docs`` in mkdocs.yml).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import types
from http.server import ThreadingHTTPServer

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
JS = ROOT / "js"
TESTS = ROOT / "tests"
MAX_BYTES = 300_000
PAD = 10  # px of margin around a cropped side panel
N_SENTENCES = 84  # as tests/conftest.py's minilm_capture: ~2,500 tokens, every head readable
N_IMAGES = 3
SENTENCE_HEAD = (3, 11)  # attends to a few content words, little to [CLS]/[SEP]: readable lines
PREV_TOKEN_HEAD = (0, 2)  # attends to the previous token (tests/views/test_views_real.py)
IMAGE_HEAD = (5, 1)

sys.path[:0] = [str(TESTS)]  # the tests' browser helpers: one recipe for tests and docs
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from _browser import CHROMIUM, CHROMIUM_ARGS
from views.conftest import _Handler, build_widget_site, open_widget
from views.test_widget_images_3d import DEFAULT_CAMERA, project

# ---- data -------------------------------------------------------------------------------------------


@functools.cache
def minilm():
    import qkviz

    cap = qkviz.capture("minilm", qkviz.data.demo_sentences(N_SENTENCES), progress=False)
    return cap, qkviz.embed(cap, progress=True)  # the default projection (t-SNE)


@functools.cache
def vit():
    import qkviz

    cap = qkviz.capture("vit-s14", qkviz.data.demo_images(N_IMAGES), batch_size=N_IMAGES, progress=False)
    # PCA: its two clouds keep the thumbnails apart (a t-SNE of 771 patches piles them up)
    return cap, qkviz.embed(cap, "pca", layers=[IMAGE_HEAD[0]], heads=[IMAGE_HEAD[1]], progress=False)


# ---- the page -------------------------------------------------------------------------------------


class Site:
    """The harness page + the front end bundled now, served with the widget's request handlers."""

    def __init__(self) -> None:
        esbuild = JS / "node_modules" / ".bin" / "esbuild"
        if not esbuild.exists():
            sys.exit("js/node_modules is missing: run `npm ci` in js/ (make install does)")
        if not pathlib.Path(CHROMIUM).exists():
            sys.exit(f"no Chromium at {CHROMIUM} (install it with `make browser`)")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="qkviz-shots-"))
        build_widget_site(self.dir)
        self.state = types.SimpleNamespace(widget=None)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(self.dir)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)

    def open(self, viz, mode: str):
        page, errors = open_widget(self.browser, (self.url, self.state), viz, mode)
        page.qk_errors = errors
        page.wait_for_timeout(400)  # first frames of the scatter
        return page

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()
        self.server.shutdown()
        shutil.rmtree(self.dir, ignore_errors=True)


def screen_positions(page) -> np.ndarray:
    """CSS px (relative to the scatter) of every point of the focused head, ``[point, 2]``."""
    xy = page.evaluate("Array.from(document.querySelector('.qk-root').qkScreenPositions())")
    return np.asarray(xy, float).reshape(-1, 2)


def click_query(page, emb, layer: int, head: int, lengths=(12, 20), xy=None) -> int:
    """Click a query of a medium-length sentence whose strongest key is a word (not [CLS], [SEP] or
    punctuation), the most isolated one on screen; wait for its lines and panel. Returns the token."""
    tok = emb.tokens
    seq_len = tok.groupby("seq")["pos"].transform("size").to_numpy()
    special = tok["special"].to_numpy() if "special" in tok else np.zeros(len(tok), bool)
    n = len(tok)
    xy = screen_positions(page) if xy is None else xy
    box = page.locator(".qk-stage").bounding_box()
    inside = (xy[:n, 0] > 40) & (xy[:n, 0] < box["width"] - 40) & (xy[:n, 1] > 40) & (xy[:n, 1] < box["height"] - 40)
    ok = np.flatnonzero((seq_len >= lengths[0]) & (seq_len <= lengths[1]) & ~special & inside)
    ok = [p for p in ok if _attends_to_a_word(emb, layer, head, p)] or ok
    ok = np.asarray(ok)
    d = np.sqrt(((xy[ok, None] - xy[None]) ** 2).sum(-1))
    d[np.arange(len(ok)), ok] = np.inf
    p = int(ok[np.argmax(d.min(1))])
    click(page, box["x"] + xy[p, 0], box["y"] + xy[p, 1])
    page.wait_for_function("document.querySelector('.qkv-panel')?.dataset.loading === '0'", timeout=20_000)
    hide_tooltip(page)
    return p


def click(page, x: float, y: float, tries: int = 8) -> None:
    """Click a point until its attention lines are drawn (on a busy machine the first frames, and so
    the picking, can lag behind the page's ready flag)."""
    for attempt in range(tries):
        page.mouse.click(x, y)
        try:
            page.wait_for_function("document.querySelector('.qk-root').dataset.qkLines !== ''", timeout=8_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
            page.wait_for_timeout(1_000)


def _attends_to_a_word(emb, layer: int, head: int, p: int) -> bool:
    """Query ``p`` is a whole word (no word piece) whose strongest key is another word."""
    tok = emb.tokens
    seq, pos = int(tok["seq"][p]), int(tok["pos"][p])
    rows = tok.index[tok["seq"] == seq]
    top = rows[int(np.argmax(emb.attention(layer, head, seq)[pos]))]

    def word(i: int) -> bool:
        return not tok["special"][i] and str(tok["display"][i]).strip().isalpha() and len(str(tok["display"][i])) > 2

    whole = p + 1 >= len(tok) or tok["seq"][p + 1] != seq or not str(tok["token"][p + 1]).startswith("##")
    return top != p and word(p) and word(top) and whole and not str(tok["token"][p]).startswith("##")


def hide_tooltip(page) -> None:
    """Move the mouse off the scatter (its tooltip would cover the lines) and let the frame settle."""
    toolbar = page.locator(".qk-toolbar").bounding_box()
    page.mouse.move(toolbar["x"] + toolbar["width"] - 2, toolbar["y"] + 2)
    page.wait_for_timeout(600)


# ---- saving ---------------------------------------------------------------------------------------


def save(locator, name: str) -> pathlib.Path:
    """Screenshot ``locator``, reduce it to a palette that keeps it under MAX_BYTES, write img/NAME.png."""
    from PIL import Image

    box = locator.bounding_box()
    pad = PAD if box["x"] >= PAD else 0  # side panels get a margin; the whole widget is already framed
    clip = {"x": box["x"] - pad, "y": max(0, box["y"] - pad), "width": box["width"] + 2 * pad,
            "height": box["height"] + 2 * pad}  # fmt: skip
    shot = Image.open(io.BytesIO(locator.page.screenshot(clip=clip))).convert("RGB")
    for colours in (256, 128, 64):
        buf = io.BytesIO()
        shot.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, "PNG", optimize=True)  # fmt: skip
        if buf.tell() <= MAX_BYTES:
            break
    out = IMG / f"{name}.png"
    out.write_bytes(buf.getvalue())
    print(f"{out.relative_to(ROOT)}: {shot.width}x{shot.height}, {buf.tell() / 1000:.0f} KB, {colours} colours")
    return out


def finish(page, target, name: str) -> None:
    errors = [e for e in page.qk_errors if "favicon" not in e]
    if errors:
        raise RuntimeError(f"{name}: JavaScript errors in the page: {errors}")
    save(target, name)
    page.close()


# ---- the shots --------------------------------------------------------------------------------------


def shot_matrix(site: Site) -> None:
    """All 72 heads of MiniLM, queries green, keys pink."""
    from qkviz import QKViz

    _, emb = minilm()
    page = site.open(QKViz(emb, theme="light"), "matrix")
    finish(page, page.locator(".qk-root"), "matrix")


def shot_faithfulness(site: Site) -> None:
    """The matrix with each head's recall@5 printed in its cell (``faithfulness=True``)."""
    from qkviz import QKViz

    _, emb = minilm()
    page = site.open(QKViz(emb, theme="light", faithfulness=True), "matrix")
    page.wait_for_selector(".qk-cell-score", timeout=20_000)
    finish(page, page.locator(".qk-root"), "faithfulness")


def shot_head(site: Site) -> None:
    """One head zoomed in; a clicked query's attention lines, and the sentence view beside it."""
    from qkviz import QKViz

    _, emb = minilm()
    page = site.open(QKViz(emb, layer=SENTENCE_HEAD[0], head=SENTENCE_HEAD[1], theme="light"), "single")
    p = click_query(page, emb, *SENTENCE_HEAD)
    panel = page.locator(".qkv-panel")
    pos = int(emb.tokens["pos"][p])
    page.locator(f".qkv-col-q .qkv-tok[data-pos='{pos}'] .qkv-tok-text").hover()  # its weights, by name
    page.wait_for_timeout(300)
    save(panel, "sentence")
    hide_tooltip(page)
    finish(page, page.locator(".qk-root"), "head")


def shot_aggregate(site: Site) -> None:
    """The aggregate view of a previous-token head: attention by relative offset, head scores."""
    from qkviz import QKViz

    _, emb = minilm()
    page = site.open(QKViz(emb, layer=PREV_TOKEN_HEAD[0], head=PREV_TOKEN_HEAD[1], theme="light"), "single")
    click_query(page, emb, *PREV_TOKEN_HEAD)
    page.locator("button[data-tab='aggregate']").click()
    page.wait_for_selector(".qkv-score[data-score='previous']", timeout=30_000)
    page.wait_for_function("document.querySelector('.qkv-panel').dataset.loading === '0'")
    page.wait_for_timeout(300)
    finish(page, page.locator(".qkv-panel"), "aggregate")


def shot_image(site: Site) -> None:
    """ViT-S/14 patches as thumbnails at their points; a clicked patch and its attention on the image."""
    from qkviz import QKViz

    _, emb = vit()
    page = site.open(QKViz(emb, layer=IMAGE_HEAD[0], head=IMAGE_HEAD[1], theme="light"), "single")
    page.wait_for_selector("canvas.qkv-thumbs[data-drawn]", state="attached", timeout=30_000)
    tok = emb.tokens
    n = len(tok)
    xy = screen_positions(page)
    box = page.locator(".qk-stage").bounding_box()
    # a query patch near the image centre (a face, an object) that has room around it on screen
    seq, row, col = (tok[k].to_numpy() for k in ("seq", "row", "col"))
    central = np.flatnonzero((seq == 0) & (np.abs(row - 8) <= 3) & (np.abs(col - 8) <= 3))
    d = np.sqrt(((xy[central, None] - xy[None]) ** 2).sum(-1))
    d[np.arange(len(central)), central] = np.inf
    p = int(central[np.argmax(d.min(1))])
    assert p < n
    click(page, box["x"] + xy[p, 0], box["y"] + xy[p, 1])
    page.wait_for_function("document.querySelector('.qkv-panel')?.dataset.loading === '0'", timeout=20_000)
    hide_tooltip(page)
    finish(page, page.locator(".qk-root"), "image")


def shot_3d(site: Site) -> None:
    """A 3-D layout (``dim=3``): one head as an orbitable cloud, a clicked query's lines."""
    import qkviz

    cap, _ = minilm()
    emb3 = qkviz.embed(cap, "pca", dim=3, progress=False)
    layer, head = SENTENCE_HEAD
    page = site.open(qkviz.QKViz(emb3, layer=layer, head=head, theme="light", color="position"), "single")
    scene = page.locator(".qk-3d canvas.qkv-3d")
    scene.wait_for(timeout=20_000)
    page.wait_for_timeout(500)
    # the camera is published once it moves; until then it is the default the 3-D tests pin
    moved = page.locator(".qk-root").get_attribute("data-qk-camera")
    camera = {**DEFAULT_CAMERA, **(json.loads(moved) if moved else {})}
    box, stage = scene.bounding_box(), page.locator(".qk-stage").bounding_box()
    ndc = project(emb3.coords(layer, head), **camera)
    xy = np.stack([(ndc[:, 0] + 1) / 2 * box["width"], (1 - ndc[:, 1]) / 2 * box["height"]], axis=1)
    xy += [box["x"] - stage["x"], box["y"] - stage["y"]]  # click_query works in stage pixels
    try:
        click_query(page, emb3, layer, head, xy=xy)
    except PlaywrightTimeout as err:  # the camera model changed: still worth a picture, say so
        print(f"3d: no lines drawn ({type(err).__name__}); check the projection against views/scene3d.js")
        hide_tooltip(page)
    finish(page, page.locator(".qk-root"), "3d")


def shot_dark(site: Site) -> None:
    """The dark theme (``theme="dark"``; ``"auto"`` follows the notebook), coloured by position."""
    from qkviz import QKViz

    _, emb = minilm()
    page = site.open(QKViz(emb, layer=SENTENCE_HEAD[0], head=SENTENCE_HEAD[1], theme="dark", color="position"),
                     "single")  # fmt: skip
    click_query(page, emb, *SENTENCE_HEAD)
    finish(page, page.locator(".qk-root"), "dark")


SHOTS = {
    "matrix": shot_matrix,
    "faithfulness": shot_faithfulness,
    "head": shot_head,
    "aggregate": shot_aggregate,
    "image": shot_image,
    "3d": shot_3d,
    "dark": shot_dark,
}  # fmt: skip  ("head" also writes "sentence")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shots", nargs="*", metavar="SHOT", help=f"which to make (default: all): {', '.join(SHOTS)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.shots) - set(SHOTS))
    if unknown:
        parser.error(f"unknown shot(s) {', '.join(unknown)}; choose from {', '.join(SHOTS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    IMG.mkdir(parents=True, exist_ok=True)
    site = Site()
    try:
        for name in args.shots or SHOTS:
            t0 = time.perf_counter()
            SHOTS[name](site)
            print(f"  {name} took {time.perf_counter() - t0:.1f} s")
    finally:
        site.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
