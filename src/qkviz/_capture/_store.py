"""The capture store: a folder of safetensors parts, parquet tables and a ``meta.json``.

A store is a directory (``run.qkv/``)::

    meta.json                      format name and version, model spec, capture parameters, geometry,
                                   status ("partial" while a streaming capture runs, then "complete"),
                                   and per part: file sizes and a CRC-32 per tensor / table
    part-00000.safetensors         q.<layer>.<head>, k.<layer>.<kv_head>, v.<layer>.<kv_head>:
                                   float32, float16 or uint16 (bfloat16 bits) [token, d_head]
                                   for the tokens of this part
    part-00000.tokens.parquet      the part's rows of the token table (global seq ids)
    part-00000.sequences.parquet   the part's rows of the sequence table (global offsets)
    part-00000.images.npy          uint8 [seq, h, w, 3] thumbnails (image captures only)
    terms-NNNNN.safetensors        the extra score terms of every layer that has some (version 2):
                                   <name>.<layer> with name sink, alibi, offset_bias, rel_index,
                                   pos_key, pos_query (see qkviz._capture._terms); written again under
                                   the number of the part that extends a table (meta.json names the
                                   current file, the previous one goes once meta.json moves on)

A whole capture saved at once is one part; a streaming capture appends one part per flushed batch.
Each file is written to a temporary name and renamed into place, and ``meta.json`` (also replaced
atomically) only lists finished parts, so an interrupted run leaves a readable partial store.
Safetensors files are read lazily: one head's tensors load without reading the others.

This module knows the file names; :class:`qkviz.Capture` knows only the two tensor sources
defined here (:class:`MemoryTensors` while a capture is in memory, :class:`DiskTensors` once it is
in a store).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._fs import LIB_TEMP, META, array_crc, atomic_write_bytes, field, file_crc, read_header, temp_sibling, writing
from ..errors import StoreError
from ._dtypes import stored_dtype

__all__ = [
    "FORMAT",
    "VERSION",
    "MemoryTensors",
    "DiskTensors",
    "StoreWriter",
    "StoreContents",
    "read_meta",
    "read_store",
    "read_terms",
    "write_store",
    "done_sequences",
    "tensor_key",
    "tensor_kind",
    "terms_key",
    "OWN",
]

FORMAT = "qkviz.capture"
VERSION = 2
READS = (1, 2)  # version 1: no score terms (plain scaling · q·k only)

_TERMS = re.compile(r"^terms(-\d{5})?\.safetensors$")


#: The safetensors dtypes a store holds (bfloat16 is stored as its raw bits, U16).
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "U16": "uint16"}


def tensor_kind(kind: str, attn: str = "self") -> str:
    """``"q"`` for the only attention of a model, ``"q.<attn>"`` for one of several (encoder–decoder)."""
    return kind if attn == "self" else f"{kind}.{attn}"


#: Every name a store folder holds that qkviz wrote: the header, the parts, and the temporaries of
#: a write in progress. Anything else in the folder is the user's (see ``StoreWriter`` and
#: :func:`qkviz._fs.check_target`).
_PART = re.compile(r"^part-\d{5}\.(safetensors|tokens\.parquet|sequences\.parquet|images\.npy)$")
OWN = re.compile(
    r"^(meta\.json|terms(-\d{5})?\.safetensors|part-\d{5}\.(safetensors|tokens\.parquet|sequences\.parquet|images\.npy)"
    r"|\.(meta\.json|terms(-\d{5})?\.safetensors|part-\d{5}\.[a-z.]+?)(\.qkviz-\d+-[0-9a-f]{8})?\.tmp"
    rf"|{LIB_TEMP})$"
)


def tensor_key(kind: str, layer: int, index: int) -> str:
    """The safetensors key of one head's vectors: ``q.<layer>.<head>``, ``k.<layer>.<kv_head>``...

    ``kind`` is a :func:`tensor_kind`: encoder–decoder captures store ``q.cross.<layer>.<head>``...
    """
    return f"{kind}.{layer}.{index}"


def terms_key(name: str, layer: int, attn: str = "self") -> str:
    """The key of one layer's score term in the terms file: ``<name>.<layer>`` (or
    ``<name>.<attn>.<layer>`` for one of several attentions)."""
    return f"{name}.{layer}" if attn == "self" else f"{name}.{attn}.{layer}"


def _stem(part: dict[str, Any]) -> str:
    return part["file"][: -len(".safetensors")]


# --------------------------------------------------------------------------------------------
# tensor sources: where Capture.q/k/v read from
# --------------------------------------------------------------------------------------------


class MemoryTensors:
    """In-memory tensors kept as the per-batch chunks ``[token, head, d_head]`` the capture made.

    Joining them into one array per head happens on access (a small copy of one head) rather than
    once for everything at the end of a capture, which would copy every vector twice more.
    """

    def __init__(
        self,
        chunks: dict[str, dict[int, list[np.ndarray]]],
        index: dict[str, tuple[int, ...]],
        batch_tokens: list[int] | None = None,
    ):
        self.chunks = chunks  # kind -> layer -> list of [row_in_batch, head_or_kv, d]
        self.index = index  # kind -> stored head (or kv head) numbers, in axis-1 order
        # tokens of each batch chunk: with several token streams (encoder-decoder) a kind's rows
        # are only those of its stream, so the token count cannot be read off the tensors
        if batch_tokens is None:
            first = next(iter(chunks.get("q", {}).values()), [])
            batch_tokens = [int(x.shape[0]) for x in first]
        self.batch_tokens = batch_tokens

    def has(self, kind: str) -> bool:
        return bool(self.chunks.get(kind))

    def dtype(self) -> str:
        """The storage format of the vectors (``qkviz._capture._dtypes``)."""
        first = next(a for layers in self.chunks.values() for parts in layers.values() for a in parts)
        return stored_dtype(first)

    def nbytes(self) -> int:
        """Bytes of every stored vector."""
        return sum(a.nbytes for layers in self.chunks.values() for parts in layers.values() for a in parts)

    def get(self, kind: str, layer: int, idx: int, *, copy: bool = True) -> np.ndarray:
        """``[token, d]`` vectors of one head; ``copy=False``: a read-only view where one exists."""
        pos = self.index[kind].index(idx)
        parts = self.chunks[kind][layer]
        if len(parts) == 1:
            if not copy:
                view = parts[0][:, pos]
                view.flags.writeable = False
                return view
            return parts[0][:, pos].copy()  # a copy even when the slice is contiguous: callers own it
        out = np.concatenate([a[:, pos] for a in parts])
        out.flags.writeable = copy
        return out

    def parts(self, max_bytes: int = 256 << 20) -> list[tuple[int, int]]:
        """Consecutive groups of batch chunks ``[first, stop)`` of at most about ``max_bytes`` each."""
        n = len(self.batch_tokens)
        sizes = [sum(parts[i].nbytes for d in self.chunks.values() for parts in d.values()) for i in range(n)]
        groups, start, acc = [], 0, 0
        for i, size in enumerate(sizes):
            if acc and acc + size > max_bytes:
                groups.append((start, i))
                start, acc = i, 0
            acc += size
        groups.append((start, n))
        return groups

    def part_tensors(self, group: tuple[int, int]) -> tuple[int, dict[str, np.ndarray]]:
        """``(n_tokens, {key: [token, d]})`` for the batch chunks ``group``."""
        a, b = group
        out = {}
        for kind, layers in self.chunks.items():
            for layer, parts in layers.items():
                sel = parts[a:b]
                for pos, h in enumerate(self.index[kind]):
                    out[tensor_key(kind, layer, h)] = np.concatenate([x[:, pos] for x in sel])
        return sum(self.batch_tokens[a:b]), out

    def iter_parts(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(n_tokens, {key: [token, d]})`` for each group of batch chunks, in token order."""
        for group in self.parts():
            yield self.part_tensors(group)


