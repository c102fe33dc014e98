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

import numpy as np

from ..errors import InputError, StoreError
from . import _plan

__all__ = ["TextSource", "Planned", "open_source"]

_READ = 256  # rows per read from a dataset (datasets reads Arrow record batches)


def _package(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def _is_dataset(obj: Any) -> bool:
    return _package(obj) == "datasets" and hasattr(obj, "column_names")


class TextSource:
    """A forward-only reader of texts: :meth:`rows` yields them, checked as they are read.

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

    def rows(self) -> Iterator[tuple[int, str]]:
        """``(row number, text)`` of every row not read yet, checked as it is read."""
        for row, value in self._texts:
            self.position += 1
            yield row, self._check(row, value)


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


class Planned:
    """The batches a capture runs over a :class:`TextSource`, read forward in one pass.

    The same plan as for a list of inputs (:mod:`._plan`): ``sample`` (a known number of rows
    only: the draw needs it), then the prefix that fits ``max_tokens`` (counted batch by batch as
    the rows are read), batches of ``batch_size`` planned inputs, and ``shard`` (a known number of
    rows and no ``max_tokens`` only: the store records how many batches there are before the
    first one runs). A shard reads and checks every row but tokenises only its own batches.
    Memory: one batch of texts (plus the sample's indices).

    Parameters
    ----------
    source : TextSource
    batch_size : int
    sample, random_state :
        As :func:`qkviz.capture`.
    max_tokens : int or None
    count : callable, optional
        ``count(texts) -> tokens per text`` as the capture sees them (for ``max_tokens``).
    shard : (int, int) or None
    """

    def __init__(
        self,
        source: TextSource,
        batch_size: int,
        *,
        sample: Any = None,
        random_state: Any = 0,
        max_tokens: int | None = None,
        count: Any = None,
        shard: tuple[int, int] | None = None,
    ):
        n, what = source.n, source.what
        if sample is not None and n is None:
            raise InputError(
                f"sample= draws from a known number of inputs, and this {what} does not know how many it holds "
                "(a generator or an IterableDataset is read once, forward): pass a datasets.Dataset, a DataFrame "
                "or a list, or sample the stream itself (e.g. iterable_dataset.shuffle(seed=0).take(n))"
            )
        if shard is not None and (n is None or max_tokens is not None):
            why = "it does not know how many inputs it holds" if n is None else "max_tokens= is counted as it is read"
            raise InputError(
                f"shard= needs the number of batches before the first one runs, and this {what} cannot tell it "
                f"({why}): pass a datasets.Dataset, a DataFrame or a list"
                + ("" if n is None else " without max_tokens= (or sample= instead)")
                + ", or split the stream yourself (e.g. datasets' split_dataset_by_node)"
            )
        self.source = source
        self.batch_size = int(batch_size)
        self.order = None if sample is None else _plan.sample_inputs(int(n or 0), sample, random_state)
        self.max_tokens = max_tokens
        self.count = count
        self.shard = shard
        self.n_planned: int | None = None if n is None else (len(self.order) if self.order is not None else n)
        self.n_batches: int | None = None
        self.total: int | None = None  # inputs this run captures, when known before reading
        if self.n_planned is not None:
            plan = _plan.batches(self.n_planned, self.batch_size, shard)
            self.n_batches = len(_plan.batches(self.n_planned, self.batch_size))
            if max_tokens is None:
                self.total = sum(b1 - b0 for b0, b1 in plan)
        self._run = self._own()

    def _planned(self) -> Iterator[tuple[int, str]]:
        """``(input index, text)`` of the planned inputs before ``max_tokens``, in order."""
        if self.order is None:
            yield from self.source.rows()
            return
        want = iter(self.order.tolist())
        nxt = next(want, None)
        for row, text in self.source.rows():
            if nxt is None:
                return
            if row == nxt:
                yield row, text
                nxt = next(want, None)

    def _all(self) -> Iterator[tuple[int, int, list[str], np.ndarray]]:
        """``(b0, b1, texts, input indices)`` of every batch of the plan (every shard's)."""
        rows = self._planned()
        b0, used = 0, 0
        while True:
            chunk = list(itertools.islice(rows, self.batch_size))
            if not chunk:
                return
            idx = np.array([r for r, _ in chunk], np.int64)
            texts = [t for _, t in chunk]
            if self.max_tokens is not None:
                lengths = np.asarray(self.count(texts), np.int64)
                fit = int(np.searchsorted(np.cumsum(lengths) + used, self.max_tokens, side="right"))
                if fit == 0 and b0 == 0:
                    _plan.tokens_fit(lengths, self.max_tokens)  # raises: not even the first input fits
                used += int(lengths[:fit].sum())
                if fit < len(texts):  # the first input that would cross the limit, and all after it, are left
                    if fit:
                        yield b0, b0 + fit, texts[:fit], idx[:fit]
                    return
            yield b0, b0 + len(texts), texts, idx
            b0 += len(texts)

    def _own(self) -> Iterator[tuple[int, int, list[str], np.ndarray]]:
        for b, batch in enumerate(self._all()):
            if self.shard is None or b % self.shard[1] == self.shard[0]:
                yield batch

    def batches(self) -> Iterator[tuple[int, int, list[str], np.ndarray]]:
        """``(b0, b1, texts, input indices)`` of the batches this run captures, from where it is."""
        return self._run

    def head(self, n: int, where: Any = None) -> list[str]:
        """The texts of this run's first ``n`` inputs (whole batches: a resumed store ends on one);
        the batches read here are not run again."""
        out: list[str] = []
        while len(out) < n:
            batch = next(self._run, None)
            if batch is None or len(out) + len(batch[2]) > n:
                raise StoreError(
                    f"{where} does not end on a batch boundary of these inputs; it cannot be resumed. Use a new path.",
                    path=where,
                )
            out.extend(batch[2])
        return out
