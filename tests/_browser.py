"""One headless Chromium per pytest process, shared by every browser test package.

Playwright's sync API allows one running instance per thread: two session fixtures that each enter
``sync_playwright()`` make the second fail with "using Playwright Sync API inside the asyncio loop".
Every browser fixture calls :func:`shared_browser`; it starts Playwright once and stops it when the
process exits.
"""

from __future__ import annotations

import atexit
import os

import pytest

CHROMIUM = os.environ.get("QK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL through SwiftShader
]  # fmt: skip

_state: dict = {}


def require_chromium() -> None:
    """Skip when Debian's Chromium is missing, except in CI, where a skip would hide a broken setup."""
    if os.path.exists(CHROMIUM):
        return
    message = f"no Chromium at {CHROMIUM} (install it with `make browser`)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def shared_browser():
    """The process-wide Playwright ``Browser`` (Debian's Chromium, WebGL via SwiftShader)."""
    require_chromium()
    browser = _state.get("browser")
    if browser is None or not browser.is_connected():
        if "pw" not in _state:
            from playwright.sync_api import sync_playwright

            _state["pw"] = sync_playwright().start()
            atexit.register(_stop)
        _state["browser"] = _state["pw"].chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    return _state["browser"]


def _stop() -> None:
    browser, pw = _state.pop("browser", None), _state.pop("pw", None)
    if browser is not None and browser.is_connected():
        browser.close()
    if pw is not None:
        pw.stop()


def settled(page, selector, frames=5):
    """Wait until the element's box has not moved for ``frames`` animation frames: clicks are aimed
    from its box, and a late layout change (fonts, the side column) would make them miss."""
    page.wait_for_function(
        """([sel, need]) => new Promise((done) => {
          let last = "", same = 0;
          const tick = () => {
            const r = document.querySelector(sel)?.getBoundingClientRect();
            const key = r ? [r.x, r.y, r.width, r.height].join() : "";
            same = key && key === last ? same + 1 : 0;
            last = key;
            if (same >= need) done(true); else requestAnimationFrame(tick);
          };
          tick();
        })""",
        arg=[selector, frames],
        timeout=30_000,
    )


def frames(page, n=2):
    """Wait ``n`` animation frames of the page."""
    page.evaluate(
        "(n) => new Promise((done) => { const tick = (k) => (k ? requestAnimationFrame(() => tick(k - 1)) : done()); tick(n); })",
        n,
    )


def pointer_to(page, x, y):
    """Move the pointer to page coordinates ``(x, y)`` and let two frames pass, as a hand does.

    regl-scatterplot's camera (dom-2d-camera) reads the pointer once per animation frame and, while
    the button is down, pans by how far it moved since the last frame. Playwright moves and presses
    at once: on a busy machine a frame can fall between press and release, and the whole jump from
    the previous pointer position became a pan (the view moved away and the click hit empty space).
    """
    page.mouse.move(x, y)
    frames(page)


def click_at(page, x, y):
    """Click at page coordinates ``(x, y)``: the pointer arrives (:func:`pointer_to`), then presses."""
    pointer_to(page, x, y)
    page.mouse.down()
    page.mouse.up()


def drag_rectangle(page, x0, y0, x1, y1, steps=12):
    """Drag the pointer around the rectangle with corners ``(x0, y0)`` and ``(x1, y1)`` (page
    coordinates): a lasso, once lasso mode is on. It ends 1 px from where it began, so the mouse-up
    closes the path without reading as a click on a point there."""
    pointer_to(page, x0, y0)
    page.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


def click_canvas(page, at, done, root=".qk-root", canvas="canvas.qk-canvas", tries=3):
    """Click the canvas at ``at`` (CSS px from its top-left) until the JS condition ``done`` holds.

    The click waits until the canvas holds still and no draw is running (regl-scatterplot ignores
    a press while it takes new points: ``data-qk-drawing``), and arrives as :func:`click_at` does.
    A click that still selects nothing is aimed again, at most ``tries`` times in all (a net: the
    cause known so far, a press read as a pan, no longer happens); one that never works fails with
    what the view, the pointer events and the draws say about it.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    el = page.locator(canvas)
    # what the pointer events reached, for the message of a click that never works
    page.evaluate(
        """() => { if (window.__qkPress) return; window.__qkPress = [];
          for (const t of ["pointerdown", "mousedown", "mouseup", "click"]) window.addEventListener(t, (e) =>
            window.__qkPress.push(`${t}:${e.target?.tagName}.${e.target?.className}:${e.buttons}@${Math.round(performance.now())}`), true); }"""
    )
    for attempt in range(tries):
        el.scroll_into_view_if_needed()
        settled(page, canvas)
        page.wait_for_function(f"!document.querySelector({root!r})?.dataset.qkDrawing", timeout=30_000)
        box = el.bounding_box()
        click_at(page, box["x"] + at[0], box["y"] + at[1])
        try:
            page.wait_for_function(done, timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                state = page.evaluate(f"JSON.stringify(document.querySelector({root!r})?.dataset ?? null)")
                x, y = box["x"] + at[0], box["y"] + at[1]
                under = page.evaluate(
                    f"document.elementsFromPoint({x}, {y}).slice(0, 4).map((e) => `${{e.tagName}}.${{e.className}}`)"
                )
                seen = page.evaluate("window.__qkPress.slice(-8)")
                marks = page.evaluate(
                    "performance.getEntriesByType('mark').filter((m) => m.name.startsWith('qk:')).slice(-8)"
                    ".map((m) => `${m.name}@${Math.round(m.startTime)}`)"
                )
                raise AssertionError(
                    f"{tries} clicks at {at} px did not make `{done}` hold; the view: {state}; "
                    f"under the pointer: {under}; events: {seen}; marks: {marks}"
                ) from None
