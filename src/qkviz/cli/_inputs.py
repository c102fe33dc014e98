"""Read the INPUTS argument of ``qkviz capture``: a text file, a JSONL file or a folder of images.

The command line hands whatever this returns straight to :func:`qkviz.capture`: a list of strings
for text, or a ``{name: PIL.Image}`` dict for images (names are the file names, so the widget can
show them).
"""

from __future__ import annotations

import json
import pathlib

from ..errors import InputError

__all__ = ["read_inputs", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


def read_inputs(
    path: str | pathlib.Path, *, field: str = "text", limit: int | None = None
) -> list[str] | dict[str, object]:
    """Turn a path into capture inputs.

    Parameters
    ----------
    path : str or Path
        A folder (every image file in it, sorted by name), a ``.jsonl``/``.ndjson`` file (one JSON
        object per line, the text under ``field``), or any other file (UTF-8 text, one sequence per
        non-blank line).
    field : str
        Key of the text in each JSONL object. Change it when your records call it e.g. ``"sentence"``.
    limit : int, optional
        Keep only the first ``limit`` sequences (quick trial runs on a big file).

    Returns
    -------
    list of str or dict of str to PIL.Image.Image

    Raises
    ------
    InputError
        The path is missing, empty, not UTF-8, a JSONL line is not an object with ``field``, or a
        folder holds no readable image.
    """
    p = pathlib.Path(path)
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        return _read_images(p, limit)
    if p.suffix.lower() in _JSONL_SUFFIXES:
        return _read_jsonl(p, field, limit)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{p} is an image; pass the folder that holds your images instead")
    return _read_lines(p, limit)


def _read_text(p: pathlib.Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{p} is not UTF-8 text (byte {e.start} cannot be decoded); convert it, e.g. "
            f"`iconv -f latin1 -t utf-8 {p.name}`"
        ) from None


def _read_lines(p: pathlib.Path, limit: int | None) -> list[str]:
    texts = [line.strip() for line in _read_text(p).splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise InputError(f"{p} holds no text: expected one sequence per line")
    return texts[:limit]


def _read_jsonl(p: pathlib.Path, field: str, limit: int | None) -> list[str]:
    texts: list[str] = []
    for i, line in enumerate(_read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}, line {i}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or field not in record:
            keys = ", ".join(map(repr, record)) if isinstance(record, dict) else type(record).__name__
            raise InputError(f"{p}, line {i}: no {field!r} field (found {keys}); choose the text field with --field")
        value = record[field]
        if not isinstance(value, str):
            raise InputError(f"{p}, line {i}: {field!r} is {type(value).__name__}, expected a string")
        texts.append(value)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise InputError(f"{p} holds no records")
    return texts


def _read_images(p: pathlib.Path, limit: int | None) -> dict[str, object]:
    from .._capture._inputs import open_image

    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(
            f"{p} is a folder without images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "for text, pass a file with one sequence per line"
        )
    images: dict[str, object] = {}
    for f in files[:limit]:
        images[f.name] = open_image(f).convert("RGB")
    return images
