"""Every error qkviz raises on purpose lives here.

Each message says what was expected, what arrived, and what to do about it. Errors that carry data
expose it as attributes so callers can react without parsing text.
"""

from __future__ import annotations

__all__ = [
    "QKVizError",
    "InputError",
    "ModelLoadError",
    "MissingDependencyError",
    "UnsupportedModelError",
    "StoreError",
    "EmbeddingError",
    "WidgetDataError",
]


class QKVizError(Exception):
    """Base class of all qkviz errors."""


class InputError(QKVizError, ValueError):
    """The inputs given to a qkviz function are unusable (empty, wrong type, out of range...)."""


class ModelLoadError(QKVizError, ValueError):
    """A model spec could not be resolved to a model (unknown name, no network, bad folder)."""

    def __init__(self, message: str, *, spec: object = None) -> None:
        super().__init__(message)
        self.spec = spec


class MissingDependencyError(QKVizError, ImportError):
    """An optional package is needed for this call; the message gives the install command."""

    def __init__(self, message: str, *, package: str, install: str) -> None:
        super().__init__(message)
        self.package = package
        self.install = install


class UnsupportedModelError(QKVizError, ValueError):
    """The model's attention scores are not ``scaling * q . k + mask``, so a q/k capture would lie.

    ``reason`` names why (e.g. a relative-position bias, or attention code that bypasses the
    transformers attention interface).
    """

    def __init__(self, message: str, *, reason: str, model_type: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.model_type = model_type


class StoreError(QKVizError, OSError):
    """A saved capture or embedding is missing, truncated, corrupted or of an unknown format version."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class EmbeddingError(QKVizError, ValueError):
    """A projection cannot be computed as asked (too few points, non-finite vectors, bad method...)."""


class WidgetDataError(QKVizError, ValueError):
    """Data given to the widget is inconsistent (wrong column length, unknown colour field...)."""
