"""On-disk cache of per-head layouts, keyed by a hash of everything that determines them.

The key hashes the head's (already normalised) joint cloud bytes, the method, every parameter, the
initial layout (if any), the random state and the versions of qkviz and the wrapped library, so a
change in any of them misses. Values are ``.npy`` files written atomically (temporary file, then
``os.replace``), so concurrent workers and interrupted runs never leave a torn entry.

The directory is the ``layouts/`` folder of qkviz's cache root (``$QKVIZ_CACHE_DIR`` when set, else
the platform's user cache directory; see :func:`qkviz._fs.cache_root`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import cache_root, clean_stale_in, temp_sibling

__all__ = ["LayoutCache", "default_cache_dir", "layout_key"]


def default_cache_dir() -> Path:
    """Where layouts are cached when ``cache=True``."""
    return cache_root() / "layouts"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {
            "__array__": hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest(),
            "shape": list(v.shape),
            "dtype": str(v.dtype),
        }
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def layout_key(arrays: list[np.ndarray], spec: dict) -> str:
    """Hex digest identifying a layout: the arrays' bytes, shapes and dtypes plus the spec."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, str(a.dtype))).encode())
        h.update(a.tobytes())
    h.update(json.dumps(_jsonable(spec), sort_keys=True, default=repr).encode())
    return h.hexdigest()


class LayoutCache:
    """A directory of cached layouts (float32 [point, dim] arrays) addressed by :func:`layout_key`."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached layout, or ``None`` on a miss (a corrupt entry counts as a miss)."""
        p = self._path(key)
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store a layout; failures to write (read-only disk...) are ignored: a cache is optional."""
        p = self._path(key)
        tmp = temp_sibling(p)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            clean_stale_in(p.parent)  # temporaries of killed workers (the folder is qkviz's own)
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(value, np.float32), allow_pickle=False)
            os.replace(tmp, p)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def __repr__(self) -> str:
        return f"LayoutCache({str(self.directory)!r})"
