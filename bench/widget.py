"""Widget cost: first paint, zoom into a head and browser heap in headless Chromium, beside
jupyter-scatter's first paint of the same points in the same run.

For grids of ~100k, 1.5M and 6M points (12 x 12 heads of random layouts; ``--sizes``), prints one
JSON object with, per size:

* ``first_paint_s``: from ``render()`` of the bundled widget until its canvas shows the matrix
  (the first frame with points on it), the widget answered by the standalone page's transport
  over ``qkviz.export._snapshot.snapshot`` (what a static page embeds), so no kernel round trips;
  the data sits in the page beforehand (a page's decoding is not included);
* ``jscatter_s``: the same points (every point of every head: a flat scatter, coloured by query
  or key) drawn by jupyter-scatter's own widget bundle on the same kind of fake model, timed the
  same way, interleaved with ours; ``ratio`` = qkviz / jupyter-scatter (minimum over repeats);
* ``zoom_s``: from a click on a cell of the matrix until that head is drawn whole (fetched, in
  the static page from the embedded chunks);
* ``heap_mb``: the page's JavaScript heap plus array buffers after the first paint (CDP
  ``Runtime.getHeapUsage``), holding the embedded grid of the page and the widget;
* ``bytes_per_point``, ``wire_mib``: what the kernel sends for the first paint (trait state plus
  the matrix sample), per point of the grid;
* ``lab_first_paint_s`` (``--lab``): the same grid in a real JupyterLab with a kernel, from running
  the cell ``QKViz(emb)`` until the first frame (kernel execution, comm, trait state, the sample's
  requests over the websocket, the draw), and ``lab_zoom_s``: a click on a cell until its head,
  fetched from the kernel, is drawn.

``load`` records ``/proc/loadavg`` before and after: compare ratios measured within one run.

Run: ``.venv/bin/python bench/widget.py [--sizes 100000 1500000 6000000] [--repeats 3] [--lab]``.
Needs /usr/bin/chromium, the built bundle (``cd js && npm run build``) and, for the comparison,
jupyter-scatter: a **bench dependency only**, not a dependency of qkviz
(``pip install -c constraints.txt jupyter-scatter``; ``--no-jscatter`` skips it).
``bench/scale_widget.py`` (the ``widget`` section of ``bench/scale.py``) measures the same for the real SmolLM2 grid.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
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
sys.path.insert(0, str(ROOT / "tests"))

from _browser import CHROMIUM, CHROMIUM_ARGS
from qkviz import Embedding
from qkviz.export._snapshot import snapshot
from qkviz.widget import QKViz, _commands

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="./jscatter.css"></head><body style="margin:0">
<div id="root" style="width:1400px"></div>
<script src="./page.js"></script>
<script type="module">
import widget from "./widget.js";
const { staticTransport } = globalThis.qkvizPage;
// Buffers travel as one binary file; the JSON holds {"$buf": i} where a DataView goes (as
// ipywidgets hands buffers to a widget: each over its own ArrayBuffer, which jupyter-scatter's
// decoders assume).
async function fetchPayload(name) {
  const [meta, bin] = await Promise.all([
    fetch(`./${name}.json`).then((r) => r.json()), fetch(`./${name}.bin`).then((r) => r.arrayBuffer())]);
  const revive = (v) => {
    if (Array.isArray(v)) return v.map(revive);
    if (v && typeof v === "object") {
      if (typeof v.$buf === "number") { const [o, n] = meta.buffers[v.$buf]; return new DataView(bin.slice(o, o + n)); }
      const out = {}; for (const [k, x] of Object.entries(v)) out[k] = revive(x); return out;
    }
    return v;
  };
  return revive(meta.value);
}
const data = {};
window.load = async (name) => { data[name] = await fetchPayload(name); return true; };
const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
function fakeModel(state) {
  const handlers = new Map();
  return { get: (k) => state[k], set(k, v) { state[k] = v; for (const h of handlers.get(`change:${k}`) ?? []) h(); },
    on(e, h) { for (const n of String(e).split(/\\s+/)) (handlers.get(n) ?? handlers.set(n, new Set()).get(n)).add(h); },
    off(e, h) { for (const n of String(e ?? "").split(/\\s+/)) handlers.get(n)?.delete(h); },
    save_changes() {}, send() {}, widget_manager: { get_model: async () => null } };
}
// The first frame with points on the canvas: a pixel of it differs from the background (its
// corner) by more than 24 (sum over R, G, B), read at full resolution (no averaging).
function inked(canvas) {
  const w = canvas.width, h = canvas.height;
  const g = (inked.g ??= document.createElement("canvas").getContext("2d", { willReadFrequently: true }));
  if (g.canvas.width !== w || g.canvas.height !== h) { g.canvas.width = w; g.canvas.height = h; }
  g.clearRect(0, 0, w, h);
  g.drawImage(canvas, 0, 0);
  const d = g.getImageData(0, 0, w, h).data;
  const [r0, g0, b0] = [d[0], d[1], d[2]];
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && Math.abs(d[i] - r0) + Math.abs(d[i + 1] - g0) + Math.abs(d[i + 2] - b0) > 24) return true;
  }
  return false;
}
async function firstPaint(el, selector, t0) {
  for (;;) {
    await new Promise((r) => requestAnimationFrame(r));
    const c = el.querySelector(selector);
    if (c && c.width && inked(c)) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > 600_000) throw new Error("no first paint in 10 minutes");
  }
}
let current = null;
window.timeQkviz = async (name) => {
  const d = data[name], state = structuredClone(d.state);
  const model = fakeModel(state);
  model.fetchDetail = staticTransport(d);
  const el = document.createElement("div"); document.getElementById("root").replaceChildren(el);
  const t0 = performance.now();
  const cleanup = widget.render({ model, el });
  const t = await firstPaint(el, "canvas.qk-canvas", t0);
  await new Promise((ok) => { const tick = () => el.querySelector(".qk-root[data-qk-ready='1']") ? ok() : setTimeout(tick, 5); tick(); });
  current = { cleanup, el };
  return t;
};
window.timeZoom = async (fx, fy) => {
  const root = current.el.querySelector(".qk-root"), canvas = root.querySelector("canvas.qk-canvas");
  const r = canvas.getBoundingClientRect();
  performance.clearMarks("qk:view:end");
  const t0 = performance.now();
  canvas.dispatchEvent(new MouseEvent("click", { clientX: r.left + fx * r.width, clientY: r.top + fy * r.height, bubbles: true }));
  await new Promise((ok) => { const tick = () => root.dataset.qkMode === "single" && performance.getEntriesByName("qk:view:end").length ? ok() : setTimeout(tick, 2); tick(); });
  await frame();
  return (performance.now() - t0) / 1000;
};
window.cleanup = () => { current?.cleanup(); current = null; document.getElementById("root").replaceChildren(); };
window.timeJscatter = async (name) => {
  const { default: js } = await import("./jscatter.js");
  const state = structuredClone(data[name]);
  const model = fakeModel(state);
  const el = document.createElement("div"); document.getElementById("root").replaceChildren(el);
  const t0 = performance.now();
  const cleanup = await js.render({ model, el });
  const t = await firstPaint(el, "canvas", t0);
  cleanup?.(); document.getElementById("root").replaceChildren();
  return t;
};
window.ready = true;
</script></body></html>"""


