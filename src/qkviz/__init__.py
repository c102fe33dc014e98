"""qkviz: see how every attention head of a transformer arranges its queries and keys.

>>> import qkviz
>>> cap = qkviz.capture("minilm", ["The cat sat on the mat."])    # doctest: +SKIP
>>> emb = qkviz.embed(cap, method="tsne")                           # doctest: +SKIP
>>> qkviz.QKViz(emb)                                                # doctest: +SKIP

Heavy modules (torch, transformers, openTSNE) load on first use, so ``import qkviz`` is quick and
showing a saved embedding never imports the model stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    EmbeddingError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
    QKVizError,
    StoreError,
    UnsupportedModelError,
    WidgetDataError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "capture": "_capture",
    "Capture": "store",
    "load": "store",
    "load_model": "models",
    "embed": "embedding",
    "Embedding": "embedding",
    "QKViz": "widget",
}

# submodules reachable as attributes without an explicit import (``qkviz.data.demo_sentences()``)
_SUBMODULES = ("data", "errors", "export")

__all__ = [
    *_LAZY,
    "data",
    "export",
    "EmbeddingError",
    "InputError",
    "MissingDependencyError",
    "ModelLoadError",
    "QKVizError",
    "StoreError",
    "UnsupportedModelError",
    "WidgetDataError",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from ._capture import capture
    from .embedding import Embedding, embed
    from .models import load_model
    from .store import Capture, load
    from .widget import QKViz


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qkviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
