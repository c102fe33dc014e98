"""Run a model over many inputs and record every head's queries and keys exactly.

See DESIGN §3: q and k are taken inside transformers' attention-function interface, i.e. after
RoPE / QK-norm and with the model's own scaling, so ``softmax(scaling * q kᵀ + mask)`` reproduces
the model's attention. Only real tokens are kept (never padding).
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from .._fs import check_target, clean_stale, replace_dir, temp_sibling
from ..errors import InputError, StoreError, UnsupportedModelError
from . import _dtypes, _inputs, _plan, _source
from ._checks import check_supported, first_batch_check, forward_kwargs, model_device
from ._container import Capture, attns_from_json, attns_json, load
from ._geometry import HeadGeometry
from ._handle import ModelHandle
from ._store import (
    FORMAT,
    OWN,
    VERSION,
    MemoryTensors,
    StoreWriter,
    done_sequences,
    holds_nothing,
    read_meta,
    read_terms,
    tensor_key,
    tensor_kind,
    terms_key,
)
from ._terms import LayerTerms

__all__ = ["capture"]

log = logging.getLogger(__name__)


def _geometry(model: Any) -> tuple[int | None, int | None]:
    """``(n_layers, n_heads)`` from the config, if it says (checked again on the first batch)."""
    cfg = model.config
    for c in (cfg, getattr(cfg, "vision_config", None), getattr(cfg, "text_config", None)):
        if c is None:
            continue
        n_layers = getattr(c, "num_hidden_layers", None) or getattr(c, "n_layer", None)
        n_heads = getattr(c, "num_attention_heads", None) or getattr(c, "n_head", None)
        if isinstance(n_layers, int) and isinstance(n_heads, int):
            return n_layers, n_heads
    return None, None


def _select(name: str, value: Any, n: int | None) -> tuple[int, ...] | None:
    """Validate ``layers=`` / ``heads=``: ints (negative counts from the end), unique, in range."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise InputError(f"{name} must be an int or a list of ints, got {type(value).__name__}") from None
    if not items:
        raise InputError(f"{name} is empty; pass None for all {name}")
    out = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise InputError(f"{name} must hold ints, got {x!r}")
        x = int(x)
        if n is not None:
            if not -n <= x < n:
                raise InputError(f"{name} {x} is out of range: the model has {n} {name} (0..{n - 1})")
            x %= n
        elif x < 0:
            raise InputError(f"{name} {x}: negative indices need a known number of {name}")
        out.append(x)
    return tuple(sorted(set(out)))


def _recorders(rec: Any) -> list[tuple[str, Any]]:
    """``(attn, Recorder)`` for every attention the recorder covers."""
    return list(rec.recorders.items()) if hasattr(rec, "recorders") else [("self", rec)]


