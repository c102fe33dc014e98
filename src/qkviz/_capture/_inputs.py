"""Turn user inputs into model batches plus the token/sequence tables that explain each row.

Texts are tokenised without padding, then right-padded here (so a tokenizer without a pad token
works and positions are the natural 0..n-1). Images are coerced to RGB, run through the model's
image processor, and described patch by patch.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError


@dataclass
class Batch:
    """One model batch and its table rows.

    ``model_inputs`` are keyword arguments for the model; ``mask`` is the ``[B, T]`` 0/1 attention
    mask (1 = real token), ``None`` for images and audio frames (no padding); ``decoder_mask`` the
    decoder's, for encoder–decoder models.
    """

    model_inputs: dict[str, Any]
    mask: Any
    tokens: pd.DataFrame
    sequences: pd.DataFrame
    images: np.ndarray | None = None
    grid: tuple[int, int] | None = None  # images: patch rows, cols
    decoder_mask: Any = None


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------


def _is_image(x: Any) -> bool:
    if isinstance(x, (pathlib.Path,)):
        return True
    if isinstance(x, np.ndarray):
        return True
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, Image.Image)


def normalize_inputs(inputs: Any) -> tuple[str, list[Any], list[str]]:
    """Check the inputs and return ``(modality, items, names)``.

    Accepts a string (one text), a list of strings, a list of images (PIL images, ``uint8`` / float
    arrays ``[h, w]``, ``[h, w, 3]`` or ``[h, w, 4]``, or image file paths as ``pathlib.Path``), or a
    mapping name -> image.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    names: list[str] | None = None
    if isinstance(inputs, Mapping):
        names = [str(k) for k in inputs]
        inputs = list(inputs.values())
    elif isinstance(inputs, np.ndarray) and inputs.ndim >= 2:
        inputs = _bare_array(inputs)
    elif _is_image(inputs) and not isinstance(inputs, np.ndarray):
        inputs = [inputs]
    if not isinstance(inputs, Sequence) and not isinstance(inputs, np.ndarray):
        try:
            inputs = list(inputs)
        except TypeError:
            raise InputError(f"inputs must be a list of strings or of images, got {type(inputs).__name__}") from None
    items = list(inputs)
    if not items:
        raise InputError("inputs is empty: pass at least one text or image")
    kinds = {"text" if isinstance(x, str) else "image" if _is_image(x) else "other" for x in items}
    if "other" in kinds:
        bad = next(x for x in items if not isinstance(x, str) and not _is_image(x))
        i = items.index(bad) if not isinstance(bad, np.ndarray) else -1
        raise InputError(
            f"input {i} is a {type(bad).__name__}; inputs must be strings (texts) or images "
            "(PIL.Image, numpy arrays, pathlib.Path to an image file)"
        )
    if len(kinds) > 1:
        raise InputError("inputs mix texts and images; capture one modality at a time")
    modality = kinds.pop()
    if modality == "text":
        for i, x in enumerate(items):
            if not x.strip():
                raise InputError(f"input {i} is an empty (or blank) string; every text needs some content")
        names = items
    elif names is None:
        names = [
            os.fspath(x) if isinstance(x, pathlib.Path) else getattr(x, "filename", "") or f"image {i}"
            for i, x in enumerate(items)
        ]
    return modality, items, names


def _bare_array(a: np.ndarray) -> list[np.ndarray]:
    """A bare array as a list of images: ``[h, w]`` / ``[h, w, 1|3|4]`` is one, ``[image, h, w, c]`` a batch.

    Iterating a bare ``[h, w, 3]`` array would make one "image" of every pixel row.
    """
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)):
        return [a]
    if a.ndim == 4 and a.shape[3] in (1, 3, 4):
        return list(a)
    raise InputError(
        f"a bare array of shape {a.shape} is neither one image ([h, w] or [h, w, 1|3|4]) nor a batch "
        "([image, h, w, 1|3|4]); pass a list of images"
    )


