"""Compare captured q/k with the model's own eager attention probabilities."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError


@contextlib.contextmanager
def eager(model: Any) -> Iterator[None]:
    """Temporarily switch every config of ``model`` to transformers' eager attention."""
    from ._attention_hook import _configs

    configs = _configs(model)
    saved = [(c, c._attn_implementation_internal) for c in configs]
    try:
        for c in configs:
            c._attn_implementation_internal = "eager"
        yield
    finally:
        for c, old in saved:
            c._attn_implementation_internal = old


def eager_attentions(model: Any, model_inputs: dict[str, Any]) -> tuple[Any, ...]:
    """The model's attention probabilities, one ``[B, H, T, T]`` tensor per layer (call order)."""
    import torch

    from ._capture import _forward_kwargs

    with torch.inference_mode(), eager(model):
        out = model(**model_inputs, **_forward_kwargs(model), output_attentions=True)
    att = getattr(out, "attentions", None)
    if att is None:
        raise InputError(f"{type(model).__name__} returned no attentions with output_attentions=True")
    return att


def verify_capture(cap: Any, model: Any, inputs: Any, *, seqs: Any = None, batch_size: int = 8) -> pd.DataFrame:
    """See :meth:`qkviz.store.Capture.verify`."""
    from . import _tokens
    from ._capture import _model_device
    from .models import load_model

    lm = load_model(model, device=None)
    n = len(cap.sequences)
    seqs = list(range(n)) if seqs is None else [int(s) for s in seqs]
    if any(not 0 <= s < n for s in seqs):
        raise InputError(f"seqs must lie in [0, {n}); got {seqs}")
    if cap.model.get("modality") == "image":
        if inputs is None:
            raise InputError("verifying an image capture needs the original images: verify(model, inputs)")
        _, items, names = _tokens.normalize_inputs(inputs)
    else:
        items = list(cap.sequences["text"]) if inputs is None else _tokens.normalize_inputs(inputs)[1]
        names = items
    if len(items) != n:
        raise InputError(f"the capture holds {n} sequences but {len(items)} inputs were given")
    device = _model_device(lm.model)
    err = {(layer, h): 0.0 for layer in cap.layers for h in cap.heads}
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        if lm.modality == "image":
            batch = _tokens.encode_images(lm.processor, lm.model, [items[s] for s in chunk],
                                          [names[s] for s in chunk], 0, 0, None, 8)
        else:
            batch = _tokens.encode_texts(lm.tokenizer, [items[s] for s in chunk], 0, 0,
                                         cap.params.get("max_length"), "silent")
            mine = np.concatenate([cap.tokens["token_id"].to_numpy()[
                cap.sequences["offset"].iloc[s] : cap.sequences["offset"].iloc[s] + cap.sequences["n_tokens"].iloc[s]]
                for s in chunk])
            if not np.array_equal(mine, batch.tokens["token_id"].to_numpy()):
                raise InputError("the inputs tokenise differently from the capture (another tokenizer or text?)")
        att = eager_attentions(lm.model, {k: v.to(device) for k, v in batch.model_inputs.items()})
        for b, s in enumerate(chunk):
            m = int(cap.sequences["n_tokens"].iloc[s])
            for layer in cap.layers:
                ref = att[layer][b, :, :m, :m].float().cpu().numpy()
                for h in cap.heads:
                    e = float(np.abs(cap.attention(layer, h, s) - ref[h]).max())
                    err[layer, h] = max(err[layer, h], e)
    df = pd.DataFrame([(layer, h, e) for (layer, h), e in err.items()], columns=["layer", "head", "max_abs_error"])
    df.attrs["max"] = float(df["max_abs_error"].max()) if len(df) else 0.0
    return df