class _Collector:
    """Moves one batch's recorded tensors to host memory (one transfer) and accumulates them."""

    def __init__(self, dtype: str, values: bool):
        self.dtype = dtype
        self.values = values
        self.chunks: dict[str, dict[int, list[np.ndarray]]] = {}  # tensor kind -> layer -> batches
        self.batch_tokens: list[int] = []

    def to_host(self, rec: Any) -> dict[str, dict[int, np.ndarray]]:
        """``{kind: {layer: [row, head, d]}}`` as numpy (kinds ``q``, ``k``, ``v``, or ``q.cross``...)."""
        import torch

        kinds: dict[str, dict[int, Any]] = {}
        for attn, r in _recorders(rec):
            kinds[tensor_kind("q", attn)] = r.q
            kinds[tensor_kind("k", attn)] = r.k
            if self.values:
                kinds[tensor_kind("v", attn)] = r.v
        flat = [(kind, layer, t) for kind, d in kinds.items() for layer, t in sorted(d.items())]
        out: dict[str, dict[int, np.ndarray]] = {kind: {} for kind in kinds}
        by_device: dict[Any, list[tuple[str, int, Any]]] = {}
        for item in flat:
            _dtypes.check_range(item[2], self.dtype)
            by_device.setdefault(item[2].device, []).append(item)
        for device, items in by_device.items():
            if device.type == "cpu":
                for kind, layer, t in items:
                    out[kind][layer] = _dtypes.host_array(_dtypes.to_storage(t, self.dtype))
                continue
            # One device->host copy per batch and device: concatenate on the device first.
            host = _dtypes.host_array(
                torch.cat([_dtypes.to_storage(t, self.dtype).reshape(-1) for _, _, t in items]).cpu()
            )
            pos = 0
            for kind, layer, t in items:
                size = t.numel()
                out[kind][layer] = host[pos : pos + size].reshape(t.shape)
                pos += size
        for _, r in _recorders(rec):
            r.q, r.k, r.v = {}, {}, {}  # drop device tensors before the next batch
        return out

    def add(self, batch: dict[str, dict[int, np.ndarray]], n_tokens: int) -> None:
        for kind, d in batch.items():
            acc = self.chunks.setdefault(kind, {})
            for layer, a in d.items():
                acc.setdefault(layer, []).append(a)
        self.batch_tokens.append(int(n_tokens))

    def tensors(self, index: dict[str, tuple[int, ...]]) -> MemoryTensors:
        chunks = {kind: self.chunks.get(kind, {}) for kind in index}
        return MemoryTensors(chunks, index, self.batch_tokens)


def _index(attns: dict[str, HeadGeometry], values: bool) -> dict[str, tuple[int, ...]]:
    """Tensor kind -> the head (or kv head) numbers stored, in axis-1 order."""
    out = {}
    for attn, g in attns.items():
        out[tensor_kind("q", attn)] = g.heads
        out[tensor_kind("k", attn)] = g.kv_heads
        if values:
            out[tensor_kind("v", attn)] = g.kv_heads
    return out


