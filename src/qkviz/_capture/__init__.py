"""The capture stage: run a model over many inputs and record every head's queries and keys exactly.

Inputs become padded batches (``_inputs``); a recording attention function registered with
transformers' ``AttentionInterface`` takes q and k where the model scores them (``_hook``); the
run loop (``_run``) streams each batch into a :class:`Capture` (``_container``) held in memory or
in a store on disk (``_store``); ``_checks`` refuses models whose scores q·k cannot carry and
verifies captures against the model's own attention. :class:`HeadGeometry` (``_geometry``) says
which heads were captured and how the model scores them. ``_plan`` decides which inputs run in
which batch and shard (``sample=``, ``max_tokens=``, ``shard=``), ``_merge`` joins shard stores,
``_dtypes`` holds the storage formats (float32, float16, bfloat16) and their error bound.

The package is private because its public face is the top-level package: ``qkviz.capture`` (the
function users call most, which a public package of the same name would shadow), ``qkviz.Capture``,
``qkviz.HeadGeometry`` and ``qkviz.load``. Names load on first use, so importing the package costs
nothing until one is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["capture", "Capture", "HeadGeometry", "load", "merge", "verify"]

_HOME = {
    "capture": "_run",
    "Capture": "_container",
    "load": "_container",
    "HeadGeometry": "_geometry",
    "verify": "_checks",
    "merge": "_merge",
}

if TYPE_CHECKING:  # pragma: no cover
    from ._checks import verify
    from ._container import Capture, load
    from ._geometry import HeadGeometry
    from ._merge import merge
    from ._run import capture


def __getattr__(name: str) -> Any:
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qkviz._capture' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
