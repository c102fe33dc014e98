"""Exactness checks: refuse models whose scores q·k cannot carry, and verify a capture end to end.

Three layers, cheapest first:

* :func:`check_supported`: architectures known (by config) to add something to their scores that
  q·k cannot carry are refused by name before any work is done;
* :func:`first_batch_check`: on the first batch of every capture, one sequence's attention is
  recomputed from the recorded q/k (the torch twin of :mod:`qkviz.attention`) and compared with the
  model's own eager attention, which catches biases added inside custom attention code;
* :func:`verify` (``Capture.verify``): the same comparison over any sequences of a finished capture.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InputError, UnsupportedModelError

if TYPE_CHECKING:
    from ._container import Capture

__all__ = [
    "check_supported",
    "first_batch_check",
    "verify",
    "eager_attentions",
    "eager_attention_kinds",
    "model_device",
    "forward_kwargs",
    "UNSUPPORTED",
]

# Architectures whose attention scores qkviz cannot reproduce (yet). The generic checks (mask
# inspection, a first-batch comparison with eager attention, a model whose attention neither calls
# the interface nor has module hooks) would also catch them; naming them here gives the clearest
# message before any work is done. Soft-capping, sinks, ALiBi (BLOOM, MPT) and the relative terms
# of MPNet and DeBERTa-v2 are captured exactly (see docs/concepts/attention-families.md).
UNSUPPORTED = {
    "longt5": "LongT5 adds a relative-position bias and uses local/global attention",
    "switch_transformers": "Switch Transformers add a relative-position bias to the scores",
    "deberta": "DeBERTa (v1) adds disentangled content-position terms to its attention scores",
    "xlnet": "XLNet uses two-stream relative attention",
    "funnel": "Funnel Transformer adds relative-position terms to its scores",
    "transfo-xl": "Transformer-XL adds relative-position terms to its scores",
}


def model_device(model: Any) -> Any:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def forward_kwargs(model: Any) -> dict[str, Any]:
    """Extra forward arguments: no KV cache for decoders (it would only cost memory)."""
    params = inspect.signature(model.forward).parameters
    return {"use_cache": False} if "use_cache" in params else {}


def check_supported(model: Any) -> None:
    """Refuse, by name, architectures whose scores are not ``scaling · q·k + mask``."""
    cfg = model.config
    mt = getattr(cfg, "model_type", None)
    if mt in UNSUPPORTED:
        raise UnsupportedModelError(
            f"{type(model).__name__}: {UNSUPPORTED[mt]}, so its attention is not softmax(scaling * q.k + mask) "
            "and a q/k capture would misrepresent it",
            reason=UNSUPPORTED[mt],
            model_type=mt,
        )
    if getattr(cfg, "position_embedding_type", "absolute") in ("relative_key", "relative_key_query"):
        why = f"position_embedding_type={cfg.position_embedding_type!r} adds relative-position terms to the scores"
        raise UnsupportedModelError(f"{type(model).__name__}: {why}", reason=why, model_type=mt)
    if mt == "falcon" and getattr(cfg, "alibi", False):
        why = (
            "Falcon's ALiBi path in transformers scores differently in eager and sdpa attention (eager adds "
            "the bias twice), so there is no single attention to reproduce"
        )
        raise UnsupportedModelError(f"{type(model).__name__}: {why}", reason=why, model_type=mt)


def eager_attentions(model: Any, model_inputs: dict[str, Any]) -> tuple[Any, ...]:
    """The model's attention probabilities, one ``[B, H, T, T]`` tensor per layer (call order)."""
    import torch

    from ._hook import eager

    with torch.inference_mode(), eager(model):
        out = model(**model_inputs, **forward_kwargs(model), output_attentions=True)
    att = getattr(out, "attentions", None)
    if att is None:
        raise InputError(f"{type(model).__name__} returned no attentions with output_attentions=True")
    return att


