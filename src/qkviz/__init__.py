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

from ._version import __version__
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

# public name -> module that defines it (imported on first use)
_LAZY = {
    "capture": "_capture._run",
    "Capture": "_capture._container",
    "HeadGeometry": "_capture._geometry",
    "load": "_load",
    "merge": "_capture._merge",
    "load_model": "models",
    "embed": "project._recipe",
    "Embedding": "project._embedding",
    "QKViz": "widget",
    "compare": "widget._compare",
    "save_html": "export",
}

# submodules reachable as attributes without an explicit import (``qkviz.data.demo_sentences()``);
# the pipeline's public stages, in the order data flows through them
_SUBMODULES = ("data", "errors", "attention", "joint", "metrics", "analysis", "project", "wire", "export")

__all__ = [
    *_LAZY,
    *_SUBMODULES,
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
    from ._capture._container import Capture
    from ._capture._geometry import HeadGeometry
    from ._capture._merge import merge
    from ._capture._run import capture
    from ._load import load
    from .export import save_html
    from .models import load_model
    from .project._embedding import Embedding
    from .project._recipe import embed
    from .widget import QKViz
    from .widget._compare import compare


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