def make_grid(points: int, n_layers=12, n_heads=12, seq_len=30, seed=0) -> Embedding:
    """A grid of ``n_layers x n_heads`` random layouts of about ``points`` points in all."""
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


def first_paint_bytes(viz: QKViz) -> int:
    """Bytes the kernel sends before the first paint: the trait state and the matrix sample."""

    def size(v):
        if isinstance(v, memoryview):
            return v.nbytes
        if isinstance(v, dict):
            return sum(size(x) for x in v.values()) + len(json.dumps(list(v)))
        if isinstance(v, (list, tuple)):
            return sum(size(x) for x in v) + 2
        return len(json.dumps(v))

    st = viz.state
    total = sum(size(v) for k, v in viz.get_state().items() if k not in ("_esm", "_css"))
    step = max(1, st.chunk_points // max(1, st.sample_points))
    for start in range(0, len(st.cells), step):
        msg, bufs = _commands.dispatch(st, {"kind": "sample", "start": start, "stop": min(len(st.cells), start + step)})
        total += len(json.dumps(msg)) + sum(b.nbytes for b in bufs)
    return total


def write_payload(folder: pathlib.Path, name: str, value) -> None:
    """``value`` as ``name.json`` (buffers replaced by ``{"$buf": i}``) and ``name.bin``."""
    buffers, parts, offset = [], [], 0

    def walk(v):
        nonlocal offset
        if isinstance(v, np.ndarray):
            v = memoryview(np.ascontiguousarray(v))
        if isinstance(v, (memoryview, bytes)):
            raw = memoryview(v).cast("B")
            pad = -offset % 8
            parts.append(bytes(pad))
            offset += pad
            buffers.append([offset, raw.nbytes])
            parts.append(raw)
            offset += raw.nbytes
            return {"$buf": len(buffers) - 1}
        if isinstance(v, dict):
            return {str(k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v

    meta = {"value": walk(value), "buffers": buffers}
    (folder / f"{name}.json").write_text(json.dumps(meta))
    with open(folder / f"{name}.bin", "wb") as f:
        for p in parts:
            f.write(p)


def jscatter_state(emb: Embedding) -> dict:
    """jupyter-scatter's widget state for every point of the grid as one scatter (by query/key)."""
    import jscatter

    xy = np.concatenate([emb.coords(*c) for c in emb.cells])
    n = emb.n_tokens
    kind = np.tile(np.repeat(np.array(["query", "key"]), n), len(emb.cells))
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "kind": pd.Categorical(kind)})
    sc = jscatter.Scatter(data=df, x="x", y="y", color_by="kind", height=640)
    state = sc.widget.get_state()
    return {k: v for k, v in state.items() if k not in ("_esm", "_css", "layout")}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def heap_mb(page) -> float:
    """The page's JS heap plus array buffers (CDP), in MB, after a garbage collection."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    h = cdp.send("Runtime.getHeapUsage")
    cdp.detach()
    return round((h.get("usedSize", 0) + h.get("backingStorageSize", 0)) / 1e6, 1)


def serve_site(jscatter: bool) -> tuple[pathlib.Path, http.server.ThreadingHTTPServer, str]:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="qkviz-bench-"))
    shutil.copy(ROOT / "src/qkviz/_bundle/widget.js", tmp / "widget.js")
    shutil.copy(ROOT / "src/qkviz/_bundle/page.js", tmp / "page.js")
    (tmp / "jscatter.css").write_text("")
    if jscatter:
        import jscatter as js

        shutil.copy(pathlib.Path(js.__file__).parent / "bundle.js", tmp / "jscatter.js")
        shutil.copy(pathlib.Path(js.__file__).parent / "bundle.css", tmp / "jscatter.css")
    (tmp / "index.html").write_text(PAGE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return tmp, server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


def static_rows(browser, tmp, url, viz: QKViz, repeats: int, js_state: dict | None, label: str) -> dict:
    """First paint (and jupyter-scatter's), zoom and heap of one grid in the static harness."""
    write_payload(tmp, label, snapshot(viz.state, viz.view()))
    if js_state is not None:
        write_payload(tmp, label + "-js", js_state)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    page.wait_for_function("window.ready === true")
    page.evaluate("(n) => load(n)", label)
    if js_state is not None:
        page.evaluate("(n) => load(n)", label + "-js")
    ours, theirs, zoom, heap = [], [], [], None
    geom = viz.state
    for r in range(repeats):  # interleaved: the host's speed drifts
        ours.append(page.evaluate("(n) => timeQkviz(n)", label))
        if heap is None:
            heap = heap_mb(page)
        # a different cell each time (a head's first fetch), away from the edges
        fx, fy = 0.5 + 0.1 * ((r % 3) - 1), 0.5 + 0.1 * (((r // 3) % 3) - 1)
        zoom.append(page.evaluate("([x, y]) => timeZoom(x, y)", [fx, fy]))
        page.evaluate("cleanup()")
        if js_state is not None:
            theirs.append(page.evaluate("(n) => timeJscatter(n)", label + "-js"))
    page.close()
    for f in tmp.glob(f"{label}*"):
        f.unlink()
    out = {
        "points": geom.n_points,
        "heads": len(geom.cells),
        "tokens": geom.n_tokens,
        "sample_per_head": geom.sample_points,
        "first_paint_s": {"min": round(min(ours), 3), "median": round(float(np.median(ours)), 3)},
        "zoom_s": {"min": round(min(zoom), 3), "median": round(float(np.median(zoom)), 3)},
        "heap_mb": heap,
    }
    if theirs:
        out["jscatter_s"] = {"min": round(min(theirs), 3), "median": round(float(np.median(theirs)), 3)}
        out["ratio"] = round(min(ours) / min(theirs), 3)
    return out


LAB_SETUP_SYNTHETIC = """import sys
sys.path.insert(0, {bench!r})
from widget import make_grid
from qkviz.widget import QKViz
emb = make_grid({size})
print("READY")"""


def lab_rows(browser, notebooks: dict[str, str], repeats: int) -> dict:
    """Per notebook (name -> setup code defining ``emb``): JupyterLab first paint of ``QKViz(emb)``,
    zoom into a head (fetched from the kernel) and the page's heap."""
    import socket
    import urllib.request

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    home = pathlib.Path(tempfile.mkdtemp(prefix="qkviz-lab-"))
    root = home / "root"
    root.mkdir()
    for name, setup in notebooks.items():
        nb = new_notebook(cells=[new_code_cell(setup), new_code_cell("QKViz(emb, height=640)")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / f"{name}.ipynb")
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "src"),
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
        for name in notebooks:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/lab/tree/{name}.ipynb?reset", wait_until="domcontentloaded")
            page.wait_for_function(
                """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                return k && k.status === 'idle'; }""",
                timeout=120_000,
            )
            page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")
            page.wait_for_selector(".jp-OutputArea-output:has-text('READY')", timeout=900_000)
            paint, zoom, heap = [], [], None
            for r in range(repeats):
                paint.append(
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
                if heap is None:
                    heap = heap_mb(page)
                fx, fy = 0.5 + 0.1 * ((r % 3) - 1), 0.5 + 0.1 * (((r // 3) % 3) - 1)
                zoom.append(
                    page.evaluate(
                        """async ([fx, fy]) => {
                    const root = [...document.querySelectorAll('.qk-root[data-qk-ready="1"]')].at(-1);
                    const canvas = root.querySelector('canvas.qk-canvas'), r = canvas.getBoundingClientRect();
                    performance.clearMarks('qk:view:end');
                    const t0 = performance.now();
                    canvas.dispatchEvent(new MouseEvent('click', { clientX: r.left + fx * r.width, clientY: r.top + fy * r.height, bubbles: true }));
                    await new Promise((ok) => { const tick = () => root.dataset.qkMode === 'single'
                        && performance.getEntriesByName('qk:view:end').length ? ok() : setTimeout(tick, 2); tick(); });
                    await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
                    return (performance.now() - t0) / 1000; }""",
                        [fx, fy],
                    )
                )
                page.wait_for_timeout(300)
            out[name] = {
                "lab_first_paint_s": {"min": round(min(paint), 3), "median": round(float(np.median(paint)), 3)},
                "lab_zoom_s": {"min": round(min(zoom), 3), "median": round(float(np.median(zoom)), 3)},
                "lab_heap_mb": heap,
            }
            page.close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return out


def loadavg() -> list[float]:
    return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_500_000, 6_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lab", action="store_true", help="also time first paint and zoom in JupyterLab")
    ap.add_argument("--no-jscatter", action="store_true", help="skip jupyter-scatter's first paint")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with_js = not args.no_jscatter
    load = {"before": loadavg()}
    tmp, server, url = serve_site(with_js)
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for size in args.sizes:
            emb = make_grid(size)
            t0 = time.perf_counter()
            viz = QKViz(emb)
            build_s = time.perf_counter() - t0
            nbytes = first_paint_bytes(viz)
            row = static_rows(
                browser, tmp, url, viz, args.repeats, jscatter_state(emb) if with_js else None, f"g{size}"
            )
            row.update(
                python_build_s=round(build_s, 3),
                bytes_per_point=round(nbytes / viz.state.n_points, 3),
                wire_mib=round(nbytes / 2**20, 2),
            )
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
        if args.lab:
            setups = {f"b{s}": LAB_SETUP_SYNTHETIC.format(bench=str(ROOT / "bench"), size=s) for s in args.sizes}
            lab = lab_rows(browser, setups, args.repeats)
            for r, s in zip(results, args.sizes):
                r.update(lab[f"b{s}"])
            print(json.dumps(lab), file=sys.stderr)
        browser.close()
    server.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    load["after"] = loadavg()
    print(
        json.dumps(
            {
                "bench": "widget",
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "chromium": "headless, SwiftShader WebGL (CPU)",
                "load": load,
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
