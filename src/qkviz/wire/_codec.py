"""Binary codec for the widget wire format: numpy arrays <-> ``{"view", "dtype", "shape"}``.

Arrays cross to the front end as raw little-endian buffers (ipywidgets moves any memoryview it finds
inside a trait value or a custom message as a binary frame), never as JSON lists of numbers. The JS
side (``js/src/wire/codec.js``) turns each into a typed array over the same buffer, without copying.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WidgetDataError

__all__ = ["DTYPES", "array_to_binary", "binary_to_array", "pack_buffers", "MAX_MESSAGE_BYTES"]

#: The only dtypes the front end decodes; anything else is a bug on the sending side.
DTYPES = ("float32", "uint32", "int32", "uint8")

#: Budget for one message (trait state or command response). Websocket frames above ~10 MiB are
#: refused by jupyter_server, so we stay well under it and chunk larger payloads.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def array_to_binary(array: Any, dtype: str | None = None) -> dict[str, Any]:
    """Encode an array as a wire dict.

    Parameters
    ----------
    array : array-like
        Any shape. Converted to ``dtype`` (or kept, when ``dtype`` is None) and made C-contiguous.
    dtype : {"float32", "uint32", "int32", "uint8"}, optional
        Target dtype; must be in :data:`DTYPES`.

    Returns
    -------
    dict
        ``{"view": memoryview, "dtype": str, "shape": list[int]}``.

    Examples
    --------
    >>> w = array_to_binary(np.arange(6).reshape(3, 2), "float32")
    >>> w["dtype"], w["shape"], w["view"].nbytes
    ('float32', [3, 2], 24)
    """
    arr = np.asarray(array)
    name = dtype or arr.dtype.name
    if name not in DTYPES:
        raise WidgetDataError(
            f"cannot send an array of dtype {name!r} to the widget; expected one of {DTYPES}. "
            "Cast it first (e.g. arr.astype('float32'))."
        )
    arr = np.ascontiguousarray(arr, dtype=np.dtype(name).newbyteorder("<"))
    return {"view": arr.reshape(-1).view(np.uint8).data, "dtype": name, "shape": list(arr.shape)}


def binary_to_array(wire: dict[str, Any]) -> np.ndarray:
    """Decode a wire dict made by :func:`array_to_binary` (or by the front end).

    Parameters
    ----------
    wire : dict
        ``{"view": bytes-like, "dtype": str, "shape": list[int]}``.

    Returns
    -------
    numpy.ndarray
        A read-only view of the buffer with the given dtype and shape.

    Examples
    --------
    >>> binary_to_array(array_to_binary(np.array([1, 2], "uint32"))).tolist()
    [1, 2]
    """
    try:
        name, shape, view = wire["dtype"], tuple(int(s) for s in wire["shape"]), wire["view"]
    except (KeyError, TypeError) as err:
        raise WidgetDataError(f"expected a dict with view/dtype/shape, got {type(wire).__name__}") from err
    if name not in DTYPES:
        raise WidgetDataError(f"unsupported wire dtype {name!r}; expected one of {DTYPES}")
    dt = np.dtype(name).newbyteorder("<")
    buf = memoryview(view).cast("B")
    expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if buf.nbytes != expected:
        raise WidgetDataError(
            f"wire buffer holds {buf.nbytes} bytes but shape {list(shape)} of {name} needs {expected}"
        )
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def pack_buffers(obj: Any) -> tuple[Any, list[memoryview]]:
    """Replace every numpy array inside ``obj`` by ``{"$buffer": i, "dtype", "shape"}``.

    Custom messages carry buffers as a separate list, so command responses reference them by index;
    ``js/src/wire/codec.js`` (``unpackBuffers``) reverses it.

    Parameters
    ----------
    obj : dict, list, scalar or numpy.ndarray
        Nested JSON-like value.

    Returns
    -------
    tuple
        The JSON-able value and the buffer list.

    Examples
    --------
    >>> msg, bufs = pack_buffers({"w": np.zeros((2, 2), "float32"), "n": 2})
    >>> msg["w"], len(bufs), bufs[0].nbytes
    ({'$buffer': 0, 'dtype': 'float32', 'shape': [2, 2]}, 1, 16)
    """
    buffers: list[memoryview] = []

    def walk(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            wire = array_to_binary(value)
            buffers.append(wire.pop("view"))
            return {"$buffer": len(buffers) - 1, **wire}
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    return walk(obj), buffers
