"""Fixtures of the widget tests: small embeddings, Chromium (Playwright), a harness server, JupyterLab."""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from ._fakes import make_embedding

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
BUNDLE = ROOT / "src" / "qkviz" / "_bundle" / "widget.js"
PAGE = BUNDLE.with_name("page.js")
ARTIFACTS = pathlib.Path(os.environ.get("QK_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture
def emb():
    return make_embedding()


def _need_browser():
    if not BUNDLE.exists():
        pytest.skip("the JS bundle is missing: run `cd js && npm run build` (or `make bundle`)")


@pytest.fixture(scope="session")
def browser():
    _need_browser()
    from _browser import shared_browser  # tests/_browser.py: one Playwright per process

    return shared_browser()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "[qkviz]" in m.text else None)
    pg.qk_errors = errors
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def harness_url(tmp_path_factory):
    """The harness page and the current bundle, served on 127.0.0.1 (ES modules need http)."""
    _need_browser()
    root = tmp_path_factory.mktemp("harness")
    shutil.copy(HERE / "harness" / "index.html", root / "index.html")
    shutil.copy(BUNDLE, root / "widget.js")
    shutil.copy(PAGE, root / "page.js")  # its staticTransport answers the harness like a page
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def jupyter(tmp_path_factory):
    """A token-less JupyterLab on 127.0.0.1 serving a copy of tests/widget/lab.ipynb."""
    _need_browser()
    home = tmp_path_factory.mktemp("jhome")
    root = home / "root"
    root.mkdir()
    shutil.copy(HERE / "lab.ipynb", root / "lab.ipynb")
    shutil.copy(HERE / "lens.ipynb", root / "lens.ipynb")
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port = _free_port()
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        QK_STATE=str(home / "state.json"),
        QK_TESTS=str(HERE.parent),
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.workspaces_dir={home / 'ws'}",
        f"--LabApp.user_settings_dir={home / 'settings'}",
    ]
    log = open(home / "server.log", "w")  # noqa: SIM115 - the server writes to it until the session ends
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/api/status", timeout=1)
            break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError((home / "server.log").read_text()) from None
            time.sleep(0.1)
    else:
        proc.terminate()
        raise RuntimeError("jupyter did not start")
    yield {"url": url, "state": home / "state.json", "home": home}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
