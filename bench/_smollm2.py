"""The real research-scale grid the scale benchmarks share: SmolLM2-135M over demo sentences.

Built once into a scratch folder and reused (capture, then a PCA embedding of every head; PCA
because the display costs measured here do not depend on the layout method):

    python bench/_smollm2.py [--scratch /work/scratch/lod] [--sentences 700]

prints what it built (or found) as JSON. ``bench/scale_widget.py`` calls :func:`build`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SCRATCH = pathlib.Path(os.environ.get("QKVIZ_SCRATCH", "/work/scratch/lod"))


def _dir_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(scratch: pathlib.Path = DEFAULT_SCRATCH, sentences: int = 700, *, log=print) -> dict:
    """The SmolLM2 capture and its PCA embedding, made on the first call and loaded afterwards.

    Returns ``{"capture": Capture, "embedding": Embedding, "capture_s", "embed_s", "store_bytes",
    "tokens", "heads"}`` (the times are those of the build, recorded next to the stores).
    """
    import qkviz
    from qkviz.data import demo_sentences

    scratch.mkdir(parents=True, exist_ok=True)
    cap_dir = scratch / f"smollm2-{sentences}"
    emb_dir = scratch / f"smollm2-{sentences}-pca"
    record = scratch / f"smollm2-{sentences}.json"
    info = json.loads(record.read_text()) if record.exists() else {}
    if not (cap_dir / "meta.json").exists() or "capture_s" not in info:
        log(f"capturing SmolLM2 over {sentences} demo sentences into {cap_dir} (minutes)…")
        t0 = time.perf_counter()
        cap = qkviz.capture("smollm2", demo_sentences(sentences), out=cap_dir, device="cpu", progress=False)
        info = {"capture_s": round(time.perf_counter() - t0, 1), "loadavg": os.getloadavg()}
        record.write_text(json.dumps(info))
    cap = qkviz.load(cap_dir)
    if not (emb_dir / "meta.json").exists() or "embed_s" not in info:
        log("embedding every head with PCA…")
        t0 = time.perf_counter()
        emb = qkviz.embed(cap, "pca", progress=False, cache=False)
        info["embed_s"] = round(time.perf_counter() - t0, 1)
        emb.save(emb_dir)
        record.write_text(json.dumps(info))
    emb = qkviz.Embedding.load(emb_dir, capture=cap)
    return {
        "capture": cap,
        "embedding": emb,
        "capture_s": info["capture_s"],
        "embed_s": info["embed_s"],
        "store_bytes": _dir_bytes(cap_dir),
        "tokens": int(cap.n_tokens),
        "heads": len(emb.cells),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=pathlib.Path, default=DEFAULT_SCRATCH)
    ap.add_argument("--sentences", type=int, default=700)
    args = ap.parse_args()
    out = build(args.scratch, args.sentences, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: v for k, v in out.items() if k not in ("capture", "embedding")}))


if __name__ == "__main__":
    main()
