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