def eager_attention_kinds(model: Any, model_inputs: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The model's attention probabilities by attention: ``{"self": ...}``, or for encoder–decoder
    models ``{"encoder", "decoder", "cross"}``; one ``[B, H, T_q, T_k]`` tensor per layer."""
    import torch

    from ._hook import eager

    if not getattr(model.config, "is_encoder_decoder", False):
        return {"self": eager_attentions(model, model_inputs)}
    with torch.inference_mode(), eager(model):
        out = model(**model_inputs, **forward_kwargs(model), output_attentions=True)
    kinds = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}
    got: dict[str, tuple[Any, ...]] = {}
    for k, name in kinds.items():
        att = getattr(out, name, None)
        if att is None:
            raise InputError(f"{type(model).__name__} returned no {name} with output_attentions=True")
        got[k] = att
    return got


def _first_batch_check_kinds(model: Any, batch: Any, rec: Any, device: Any, atol: float) -> None:
    """:func:`first_batch_check` for an encoder–decoder model: every attention of the first pair."""
    from ._hook import attention_t

    subs = rec.recorders
    n_dec = int(batch.decoder_mask[0].sum())
    one = {k: v[:1].to(device) for k, v in batch.model_inputs.items()}
    if batch.mask is not None:
        n_enc = int(batch.mask[0].sum())
        one["input_ids"], one["attention_mask"] = one["input_ids"][:, :n_enc], one["attention_mask"][:, :n_enc]
    else:
        n_enc = subs["encoder"].seq_len
        one["input_features"] = one["input_features"].to(next(model.parameters()).dtype)
    one["decoder_input_ids"] = one["decoder_input_ids"][:, :n_dec]
    one["decoder_attention_mask"] = one["decoder_attention_mask"][:, :n_dec]
    att = eager_attention_kinds(model, one)
    sizes = {"encoder": (n_enc, n_enc), "decoder": (n_dec, n_dec), "cross": (n_dec, n_enc)}
    worst = (0.0, "", -1)
    for attn, r in subs.items():
        nq, nk = sizes[attn]
        for layer, q in r.q.items():
            info = r.info[layer]
            group = info.n_heads // info.n_kv_heads
            heads = r.heads if r.heads is not None else tuple(range(info.n_heads))
            kv = sorted({h // group for h in heads})
            qs = q[:nq].float().transpose(0, 1)
            ks = r.k[layer][:nk].float().transpose(0, 1)[[kv.index(h // group) for h in heads]]
            state = r.terms.get(layer)
            terms = {n: (a if n == "rel_index" else a[list(heads)]) for n, a in (state.arrays if state else {}).items()}
            p = attention_t(qs, ks, info.scaling, info.causal, info.sliding_window, terms, info.softcap)
            ref = att[attn][layer][0, list(heads), :nq, :nk].float().to(p.device)
            e = float((p - ref).abs().max())
            if e > worst[0]:
                worst = (e, attn, layer)
    if worst[0] > atol:
        why = (
            f"{worst[1]} attention recomputed from the recorded q/k differs from the model's own by "
            f"{worst[0]:.2g} at layer {worst[2]} (the scores include something qkviz does not record)"
        )
        raise UnsupportedModelError(
            f"{type(model).__name__}: {why}", reason=why, model_type=getattr(model.config, "model_type", None)
        )


def first_batch_check(model: Any, batch: Any, rec: Any, device: Any, atol: float) -> None:
    """Compare the first sequence's recomputed attention with the model's eager attention.

    Catches scores that are not what qkviz records (biases added inside custom attention code)
    at the cost of one eager forward pass over one sequence.
    """
    from ._hook import attention_t

    if hasattr(rec, "recorders"):
        _first_batch_check_kinds(model, batch, rec, device, atol)
        return
    one = {k: v[:1].to(device) for k, v in batch.model_inputs.items()}
    if "pixel_values" in one:
        one["pixel_values"] = one["pixel_values"].to(next(model.parameters()).dtype)
    if batch.mask is not None:
        n = int(batch.mask[0].sum())
        one = {k: (v[:, :n] if v.dim() == 2 else v) for k, v in one.items()}
    else:
        n = rec.seq_len
    att = eager_attentions(model, one)
    worst = (0.0, -1)
    for layer, q in rec.q.items():
        info = rec.info[layer]
        k = rec.k[layer]
        group = info.n_heads // info.n_kv_heads
        heads = rec.heads if rec.heads is not None else tuple(range(info.n_heads))
        kv = sorted({h // group for h in heads})
        qs = q[:n].float().transpose(0, 1)  # [head, pos, d_head]
        ks = k[:n].float().transpose(0, 1)[[kv.index(h // group) for h in heads]]
        state = rec.terms.get(layer)
        terms = {
            name: (a if name == "rel_index" else a[list(heads)]) for name, a in (state.arrays if state else {}).items()
        }
        p = attention_t(qs, ks, info.scaling, info.causal, info.sliding_window, terms, info.softcap)
        ref = att[layer][0, list(heads), :n, :n].float().to(p.device)
        e = float((p - ref).abs().max())
        if e > worst[0]:
            worst = (e, layer)
    if worst[0] > atol:
        why = (
            f"attention recomputed from the recorded q/k differs from the model's own by {worst[0]:.2g} "
            f"at layer {worst[1]} (the scores include something qkviz does not record)"
        )
        raise UnsupportedModelError(
            f"{type(model).__name__}: {why}", reason=why, model_type=getattr(model.config, "model_type", None)
        )


def verify(cap: Capture, model: Any, inputs: Any, *, seqs: Any = None, batch_size: int = 8) -> pd.DataFrame:
    """See :meth:`qkviz.Capture.verify`."""
    from ..models import load_model
    from . import _inputs

    lm = load_model(model, device=None)
    n = len(cap.sequences)
    seqs = list(range(n)) if seqs is None else [int(s) for s in seqs]
    if any(not 0 <= s < n for s in seqs):
        raise InputError(f"seqs must lie in [0, {n}); got {seqs}")
    if len(cap.attns) > 1:
        return _verify_kinds(cap, lm, inputs, seqs, batch_size)
    if cap.model.get("modality") == "image":
        if inputs is None:
            raise InputError("verifying an image capture needs the original images: verify(model, inputs)")
        _, items, names = _inputs.normalize_inputs(inputs)
    else:
        items = list(cap.sequences["text"]) if inputs is None else _inputs.normalize_inputs(inputs)[1]
        names = items
    if len(items) != n:
        raise InputError(f"the capture holds {n} sequences but {len(items)} inputs were given")
    device = model_device(lm.model)
    err = {(layer, h): 0.0 for layer in cap.layers for h in cap.heads}
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        if lm.modality == "image":
            batch = _inputs.encode_images(
                lm.processor, lm.model, [items[s] for s in chunk], [names[s] for s in chunk], 0, 0, None, 8
            )
        else:
            batch = _inputs.encode_texts(
                lm.tokenizer, [items[s] for s in chunk], 0, 0, cap.params.get("max_length"), "silent"
            )
            offsets, lengths = cap.sequences["offset"], cap.sequences["n_tokens"]
            mine = np.concatenate(
                [cap.tokens["token_id"].to_numpy()[offsets.iloc[s] : offsets.iloc[s] + lengths.iloc[s]] for s in chunk]
            )
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


def _verify_kinds(cap: Capture, lm: Any, inputs: Any, seqs: list[int], batch_size: int) -> pd.DataFrame:
    """:func:`verify` for an encoder–decoder capture: every attention, in padded batches."""
    from . import _inputs

    net = lm.model
    seqt = cap.sequences
    targets = [str(t) for t in seqt["target"]]
    start = getattr(net.config, "decoder_start_token_id", None)
    if lm.modality == "audio":
        if inputs is None:
            raise InputError("verifying a speech capture needs the original waveforms: verify(model, inputs)")
        waves, names = _inputs.normalize_audio(inputs)
        if len(waves) != len(seqt):
            raise InputError(f"the capture holds {len(seqt)} sequences but {len(waves)} waveforms were given")
    device = model_device(net)
    err: dict[tuple[str, int, int], float] = {
        (a, la, h): 0.0 for a, g in cap.attns.items() for la in g.layers for h in g.heads
    }
    for first in range(0, len(seqs), batch_size):
        chunk = seqs[first : first + batch_size]
        if lm.modality == "audio":
            fe = getattr(lm.processor, "feature_extractor", lm.processor)
            frames = int(getattr(net.config, "max_source_positions", 0) or 0)
            batch = _inputs.encode_audio(
                fe, lm.tokenizer, [waves[s] for s in chunk], [names[s] for s in chunk], [targets[s] for s in chunk],
                0, 0, frames, None, start,
            )  # fmt: skip
        else:
            batch = _inputs.encode_pairs(
                lm.tokenizer, [str(seqt["text"][s]) for s in chunk], [targets[s] for s in chunk], 0, 0,
                cap.params.get("max_length"), "silent", start,
            )  # fmt: skip
        inputs_ = {k: v.to(device) for k, v in batch.model_inputs.items()}
        if "input_features" in inputs_:
            inputs_["input_features"] = inputs_["input_features"].to(next(net.parameters()).dtype)
        att = eager_attention_kinds(net, inputs_)
        for b, s in enumerate(chunk):
            n_enc = int(seqt["n_encoder"][s])
            n_dec = int(seqt["n_tokens"][s]) - n_enc
            size = {"encoder": (n_enc, n_enc), "decoder": (n_dec, n_dec), "cross": (n_dec, n_enc)}
            for a, g in cap.attns.items():
                nq, nk = size[a]
                for layer in g.layers:
                    ref = att[a][layer][b, :, :nq, :nk].float().cpu().numpy()
                    for h in g.heads:
                        e = float(np.abs(cap.attention(layer, h, s, attn=a) - ref[h]).max())
                        err[a, layer, h] = max(err[a, layer, h], e)
    rows = [(a, la, h, e) for (a, la, h), e in err.items()]
    df = pd.DataFrame(rows, columns=["attn", "layer", "head", "max_abs_error"])
    df.attrs["max"] = float(df["max_abs_error"].max()) if len(df) else 0.0
    return df
