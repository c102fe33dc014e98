"""Standalone HTML export: file size per component, and export/open time, on a real MiniLM capture.

Captures the packaged MiniLM over ``--sentences`` demo sentences (all 72 heads), lays every head
out with PCA, and writes the standalone HTML with each option set. Prints one JSON object:

* ``components``: for the default export, the bytes each part adds to the file — ``bundle`` (the
  widget's code), ``json`` (the state as JSON: token strings, settings), and per group of binary
  buffers (``coords``, ``norms``, ``topk_keys``, ``topk_weights``, ``aggregates``, ``images``,
  ``tokens``/``columns``/``meta`` arrays) the gzip size of that group packed alone (the file
  compresses them together, so the parts add up to about ``bytes``);
* per variant: ``bytes`` of the file, ``bytes_per_point`` (points = 2 x tokens x heads),
  ``export_s`` (``save_html`` wall time, best of ``--repeats``);
* ``ratio_to_exact``: bytes / bytes of the exact, uncompressed-float variant (``compact=False``,
  ``top_k`` the same) measured in the same run;
* ``open_s``: for the default variant, file:// load to the first drawn frame in headless
  Chromium (when /usr/bin/chromium exists).

Run: ``.venv/bin/python bench/export.py [--sentences 300] [--repeats 2] [--quick]`` (``--quick``:
the default variant only).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import qkviz
from qkviz import export
from qkviz.data import demo_sentences
from qkviz.export import _pack
from qkviz.export._snapshot import snapshot

VARIANTS = [
    ("default (top_k=5, compact)", {"top_k": 5, "compact": True}),
    ("top_k=3", {"top_k": 3, "compact": True}),
    ("top_k=0", {"top_k": 0, "compact": True}),
    ("exact (top_k=5)", {"top_k": 5, "compact": False}),
    ("exact (top_k=3)", {"top_k": 3, "compact": False}),
    ("exact (top_k=0)", {"top_k": 0, "compact": False}),
]


def components(viz, top_k: int = export.DEFAULT_TOP_K) -> dict[str, int]:
    """Bytes each part of the default export adds to the file (see the module docstring)."""
    static = export._page_state(snapshot(viz.state, viz.view(), top_k))
    state, emb = static["state"], static["embedded"]

    def packed(part) -> int:
        if not part:  # not embedded (no top-k, not an image capture)
            return 0
        _, blob = _pack.pack_state(part, compact=True, float_bits=_pack.COMPACT_BITS)
        return len(_pack.embed_bytes(blob))

    meta, _ = _pack.pack_state(static, compact=True, float_bits=_pack.COMPACT_BITS)
    topk = emb.get("topk") or []
    out = {
        "bundle": len(export._bundle().encode("utf-8")),
        "json": len(export._script_json(meta)),
        "coords": packed([{"coords": c["coords"]} for c in emb["points"]]),
        "norms": packed([{"norms": c["norms"]} for c in emb["points"]]),
        "topk_keys": packed([{"keys": c["keys"]} for c in topk]),
        "topk_weights": packed([{"weights": c["weights"]} for c in topk]),
        "aggregates": packed(emb.get("aggregate")),
        "images": packed(emb.get("images")),
        "tokens": packed(state.get("_tokens")),
        "columns": packed(state.get("_columns")),
        "meta": packed(state.get("_meta")),
    }
    return out


def open_time(path: pathlib.Path) -> float | None:
    if not shutil.which("/usr/bin/chromium"):
        return None
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function("Number(document.querySelector('.qk-root')?.dataset.qkDraws) >= 1", timeout=120_000)
        dt = time.perf_counter() - t0
        browser.close()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the default variant only")
    args = ap.parse_args()

    t0 = time.perf_counter()
    cap = qkviz.capture("minilm", demo_sentences(args.sentences), progress=False)
    t_capture = time.perf_counter() - t0
    emb = qkviz.embed(cap, method="pca", progress=False, cache=False)
    viz = qkviz.QKViz(emb)
    n_points = 2 * len(cap.tokens) * len(emb.layers) * len(emb.heads)
    out: dict = {
        "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count()},
        "sentences": args.sentences, "tokens": len(cap.tokens), "heads": len(emb.layers) * len(emb.heads),
        "points": n_points, "capture_s": round(t_capture, 2), "components": components(viz), "variants": {},
    }  # fmt: skip
    variants = VARIANTS[:1] if args.quick else VARIANTS
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for name, kw in variants:
            path = pathlib.Path(tmp) / "x.html"
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                export.save_html(viz, path, **kw)
                best = min(best, time.perf_counter() - t0)
            sizes[name] = path.stat().st_size
            out["variants"][name] = {"bytes": sizes[name], "bytes_per_point": round(sizes[name] / n_points, 3),
                                     "export_s": round(best, 2)}  # fmt: skip
            if name.startswith("default"):
                out["variants"][name]["open_s"] = (
                    round(open_time(path), 2) if shutil.which("/usr/bin/chromium") else None
                )
        for name, kw in variants:
            exact = f"exact (top_k={kw['top_k']})"
            if exact in sizes:
                out["variants"][name]["ratio_to_exact"] = round(sizes[name] / sizes[exact], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
