"""Captures with structure for the embedding tests (real ``Capture`` objects; see ``tests/_fakes.py``)."""

from __future__ import annotations

from _fakes import capture_from_arrays, synthetic_capture

__all__ = ["capture_from_arrays", "synthetic_capture"]
