"""How qkviz writes to disk: atomic files, atomic folder swaps, checksums, ``meta.json`` headers.

Every artefact qkviz saves (capture stores, embedding stores, HTML pages, cached conversions) goes
through this module, so the rules that protect users' files live in one place:

* a file is written under a hidden temporary name next to its destination, flushed to disk and
  renamed into place (``os.replace`` is atomic on POSIX and Windows), so a reader sees the old file
  or the new one, never a torn one;
* a store folder is assembled under a hidden temporary name and swapped in by :func:`replace_dir`
  only once it is complete;
* every store starts with a ``meta.json`` naming its ``format`` and ``version``
  (:func:`read_header` checks both before anything else is read).

The cache root (converted models, cached layouts) is ``$QKVIZ_CACHE_DIR`` or the platform's user
cache folder (:func:`cache_root`).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
import warnings
import zlib
from typing import Any

import numpy as np

from .errors import StoreError

__all__ = [
    "META",
    "atomic_write_bytes",
    "array_crc",
    "file_crc",
    "replace_dir",
    "read_json_header",
    "read_header",
    "cache_root",
    "temp_sibling",
]

#: The header file of every store folder.
META = "meta.json"


def array_crc(a: np.ndarray) -> int:
    """CRC-32 of an array's bytes (C order)."""
    return zlib.crc32(np.ascontiguousarray(a).data.cast("B"))


def file_crc(path: pathlib.Path) -> int:
    """CRC-32 of a file's bytes, read in 4 MiB blocks."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def temp_sibling(path: pathlib.Path, suffix: str = "tmp") -> pathlib.Path:
    """A hidden, unique name next to ``path``: ``.<name>.<random>.<suffix>``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.{suffix}")


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary sibling and an atomic rename."""
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def replace_dir(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, replacing what is there.

    The old folder is renamed aside before the new one moves in, so a crash leaves either the old
    store or the new one at ``path``, never a half-written mix.
    """
    if path.exists():
        old = temp_sibling(path, "old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def read_json_header(root: pathlib.Path, what: str) -> dict[str, Any]:
    """Parse ``root/meta.json`` without checking its format.

    Raises
    ------
    StoreError
        No folder, no header, or a header that is not a readable JSON object.
    """
    root = pathlib.Path(root)
    if not root.exists():
        raise StoreError(f"no {what} at {root}", path=root)
    mp = root / META
    if root.is_file() or not mp.is_file():
        raise StoreError(f"{root} is not a qkviz {what} (no {META})", path=root)
    try:
        meta = json.loads(mp.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{mp} is truncated or corrupted ({e}); write the {what} again", path=mp) from e
    if not isinstance(meta, dict):
        raise StoreError(f"{mp} is corrupted (not a JSON object)", path=mp)
    return meta


def read_header(root: pathlib.Path, fmt: str, version: int | tuple[int, ...], what: str) -> dict[str, Any]:
    """Parse ``root/meta.json`` and check that it names ``fmt`` at ``version``.

    Parameters
    ----------
    root : path
        The store folder.
    fmt, version : str, int or tuple of int
        The format this reader understands, and the version (or versions) it reads.
    what : str
        How to call the artefact in messages ("capture store", "embedding").

    Raises
    ------
    StoreError
        No folder, no header, a damaged header, another format, or another version.
    """
    meta = read_json_header(root, what)
    if meta.get("format") != fmt:
        raise StoreError(f"{root} is not a qkviz {what} (format {meta.get('format')!r}, expected {fmt!r})", path=root)
    versions = version if isinstance(version, tuple) else (version,)
    if meta.get("version") not in versions:
        raise StoreError(
            f"{root} has {what} format version {meta.get('version')!r}; this qkviz reads version "
            f"{' or '.join(map(str, versions))}. "
            f"Load it with the qkviz version that wrote it, or write the {what} again.",
            path=root,
        )
    return meta


def cache_root() -> pathlib.Path:
    """Root of qkviz's caches: ``$QKVIZ_CACHE_DIR``, else the user cache folder.

    Converted offline models live in ``models/`` under it, cached layouts in ``layouts/``. The old
    ``$QKVIZ_CACHE`` (models only) is still honoured, with a warning.
    """
    env = os.environ.get("QKVIZ_CACHE_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    legacy = os.environ.get("QKVIZ_CACHE")
    if legacy:
        warnings.warn(
            "QKVIZ_CACHE is deprecated; set QKVIZ_CACHE_DIR (models go to its models/ folder)",
            DeprecationWarning,
            stacklevel=3,
        )
        return pathlib.Path(legacy).expanduser()
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("qkviz"))
