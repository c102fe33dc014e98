"""Capture overhead: MiniLM over demo sentences, plain forward vs qkviz.capture, in the same run.

Prints one JSON object. The plain forward tokenises and runs the same batches with the model's own
(sdpa) attention and keeps nothing; the capture additionally records q and k of all 72 heads for
every real token and builds the token tables. Runs alternate (plain, capture, plain, capture, ...)
so that load from other processes hits both alike; the ratios use the fastest run of each, in wall
time and in process CPU time (the latter is the steadier figure on a shared machine).

    python bench/capture.py [--n 1000] [--batch-size 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of demo sentences")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    from qkviz import capture
    from qkviz.data import demo_sentences, sentences_source
    from qkviz.models import load_model

    texts = demo_sentences(args.n)
    lm = load_model("minilm", device="cpu")
    model, tok = lm.model, lm.tokenizer

    def plain() -> int:
        n_tok = 0
        with torch.inference_mode():
            for i in range(0, len(texts), args.batch_size):
                enc = tok(
                    texts[i : i + args.batch_size], padding=True, truncation=True, max_length=512, return_tensors="pt"
                )
                model(**enc)
                n_tok += int(enc["attention_mask"].sum())
        return n_tok

    def captured():
        return capture(lm, texts, batch_size=args.batch_size, progress=False)

    # warm-up (first calls allocate, import and register)
    capture(lm, texts[:8], progress=False)
    plain_s, cap_s, plain_cpu, cap_cpu, cap = [], [], [], [], None
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        n_tok = plain()
        plain_s.append(time.perf_counter() - t)
        plain_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        cap = captured()
        cap_s.append(time.perf_counter() - t)
        cap_cpu.append(time.process_time() - c)
    stored = sum(cap.q(layer, h).nbytes + cap.k(layer, h).nbytes for layer in cap.layers for h in cap.heads)
    out = {
        "bench": "capture",
        "model": "minilm (sentence-transformers/all-MiniLM-L6-v2, 6 layers x 12 heads, d_head 32)",
        "corpus": f"first {len(texts)} sentences of {sentences_source()}",
        "n_sequences": len(texts),
        "n_tokens": int(n_tok),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "plain_forward_s": [round(x, 3) for x in plain_s],
        "capture_s": [round(x, 3) for x in cap_s],
        "ratio_capture_over_plain": round(min(cap_s) / min(plain_s), 3),
        # CPU seconds of this process (all threads): much less sensitive to other jobs on the machine
        "plain_forward_cpu_s": [round(x, 3) for x in plain_cpu],
        "capture_cpu_s": [round(x, 3) for x in cap_cpu],
        "ratio_capture_over_plain_cpu": round(min(cap_cpu) / min(plain_cpu), 3),
        "ratio_goal": 1.15,
        "capture_tokens_per_s": round(n_tok / min(cap_s)),
        "plain_tokens_per_s": round(n_tok / min(plain_s)),
        "captured_qk_bytes": int(stored),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
