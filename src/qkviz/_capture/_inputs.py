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
    mask (1 = real token), ``None`` for images (no padding).
    """

    model_inputs: dict[str, Any]
    mask: Any
    tokens: pd.DataFrame
    sequences: pd.DataFrame
    images: np.ndarray | None = None
    grid: tuple[int, int] | None = None  # images: patch rows, cols


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
    tokens = pd.DataFrame(
        {
            "seq": seq,
            "pos": pos,
            "token": pd.Series(toks),
            "display": pd.Series([_display(x) for x in toks]),
            "token_id": flat_ids,
            "special": np.fromiter((x in special_ids for x in flat_ids), dtype=bool, count=len(flat_ids)),
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
        try:
            with Image.open(x) as im:
                x = im.copy()
        except OSError as e:
            raise InputError(f"input {index}: cannot read image file {x}: {e}") from e
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
