"""Widget cost: wire bytes per point and display -> first paint in headless Chromium.

For grids of ~100k, 720k and 1.5M points (12 x 12 heads of random layouts), prints one JSON object:

* ``bytes_per_point``: everything the kernel sends for the grid (initial trait state plus every
  ``points`` chunk response, binary frames and their JSON headers) divided by the point count;
* ``first_paint_s``: from ``render()`` of the bundled widget (fake model answering requests from
  ``qkviz.export._snapshot.snapshot``, so no kernel round trips are included) until its first frame is on the
  canvas; ``baseline_s``: the same points drawn by a bare regl-scatterplot (no widget) in the same
  page, interleaved; ``ratio`` = widget / baseline (minimum over repeats).

* ``lab_first_paint_s`` (with ``--lab``): the same in a real JupyterLab with a kernel, from running the
  cell ``QKViz(emb)`` (embedding already built) until the first frame: kernel execution, comm open,
  the trait state, every chunk request/response over the websocket and the draw.

Run: ``.venv/bin/python bench/widget.py [--sizes 100000 720000 1500000] [--repeats 3] [--lab]``.
Needs /usr/bin/chromium and the built bundle (``cd js && npm run build``).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests._browser import CHROMIUM, CHROMIUM_ARGS
from tests._wire import wire_json

from qkviz import Embedding
from qkviz.export._snapshot import snapshot
from qkviz.widget import (
    QKViz,
    _commands,
)

PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0">
<div id="root" style="width:1100px"></div><canvas id="base" width="640" height="640"></canvas>
<script src="./page.js"></script>
<script type="module">
import widget from "./widget.js";
const { staticTransport } = globalThis.qkvizPage;
import createScatterplot from "./rs.js";
function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v && typeof v === "object") {
    if (typeof v.$b64 === "string") {
      const bin = atob(v.$b64), b = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
      return new DataView(b.buffer);
    }
    const o = {}; for (const [k, x] of Object.entries(v)) o[k] = revive(x); return o;
  }
  return v;
}
let data = null;
window.load = async () => { data = revive(await (await fetch("./payload.json")).json()); return true; };
const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
window.timeWidget = async () => {
  const state = structuredClone(data.state);
  const handlers = new Map();
  const model = { get: (k) => state[k], set(k, v) { state[k] = v; for (const h of handlers.get(`change:${k}`) ?? []) h(); },
    on(e, h) { (handlers.get(e) ?? handlers.set(e, new Set()).get(e)).add(h); }, off(e, h) { handlers.get(e)?.delete(h); },
    save_changes() {}, send() {}, fetchDetail: staticTransport(data) };
  const el = document.createElement("div"); document.getElementById("root").replaceChildren(el);
  const t0 = performance.now();
  const cleanup = await widget.render({ model, el });
  await new Promise((resolve) => { const tick = () => el.querySelector(".qk-root[data-qk-ready='1']") ? resolve() : setTimeout(tick, 2); tick(); });
  await frame();
  const t = (performance.now() - t0) / 1000;
  cleanup(); return t;
};
window.timeBaseline = async () => {
  const coords = data.points.map((c) => c.coords.view ?? c.coords);  // wire dicts -> DataViews
  const t0 = performance.now();
  let n = 0; for (const c of coords) n += c.byteLength / 8;
  const x = new Float32Array(n), y = new Float32Array(n); let o = 0;
  for (const c of coords) { const f = new Float32Array(c.buffer, c.byteOffset, c.byteLength / 4);
    for (let i = 0; i < f.length; i += 2) { x[o] = f[i]; y[o++] = f[i + 1]; } }
  const canvas = document.getElementById("base");
  const sp = createScatterplot({ canvas, width: 640, height: 640, pointSize: 2 });
  if (!n) throw new Error("baseline drew no points");
  await sp.draw({ x, y }); await frame();
  const t = (performance.now() - t0) / 1000; sp.destroy(); return t;
};
window.ready = true;
</script></body></html>"""


