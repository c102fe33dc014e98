"""Inputs people already hold: what reading a model through TransformerLens or nnsight, and texts
through a dataset or a stream, costs against the plain capture, in one run.

Prints one JSON object. The model is a small randomly initialised GPT-2 (``--layers`` x 8 heads,
d_model 256, MiniLM's 30,522-token vocabulary and tokenizer, offline), over the first ``--texts``
demo sentences, batch size 16, no first-batch check. In the same run, timed round-robin (every
variant once per round, so a change of load hits all alike): seconds (best of ``--repeat``
rounds) and the ratio against the baseline ``capture(hf_model, list_of_texts)``:

* ``transformer_lens_bridge``: the same model behind TransformerLens 4's ``TransformerBridge``
  (its own attention code, read at its hook points), raw and with ``enable_compatibility_mode()``;
* ``nnsight``: the same model inside an nnsight ``LanguageModel`` (unwrapped: should be 1.0);
* ``dataset`` / ``iterable_dataset`` / ``generator``: the texts as a ``datasets.Dataset``, an
  ``IterableDataset`` and a generator, read lazily (should be about 1.0).

Each row also reports the largest attention difference from the baseline capture. The machine is
shared: the load average is recorded before and after; on 2 busy cores (load 6-7) the ratios
move by +-0.5 between runs, so read them as "no extra cost", not as speed-ups. About 50 s there.

    python bench/inputs.py [--texts 48] [--layers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
import warnings
from typing import Any

import numpy as np


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _diff(a, b) -> float:
    return max(
        float(np.abs(a.attention(layer, h, s) - b.attention(layer, h, s)).max())
        for layer in a.layers
        for h in a.heads
        for s in range(0, len(a.sequences), 7)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=48)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch
    import transformers as tf

    import qkviz
    from qkviz.data import demo_sentences

    load_before = _load()
    tok = qkviz.load_model("minilm").tokenizer
    texts = demo_sentences(args.texts)
    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=tok.vocab_size, n_embd=256, n_layer=args.layers, n_head=8, n_positions=512)
    hf = tf.GPT2LMHeadModel(cfg).eval()
    kw = dict(batch_size=16, progress=False, check=False)

    # name -> a capture; timed round-robin (every variant once per round, best of the rounds) so
    # that a change of load on the shared machine hits every row alike
    runs: dict[str, Any] = {"baseline": lambda: qkviz.capture((hf, tok), texts, **kw)}
    skipped: dict[str, str] = {}
    try:
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.model_bridge.sources import transformers as _  # attaches boot_transformers

        raw = TransformerBridge.boot_transformers("bench-gpt2", hf_model=copy.deepcopy(hf), tokenizer=tok)
        processed = TransformerBridge.boot_transformers("bench-gpt2", hf_model=copy.deepcopy(hf), tokenizer=tok)
        processed.enable_compatibility_mode(disable_warnings=True)
        runs["transformer_lens_bridge"] = lambda: qkviz.capture(raw, texts, **kw)
        runs["transformer_lens_bridge_processed"] = lambda: qkviz.capture(processed, texts, **kw)
    except ImportError:
        skipped["transformer_lens_bridge"] = "transformer-lens 4 not installed"
    try:
        from nnsight import LanguageModel

        lm = LanguageModel(copy.deepcopy(hf), tokenizer=tok)
        runs["nnsight"] = lambda: qkviz.capture(lm, texts, **kw)
    except ImportError:
        skipped["nnsight"] = "nnsight not installed"
    try:
        import datasets

        ds = datasets.Dataset.from_dict({"text": texts})
        runs["dataset"] = lambda: qkviz.capture((hf, tok), ds, **kw)
        runs["iterable_dataset"] = lambda: qkviz.capture((hf, tok), ds.to_iterable_dataset(), **kw)
    except ImportError:
        skipped["dataset"] = "datasets not installed"
    runs["generator"] = lambda: qkviz.capture((hf, tok), (t for t in texts), **kw)

    best = dict.fromkeys(runs, float("inf"))
    caps: dict[str, Any] = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            caps[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    base_s, base = best["baseline"], caps["baseline"]
    rows: dict[str, Any] = {
        name: {
            "seconds": round(best[name], 3),
            "ratio": round(best[name] / base_s, 3),
            "max_diff": _diff(base, caps[name]),
        }
        for name in runs
        if name != "baseline"
    }
    rows.update({name: {"skipped": why} for name, why in skipped.items()})

    print(
        json.dumps(
            {
                "model": f"GPT-2 {args.layers} layers x 8 heads, d_model 256 (random)",
                "texts": len(texts),
                "tokens": int(len(base.tokens)),
                "baseline_seconds": round(base_s, 3),
                "rows": rows,
                "load_average_before": load_before,
                "load_average_after": _load(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