def _part_tensors(host: dict[str, dict[int, np.ndarray]], index: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """One batch as store keys ``kind.layer.head -> [row, d]``."""
    out = {}
    for kind, d in host.items():
        for layer, a in d.items():
            for i, h in enumerate(index[kind]):
                out[tensor_key(kind, layer, h)] = np.ascontiguousarray(a[:, i])
    return out


def capture(
    model: Any,
    inputs: Any,
    *,
    layers: Any = None,
    heads: Any = None,
    batch_size: int = 16,
    max_length: int | None = None,
    truncation: str = "warn",
    device: str | None = "auto",
    dtype: Any = "float32",
    values: bool = False,
    progress: bool = True,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    check: bool = True,
    thumbnail: int = 128,
    tokenizer: Any = None,
    processor: Any = None,
    targets: Any = None,
    sampling_rate: int | None = None,
    sample: int | float | None = None,
    random_state: int = 0,
    max_tokens: int | None = None,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    text_column: str | None = None,
) -> Capture:
    """Record the queries and keys of every (or the chosen) attention head over many inputs.

    Parameters
    ----------
    model : str, path, PreTrainedModel, (model, tokenizer) or LoadedModel
        Anything :func:`qkviz.load_model` accepts: ``"minilm"``, ``"smollm2"``, ``"vit-s14"``,
        ``"dinov2-s14"``, a folder, a hub id, or a loaded model — a transformers model, an nnsight
        ``LanguageModel`` (captured as the transformers model it wraps) or a TransformerLens
        ``HookedTransformer`` / ``TransformerBridge`` (read at its hook points).
    inputs : str, list of str, list of images, dict of name -> image, or a dataset
        Texts, or images (PIL, ``uint8`` / ``[0, 1]`` float arrays, ``pathlib.Path`` files), or for
        speech models waveforms (1-D float numpy arrays, or a dict name -> waveform).
        Greyscale images are replicated to RGB; RGBA is composited onto white.
        Texts can also come from a ``datasets.Dataset`` or ``IterableDataset``, a pandas DataFrame,
        a generator, or an iterable of dict rows (see ``text_column``): these are read lazily, one
        batch at a time, so a corpus is never held in memory. ``sample=`` needs a known number of
        rows (a ``Dataset``, a DataFrame, a list) and ``shard=`` that too and no ``max_tokens=``;
        a generator or an ``IterableDataset`` takes ``max_tokens=`` only.
    layers, heads : int or list of int, optional
        Which layers and query heads to keep (default all; negative numbers count from the end).
        Fewer heads mean proportionally less memory and disk.
    batch_size : int
        Inputs per forward pass. Larger is faster until memory runs out.
    max_length : int, optional
        Longest token sequence (default: the model's limit). Longer texts are truncated.
    truncation : {"warn", "error", "silent"}
        What happens to texts longer than ``max_length``; ``sequences["truncated"]`` marks them.
    device : str or None
        ``"auto"`` (CUDA when present) for named models and paths; a loaded model stays where it is
        unless a device is named.
    dtype : {"float32", "float16", "bfloat16"}
        How q/k/v are stored; :meth:`Capture.q` always returns float32 and attention is always
        recomputed in float32. float16 and bfloat16 halve memory and disk; the attention they give
        stays within a derived bound of float32's (``qkviz._capture._dtypes``): float16 keeps 11
        bits (values above 65504 are refused), bfloat16 8 bits with float32's range.
    values : bool
        Also record value vectors (:meth:`Capture.v`), e.g. for value-norm-weighted attention.
    progress : bool
        Show a progress bar.
    out : path, optional
        Stream to this store directory: each batch is appended as it finishes, so memory stays
        bounded by one batch; the returned capture reads from disk.
    resume : bool
        With ``out``: continue an interrupted capture of the same inputs and settings.
    overwrite : bool
        With ``out``: replace a capture already there. The new one streams into a hidden temporary
        folder next to ``out`` and is swapped in only once complete, so a failed or killed run
        leaves the old capture as it was. Never replaces anything but a capture (see
        ``docs/data-safety.md``).
    text_column : str, optional
        The column (or dict key) holding the texts of a dataset, a DataFrame or dict rows. Default:
        ``"text"``, or a dataset's only text column.
    check : bool
        On the first batch, compare one sequence's recomputed attention with the model's eager
        attention (one extra small forward pass) and refuse models where q.k is not the score.
    thumbnail : int
        Longest side in pixels of the image thumbnails kept in :attr:`Capture.images`.
    tokenizer, processor : optional
        The tokenizer / image processor of a loaded model passed as ``model`` (a speech model: its
        feature extractor as ``processor``, or a processor holding both).
    targets : list of str, optional
        Encoder–decoder models (BART, T5, Whisper...): what the decoder reads for each input — a
        translation, a summary, a transcript. The decoder gets ``[decoder start] + target``, so
        the capture holds encoder self-, decoder self- and cross-attention (``cap.attns``).
        ``(source, target)`` pairs as ``inputs`` work too.
    sampling_rate : int, optional
        Speech models: the rate of the waveforms (checked against the feature extractor's).
    sample : int or float, optional
        Capture a uniform random subset of the inputs: ``n`` of them, or a share in ``(0, 1]``,
        kept in input order. ``sequences["input"]`` holds each sequence's index in ``inputs``.
    random_state : int
        Seed of ``sample`` (the same seed draws the same inputs).
    max_tokens : int, optional
        Stop once this many tokens are captured, with whole sequences: the inputs (after
        ``sample``) are kept in order while their tokens fit. Texts and images (not yet
        encoder-decoder or speech captures).
    shard : (int, int), optional
        ``(i, n)``: run only shard ``i`` of ``n`` — batch ``b`` of the planned inputs goes to
        shard ``b % n`` — e.g. one per Dask worker or GPU. :func:`qkviz.merge` joins the shard
        stores into one store identical to a capture of everything on one machine.

    Returns
    -------
    Capture

    Raises
    ------
    InputError
        Empty or mixed inputs, wrong types, out-of-range layers/heads, bad batch size.
    UnsupportedModelError
        The model's attention scores are not ``scaling * q.k + mask``.

    Examples
    --------
    >>> cap = qkviz.capture("minilm", ["The cat sat on the mat.", "A dog barked."])   # doctest: +SKIP
    >>> cap.q(layer=0, head=3).shape                                                  # doctest: +SKIP
    (16, 32)
    """
    import torch

    from ..models import load_model
    from . import _hook, _modules

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise InputError(f"max_length must be a positive int or None, got {max_length!r}")
    if truncation not in ("warn", "error", "silent"):
        raise InputError(f"truncation must be 'warn', 'error' or 'silent', got {truncation!r}")
    if isinstance(thumbnail, bool) or not isinstance(thumbnail, (int, np.integer)) or thumbnail < 1:
        raise InputError(
            f"thumbnail must be a whole number of pixels >= 1 (the thumbnails' longest side), got {thumbnail!r}"
        )
    store_dtype = _dtypes.storage_dtype(dtype)
    max_tokens = _plan.check_max_tokens(max_tokens)
    shard = _plan.check_shard(shard)
    source, inputs = _source.open_source(inputs, text_column)  # datasets and streams: read lazily
    early = (
        source is None
        and targets is None
        and not _inputs.looks_like_pairs(inputs)
        and not _inputs.looks_like_audio(inputs)
    )
    items: Any = None  # a list of inputs (a TextSource is read batch by batch instead)
    names: Any = None
    if source is not None:
        modality = "text"
    elif early:  # cheap input errors before any model loads
        modality, items, names = _inputs.normalize_inputs(inputs)
    if resume and out is None:
        raise InputError("resume=True needs out=<store directory>")
    if overwrite and resume:
        raise InputError("pass resume=True (continue the capture at out) or overwrite=True (replace it), not both")
    if out is not None:
        _check_out(pathlib.Path(out), resume=bool(resume), overwrite=bool(overwrite))

    if isinstance(model, (str, os.PathLike)):
        lm = load_model(model, device=device)
    else:
        lm = load_model(model, tokenizer, processor=processor, device=None if device == "auto" else device)
    net = lm.model
    enc_dec = bool(lm.spec.get("encoder_decoder"))
    tgts: list[str] | None = None
    if enc_dec and source is not None:
        raise InputError(
            f"{lm.spec['name']} is an encoder-decoder model: pass its sources as a list and targets= "
            "(a dataset or a stream is read as texts of one stream)"
        )
    if enc_dec:
        sources, tgts = _inputs.normalize_targets(inputs, targets)
        if lm.modality == "audio":
            items, names = _inputs.normalize_audio(sources)
            modality = "audio"
        else:
            modality, items, names = _inputs.normalize_inputs(sources)
    elif targets is not None:
        raise InputError(f"targets= is for encoder-decoder models; {lm.spec['name']} has no decoder to read them")
    elif not early and source is None:
        modality, items, names = _inputs.normalize_inputs(inputs)
    if lm.modality != modality:
        raise InputError(f"{lm.spec['name']} takes {lm.modality} inputs but {modality}s were given")
    check_supported(net)
    n_layers, n_heads = _geometry(net)
    sel_layers = _select("layers", layers, n_layers)
    sel_heads = _select("heads", heads, n_heads)

    limit = _inputs.model_max_length(lm.tokenizer, net) if modality == "text" else None
    if max_length is not None and limit is not None and max_length > limit:
        raise InputError(f"max_length={max_length} exceeds the model's limit of {limit} tokens")
    if modality == "text" and max_length is not None:
        specials = _inputs.special_token_count(lm.tokenizer)
        if max_length <= specials:
            raise InputError(
                f"max_length={max_length} leaves no room for text: {lm.spec['name']}'s tokenizer adds {specials} "
                f"special tokens to every sequence; max_length must be at least {specials + 1}"
            )
    max_len = max_length or limit
    if max_tokens is not None and (enc_dec or modality == "audio"):
        raise InputError("max_tokens= is not supported for encoder-decoder or speech captures yet; use sample=")
    stream: _source.Planned | None = None
    if source is not None:  # the same plan as below, read forward one batch at a time
        stream = _source.Planned(
            source, int(batch_size), sample=sample, random_state=random_state, max_tokens=max_tokens,
            count=lambda texts: _plan.text_lengths(lm.tokenizer, texts, max_len), shard=shard,
        )  # fmt: skip
        n_inputs = source.n  # None: a stream that does not know its length
    else:
        n_inputs = len(items)
        # the planned inputs, in input order: a sample of them, then as many as fit in max_tokens
        order = _plan.sample_inputs(n_inputs, sample, random_state)
        if max_tokens is not None and modality == "text":
            lengths = _plan.text_lengths(lm.tokenizer, [items[i] for i in order], max_len)
            order = order[: _plan.tokens_fit(lengths, max_tokens)]
        items = [items[i] for i in order]
        names = [names[i] for i in order]
        if tgts is not None:
            tgts = [tgts[i] for i in order]
    params: dict[str, Any] = {
        "batch_size": int(batch_size),
        "max_length": max_len,
        "truncation": truncation,
        "dtype": store_dtype,
        "values": bool(values),
        "model_dtype": str(next(net.parameters()).dtype),
        "device": str(model_device(net)),
        "n_inputs": n_inputs,
        "layers": list(sel_layers) if sel_layers else None,
        "heads": list(sel_heads) if sel_heads else None,
    }

    # recorded only when used, so stores written before these options existed still resume
    if sample is not None:
        kept = float(sample) if isinstance(sample, (float, np.floating)) else int(sample)
        params.update(sample=kept, random_state=int(random_state))
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    n_planned = len(items) if stream is None else stream.n_planned
    plan = [] if stream is not None else _plan.batches(len(items), int(batch_size), shard)
    if shard is not None:
        assert n_planned is not None  # a stream of unknown length is refused a shard (Planned)
        n_batches = len(_plan.batches(n_planned, int(batch_size)))
        params.update(shard=list(shard), batches=n_batches)
        if not (plan if stream is None else stream.total):
            raise InputError(
                f"shard {shard[0]} of {shard[1]} has no batch: the {n_planned} planned inputs make {n_batches} "
                f"batch(es) of batch_size={batch_size}; use at most {n_batches} shards, or a smaller batch_size"
            )
    mine = [j for b0, b1 in plan for j in range(b0, b1)]  # the planned inputs this run captures (a list)

    writer, done, final = None, 0, None
    if out is not None:
        final = pathlib.Path(out)
        if overwrite and final.exists() and not holds_nothing(final):
            # stream into a temporary sibling; the old capture stays until the new one is complete
            clean_stale(final, own=OWN)
            root = temp_sibling(final)
            root.mkdir()
        else:
            root, final = final, None
        if stream is not None:
            heads, total = functools.partial(stream.head, where=out), stream.total
        else:
            heads, total = (lambda n: [names[j] for j in mine[:n]]), len(mine)
        writer, done = _open_store(root, resume, lm, params, heads, total)
        if writer is None:  # already complete
            complete = load(root)
            complete._model_handle = ModelHandle(lm)
            return complete
    if done and stream is None:  # resume: every stored part is one whole batch (a stream skipped them)
        ends = np.cumsum([b1 - b0 for b0, b1 in plan])
        if done not in ends:
            raise StoreError(f"{out} does not end on a batch boundary; it cannot be resumed. Use a new path.", path=out)
        plan = plan[int(np.searchsorted(ends, done)) + 1 :]

    try:
        dev = model_device(net)
        fwd = forward_kwargs(net)
        sel = set(sel_layers) if sel_layers else None
        rec: Any = (
            _hook.MultiRecorder(net, sel, sel_heads, values) if enc_dec else _hook.Recorder(sel, sel_heads, values)
        )
        if writer is not None and writer.terms:  # a resumed store: its tables cover the batches already written
            subs = dict(_recorders(rec))
            for key, a in read_terms(writer.root, {"terms_file": writer.terms}).items():
                name, *attn, layer = key.split(".")
                subs[attn[0] if attn else "self"].terms.setdefault(int(layer), LayerTerms()).arrays[name] = a
        col = _Collector(store_dtype, values)
        tables_t: list[pd.DataFrame] = []
        tables_s: list[pd.DataFrame] = []
        thumbs: list[np.ndarray] = []
        n_tok = writer.n_tokens if writer else 0
        n_seq = writer.n_seqs if writer else 0
        seq_len_img: int | None = None
        n_fit: int | None = None  # images with max_tokens: planned inputs that fit, known after one batch
        first = True
        attns: dict[str, HeadGeometry] = {}
        decoder_start = getattr(net.config, "decoder_start_token_id", None)
        n_frames = int(getattr(net.config, "max_source_positions", 0) or 0)

        from tqdm.auto import tqdm

        total = len(mine) if stream is None else stream.total
        bar = tqdm(total=total, initial=done, desc="capture", unit="seq", disable=not progress)
        # (first, last) planned input, the inputs, their indices in ``inputs``: one batch at a time
        run: Iterator[tuple[int, int, Any, np.ndarray]] = (
            stream.batches() if stream is not None else ((b0, b1, items[b0:b1], order[b0:b1]) for b0, b1 in plan)
        )
        with bar, torch.inference_mode(), _modules.recording(net) as impl:
            params["attn_implementation"] = impl
            for b0, b1, chunk, input_ids in run:
                if n_fit is not None and b0 >= n_fit:
                    break
                if modality == "audio":
                    assert tgts is not None
                    fe = getattr(lm.processor, "feature_extractor", lm.processor)
                    batch = _inputs.encode_audio(
                        fe, lm.tokenizer, chunk, names[b0:b1], tgts[b0:b1], n_seq, n_tok,
                        n_frames, sampling_rate, decoder_start,
                    )  # fmt: skip
                elif enc_dec:
                    assert tgts is not None
                    batch = _inputs.encode_pairs(
                        lm.tokenizer, chunk, tgts[b0:b1], n_seq, n_tok, max_len, truncation, decoder_start
                    )
                elif modality == "text":
                    batch = _inputs.encode_texts(lm.tokenizer, chunk, n_seq, n_tok, max_len, truncation)
                else:
                    batch = _inputs.encode_images(
                        lm.processor, net, chunk, names[b0:b1], n_seq, n_tok, seq_len_img, thumbnail
                    )
                model_inputs = {k: v.to(dev) for k, v in batch.model_inputs.items()}
                for name in ("pixel_values", "input_features"):
                    if name in model_inputs:
                        model_inputs[name] = model_inputs[name].to(next(net.parameters()).dtype)
                mask = batch.mask.to(dev) if batch.mask is not None else None
                if enc_dec:
                    with rec.batch(mask, batch.decoder_mask.to(dev), check_mask=first):
                        net(**model_inputs, **fwd)
                else:
                    with rec.batch(mask, check_mask=first):
                        net(**model_inputs, **fwd)
                if first:
                    attns = {attn: _first_batch(r, sel_layers, sel_heads, attn) for attn, r in _recorders(rec)}
                    if check:
                        first_batch_check(net, batch, rec, dev, atol=1e-3)
                    first = False
                if modality == "image" and seq_len_img != rec.seq_len:
                    # the model's real sequence length is known only now (DINOv2 adds register tokens)
                    assert rec.seq_len is not None and batch.grid is not None
                    seq_len_img = rec.seq_len
                    batch.tokens, batch.sequences = _inputs.image_tables(
                        names[b0:b1], n_seq, n_tok, seq_len_img, batch.grid
                    )
                    if max_tokens is not None:
                        n_fit = _plan.tokens_fit([seq_len_img] * len(items), max_tokens)
                host = col.to_host(rec)
                if n_fit is not None and b1 > n_fit:  # images: keep the whole images that fit
                    if b0 >= n_fit:
                        break
                    host, batch = _keep_first(host, batch, n_fit - b0)
                batch.sequences["input"] = input_ids[: len(batch.sequences)]
                n_tok += len(batch.tokens)
                n_seq += len(batch.sequences)
                if writer is not None:
                    if not writer.parts:
                        writer.header.update(attns_json(attns, _streams(attns)))
                    writer.set_terms(_terms(rec))
                    writer.append(
                        _part_tensors(host, _index(attns, values)), batch.tokens, batch.sequences, batch.images
                    )
                else:
                    col.add(host, len(batch.tokens))
                    tables_t.append(batch.tokens)
                    tables_s.append(batch.sequences)
                    if batch.images is not None:
                        thumbs.append(batch.images)
                bar.update(len(batch.sequences))

        if writer is not None:
            writer.finish()
            if final is not None:
                replace_dir(writer.root, final, kind=FORMAT, what="capture", own=OWN)
                complete = load(final)
            else:
                complete = load(writer.root)
            complete._model_handle = ModelHandle(lm)  # lets Embedding.place capture new inputs the same way
            return complete
        tokens = pd.concat(tables_t, ignore_index=True)
        assert attns  # the loop ran at least once: inputs are never empty
        cap = Capture(
            tokens=tokens,
            sequences=pd.concat(tables_s, ignore_index=True),
            attns=attns,
            streams=_streams(attns),
            model=dict(lm.spec),
            params=params,
            images=np.concatenate(thumbs) if thumbs else None,
            terms=_terms(rec),
            _tensors=col.tensors(_index(attns, values)),
        )
        cap._model_handle = ModelHandle(lm)  # lets Embedding.place capture new inputs the same way
        return cap

    except BaseException:
        if final is not None and writer is not None:  # a failed replacement: drop the half-written temp
            import shutil

            shutil.rmtree(writer.root, ignore_errors=True)
        raise


def _keep_first(host: dict[str, dict[int, np.ndarray]], batch: Any, n: int) -> tuple[dict[str, Any], Any]:
    """The first ``n`` sequences of an image batch (all of one length, no padding)."""
    n_tok = int(batch.sequences["n_tokens"].iloc[:n].sum())
    host = {kind: {layer: a[:n_tok] for layer, a in d.items()} for kind, d in host.items()}
    batch.tokens = batch.tokens.iloc[:n_tok].reset_index(drop=True)
    batch.sequences = batch.sequences.iloc[:n].reset_index(drop=True)
    if batch.images is not None:
        batch.images = batch.images[:n]
    return host, batch


def _streams(attns: dict[str, HeadGeometry]) -> tuple[str, ...]:
    return ("encoder", "decoder") if len(attns) > 1 else ("tokens",)


def _terms(rec: Any) -> dict[str, np.ndarray]:
    """The recorders' score terms as ``{terms_key: array}`` (see :mod:`._terms`)."""
    return {
        terms_key(name, layer, attn): a
        for attn, r in _recorders(rec)
        for layer, t in sorted(r.terms.items())
        for name, a in t.arrays.items()
    }


# attention name -> (query stream, key stream): 0 = the encoder's (or the only) tokens, 1 = the decoder's
_STREAMS = {"self": (0, 0), "encoder": (0, 0), "decoder": (1, 1), "cross": (1, 0)}


def _first_batch(
    rec: Any, sel_layers: tuple[int, ...] | None, sel_heads: tuple[int, ...] | None, attn: str = "self"
) -> HeadGeometry:
    """Geometry learnt from the first forward pass; re-validates layers/heads against it."""
    if not rec.info:
        raise UnsupportedModelError(f"the model made no {attn} attention call", reason="missing attention calls")
    n_layers = len(rec.info)
    info0 = rec.info[0]
    n_heads, n_kv = info0.n_heads, info0.n_kv_heads
    if any(i.n_heads != n_heads or i.n_kv_heads != n_kv or i.d_head != info0.d_head for i in rec.info.values()):
        raise UnsupportedModelError(
            "layers differ in head count or head size; qkviz needs one geometry", reason="heterogeneous layers"
        )
    layers = sel_layers if sel_layers is not None else tuple(range(n_layers))
    heads = sel_heads if sel_heads is not None else tuple(range(n_heads))
    if layers[-1] >= n_layers:
        raise InputError(f"layers {list(layers)} out of range: the model made {n_layers} attention calls")
    if heads[-1] >= n_heads:
        raise InputError(f"heads {list(heads)} out of range: the model has {n_heads} heads")
    causal = {rec.info[layer].causal for layer in layers}
    if len(causal) > 1:
        raise UnsupportedModelError("some layers are causal and others not", reason="mixed causal layers")
    return HeadGeometry(
        layers=layers,
        heads=heads,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=info0.d_head,
        causal=causal.pop(),
        scaling={layer: rec.info[layer].scaling for layer in layers},
        sliding_window={layer: rec.info[layer].sliding_window for layer in layers},
        softcap={layer: rec.info[layer].softcap for layer in layers if rec.info[layer].softcap is not None},
        terms={layer: rec.info[layer].terms for layer in layers if rec.info[layer].terms},
        attn=attn,
        query_stream=_STREAMS[attn][0],
        key_stream=_STREAMS[attn][1],
    )


def _check_out(root: pathlib.Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``out`` that cannot be written before any model is loaded (see :func:`capture`)."""
    if holds_nothing(root):
        return  # an empty folder becomes the store
    hint = "pass resume=True to continue it, overwrite=True to replace it, or choose a new path"
    check_target(root, FORMAT, what="capture", overwrite=resume or overwrite, own=OWN if overwrite else None,
                 hint=hint)  # fmt: skip
    if not resume:
        clean_stale(root, own=OWN)


def _open_store(
    root: pathlib.Path,
    resume: bool,
    lm: Any,
    params: dict[str, Any],
    heads: Callable[[int], list[str]],
    total: int | None,
) -> tuple[StoreWriter | None, int]:
    """Start (or resume) a streaming store; returns ``(writer, first input to process)``.

    ``heads(n)`` gives the names of the first ``n`` inputs this run captures (a stream reads them,
    and skips them); ``total`` is how many it captures, when known.
    """
    header = {"format": FORMAT, "version": VERSION, "model": dict(lm.spec), "params": params}
    if root.exists() and not holds_nothing(root):
        if not resume:
            raise StoreError(f"{root} already exists; pass resume=True to continue it, or choose a new path", path=root)
        meta = read_meta(root)
        mine = {k: v for k, v in params.items() if k not in ("device", "attn_implementation")}
        theirs = {k: v for k, v in meta["params"].items() if k not in ("device", "attn_implementation")}
        if meta["model"].get("name") != lm.spec["name"] or mine != theirs:
            raise StoreError(
                f"{root} was captured with other settings or model; it cannot be resumed with these. Use a new path.",
                path=root,
            )
        done = done_sequences(root, meta)
        n_done = 0 if done is None else len(done)
        if done is not None and list(done["text"]) != heads(n_done):
            raise StoreError(f"{root} holds other inputs than the ones given; it cannot be resumed", path=root)
        if meta.get("status") == "complete":
            return None, n_done
        if "layers" in meta or "attns" in meta:  # the geometry the interrupted run learnt from its first batch
            header.update(attns_json(*attns_from_json(meta)))
        log.info("resuming %s after %d of %s inputs", root, n_done, "?" if total is None else total)
        return StoreWriter(root, header, resume=True), n_done
    return StoreWriter(root, header), 0