def make_grid(points: int, n_layers=12, n_heads=12, seq_len=30, seed=0) -> Embedding:
    n = max(1, points // (2 * n_layers * n_heads))
    rng = np.random.default_rng(seed)
    seq = np.arange(n) // seq_len
    pos = np.arange(n) % seq_len
    tokens = pd.DataFrame(
        {
            "seq": seq.astype("int32"),
            "pos": pos.astype("int32"),
            "token": [f"t{i % 997}" for i in range(n)],
            "display": [f"t{i % 997}" for i in range(n)],
            "special": pos == 0,
        }
    )
    coords = {
        (la, h): rng.uniform(-1, 1, (2 * n, 2)).astype(np.float32) for la in range(n_layers) for h in range(n_heads)
    }
    norms = {k: rng.uniform(0.5, 2, 2 * n).astype(np.float32) for k in coords}
    return Embedding(coords, tokens, norms=norms)


def wire_bytes(viz: QKViz) -> int:
    """Bytes the kernel sends for the grid: trait state + every chunk response."""

    def size(v):
        if isinstance(v, memoryview):
            return v.nbytes
        if isinstance(v, dict):
            return sum(size(x) for x in v.values()) + len(json.dumps(list(v)))
        if isinstance(v, (list, tuple)):
            return sum(size(x) for x in v) + 2
        return len(json.dumps(v))

    state = viz.get_state()  # what ipywidgets serialises on display (layout is a model reference)
    total = sum(size(v) for k, v in state.items() if k not in ("_esm", "_css"))
    chunk, n_points = viz._meta["chunk_points"], viz._meta["n_points"]
    for start in range(0, n_points, chunk):
        msg, bufs = _commands.dispatch(
            viz.state, {"kind": "points", "start": start, "stop": min(n_points, start + chunk)}
        )
        total += len(json.dumps(msg)) + sum(b.nbytes for b in bufs)
    return total


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


LAB_SETUP = """import sys
sys.path.insert(0, {bench!r})
from widget import make_grid
from qkviz.widget import QKViz
emb = make_grid({size})
print("READY")"""


def lab_first_paint(browser, sizes, repeats):
    """Seconds from running ``QKViz(emb)`` in JupyterLab to the widget's first frame, per size."""
    import json as _json
    import os
    import socket
    import urllib.request

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    home = pathlib.Path(tempfile.mkdtemp(prefix="qkviz-lab-"))
    root = home / "root"
    root.mkdir()
    for size in sizes:
        nb = new_notebook(
            cells=[new_code_cell(LAB_SETUP.format(bench=str(ROOT / "bench"), size=size)), new_code_cell("QKViz(emb)")]
        )
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / f"b{size}.ipynb")
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        _json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
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
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    out = {}
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/api/status", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        for size in sizes:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/lab/tree/b{size}.ipynb?reset", wait_until="domcontentloaded")
            page.wait_for_function(
                """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                return k && k.status === 'idle'; }""",
                timeout=120_000,
            )
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")
            page.wait_for_selector(".jp-OutputArea-output:has-text('READY')", timeout=300_000)
            times = []
            for _ in range(repeats):
                times.append(
                    page.evaluate("""async () => {
                    const nb = window.jupyterapp.shell.currentWidget.content;
                    const old = new Set(document.querySelectorAll('.qk-root'));
                    nb.activeCellIndex = 1;
                    const t0 = performance.now();
                    window.jupyterapp.commands.execute('notebook:run-cell');
                    // the run replaces the output: wait for a new view that is ready
                    await new Promise((ok) => { const tick = () => {
                        const v = [...document.querySelectorAll('.qk-root[data-qk-ready="1"]')].find((e) => !old.has(e));
                        if (v) ok(); else setTimeout(tick, 5); }; tick(); });
                    await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
                    return (performance.now() - t0) / 1000; }""")
                )
                page.wait_for_timeout(300)
            out[size] = {"min": round(min(times), 3), "median": round(float(np.median(times)), 3)}
            page.close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 720_000, 1_500_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lab", action="store_true", help="also time display -> first paint in JupyterLab")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="qkviz-bench-"))
    shutil.copy(ROOT / "src/qkviz/_bundle/widget.js", tmp / "widget.js")
    shutil.copy(ROOT / "src/qkviz/_bundle/page.js", tmp / "page.js")
    subprocess.run(
        ["npx", "esbuild", "regl-scatterplot", "--bundle", "--format=esm", "--minify", f"--outfile={tmp / 'rs.js'}"],
        cwd=ROOT / "js",
        check=True,
        capture_output=True,
    )
    (tmp / "index.html").write_text(PAGE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for size in args.sizes:
            emb = make_grid(size)
            t0 = time.perf_counter()
            viz = QKViz(emb)
            build_s = time.perf_counter() - t0
            n_points = viz._meta["n_points"]
            nbytes = wire_bytes(viz)
            (tmp / "payload.json").write_text(json.dumps(wire_json(snapshot(viz.state, viz.view()))))
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_function("window.ready === true")
            page.evaluate("load()")
            widget_s, base_s = [], []
            for _ in range(args.repeats):  # interleaved: the host's speed drifts
                widget_s.append(page.evaluate("timeWidget()"))
                base_s.append(page.evaluate("timeBaseline()"))
            page.close()
            results.append(
                {
                    "points": n_points,
                    "heads": 144,
                    "tokens": emb.n_tokens,
                    "bytes_per_point": round(nbytes / n_points, 2),
                    "wire_mib": round(nbytes / 2**20, 2),
                    "python_build_s": round(build_s, 3),
                    "first_paint_s": {"min": round(min(widget_s), 3), "median": round(float(np.median(widget_s)), 3)},
                    "baseline_s": {"min": round(min(base_s), 3), "median": round(float(np.median(base_s)), 3)},
                    "ratio_min": round(min(widget_s) / min(base_s), 2),
                }
            )
            print(json.dumps(results[-1]), file=sys.stderr)
        if args.lab:
            lab = lab_first_paint(browser, args.sizes, args.repeats)
            for r, size in zip(results, args.sizes):
                r["lab_first_paint_s"] = lab[size]
            print(json.dumps(lab), file=sys.stderr)
        browser.close()
    server.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "widget",
                "machine": platform.machine(),
                "cpus": __import__("os").cpu_count(),
                "chromium": "SwiftShader WebGL (CPU)",
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
