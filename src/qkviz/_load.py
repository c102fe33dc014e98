"""``qkviz.load``: open a saved capture or a saved embedding, whichever a folder holds.

Both stores name their ``format`` in ``meta.json``; this reads it and hands the folder to the
right reader, so a mistaken path gets the reader's own clear message rather than a guess.
"""

from __future__ import annotations

import os
import pathlib

from ._capture._container import Capture
from ._capture._container import load as load_capture
from ._capture._store import FORMAT as CAPTURE_FORMAT
from ._fs import read_json_header
from .errors import StoreError
from .project._embedding import FORMAT as EMBEDDING_FORMAT
from .project._embedding import Embedding

__all__ = ["load"]


def load(path: str | os.PathLike[str]) -> Capture | Embedding:
    """Open a capture store (:meth:`Capture.save`, ``qkviz capture``) or an embedding
    (:meth:`Embedding.save`, ``qkviz embed``), by the format its ``meta.json`` records.

    Returns
    -------
    Capture or Embedding

    Raises
    ------
    StoreError
        No such folder, no ``meta.json``, an unknown format, or a damaged store.

    Examples
    --------
    >>> cap = qkviz.load("run.qkv")              # doctest: +SKIP
    >>> emb = qkviz.load("run.tsne.qke")         # doctest: +SKIP
    """
    root = pathlib.Path(path)
    fmt = read_json_header(root, "capture or embedding").get("format")
    if fmt == EMBEDDING_FORMAT:
        return Embedding.load(root)
    if fmt == CAPTURE_FORMAT:
        return load_capture(root)
    raise StoreError(f"{root} holds format {fmt!r}, which is neither a qkviz capture nor an embedding", path=root)
