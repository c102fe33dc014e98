"""What crosses to the browser: the widget state built from an embedding, and the binary codec.

Used by both the notebook widget (:mod:`qkviz.widget`) and the standalone page
(:mod:`qkviz.export`); imports neither, and nothing from anywidget.
"""

from ._codec import MAX_MESSAGE_BYTES, array_to_binary, binary_to_array, pack_buffers
from ._selection import Uploads, pack_selection, unpack_selection
from ._state import (
    AUTO_SCORES_LIMIT,
    CELL_FILL,
    COLOR_FIELDS,
    PARKED,
    PATCH_COLOR,
    SINGLE_SCALE,
    THEMES,
    VALUE_NORM,
    View,
    WidgetState,
    valid_threshold,
)

__all__ = [
    "WidgetState",
    "View",
    "COLOR_FIELDS",
    "PATCH_COLOR",
    "VALUE_NORM",
    "AUTO_SCORES_LIMIT",
    "THEMES",
    "SINGLE_SCALE",
    "CELL_FILL",
    "PARKED",
    "array_to_binary",
    "binary_to_array",
    "pack_buffers",
    "MAX_MESSAGE_BYTES",
    "pack_selection",
    "unpack_selection",
    "Uploads",
    "valid_threshold",
]