def open_image(path: pathlib.Path, what: str = "") -> Any:
    """Read an image file fully into memory, or raise a typed error (messages start with ``what``).

    Images PIL flags as possible decompression bombs (more than ``Image.MAX_IMAGE_PIXELS``, about
    89 million pixels: a few kB on disk can decode to gigabytes) are refused too: no vision
    transformer looks at such an image, and decoding it could exhaust memory.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(
            f"{what}{path} is too large to decode safely ({e}); downscale it first (e.g. to 1024 px)"
        ) from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError for some broken headers
        raise InputError(f"{what}cannot read {path}: not a readable image ({e})") from e


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------


def _display(tok: str) -> str:
    """A clean display form: no WordPiece ``##``, no byte-level ``Ġ``/``Ċ``, no SentencePiece ``▁``."""
    if tok.startswith("##") and len(tok) > 2:
        return tok[2:]
    out = tok.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n").replace("ĉ", "\t").strip(" ")
    if out == "\n":
        return "⏎"
    return out if out else tok


def model_max_length(tokenizer: Any, model: Any) -> int | None:
    """The longest sequence the model accepts (position table size), or ``None`` if unbounded."""
    limits = []
    t = getattr(tokenizer, "model_max_length", None)
    if isinstance(t, int) and 0 < t < 1_000_000:
        limits.append(t)
    cfg = getattr(model, "config", None)
    text_cfg = cfg.get_text_config() if cfg is not None and hasattr(cfg, "get_text_config") else cfg
    p = getattr(text_cfg, "max_position_embeddings", None)
    if isinstance(p, int) and p > 0:
        limits.append(p)
    return min(limits) if limits else None


def special_token_count(tokenizer: Any) -> int:
    """How many special tokens (``[CLS]``, ``[SEP]``, ``<s>``...) the tokenizer adds to one text."""
    count = getattr(tokenizer, "num_special_tokens_to_add", None)
    if callable(count):
        try:
            return int(count(pair=False))
        except (TypeError, ValueError, NotImplementedError):
            pass
    return len(tokenizer("", add_special_tokens=True, return_attention_mask=False)["input_ids"])


