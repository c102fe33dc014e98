"""How a capture finds the model that made it again, to capture new inputs the same way.

:func:`qkviz.capture` leaves a :class:`ModelHandle` on the capture it returns. The handle holds the
model only by weak reference (a capture never keeps gigabytes of weights alive on its own) plus the
small tokenizer or image processor, and it is never saved or pickled: a model object is live
state, not data. :func:`resolve_model` then finds the model in this order:

1. the ``model`` the caller passes;
2. the model the handle still reaches (the user's own model object, while the session holds it);
3. the spec the capture records, when it can be loaded again by name: a named offline model, a
   model folder that still exists, or a hub id. A model passed to ``capture`` as a Python object
   is never reloaded from its ``name_or_path``: its weights may differ from what that names.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import EmbeddingError

if TYPE_CHECKING:
    from ..models import LoadedModel
    from ._container import Capture

__all__ = ["ModelHandle", "resolve_model"]


class ModelHandle:
    """A weak handle on the model of a capture (see the module docstring)."""

    def __init__(self, lm: LoadedModel):
        self.spec = dict(lm.spec)
        self._model = weakref.ref(lm.model)
        self.tokenizer = lm.tokenizer
        self.processor = lm.processor

    def get(self) -> LoadedModel | None:
        """The model, if it is still alive in this session."""
        from ..models import LoadedModel

        net = self._model()
        if net is None:
            return None
        return LoadedModel(net, self.tokenizer, self.processor, dict(self.spec))

    def __reduce__(self) -> Any:  # a live model is not data: a pickled capture forgets it
        return (_no_handle, ())

    def __repr__(self) -> str:
        alive = "alive" if self._model() is not None else "released"
        return f"ModelHandle({self.spec.get('name')!r}, {alive})"


def _no_handle() -> None:
    return None


def resolve_model(capture: Capture, model: Any = None) -> LoadedModel:
    """The loaded model to capture new inputs for ``capture`` with (see the module docstring).

    Raises
    ------
    EmbeddingError
        No model given, the original one is gone, and the recorded spec cannot be loaded again.
    """
    from ..models import load_model

    if model is not None:
        return load_model(model)
    handle = capture._model_handle
    if isinstance(handle, ModelHandle):
        lm = handle.get()
        if lm is not None:
            return lm
    spec = capture.model or {}
    name, source = spec.get("name"), str(spec.get("source", ""))
    reloadable = bool(name) and (
        source.startswith("offline:") or source == "hub" or (source == "folder" and os.path.isdir(str(name)))
    )
    if not reloadable:
        why = (
            "it was captured from a model object that is no longer alive in this session"
            if source == "object"
            else f"its recorded model {name!r} (source {source or 'unknown'}) cannot be loaded again"
        )
        raise EmbeddingError(
            f"cannot capture new inputs for this capture: {why}. Pass the model that made it: "
            "place(..., model=my_model) or (model, tokenizer)."
        )
    return load_model(name)
