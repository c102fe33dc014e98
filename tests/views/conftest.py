"""Browser fixtures for the side-panel views: the views bundled by esbuild into a harness page, a
local HTTP server that answers the page's ``fetchDetail`` through ``qkviz.widget._commands.dispatch``, and
headless Chromium (Debian's, see ../shared/browser-testing.md)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import types
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _wire import wire_json
from qkviz.export._snapshot import snapshot

ROOT = pathlib.Path(__file__).resolve().parents[2]
JS = ROOT / "js"
HARNESS = pathlib.Path(__file__).parent / "harness"


def _palette_rgb(name: str) -> tuple[int, int, int]:
    """A colour of the front end's one palette (js/src/ui/palette.js), as 0..255 RGB."""
    text = (JS / "src" / "ui" / "palette.js").read_text()
    hex_ = re.search(rf'export const {name} = "#([0-9a-fA-F]{{6}})"', text).group(1)
    return tuple(int(hex_[i : i + 2], 16) for i in (0, 2, 4))


#: Query and key colours of every drawing (dots, thumbnail borders, CLS markers, 3-D points).
QUERY_RGB, KEY_RGB = _palette_rgb("QUERY_COLOR"), _palette_rgb("KEY_COLOR")


@pytest.fixture(scope="session")
def artifacts_dir():
    out = ROOT / "test-artifacts" / "views"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def views_site(tmp_path_factory):
    """The harness folder: index.html + bundle.js (views + pub-sub-es, bundled now from js/src)."""
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.skip("js/node_modules is missing: run `npm ci` in js/ (make install does)")
    out = tmp_path_factory.mktemp("views-site")
    shutil.copy(HARNESS / "index.html", out / "index.html")
    subprocess.run(
        [
            str(esbuild),
            str(HARNESS / "entry.js"),
            "--bundle",
            "--format=esm",
            "--target=es2020",
            f"--outfile={out / 'bundle.js'}",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "NODE_PATH": str(JS / "node_modules")},
    )
    return out


def _widget_state(widget):
    """The WidgetState behind what a test set: a QKViz, or ``.embedding`` = an Embedding or a Capture."""
    import numpy as np

    from qkviz import Capture, Embedding
    from qkviz.wire import WidgetState

    if hasattr(widget, "state"):
        return widget.state
    given = widget.embedding
    if _STATES.get("given") is not given:  # built once per object the test sets (norms cost a pass)
        source = given
        if isinstance(source, Capture):  # the analyses read attention only: any layout will do
            n = len(source.tokens)
            zeros = {(la, h): np.zeros((2 * n, 2)) for la in source.layers for h in source.heads}
            source = Embedding.from_coords(zeros, source.tokens, source.sequences, capture=source)
        _STATES.update(given=given, state=WidgetState.from_embedding(source))
    return _STATES["state"]


_STATES: dict = {}


def mount_panel(page, server_state, source):
    """Show the side panel of ``source`` (an Embedding or a Capture) in the harness page: the server
    answers its requests and the page's model holds its ``_meta`` and token table."""
    server_state.widget = types.SimpleNamespace(embedding=source)
    ws = _widget_state(server_state.widget)
    page.evaluate(
        "(s) => window.mountPanelHarness(s)", wire_json({"_meta": ws.meta_wire(), "_tokens": ws.tokens_wire()})
    )


class _Handler(SimpleHTTPRequestHandler):
    state: types.SimpleNamespace

    def do_POST(self):
        from qkviz.widget._commands import dispatch

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        msg, buffers = dispatch(_widget_state(self.state.widget), body)
        data = json.dumps({"msg": msg, "buffers": [base64.b64encode(bytes(b)).decode() for b in buffers]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="session")
def views_server(views_site):
    """(base url, state); set ``state.widget.embedding`` to what the page should see."""
    state = types.SimpleNamespace(widget=types.SimpleNamespace(embedding=None))
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(views_site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def build_widget_site(out: pathlib.Path) -> pathlib.Path:
    """widget.html and the whole front end (harness/widget-entry.js: js/src/index.js and the tests'
    fake model, bundled now) in ``out``; docs/_screenshots.py uses it too."""
    esbuild = JS / "node_modules" / ".bin" / "esbuild"
    shutil.copy(HARNESS / "widget.html", out / "widget.html")
    subprocess.run(
        [
            str(esbuild),
            str(HARNESS / "widget-entry.js"),
            "--bundle",
            "--format=esm",
            "--target=es2020",
            f"--outfile={out / 'widget.js'}",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "NODE_PATH": str(JS / "node_modules")},
    )
    return out


@pytest.fixture(scope="session")
def widget_site(views_site):
    """Adds widget.html and the whole front end to the harness site."""
    return build_widget_site(views_site)


def open_widget(browser, server, viz, mode):
    """A page showing ``viz`` through widget.html (requests answered by the server); ``(page, errors)``."""
    url, state = server
    state.widget = viz
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.location.get("url", "").endswith("favicon.ico")
            else None
        ),
    )
    page.goto(url + "/widget.html")
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("(s) => mountWidget(s)", wire_json(snapshot(viz.state, viz.view())["state"]))
    page.wait_for_selector(".qk-root[data-qk-ready='1']", state="attached", timeout=30_000)
    page.wait_for_selector(f".qk-root[data-qk-mode='{mode}']")
    return page, errors


@pytest.fixture(scope="session")
def chromium_browser():
    # one Playwright per process, shared with tests/widget and tests/export
    from _browser import shared_browser

    return shared_browser()


@pytest.fixture
def harness(chromium_browser, views_server):
    """A fresh harness page: ``(page, state)``; call ``window.mountPanelHarness()`` after setting data."""
    url, state = views_server
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/index.html")
    page.wait_for_function("window.harnessReady === true")
    yield page, state
    page.close()
    assert errors == [], f"JavaScript errors in the harness: {errors}"