def encode_texts(
    tokenizer: Any, texts: list[str], first_seq: int, first_token: int, max_length: int | None, truncation: str
) -> Batch:
    """Tokenise one batch of texts and build its table rows.

    Parameters
    ----------
    truncation : {"warn", "error", "silent"}
        What to do with texts longer than ``max_length``.
    """
    import torch

    kw: dict[str, Any] = {"add_special_tokens": True, "return_attention_mask": False}
    if max_length is not None:
        kw.update(truncation=True, max_length=max_length)
    enc = tokenizer(texts, **kw)
    ids_list: list[list[int]] = enc["input_ids"]
    truncated = [False] * len(texts)
    if max_length is not None:
        long = [i for i, ids in enumerate(ids_list) if len(ids) >= max_length]
        if long:  # only texts that hit the limit can have been cut: re-count those untruncated
            full = tokenizer([texts[i] for i in long], add_special_tokens=True, return_attention_mask=False)
            for i, ids in zip(long, full["input_ids"]):
                truncated[i] = len(ids) > max_length
        cut = [first_seq + i for i, t in enumerate(truncated) if t]
        if cut:
            msg = (
                f"{len(cut)} text(s) longer than max_length={max_length} tokens were truncated "
                f"(seq {cut[:5]}{'...' if len(cut) > 5 else ''}); see sequences['truncated']"
            )
            if truncation == "error":
                raise InputError(
                    msg.replace("were truncated", "would be truncated")
                    + "; pass truncation='warn' to allow it, or shorten the texts"
                )
            if truncation == "warn":
                warnings.warn(msg, stacklevel=4)
    lengths = [len(ids) for ids in ids_list]
    if min(lengths) == 0:
        raise InputError(f"text {first_seq + lengths.index(0)} tokenises to no tokens")
    if max_length is not None and max(lengths) > max_length:
        # tokenizers cannot cut below their special tokens and then return the text uncut: never
        # hand the model a sequence longer than its position table
        i = int(np.argmax(lengths))
        raise InputError(
            f"text {first_seq + i} is {lengths[i]} tokens after truncation to max_length={max_length} (the "
            "tokenizer could not cut it); pass a larger max_length"
        )
    b, t = len(ids_list), max(lengths)
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = 0 if pad is None else pad  # padding positions are masked out and never recorded
    input_ids = torch.full((b, t), pad, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, ids in enumerate(ids_list):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1

    flat_ids = np.fromiter((x for ids in ids_list for x in ids), dtype=np.int64, count=sum(lengths))
    toks = tokenizer.convert_ids_to_tokens(flat_ids.tolist())
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    word_ids: list[int] = []
    if getattr(enc, "_encodings", None) is not None:
        for i in range(b):
            word_ids += [-1 if w is None else w for w in enc.word_ids(i)]
    else:  # slow tokenizer: no word alignment
        word_ids = [-1] * len(flat_ids)
    seq = np.repeat(np.arange(first_seq, first_seq + b, dtype=np.int32), lengths)
    pos = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    is_special = np.fromiter((x in special_ids for x in flat_ids), dtype=bool, count=len(flat_ids))
    only_special = [first_seq + i for i in range(b) if is_special[seq == first_seq + i].all()]
    if only_special and special_ids:
        warnings.warn(
            f"{len(only_special)} text(s) tokenise to special tokens only (seq {only_special[:5]}"
            f"{'...' if len(only_special) > 5 else ''}): the tokenizer dropped all their characters (zero-width or "
            "control characters, or text it cannot read); they hold no word to look at",
            stacklevel=4,
        )
    tokens = pd.DataFrame(
        {
            "seq": seq,
            "pos": pos,
            "token": pd.Series(toks),
            "display": pd.Series([_display(x) for x in toks]),
            "token_id": flat_ids,
            "special": is_special,
            "word_id": np.asarray(word_ids, dtype=np.int32),
        }
    )
    offsets = first_token + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    sequences = pd.DataFrame(
        {
            "seq": np.arange(first_seq, first_seq + b, dtype=np.int32),
            "text": pd.Series(texts),
            "n_tokens": np.asarray(lengths, dtype=np.int32),
            "offset": offsets,
            "truncated": np.asarray(truncated, dtype=bool),
        }
    )
    return Batch({"input_ids": input_ids, "attention_mask": mask}, mask, tokens, sequences)


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def to_rgb(x: Any, index: int) -> Any:
    """Coerce one image to an RGB PIL image.

    Greyscale (``[h, w]`` or mode ``L``/``1``) is replicated to three channels; RGBA is composited
    onto white (transparent areas would otherwise come out black); floats are taken as ``[0, 1]``.
    """
    from PIL import Image

    if isinstance(x, pathlib.Path):
        x = open_image(x, f"input {index}: ")
    if isinstance(x, np.ndarray):
        a = x
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
            raise InputError(
                f"input {index}: an image array must be [h, w], [h, w, 3] or [h, w, 4], got shape {a.shape}"
            )
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        elif np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise InputError(f"input {index}: image array holds NaN or infinite values")
            lo, hi = float(a.min()), float(a.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                # clipping would turn a 0..255 image white without a word
                raise InputError(
                    f"input {index}: float images are read as 0..1, but this one spans {lo:.4g}..{hi:.4g}; "
                    "divide it by 255 (0..255 values) or pass it as uint8"
                )
            a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
        elif a.dtype != np.uint8:
            raise InputError(f"input {index}: image arrays must be uint8, bool or float in [0, 1]; got {a.dtype}")
        x = Image.fromarray(np.ascontiguousarray(a))
    if x.mode in ("RGBA", "LA", "PA") or (x.mode == "P" and "transparency" in x.info):
        bg = Image.new("RGB", x.size, (255, 255, 255))
        rgba = x.convert("RGBA")
        bg.paste(rgba, mask=rgba.split()[3])
        return bg
    return x.convert("RGB") if x.mode != "RGB" else x


def _patch_size(model: Any) -> int:
    cfg = model.config
    cfg = getattr(cfg, "vision_config", cfg)
    p = getattr(cfg, "patch_size", None)
    if isinstance(p, (tuple, list)):
        p = p[0]
    if not isinstance(p, int):
        raise InputError(f"cannot tell the patch size of {type(model).__name__}; no config.patch_size")
    return p


def encode_images(
    processor: Any,
    model: Any,
    images: list[Any],
    names: list[str],
    first_seq: int,
    first_token: int,
    n_tokens: int | None,
    thumbnail: int,
) -> Batch:
    """Preprocess one batch of images.

    ``n_tokens`` is the model's sequence length if already known (from an earlier batch); otherwise
    one CLS token plus the patch grid is assumed and :func:`image_tables` fixes the tables after
    the forward pass shows the real length (DINOv2 with registers has more).
    """
    rgb = [to_rgb(x, first_seq + i) for i, x in enumerate(images)]
    px = processor(images=rgb, return_tensors="pt")["pixel_values"]
    b, _, h, w = px.shape
    p = _patch_size(model)
    grid = (h // p, w // p)
    n = n_tokens if n_tokens is not None else 1 + grid[0] * grid[1]
    tokens, sequences = image_tables(names, first_seq, first_token, n, grid)
    return Batch({"pixel_values": px}, None, tokens, sequences, _thumbnails(processor, px, thumbnail), grid)


def image_tables(
    names: list[str], first_seq: int, first_token: int, n: int, grid: tuple[int, int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Token and sequence rows for ``len(names)`` images of ``n`` tokens over a ``rows x cols`` grid."""
    b = len(names)
    rows, cols = grid
    n_patch = rows * cols
    n_extra = n - n_patch  # CLS (+ register tokens) come first in ViT / DINOv2 / CLIP
    if n_extra < 0:
        raise InputError(f"{n} tokens cannot hold a {rows}x{cols} patch grid")
    extra_names = ["[CLS]"] + [f"[REG{i}]" for i in range(1, n_extra)]
    r, c = np.divmod(np.arange(n_patch), cols)
    tok_names = extra_names[:n_extra] + [f"patch {i},{j}" for i, j in zip(r, c)]
    per = pd.DataFrame(
        {
            "pos": np.arange(n, dtype=np.int32),
            "token": pd.Series(tok_names),
            "display": pd.Series(tok_names),
            "special": np.arange(n) < n_extra,
            "row": np.concatenate([np.full(n_extra, -1), r]).astype(np.int16),
            "col": np.concatenate([np.full(n_extra, -1), c]).astype(np.int16),
        }
    )
    tokens = pd.concat([per] * b, ignore_index=True)
    tokens.insert(0, "seq", np.repeat(np.arange(first_seq, first_seq + b, dtype=np.int32), n))
    sequences = pd.DataFrame(
        {
            "seq": np.arange(first_seq, first_seq + b, dtype=np.int32),
            "text": pd.Series(names),
            "n_tokens": np.full(b, n, dtype=np.int32),
            "offset": first_token + np.arange(b, dtype=np.int64) * n,
            "truncated": np.zeros(b, dtype=bool),
        }
    )
    return tokens, sequences


def _thumbnails(processor: Any, px: Any, size: int) -> np.ndarray:
    """Undo the processor's normalisation and downscale: the images as the model saw them."""
    from PIL import Image

    a = px.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
    mean = np.asarray(getattr(processor, "image_mean", None) or [0.0, 0.0, 0.0], dtype=np.float32)
    std = np.asarray(getattr(processor, "image_std", None) or [1.0, 1.0, 1.0], dtype=np.float32)
    if getattr(processor, "do_normalize", True):
        a = a * std + mean
    scale = 1.0
    if getattr(processor, "do_rescale", True):
        scale = 1.0 / float(getattr(processor, "rescale_factor", 1 / 255))
    a = np.clip(a * scale, 0, 255).round().astype(np.uint8)
    out = []
    for im in a:
        pil = Image.fromarray(im)
        h, w = im.shape[:2]
        k = size / max(h, w)
        if k < 1:
            pil = pil.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR)
        out.append(np.asarray(pil))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# encoder-decoder models: sources (texts or audio) and targets
# ---------------------------------------------------------------------------------------------


def normalize_targets(inputs: Any, targets: Any) -> tuple[Any, list[str]]:
    """Split ``(source, target)`` pairs, or check ``targets`` against ``inputs``.

    Returns ``(sources, targets)``.
    """
    if targets is None:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else None
        if items and all(isinstance(x, tuple) and len(x) == 2 for x in items):
            return [x[0] for x in items], [x[1] for x in items]
        raise InputError(
            "an encoder-decoder model needs what its decoder reads: pass targets=[...] (one text per input: a "
            "translation, a summary, a transcript), or (source, target) pairs as inputs"
        )
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    n = 1 if isinstance(inputs, str) else len(inputs) if hasattr(inputs, "__len__") else None
    if n is not None and len(targets) != n:
        raise InputError(f"targets has {len(targets)} texts for {n} inputs; give one target per input")
    for i, t in enumerate(targets):
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"target {i} must be a non-empty string, got {t!r}")
    return inputs, targets


def normalize_audio(inputs: Any) -> tuple[list[np.ndarray], list[str]]:
    """Check waveforms: a 1-D float array, a list of them, or a dict name -> array."""
    names: list[str] | None = None
    if isinstance(inputs, Mapping):
        names = [str(k) for k in inputs]
        inputs = list(inputs.values())
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 1:
        inputs = [inputs]
    items = list(inputs)
    if not items:
        raise InputError("inputs is empty: pass at least one waveform")
    out = []
    for i, x in enumerate(items):
        a = np.asarray(x)
        if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.number):
            raise InputError(
                f"input {i}: an audio model takes waveforms as 1-D numeric numpy arrays, got "
                f"{type(x).__name__} {getattr(a, 'shape', '')}"
            )
        if not np.isfinite(a).all():
            raise InputError(f"input {i}: the waveform holds NaN or infinite values")
        out.append(a.astype(np.float32))
    return out, names or [f"audio {i}" for i in range(len(out))]


def _target_ids(tokenizer: Any, targets: list[str], start: int | None, max_length: int | None) -> list[list[int]]:
    kw: dict[str, Any] = {"add_special_tokens": True, "return_attention_mask": False}
    if max_length is not None:
        kw.update(truncation=True, max_length=max_length - 1)
    ids = tokenizer(text_target=targets, **kw)["input_ids"]
    if start is None:
        return [list(x) for x in ids]
    # the decoder reads its start token first (unless the tokenizer already put it there: Whisper)
    return [list(x) if x and x[0] == start else [start, *x] for x in ids]


def _text_rows(tokenizer: Any, ids_list: list[list[int]], first_seq: int, stream: int) -> list[pd.DataFrame]:
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = []
    for i, ids in enumerate(ids_list):
        toks = tokenizer.convert_ids_to_tokens(ids)
        out.append(
            pd.DataFrame(
                {
                    "seq": np.full(len(ids), first_seq + i, np.int32),
                    "pos": np.arange(len(ids), dtype=np.int32),
                    "token": pd.Series(toks, dtype=object),
                    "display": pd.Series([_display(x) for x in toks], dtype=object),
                    "token_id": np.asarray(ids, np.int64),
                    "special": np.asarray([x in special_ids for x in ids], bool),
                    "word_id": np.full(len(ids), -1, np.int32),
                    "stream": np.full(len(ids), stream, np.int8),
                }
            )
        )
    return out


def _padded(ids_list: list[list[int]], pad: int) -> tuple[Any, Any]:
    import torch

    b, t = len(ids_list), max(len(x) for x in ids_list)
    ids = torch.full((b, t), pad, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, x in enumerate(ids_list):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return ids, mask


def _pair_tables(
    enc_rows: list[pd.DataFrame],
    dec_rows: list[pd.DataFrame],
    first_seq: int,
    first_token: int,
    texts: list[str],
    targets: list[str],
    truncated: list[bool],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each sequence's encoder rows, then its decoder rows (``stream`` 0 and 1)."""
    rows = [df for pair in zip(enc_rows, dec_rows) for df in pair]
    tokens = pd.concat(rows, ignore_index=True)
    n_enc = np.asarray([len(x) for x in enc_rows], np.int32)
    n_all = n_enc + np.asarray([len(x) for x in dec_rows], np.int32)
    sequences = pd.DataFrame(
        {
            "seq": np.arange(first_seq, first_seq + len(texts), dtype=np.int32),
            "text": pd.Series(texts, dtype=object),
            "target": pd.Series(targets, dtype=object),
            "n_tokens": n_all,
            "offset": first_token + np.concatenate([[0], np.cumsum(n_all)[:-1]]).astype(np.int64),
            "n_encoder": n_enc,
            "truncated": np.asarray(truncated, bool),
        }
    )
    return tokens, sequences


def encode_pairs(
    tokenizer: Any,
    texts: list[str],
    targets: list[str],
    first_seq: int,
    first_token: int,
    max_length: int | None,
    truncation: str,
    decoder_start: int | None,
) -> Batch:
    """One batch of (source, target) texts for an encoder–decoder model.

    The decoder reads ``[decoder_start] + target`` (teacher forcing), so every target token is a
    decoder row whose query sees itself and the tokens before it.
    """
    src = encode_texts(tokenizer, texts, first_seq, first_token, max_length, truncation)
    dec_ids = _target_ids(tokenizer, targets, decoder_start, max_length)
    pad = getattr(tokenizer, "pad_token_id", None)
    dec, dec_mask = _padded(dec_ids, 0 if pad is None else pad)
    enc_tokens = src.tokens.assign(stream=np.zeros(len(src.tokens), np.int8))
    enc_rows = [g for _, g in enc_tokens.groupby("seq", sort=True)]
    tokens, sequences = _pair_tables(
        enc_rows,
        _text_rows(tokenizer, dec_ids, first_seq, 1),
        first_seq,
        first_token,
        texts,
        targets,
        list(src.sequences["truncated"]),
    )
    inputs = {**src.model_inputs, "decoder_input_ids": dec, "decoder_attention_mask": dec_mask}
    return Batch(inputs, src.mask, tokens, sequences, decoder_mask=dec_mask)


def encode_audio(
    feature_extractor: Any,
    tokenizer: Any,
    waves: list[np.ndarray],
    names: list[str],
    targets: list[str],
    first_seq: int,
    first_token: int,
    n_frames: int,
    sampling_rate: int | None,
    decoder_start: int | None,
) -> Batch:
    """One batch of waveforms and their transcripts for a speech encoder–decoder (Whisper).

    Every encoder frame is a token (``n_frames`` per clip: the model attends to all of them,
    including the silence the feature extractor pads each clip with; frames past the end of the
    waveform are marked ``special``). ``display`` is the frame's start time.
    """
    rate = int(getattr(feature_extractor, "sampling_rate", 16000))
    if sampling_rate is not None and int(sampling_rate) != rate:
        raise InputError(
            f"the model's feature extractor takes audio sampled at {rate} Hz, got sampling_rate={sampling_rate}; "
            "resample the waveforms first (e.g. with librosa.resample or scipy.signal.resample_poly)"
        )
    feats = feature_extractor(waves, sampling_rate=rate, return_tensors="pt")["input_features"]
    window = float(getattr(feature_extractor, "n_samples", 30 * rate)) / rate  # seconds the encoder sees
    step = window / n_frames
    dec_ids = _target_ids(tokenizer, targets, decoder_start, None)
    pad = getattr(tokenizer, "pad_token_id", None)
    dec, dec_mask = _padded(dec_ids, 0 if pad is None else pad)
    enc_rows = []
    for i, w in enumerate(waves):
        start = np.arange(n_frames, dtype=np.float32) * step
        enc_rows.append(
            pd.DataFrame(
                {
                    "seq": np.full(n_frames, first_seq + i, np.int32),
                    "pos": np.arange(n_frames, dtype=np.int32),
                    "token": pd.Series([f"frame {f}" for f in range(n_frames)], dtype=object),
                    "display": pd.Series([f"{t:.2f} s" for t in start], dtype=object),
                    "token_id": np.full(n_frames, -1, np.int64),
                    "special": start >= len(w) / rate,  # padded silence
                    "word_id": np.full(n_frames, -1, np.int32),
                    "stream": np.zeros(n_frames, np.int8),
                    "time": start,
                }
            )
        )
    tokens, sequences = _pair_tables(
        enc_rows,
        _text_rows(tokenizer, dec_ids, first_seq, 1),
        first_seq,
        first_token,
        list(names),
        targets,
        [len(w) / rate > window for w in waves],
    )
    inputs = {"input_features": feats, "decoder_input_ids": dec, "decoder_attention_mask": dec_mask}
    return Batch(inputs, None, tokens, sequences, decoder_mask=dec_mask)


def looks_like_pairs(inputs: Any) -> bool:
    """``[(source, target), ...]``: inputs of an encoder–decoder model."""
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(x, tuple) for x in inputs)


def looks_like_audio(inputs: Any) -> bool:
    """1-D numeric arrays (waveforms), alone, in a list or in a dict."""
    items = list(inputs.values()) if isinstance(inputs, Mapping) else inputs
    if isinstance(items, np.ndarray):
        return items.ndim == 1
    return (
        isinstance(items, (list, tuple))
        and bool(items)
        and all(isinstance(x, np.ndarray) and x.ndim == 1 for x in items)
    )
