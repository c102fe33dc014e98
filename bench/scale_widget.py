"""The widget at research scale: SmolLM2-135M (30 layers x 9 heads) over >= 20k tokens of demo sentences.

The ``widget`` section of ``bench/scale.py`` (``--sections widget``: its convention,
``widget_section(args, scratch) -> dict``), and runnable alone. Prints one JSON object with, for
the real grid of 270 heads (>= 10M points):

* ``capture``: seconds, store bytes and bytes per token and head (the capture is built once into a
  scratch folder, ``bench/_smollm2.py``, and reused; the seconds are those of that build);
* ``embed``: seconds of the PCA layout of every head (built once with the capture; the display
  costs below do not depend on the layout method);
* ``widget_static``: first paint, zoom into a head and browser heap of ``QKViz(emb)`` in headless
  Chromium, answered by the standalone page's transport over what a page embeds (``bench/widget.py``);
* ``widget_lab`` (``--lab``): first paint of the cell ``QKViz(emb)`` in a real JupyterLab with a
  kernel, a click on a cell until its head (fetched from the kernel) is drawn, and the heap;
* ``html`` (``--html``): ``save_html`` of the widget: seconds and bytes.

``load`` records ``/proc/loadavg`` before and after.

Run: ``.venv/bin/python bench/scale_widget.py [--scratch /work/scratch/lod] [--sentences 720] [--lab] [--html]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import _smollm2

import widget as wb

LAB_SETUP = """import qkviz
from qkviz.widget import QKViz
cap = qkviz.load({cap!r})
emb = qkviz.Embedding.load({emb!r}, capture=cap)
print("READY", emb)"""


def widget_section(args: argparse.Namespace, scratch: pathlib.Path) -> dict:
    """First paint, zoom and heap of the SmolLM2 grid (static page's transport; JupyterLab unless
    ``args.lab`` is False); ``args.sentences``, ``args.repeats`` (default 3), ``args.html``."""
    from playwright.sync_api import sync_playwright

    from qkviz.widget import QKViz

    sentences = int(getattr(args, "sentences", 720))
    repeats = int(getattr(args, "repeats", 3))
    built = _smollm2.build(scratch, sentences, log=lambda m: print(m, file=sys.stderr))
    emb = built["embedding"]
    out = {
        "model": "smollm2 (SmolLM2-135M-Instruct, Q4_1 weights dequantised)",
        "sentences": sentences,
        "tokens": built["tokens"],
        "heads": built["heads"],
        "points": 2 * built["tokens"] * built["heads"],
        "capture": {
            "seconds": built["capture_s"],
            "store_bytes": built["store_bytes"],
            "bytes_per_token_head": round(built["store_bytes"] / (built["tokens"] * built["heads"]), 1),
        },
        "embed": {"method": "pca", "seconds": built["embed_s"]},
    }
    t0 = time.perf_counter()
    viz = QKViz(emb)
    out["widget_python_build_s"] = round(time.perf_counter() - t0, 3)
    out["first_paint_mib"] = round(wb.first_paint_bytes(viz) / 2**20, 2)
    tmp, server, url = wb.serve_site(False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=wb.CHROMIUM, args=wb.CHROMIUM_ARGS, headless=True)
        out["widget_static"] = wb.static_rows(browser, tmp, url, viz, repeats, None, "smollm2")
        print(json.dumps(out["widget_static"]), file=sys.stderr)
        if getattr(args, "lab", True):
            setup = LAB_SETUP.format(
                cap=str(scratch / f"smollm2-{sentences}"), emb=str(scratch / f"smollm2-{sentences}-pca")
            )
            out["widget_lab"] = wb.lab_rows(browser, {"smollm2": setup}, repeats)["smollm2"]
            print(json.dumps(out["widget_lab"]), file=sys.stderr)
        browser.close()
    server.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    if getattr(args, "html", False):
        folder = pathlib.Path(tempfile.mkdtemp(prefix="qkviz-html-"))
        t0 = time.perf_counter()
        path = viz.save_html(folder / "smollm2.html")
        out["html"] = {"seconds": round(time.perf_counter() - t0, 1), "bytes": pathlib.Path(path).stat().st_size}
        shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=pathlib.Path, default=_smollm2.DEFAULT_SCRATCH)
    ap.add_argument("--sentences", type=int, default=720, help="demo sentences (720: 20,215 tokens)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lab", action="store_true", help="also time first paint and zoom in JupyterLab")
    ap.add_argument("--html", action="store_true", help="also time save_html and report the file size")
    args = ap.parse_args()
    load = {"before": wb.loadavg()}
    out = {"bench": "scale (widget section)", **widget_section(args, args.scratch)}
    load["after"] = wb.loadavg()
    out.update(machine=f"{platform.machine()}, {os.cpu_count()} CPUs", load=load)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