class DiskTensors:
    """Lazy reader over the safetensors parts of a store, with a CRC check per tensor read."""

    def __init__(self, root: pathlib.Path, parts: list[dict[str, Any]], cache: int = 16):
        self.root = root
        self.parts_meta = parts
        self._cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._size = cache
        self._lock = threading.Lock()  # heads of one store are read from several threads (embed)
        self._headers: dict[int, tuple[int, dict[str, Any]]] = {}

    def _entry(self, i: int, key: str) -> tuple[int, np.dtype[Any], list[int], int]:
        """``(file offset, dtype, shape, bytes)`` of tensor ``key`` in part ``i`` (safetensors
        layout: an 8-byte little-endian header length, the JSON header, then the data)."""
        f = self.root / self.parts_meta[i]["file"]
        if i not in self._headers:
            try:
                with open(f, "rb") as fh:
                    n = int.from_bytes(fh.read(8), "little")
                    header = json.loads(fh.read(n))
            except (OSError, ValueError) as e:
                raise StoreError(f"cannot read {f}: {e}. The store is damaged; re-run the capture.", path=f) from e
            self._headers[i] = (8 + n, header)
        base, header = self._headers[i]
        info = header.get(key)
        if info is None:
            raise StoreError(f"{f} lacks tensor {key!r}; the store is damaged. Re-run the capture.", path=f)
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
        a, b = info["data_offsets"]
        return base + int(a), dtype, list(info["shape"]), int(b) - int(a)

    def __getstate__(self) -> dict[str, Any]:
        # a lock does not pickle (a capture travels to Dask workers): the reader starts afresh there
        state = dict(self.__dict__)
        state.update(_lock=None, _cache=OrderedDict(), _headers={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def has(self, kind: str) -> bool:
        return any(k.startswith(kind + ".") for p in self.parts_meta[:1] for k in p["crc32"])

    def dtype(self) -> str:
        """The storage format of the vectors, from the first part's header (no tensor is read)."""
        from safetensors import safe_open

        part = self.parts_meta[0]
        f = self.root / part["file"]
        try:
            with safe_open(str(f), framework="numpy") as fh:
                code = fh.get_slice(next(iter(fh.keys()))).get_dtype()
        except Exception as e:
            raise StoreError(f"cannot read {f}: {e}. The store is damaged; re-run the capture.", path=f) from e
        return {"F16": "float16", "U16": "bfloat16", "BF16": "bfloat16"}.get(code, "float32")

    def nbytes(self) -> int:
        """Bytes of every stored vector, from the parts' headers (no tensor is read)."""
        total = 0
        for i in range(len(self.parts_meta)):
            self._entry(i, next(iter(self.parts_meta[i]["crc32"])))  # parses the header once
            header = self._headers[i][1]
            total += sum(
                b - a for key, info in header.items() if key != "__metadata__" for a, b in [info["data_offsets"]]
            )
        return total

    def parts(self) -> list[int]:
        return list(range(len(self.parts_meta)))

    def part_tensors(self, i: int) -> tuple[int, dict[str, np.ndarray]]:
        """``(n_tokens, {key: [token, d]})`` of stored part ``i`` (checksums verified)."""
        from safetensors import safe_open

        part = self.parts_meta[i]
        f = self.root / part["file"]
        out = {}
        try:
            with safe_open(str(f), framework="numpy") as fh:
                for key in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                    out[key] = fh.get_tensor(key)
        except Exception as e:
            raise StoreError(f"cannot read {f}: {e}. The store is damaged; re-run the capture.", path=f) from e
        for key, a in out.items():
            if array_crc(a) != part["crc32"].get(key):
                raise StoreError(f"{f} is corrupted: tensor {key!r} does not match its checksum.", path=f)
        return part["n_tokens"], out

    def iter_parts(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(n_tokens, {key: [token, d]})`` for each stored part, in token order."""
        for i in self.parts():
            yield self.part_tensors(i)

    def get(self, kind: str, layer: int, idx: int, *, copy: bool = True) -> np.ndarray:
        """``[token, d]`` vectors of one head; ``copy=False``: the cached array itself, read-only
        (for readers that only read, such as the static export's attention: no 5 MB copy per head)."""
        ck = (kind, layer, idx)
        with self._lock:
            hit = self._cache.get(ck)
            if hit is not None:
                self._cache.move_to_end(ck)
        if hit is not None:
            return hit.copy() if copy else hit  # callers own what they get; the cached copy stays intact
        key = tensor_key(kind, layer, idx)
        # Read each part's slice straight into one array: the parts' headers are parsed once (a
        # store of many parts would otherwise parse every header again for every head read).
        entries = [self._entry(i, key) for i in range(len(self.parts_meta))]
        dtype, width = entries[0][1], entries[0][2][1:]
        rows = sum(shape[0] for _, _, shape, _ in entries)
        out = np.empty((rows, *width), dtype)
        at = 0
        for i, (start, _, shape, nbytes) in enumerate(entries):
            part = self.parts_meta[i]
            f = self.root / part["file"]
            view = out[at : at + shape[0]]
            with open(f, "rb") as fh:
                fh.seek(start)
                got = fh.readinto(view.data.cast("B"))
            if got != nbytes:
                raise StoreError(f"{f} is truncated: tensor {key!r} is cut short. Re-run the capture.", path=f)
            if array_crc(view) != part["crc32"].get(key):
                raise StoreError(
                    f"{f} is corrupted: tensor {key!r} does not match its checksum. Re-run the capture.",
                    path=f,
                )
            at += shape[0]
        out.flags.writeable = False  # the cached array is never written; `copy` hands out writable copies
        with self._lock:
            self._cache[ck] = out
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return out.copy() if copy else out


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


class StoreWriter:
    """Append parts to a store directory; ``meta.json`` always lists only finished parts.

    Parameters
    ----------
    root : path
        The store directory (created if missing).
    header : dict
        Everything in ``meta.json`` except ``parts`` and ``status``.
    resume : bool
        Keep the parts already listed in an existing ``meta.json`` and append after them.
    """

    def __init__(self, root: pathlib.Path, header: dict[str, Any], *, resume: bool = False):
        self.root = pathlib.Path(root)
        self.header = dict(header)
        self.parts: list[dict[str, Any]] = []
        self.terms: dict[str, Any] | None = None  # meta.json's record of the terms file
        self._terms_crc: dict[str, int] = {}
        self._replaced_terms: str | None = None  # the previous terms file, removed once meta.json moves on
        if resume and (self.root / META).is_file():
            meta = read_meta(self.root)
            self.parts = meta["parts"]
            self.terms = meta.get("terms_file")
            self._terms_crc = dict(self.terms["crc32"]) if self.terms else {}
            self._drop_strays()
            self._write_meta("partial")
        elif self.root.is_dir():  # an empty folder (or one a killed run left before its meta.json)
            self._drop_strays()
            self._write_meta("partial")
        else:
            # the folder appears with its meta.json already in it: a run killed this early leaves
            # nothing at root, rather than a folder no reader recognises
            tmp = temp_sibling(self.root)
            tmp.mkdir(parents=True)
            self.root, final = tmp, self.root
            self._write_meta("partial")
            os.rename(tmp, final)
            self.root = final

    def _drop_strays(self) -> None:
        """Remove the part files a previous run was writing when it stopped (never anything else).

        Only names qkviz gives to parts and their temporaries are touched; files the user put in
        the folder (notes, figures...) stay.
        """
        listed = {META} | {f for p in self.parts for f in p["files"]} | ({self.terms["file"]} if self.terms else set())
        for f in self.root.iterdir():
            if f.name in listed or not OWN.match(f.name) or not f.is_file():
                continue
            f.unlink()

    @property
    def n_seqs(self) -> int:
        return sum(p["n_seqs"] for p in self.parts)

    @property
    def n_tokens(self) -> int:
        return sum(p["n_tokens"] for p in self.parts)

    def _write_meta(self, status: str) -> None:
        meta = {**self.header, "status": status, "parts": self.parts}
        if self.terms is not None:
            meta["terms_file"] = self.terms
        atomic_write_bytes(self.root / META, json.dumps(meta, indent=1).encode())
        if self._replaced_terms is not None:  # meta.json no longer names it
            (self.root / self._replaced_terms).unlink(missing_ok=True)
            self._replaced_terms = None

    def append(
        self,
        tensors: Mapping[str, np.ndarray],
        tokens: pd.DataFrame,
        sequences: pd.DataFrame,
        images: np.ndarray | None = None,
    ) -> None:
        """Write one part (tensors ``{key: [token, d_head]}`` and the matching table rows)."""
        from safetensors.numpy import save_file

        i = len(self.parts)
        stem = f"part-{i:05d}"
        files: dict[str, dict[str, int]] = {}

        def place(name: str, write) -> None:
            final = self.root / name
            tmp = self.root / f".{name}.tmp"
            with writing(final, "part", cleanup=tmp):
                write(tmp)
                with open(tmp, "rb+") as fh:  # durable before meta.json lists it
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            files[name] = {
                "bytes": final.stat().st_size,
                "crc32": file_crc(final) if not name.endswith(".safetensors") else 0,
            }

        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        place(f"{stem}.safetensors", lambda p: save_file(arrays, str(p)))
        place(f"{stem}.tokens.parquet", lambda p: tokens.reset_index(drop=True).to_parquet(p, index=False))
        place(f"{stem}.sequences.parquet", lambda p: sequences.reset_index(drop=True).to_parquet(p, index=False))
        if images is not None:

            def save_images(p: pathlib.Path) -> None:
                with open(p, "wb") as fh:
                    np.save(fh, images, allow_pickle=False)

            place(f"{stem}.images.npy", save_images)
        self.parts.append(
            {
                "file": f"{stem}.safetensors",
                "files": files,
                "n_tokens": int(len(tokens)),
                "n_seqs": int(len(sequences)),
                "crc32": {k: array_crc(a) for k, a in arrays.items()},
            }
        )
        self._write_meta("partial")

    def set_terms(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Write the score terms (``{terms_key: array}``) if they changed; call before :meth:`append`.

        The file is replaced atomically; ``meta.json`` names its new checksums with the next part.
        """
        from safetensors.numpy import save_file

        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        crc = {k: array_crc(a) for k, a in arrays.items()}
        if not arrays or crc == self._terms_crc:
            return
        # A new name per version: meta.json keeps naming the previous file (with its size and
        # checksums) until the next part is listed, so a run killed in between still loads.
        name = f"terms-{len(self.parts):05d}.safetensors"
        final, tmp = self.root / name, self.root / f".{name}.tmp"
        with writing(final, "score terms", cleanup=tmp):
            save_file(arrays, str(tmp))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        if self.terms is not None and self.terms["file"] != name:
            self._replaced_terms = self.terms["file"]
        self._terms_crc = crc
        self.terms = {"file": name, "bytes": final.stat().st_size, "crc32": crc}

    def finish(self) -> None:
        self._write_meta("complete")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def holds_nothing(root: pathlib.Path) -> bool:
    """Whether ``root`` is an empty folder, or holds only temporaries of a run killed before its
    first ``meta.json`` (a new store may be started there)."""
    return root.is_dir() and all(OWN.match(e.name) and e.name.startswith(".") for e in root.iterdir())


def read_meta(root: pathlib.Path) -> dict[str, Any]:
    """Parse and check ``meta.json``: format, version, the fields readers use, and the listed files
    (present, with the sizes they were written with).

    Raises
    ------
    StoreError
        Anything missing, mistyped, truncated or of another format; the message names the file.
    """
    root = pathlib.Path(root)
    meta = read_header(root, FORMAT, READS, "capture store")
    where = root / META
    field(meta, "model", dict, where)
    field(meta, "params", dict, where)
    if "status" in meta:
        field(meta, "status", str, where)
    parts = field(meta, "parts", list, where)
    sizes: list[tuple[str, int]] = []
    for i, part in enumerate(parts):
        at = pathlib.Path(f"{where} (part {i})")
        field(part, "file", str, at, lambda f: bool(_PART.match(f)) and f.endswith(".safetensors"))
        files = field(part, "files", dict, at)
        field(part, "n_tokens", int, at, lambda n: n >= 0)
        field(part, "n_seqs", int, at, lambda n: n >= 0)
        crcs = field(part, "crc32", dict, at)
        if not all(isinstance(v, int) for v in crcs.values()):
            raise StoreError(f"{at}: field 'crc32' holds non-integer checksums; the store is damaged", path=where)
        stem = _stem(part)
        for name in (part["file"], f"{stem}.tokens.parquet", f"{stem}.sequences.parquet"):
            info = field(files, name, dict, at)
            field(info, "bytes", int, at)
            field(info, "crc32", int, at)
        for name, info in files.items():
            if not isinstance(name, str) or not _PART.match(name) or not isinstance(info, dict):
                raise StoreError(f"{at}: lists {name!r}, which is not a part file; the store is damaged", path=where)
            sizes.append((name, info["bytes"]))
    if meta.get("terms_file") is not None:
        tf = field(meta, "terms_file", dict, where)
        sizes.append((field(tf, "file", str, where, lambda f: bool(_TERMS.match(f))), field(tf, "bytes", int, where)))
    for name, expected in sizes:
        f = root / name
        if not f.is_file():
            raise StoreError(f"{f} is missing; the store is incomplete", path=f)
        size = f.stat().st_size
        if size != expected:
            raise StoreError(
                f"{f} is {size} bytes but was written as {expected}: the file is truncated or "
                "was modified. Re-run the capture.",
                path=f,
            )
    return meta


def _read_table(root: pathlib.Path, name: str, info: dict[str, int]) -> pd.DataFrame:
    f = root / name
    if file_crc(f) != info["crc32"]:
        raise StoreError(f"{f} is corrupted (checksum mismatch); re-run the capture", path=f)
    return pd.read_parquet(f)


def done_sequences(root: pathlib.Path, meta: dict[str, Any]) -> pd.DataFrame | None:
    """The sequence table of the parts a (partial) store holds, or ``None`` when it has none."""
    if not meta["parts"]:
        return None
    return pd.concat(
        [
            _read_table(root, f"{_stem(p)}.sequences.parquet", p["files"][f"{_stem(p)}.sequences.parquet"])
            for p in meta["parts"]
        ],
        ignore_index=True,
    )


@dataclass
class StoreContents:
    """What :func:`read_store` found: the header, the tables, the thumbnails and a lazy tensor source."""

    meta: dict[str, Any]
    tokens: pd.DataFrame
    sequences: pd.DataFrame
    images: np.ndarray | None
    tensors: DiskTensors
    terms: dict[str, np.ndarray]


def read_terms(root: pathlib.Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The score terms of a store (``{terms_key: array}``; empty for plain models), checksums verified."""
    info = meta.get("terms_file")
    if not info:
        return {}
    from safetensors.numpy import load_file

    f = root / info["file"]
    try:
        out = load_file(str(f))
    except Exception as e:
        raise StoreError(f"cannot read {f}: {e}. The store is damaged; re-run the capture.", path=f) from e
    for key, a in out.items():
        if array_crc(a) != info["crc32"].get(key):
            raise StoreError(f"{f} is corrupted: term {key!r} does not match its checksum.", path=f)
    return out


def read_store(path: pathlib.Path) -> StoreContents:
    """Read a store's header and tables (checksums verified); tensors stay on disk.

    A partial store (an interrupted streaming capture) reads with a warning and holds the sequences
    finished so far.

    Raises
    ------
    StoreError
        Missing, truncated or corrupted files, or an unknown format version.
    """
    root = pathlib.Path(path)
    meta = read_meta(root)
    parts = meta["parts"]
    if not parts:
        raise StoreError(
            f"{root} holds no finished batch yet (the capture stopped before its first batch was written); re-run it",
            path=root,
        )
    if meta.get("status") != "complete":
        warnings.warn(
            f"{root} is a partial capture ({sum(p['n_seqs'] for p in parts)} sequences written before "
            "it stopped); resume it with qkviz.capture(..., out=path, resume=True)",
            stacklevel=3,
        )
    tok, seq, imgs = [], [], []
    for p in parts:
        stem = _stem(p)
        tok.append(_read_table(root, f"{stem}.tokens.parquet", p["files"][f"{stem}.tokens.parquet"]))
        seq.append(_read_table(root, f"{stem}.sequences.parquet", p["files"][f"{stem}.sequences.parquet"]))
        if f"{stem}.images.npy" in p["files"]:
            f = root / f"{stem}.images.npy"
            if file_crc(f) != p["files"][f.name]["crc32"]:
                raise StoreError(f"{f} is corrupted (checksum mismatch)", path=f)
            imgs.append(np.load(f, allow_pickle=False))
    return StoreContents(
        meta=meta,
        tokens=pd.concat(tok, ignore_index=True),
        sequences=pd.concat(seq, ignore_index=True),
        images=np.concatenate(imgs) if imgs else None,
        tensors=DiskTensors(root, parts),
        terms=read_terms(root, meta),
    )


def write_store(
    path: pathlib.Path,
    header: dict[str, Any],
    tensors: MemoryTensors | DiskTensors,
    tokens: pd.DataFrame,
    sequences: pd.DataFrame,
    images: np.ndarray | None,
    terms: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write a whole capture as a complete store at ``path`` (a fresh folder).

    Part by part (one part holds whole sequences), so saving needs at most one part's worth of
    extra memory rather than a second copy of every vector.
    """
    path.mkdir(parents=True, exist_ok=True)  # a temporary folder of the caller's: no second temporary
    w = StoreWriter(path, header)
    if terms:
        w.set_terms(terms)
    first = 0
    offsets = sequences["offset"].to_numpy()
    for n, part in tensors.iter_parts():
        rows = np.nonzero((offsets >= first) & (offsets < first + n))[0]
        w.append(part, tokens.iloc[first : first + n], sequences.iloc[rows], None if images is None else images[rows])
        first += n
    w.finish()
