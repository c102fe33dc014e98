"""Texts read lazily from a ``datasets.Dataset``, an ``IterableDataset`` or any iterable of rows.

A capture over a corpus should not hold the corpus: :class:`TextSource` reads the texts one batch
at a time, forward only, so memory stays bounded by a batch whatever the dataset's size (with
``capture(..., out=path)`` the captured vectors go to disk too). It accepts

* a Hugging Face ``datasets.Dataset`` or ``IterableDataset`` (read through ``iter(batch_size=)``,
  only the text column; the length is known for a ``Dataset``, so the progress bar has a total);
* a ``pandas.DataFrame`` (its text column);
* any other iterable — a generator, a file object, a list — of texts or of dict rows (a row's text
  is ``row[text_column]``). A generator is read once; lists are read lazily too.

Every text is checked as it is read (a string with content), and a bad row raises
:class:`~qkviz.errors.InputError` naming the row and what to do. Nothing imports ``datasets``:
a dataset is recognised by the package its class comes from.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any

from ..errors import InputError

__all__ = ["TextSource", "open_source", "length"]

_READ = 256  # rows per read from a dataset (datasets reads Arrow record batches)


def _package(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def _is_dataset(obj: Any) -> bool:
    return _package(obj) == "datasets" and hasattr(obj, "column_names")


class TextSource:
    """A forward-only reader of texts: :meth:`take` returns the next ones, checked.

    Parameters
    ----------
    texts : iterator of (row number, value)
        The values of the text column, in order (read lazily).
    n : int or None
        How many rows there are, when known.
    what : str
        How to name the input in messages (``"dataset"``, ``"input"``...).
    column : str or None
        The text column (for messages).
    """

    def __init__(self, texts: Iterator[tuple[int, Any]], n: int | None, what: str, column: str | None):
        self._texts = texts
        self.n = n
        self.what = what
        self.column = column
        self.position = 0  # rows read so far

    def take(self, count: int) -> list[str]:
        """The next ``count`` texts (fewer at the end, ``[]`` when exhausted)."""
        out: list[str] = []
        for row, value in itertools.islice(self._texts, count):
            out.append(self._check(row, value))
        self.position += len(out)
        return out

    def _check(self, row: int, value: Any) -> str:
        where = f"{self.what} row {row}" + (f", column {self.column!r}" if self.column else "")
        if not isinstance(value, str):
            raise InputError(
                f"{where} holds a {type(value).__name__}, not a text; pass text_column= the name of a text "
                "column (or map the rows to strings first)"
            )
        if not value.strip():
            raise InputError(
                f"{where} is an empty (or blank) string; every text needs some content — drop such rows first, "
                f"e.g. dataset.filter(lambda r: r[{self.column or 'text'!r}].strip())"
            )
        return value

    def batches(self, start: int, size: int) -> Iterator[tuple[int, list[str]]]:
        """``(first row, texts)`` of every batch of ``size`` rows from row ``start`` on."""
        if start < self.position:
            raise InputError(f"cannot read row {start} again: this {self.what} has been read up to row {self.position}")
        self.take(start - self.position)  # skip (and check) what a resumed capture already holds
        while True:
            b0 = self.position
            chunk = self.take(size)
            if not chunk:
                return
            yield b0, chunk


def length(items: Any) -> int | None:
    """The number of inputs, ``None`` when a stream does not know it."""
    return items.n if isinstance(items, TextSource) else len(items)


def _string_columns(features: Any) -> list[str]:
    out = []
    for name, f in (features or {}).items():
        if getattr(f, "dtype", None) in ("string", "large_string"):
            out.append(name)
    return out


def _pick_column(columns: list[str], strings: list[str] | None, text_column: str | None, what: str) -> str:
    """The text column: the one named, else ``"text"``, else the only string column."""
    if text_column is not None:
        if not isinstance(text_column, str):
            raise InputError(f"text_column must be a column name (str), got {text_column!r}")
        if text_column not in columns:
            raise InputError(
                f"the {what} has no column {text_column!r}; its columns are {columns}: pass text_column= one of them"
            )
        if strings is not None and text_column not in strings:
            raise InputError(
                f"column {text_column!r} of the {what} does not hold text; pass text_column= a text column"
                + (f": {strings}" if strings else " (this one has none)")
            )
        return text_column
    if "text" in columns and (strings is None or "text" in strings):
        return "text"
    if strings is not None and len(strings) == 1:
        return strings[0]
    raise InputError(
        f"which column of the {what} holds the texts? pass text_column= one of {strings if strings else columns}"
    )


def _from_dataset(ds: Any, text_column: str | None) -> TextSource:
    cls = type(ds).__name__
    if cls in ("DatasetDict", "IterableDatasetDict"):
        raise InputError(
            f"this is a {cls} of splits {list(ds)}; pass one split, e.g. dataset[{next(iter(ds), 'train')!r}]"
        )
    columns = list(ds.column_names or [])
    features = getattr(ds, "features", None)
    strings = _string_columns(features) if features else None
    if columns:
        col = _pick_column(columns, strings, text_column, "dataset")
    else:  # an IterableDataset from a generator knows its columns only once it is read
        col = text_column if text_column is not None else "text"
    n: int | None = None
    try:
        n = len(ds)
    except TypeError:  # an IterableDataset does not know its length
        n = None
    if n == 0:
        raise InputError("the dataset is empty: there is nothing to capture")
    view = ds.select_columns([col]) if columns else ds

    def rows() -> Iterator[tuple[int, Any]]:
        row = 0
        for batch in view.iter(batch_size=_READ):
            if col not in batch:
                raise InputError(
                    f"the dataset's rows have no column {col!r}; their columns are {list(batch)}: pass text_column="
                )
            for value in batch[col]:
                yield row, value
                row += 1

    return TextSource(_nonempty(rows(), "dataset"), n, "dataset", col)


def _nonempty(rows: Iterator[tuple[int, Any]], what: str) -> Iterator[tuple[int, Any]]:
    """``rows``, raising :class:`InputError` when there is none at all."""
    first = next(rows, None)
    if first is None:
        raise InputError(f"the {what} is empty: there is nothing to capture")
    return itertools.chain([first], rows)


def open_source(inputs: Any, text_column: str | None) -> tuple[TextSource | None, Any]:
    """``(source, inputs)``: a :class:`TextSource` for inputs that are read lazily, else ``None``
    and the inputs for :func:`._inputs.normalize_inputs` (a generator that is not a text stream,
    e.g. of images, comes back as a list: its first item has been read).

    Datasets, data frames, and iterables whose rows are dicts are sources; so is any iterable when
    ``text_column`` is given, and any iterator (a generator) whose first item is a text. Lists of
    texts and of images are left as they are.
    """
    source = _open(inputs, text_column)
    if isinstance(source, list):
        return None, source
    return source, inputs


def _open(inputs: Any, text_column: str | None) -> TextSource | list[Any] | None:
    if _is_dataset(inputs):
        return _from_dataset(inputs, text_column)
    if _package(inputs) == "pandas" and hasattr(inputs, "columns"):  # a DataFrame: its text column
        columns = [str(c) for c in inputs.columns]
        from pandas.api.types import is_object_dtype, is_string_dtype

        strings = [str(c) for c in inputs.columns if is_string_dtype(inputs[c]) or is_object_dtype(inputs[c])]
        col = _pick_column(columns, strings, text_column, "data frame")
        if len(inputs) == 0:
            raise InputError("the data frame is empty: there is nothing to capture")
        return TextSource(enumerate(inputs[col]), len(inputs), "data frame", col)
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Iterable):
        if text_column is not None and isinstance(inputs, Mapping):
            raise InputError("text_column= reads dict rows from a list (or an iterable) of them; pass a list of dicts")
        return None
    n = len(inputs) if isinstance(inputs, Sized) else None
    it = iter(inputs)
    first = next(it, None)
    if first is None:
        if n is None or text_column is not None:
            raise InputError("the inputs are empty: there is nothing to capture")
        return None  # an empty list: normalize_inputs says so
    rows = itertools.chain([first], it)
    if isinstance(first, Mapping) or text_column is not None:
        col = text_column if text_column is not None else "text"
        return TextSource(_column(rows, col), n, "input", col)
    if n is None and isinstance(first, str):  # a generator of texts: stream it
        return TextSource(enumerate(rows), None, "input", None)
    if n is None:  # a generator of images (or of something else): normalize_inputs reads it whole
        return list(rows)
    return None


def _column(rows: Iterator[Any], col: str) -> Iterator[tuple[int, Any]]:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(
                f"input row {i} is a {type(row).__name__}; with text_column= every row must be a dict holding {col!r}"
            )
        if col not in row:
            raise InputError(f"input row {i} has no {col!r}; its keys are {list(row)[:10]}: pass text_column=")
        yield i, row[col]


def batches(items: Any, start: int, size: int) -> Iterator[tuple[int, Any]]:
    """``(first input, inputs)`` of every batch from input ``start`` on: a source reads them lazily."""
    if isinstance(items, TextSource):
        yield from items.batches(start, size)
        return
    for b0 in range(start, len(items), size):
        yield b0, items[b0 : b0 + size]


def head(items: Any, n: int) -> list[Any]:
    """The first ``n`` inputs (a source reads them, so its batches continue after them)."""
    if isinstance(items, TextSource):
        if items.position:
            raise InputError(f"cannot read the first {n} rows again: the {items.what} has been read already")
        return items.take(n)
    return list(items[:n])
