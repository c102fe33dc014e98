"""Fixtures of the environment tests: a real Jupyter Notebook 7 server and a real marimo app server.

Each server runs from a temporary directory on a free port on 127.0.0.1, without a token, with the
environment of this process plus ``QK_TESTS`` (so that the kernel can import ``tests/_models.py``).
``QK_ESM``, when set, is passed on: the notebook and the app then load the front end from that file
instead of the packaged bundle (to check a front-end build before it lands in ``src/qkviz/_bundle``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = pathlib.Path(__file__).parent
TESTS = HERE.parent
ROOT = TESTS.parent
BUNDLE = ROOT / "src" / "qkviz" / "_bundle" / "widget.js"
ARTIFACTS = pathlib.Path(os.environ.get("QK_ARTIFACTS", ROOT / "test-artifacts"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: pathlib.Path) -> dict:
    return dict(
        os.environ,
        QK_TESTS=str(TESTS),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
    )


@contextlib.contextmanager
def _server(cmd: list[str], env: dict, home: pathlib.Path, probe: str):
    """Run ``cmd`` until the block ends; yield once ``probe`` answers (the log is in ``home``)."""
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
        try:
            t0 = time.time()
            while True:
                try:
                    urllib.request.urlopen(probe, timeout=1)
                    break
                except OSError:  # refused, reset or timed out (URLError is an OSError): not up yet
                    if proc.poll() is not None or time.time() - t0 > 60:
                        raise RuntimeError(f"{cmd[2]} did not start:\n{log_path.read_text()}") from None
                    time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def browser():
    if not BUNDLE.exists():
        pytest.skip("the JS bundle is missing: run `cd js && npm run build` (or `make bundle`)")
    from _browser import shared_browser  # tests/_browser.py: one Playwright per process

    return shared_browser()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []

    def on_error(e):
        # Notebook 7.6 itself throws once on load ("reading 'schema'", its shortcuts settings code),
        # with or without a widget: errors raised only in the host's own bundle are not ours.
        frames = re.findall(r"\((https?://[^)]+)\)", e.stack or "")
        if not (frames and all(re.search(r"/static/(notebook|lab)/", f) for f in frames)):
            errors.append(f"{e} {(e.stack or '')[:600]}")

    pg.on("pageerror", on_error)
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "[qkviz]" in m.text else None)
    pg.qk_errors = errors
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory, browser):
    """A token-less Jupyter Notebook 7 serving a copy of ``notebook7.ipynb``: ``{"url", "home"}``."""
    home = tmp_path_factory.mktemp("nb7")
    root = home / "root"
    root.mkdir()
    shutil.copy(HERE / "notebook7.ipynb", root / "notebook7.ipynb")  # a copy: the server autosaves
    port = _free_port()
    cmd = [sys.executable, "-m", "notebook", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={root}", "--JupyterNotebookApp.expose_app_in_browser=True",
           f"--JupyterNotebookApp.workspaces_dir={home / 'ws'}",
           f"--JupyterNotebookApp.user_settings_dir={home / 'settings'}"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with _server(cmd, _env(home), home, url + "/api/status"):
        yield {"url": url, "home": home}


@pytest.fixture(scope="session")
def marimo_app(tmp_path_factory, browser):
    """``marimo run`` of a copy of ``marimo_app.py`` (read-only app mode, no token): ``{"url", "home"}``."""
    home = tmp_path_factory.mktemp("marimo")
    shutil.copy(HERE / "marimo_app.py", home / "marimo_app.py")
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "marimo",
        "run",
        str(home / "marimo_app.py"),
        "--headless",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-token",
        "--no-sandbox",
        "--no-skew-protection",
    ]
    env = _env(home)
    env["MARIMO_SKIP_UPDATE_CHECK"] = "1"
    url = f"http://127.0.0.1:{port}"
    with _server(cmd, env, home, url + "/"):
        yield {"url": url, "home": home}
