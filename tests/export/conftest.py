"""Headless Chromium for the standalone-HTML tests (recipe: browser-testing.md, approach B).

Every request that would leave the page (anything but file:, data: and blob: URLs) is aborted and
recorded, so a test can assert that the exported file needs nothing from the network.
"""

from __future__ import annotations

import os
import pathlib

import pytest

ARTIFACTS = pathlib.Path(os.environ.get("QK_ARTIFACTS", pathlib.Path(__file__).parents[2] / "test-artifacts"))
LOCAL = ("file://", "data:", "blob:")


@pytest.fixture(scope="session")
def chromium():
    from _browser import shared_browser

    return shared_browser()


@pytest.fixture
def offline_page(chromium):
    """A page whose non-local requests are aborted; ``page.qk_external`` lists them."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    external: list[str] = []
    errors: list[str] = []

    def route(r):
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.qk_external = external
    page.qk_errors = errors
    yield page
    ctx.close()


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
