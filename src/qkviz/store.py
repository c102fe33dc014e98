"""The :class:`Capture` container and its on-disk store.

A store is a directory (``run.qkv/``)::

    meta.json                      format name and version, model spec, capture parameters, geometry,
                                   status ("partial" while a streaming capture runs, then "complete"),
                                   and per part: file sizes and a CRC-32 per tensor / table
    part-00000.safetensors         q.<layer>.<head>, k.<layer>.<kv_head>, v.<layer>.<kv_head>:
                                   float32 or float16 [token, d_head] for the tokens of this part
    part-00000.tokens.parquet      the part's rows of the token table (global seq ids)
    part-00000.sequences.parquet   the part's rows of the sequence table (global offsets)
    part-00000.images.npy          uint8 [seq, h, w, 3] thumbnails (image captures only)

A whole capture saved at once is one part; a streaming capture appends one part per flushed batch.
Each file is written to a temporary name and renamed into place, and ``meta.json`` (also replaced
atomically) only lists finished parts, so an interrupted run leaves a readable partial store.
Safetensors files are read lazily: one head's tensors load without reading the others.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, StoreError

__all__ = ["Capture", "load", "FORMAT", "VERSION"]

FORMAT = "qkviz.capture"
VERSION = 1
_META = "meta.json"


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"))


def _file_crc(p: pathlib.Path) -> int:
    crc = 0
    with open(p, "rb") as fh:
        while chunk := fh.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def _atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _key(kind: str, layer: int, index: int) -> str:
    return f"{kind}.{layer}.{index}"


# --------------------------------------------------------------------------------------------
# tensor sources: where Capture.q/k/v read from
# --------------------------------------------------------------------------------------------


class _MemoryTensors:
    """In-memory tensors kept as the per-batch chunks ``[token, head, d_head]`` the capture made.

    Joining them into one array per head happens on access (a small copy of one head) rather than
    once for everything at the end of a capture, which would copy every vector twice more.
    """

    def __init__(self, chunks: dict[str, dict[int, list[np.ndarray]]], index: dict[str, tuple[int, ...]]):
        self.chunks = chunks  # kind -> layer -> list of [token_in_batch, head_or_kv, d]
        self.index = index  # kind -> stored head (or kv head) numbers, in axis-1 order

    def has(self, kind: str) -> bool:
        return bool(self.chunks.get(kind))

    def get(self, kind: str, layer: int, idx: int) -> np.ndarray:
        pos = self.index[kind].index(idx)
        parts = self.chunks[kind][layer]
        if len(parts) == 1:
            return parts[0][:, pos].copy()  # a copy even when the slice is contiguous: callers own it
        return np.concatenate([a[:, pos] for a in parts])

    def parts(self, max_bytes: int = 256 << 20) -> list[tuple[int, int]]:
        """Consecutive groups of batch chunks ``[first, stop)`` of at most about ``max_bytes`` each."""
        layers = self.chunks["q"]
        n = len(next(iter(layers.values())))
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
                    out[_key(kind, layer, h)] = np.concatenate([x[:, pos] for x in sel])
        n = sum(x.shape[0] for x in next(iter(self.chunks["q"].values()))[a:b])
        return n, out


class _DiskTensors:
    """Lazy reader over the safetensors parts of a store, with a CRC check per tensor read."""

    def __init__(self, root: pathlib.Path, parts: list[dict[str, Any]], cache: int = 16):
        self.root = root
        self.parts_meta = parts
        self._cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._size = cache

    def has(self, kind: str) -> bool:
        return any(k.startswith(kind + ".") for p in self.parts_meta[:1] for k in p["crc32"])

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
                for key in fh.keys():
                    out[key] = fh.get_tensor(key)
        except Exception as e:
            raise StoreError(f"cannot read {f}: {e}. The store is damaged; re-run the capture.", path=f) from e
        for key, a in out.items():
            if _crc(a) != part["crc32"].get(key):
                raise StoreError(f"{f} is corrupted: tensor {key!r} does not match its checksum.", path=f)
        return part["n_tokens"], out

    def get(self, kind: str, layer: int, idx: int) -> np.ndarray:
        ck = (kind, layer, idx)
        if ck in self._cache:
            self._cache.move_to_end(ck)
            return self._cache[ck].copy()  # callers own what they get; the cached copy stays intact
        from safetensors import safe_open

        key = _key(kind, layer, idx)
        chunks = []
        for part in self.parts_meta:
            f = self.root / part["file"]
            try:
                with safe_open(str(f), framework="numpy") as fh:
                    a = fh.get_tensor(key)
            except Exception as e:  # safetensors raises its own error types for truncated headers
                raise StoreError(f"cannot read {key!r} from {f}: {e}. The store is damaged; "
                                 "re-run the capture.", path=f) from e
            if _crc(a) != part["crc32"][key]:
                raise StoreError(
                    f"{f} is corrupted: tensor {key!r} does not match its checksum. Re-run the capture.",
                    path=f,
                )
            chunks.append(a)
        out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        self._cache[ck] = out
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out.copy()


# --------------------------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Capture:
    """Per-head queries and keys of many inputs, with the token table that explains each row.

    Made by :func:`qkviz.capture`, saved by :meth:`save`, read back by :func:`qkviz.load`. The
    attributes follow ``docs/internals.md``.

    Attributes
    ----------
    tokens : pandas.DataFrame
        One row per (real, non-padding) token; the index is the ``token`` axis.
    sequences : pandas.DataFrame
        One row per input: ``seq``, ``text`` (or image name), ``n_tokens``, ``offset``, ``truncated``.
    layers, heads : tuple of int
        Captured layers and query heads (model numbering).
    n_heads, n_kv_heads, d_head : int
        Model geometry; query head ``h`` uses key head ``h // (n_heads // n_kv_heads)``.
    causal : bool
        Whether query ``i`` only sees keys ``j <= i`` of its own sequence.
    scaling : dict of int to float
        The model's factor in ``softmax(scaling * q.k + mask)``, per layer.
    sliding_window : dict of int to int or None
        Per layer, the window ``w`` such that query ``i`` sees keys ``j > i - w`` (or ``None``).
    model, params : dict
        Model spec and capture parameters.
    images : numpy.ndarray or None
        ``uint8 [seq, h, w, 3]`` thumbnails of the images as the model saw them.

    Examples
    --------
    >>> cap = qkviz.capture("minilm", ["The cat sat on the mat."])    # doctest: +SKIP
    >>> cap.q(0, 0).shape                                               # doctest: +SKIP
    (9, 32)
    """

    tokens: pd.DataFrame
    sequences: pd.DataFrame
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    n_heads: int
    n_kv_heads: int
    d_head: int
    causal: bool
    scaling: dict[int, float]
    model: dict[str, Any]
    params: dict[str, Any]
    images: np.ndarray | None = None
    sliding_window: dict[int, int | None] = field(default_factory=dict)
    _tensors: Any = field(default=None, repr=False)

    # -- geometry -------------------------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        """Number of captured tokens (rows of :attr:`tokens`)."""
        return len(self.tokens)

    @property
    def kv_heads(self) -> tuple[int, ...]:
        """The key heads stored (those used by :attr:`heads`)."""
        return tuple(sorted({self.kv_head(h) for h in self.heads}))

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` attends with (GQA/MQA share one)."""
        self._check_head(head)
        return head // (self.n_heads // self.n_kv_heads)

    def _check_layer(self, layer: int) -> None:
        if layer not in self.layers:
            raise InputError(f"layer {layer!r} was not captured; captured layers: {list(self.layers)}")

    def _check_head(self, head: int) -> None:
        if head not in self.heads:
            raise InputError(f"head {head!r} was not captured; captured heads: {list(self.heads)}")

    # -- vectors --------------------------------------------------------------------------------

    def q(self, layer: int, head: int) -> np.ndarray:
        """Queries of one head.

        Returns
        -------
        numpy.ndarray
            float32 ``[token, d_head]``.
        """
        self._check_layer(layer)
        self._check_head(head)
        return self._tensors.get("q", layer, head).astype(np.float32, copy=False)

    def k(self, layer: int, head: int) -> np.ndarray:
        """Keys seen by query head ``head`` (those of its kv head).

        Returns
        -------
        numpy.ndarray
            float32 ``[token, d_head]``.
        """
        self._check_layer(layer)
        return self._tensors.get("k", layer, self.kv_head(head)).astype(np.float32, copy=False)

    def v(self, layer: int, head: int) -> np.ndarray:
        """Values of query head ``head``'s kv head (only when captured with ``values=True``).

        Returns
        -------
        numpy.ndarray
            float32 ``[token, d_head]``.
        """
        if not self._tensors.has("v"):
            raise InputError("value vectors were not captured; pass values=True to qkviz.capture")
        self._check_layer(layer)
        return self._tensors.get("v", layer, self.kv_head(head)).astype(np.float32, copy=False)

    @property
    def has_values(self) -> bool:
        """Whether :meth:`v` is available."""
        return bool(self._tensors.has("v"))

    # -- exact attention ------------------------------------------------------------------------

    def _seq_rows(self, seq: int) -> tuple[int, int]:
        if not 0 <= int(seq) < len(self.sequences):
            raise InputError(f"seq {seq!r} out of range: the capture holds {len(self.sequences)} sequences")
        row = self.sequences.iloc[int(seq)]
        return int(row["offset"]), int(row["n_tokens"])

    def attention(self, layer: int, head: int, seq: int) -> np.ndarray:
        """The head's attention probabilities over one sequence, recomputed exactly from q and k.

        ``softmax(scaling * q kᵀ + mask)`` with the causal and sliding-window masks the model used.

        Returns
        -------
        numpy.ndarray
            float32 ``[query_pos, key_pos]``; rows sum to 1.
        """
        off, n = self._seq_rows(seq)
        q = self.q(layer, head)[off : off + n]
        k = self.k(layer, head)[off : off + n]
        s = (q @ k.T) * np.float32(self.scaling[layer])
        pos = np.arange(n)
        diff = pos[:, None] - pos[None, :]
        allowed = np.ones((n, n), dtype=bool)
        if self.causal:
            allowed &= diff >= 0
        window = self.sliding_window.get(layer)
        if window:
            allowed &= diff < window
        s = np.where(allowed, s, -np.inf)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def verify(self, model: Any, inputs: Any = None, *, seqs: Any = None, batch_size: int = 8) -> pd.DataFrame:
        """Compare :meth:`attention` with the model's own eager attention probabilities.

        Parameters
        ----------
        model : model spec or loaded model
            The model that made the capture (anything :func:`qkviz.load_model` accepts).
        inputs : list, optional
            The original inputs; needed for images (texts are re-read from :attr:`sequences`).
        seqs : sequence of int, optional
            Which sequences to check (default: all).
        batch_size : int
            Sequences per eager forward pass (padded batches, as in the capture).

        Returns
        -------
        pandas.DataFrame
            ``layer``, ``head``, ``max_abs_error`` (over real query/key pairs); ``df.attrs["max"]``.
        """
        from ._verify import verify_capture

        return verify_capture(self, model, inputs, seqs=seqs, batch_size=batch_size)

    # -- persistence ----------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "params": self.params,
            "layers": list(self.layers),
            "heads": list(self.heads),
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_head": self.d_head,
            "causal": self.causal,
            "scaling": {str(k): v for k, v in self.scaling.items()},
            "sliding_window": {str(k): v for k, v in self.sliding_window.items()},
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> pathlib.Path:
        """Write the capture to a store directory (bit-exact; see the module docstring).

        The store is assembled under a temporary name next to ``path`` and renamed into place, so an
        existing store at ``path`` is replaced only once the new one is complete.

        Returns
        -------
        pathlib.Path
        """
        path = pathlib.Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} exists; pass overwrite=True to replace it", path=path)
        if path.exists() and not (path / _META).is_file():
            raise StoreError(f"{path} exists and is not a qkviz store; refusing to replace it", path=path)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            w = StoreWriter(tmp, self._header())
            # Part by part (one part holds whole sequences), so saving needs at most one part's
            # worth of extra memory rather than a second copy of every vector.
            first = 0
            offsets = self.sequences["offset"].to_numpy()
            for group in self._tensors.parts():
                n, tensors = self._tensors.part_tensors(group)
                rows = np.nonzero((offsets >= first) & (offsets < first + n))[0]
                w.append(tensors, self.tokens.iloc[first : first + n], self.sequences.iloc[rows],
                         None if self.images is None else self.images[rows])
                first += n
            w.finish()
            replace_dir(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path


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
        if resume and (self.root / _META).is_file():
            self.parts = read_meta(self.root)["parts"]
            self._drop_strays()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        self._write_meta("partial")

    def _drop_strays(self) -> None:
        """Remove files of parts that were being written when a previous run stopped."""
        keep = {_META} | {f for p in self.parts for f in p["files"]}
        for f in self.root.iterdir():
            if f.name not in keep:
                f.unlink() if f.is_file() else shutil.rmtree(f, ignore_errors=True)

    @property
    def n_seqs(self) -> int:
        return sum(p["n_seqs"] for p in self.parts)

    @property
    def n_tokens(self) -> int:
        return sum(p["n_tokens"] for p in self.parts)

    def _write_meta(self, status: str) -> None:
        meta = {**self.header, "status": status, "parts": self.parts}
        _atomic_write_bytes(self.root / _META, json.dumps(meta, indent=1).encode())

    def append(self, tensors: Mapping[str, np.ndarray], tokens: pd.DataFrame, sequences: pd.DataFrame,
               images: np.ndarray | None = None) -> None:
        """Write one part (tensors ``{key: [token, d_head]}`` and the matching table rows)."""
        from safetensors.numpy import save_file

        i = len(self.parts)
        stem = f"part-{i:05d}"
        files: dict[str, dict[str, int]] = {}

        def place(name: str, write) -> None:
            final = self.root / name
            tmp = self.root / f".{name}.tmp"
            write(tmp)
            with open(tmp, "rb+") as fh:  # durable before meta.json lists it
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            files[name] = {"bytes": final.stat().st_size, "crc32": _file_crc(final) if not name.endswith(
                ".safetensors") else 0}

        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        place(f"{stem}.safetensors", lambda p: save_file(arrays, str(p)))
        place(f"{stem}.tokens.parquet", lambda p: tokens.reset_index(drop=True).to_parquet(p, index=False))
        place(f"{stem}.sequences.parquet",
              lambda p: sequences.reset_index(drop=True).to_parquet(p, index=False))
        if images is not None:
            def save_images(p: pathlib.Path) -> None:
                with open(p, "wb") as fh:
                    np.save(fh, images, allow_pickle=False)

            place(f"{stem}.images.npy", save_images)
        self.parts.append({
            "file": f"{stem}.safetensors",
            "files": files,
            "n_tokens": int(len(tokens)),
            "n_seqs": int(len(sequences)),
            "crc32": {k: _crc(a) for k, a in arrays.items()},
        })
        self._write_meta("partial")

    def finish(self) -> None:
        self._write_meta("complete")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_meta(root: pathlib.Path) -> dict[str, Any]:
    """Parse and check ``meta.json`` (format, version, listed files present with their sizes)."""
    root = pathlib.Path(root)
    if not root.exists():
        raise StoreError(f"no capture store at {root}", path=root)
    mp = root / _META
    if root.is_file() or not mp.is_file():
        raise StoreError(f"{root} is not a qkviz capture store (no {_META})", path=root)
    try:
        meta = json.loads(mp.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{mp} is truncated or corrupted ({e}); re-run the capture", path=mp) from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{root} is not a qkviz capture store (format {meta.get('format')!r})"
                         if isinstance(meta, dict) else f"{mp} is corrupted", path=root)
    if meta.get("version") != VERSION:
        raise StoreError(
            f"{root} has store format version {meta.get('version')!r}; this qkviz reads version {VERSION}. "
            "Load it with the qkviz version that wrote it, or re-run the capture.",
            path=root,
        )
    for part in meta.get("parts", []):
        for name, info in part["files"].items():
            f = root / name
            if not f.is_file():
                raise StoreError(f"{f} is missing; the store is incomplete", path=f)
            size = f.stat().st_size
            if size != info["bytes"]:
                raise StoreError(
                    f"{f} is {size} bytes but was written as {info['bytes']}: the file is truncated or "
                    "was modified. Re-run the capture.",
                    path=f,
                )
    return meta


def _read_table(root: pathlib.Path, name: str, info: dict[str, int]) -> pd.DataFrame:
    f = root / name
    if _file_crc(f) != info["crc32"]:
        raise StoreError(f"{f} is corrupted (checksum mismatch); re-run the capture", path=f)
    return pd.read_parquet(f)


def load(path: str | os.PathLike[str]) -> Capture:
    """Open a capture store written by :meth:`Capture.save` or a streaming :func:`qkviz.capture`.

    Tensors stay on disk and load per head on first use. A partial store (an interrupted streaming
    capture) loads with a warning and holds the sequences finished so far.

    Raises
    ------
    StoreError
        Missing, truncated or corrupted files, or an unknown format version.
    """
    root = pathlib.Path(path)
    meta = read_meta(root)
    parts = meta["parts"]
    if not parts:
        raise StoreError(f"{root} holds no finished batch yet (the capture stopped before its first batch "
                         "was written); re-run it", path=root)
    if meta.get("status") != "complete":
        warnings.warn(
            f"{root} is a partial capture ({sum(p['n_seqs'] for p in parts)} sequences written before "
            "it stopped); resume it with qkviz.capture(..., out=path, resume=True)",
            stacklevel=2,
        )
    tok, seq, imgs = [], [], []
    for p in parts:
        stem = p["file"][: -len(".safetensors")]
        tok.append(_read_table(root, f"{stem}.tokens.parquet", p["files"][f"{stem}.tokens.parquet"]))
        seq.append(_read_table(root, f"{stem}.sequences.parquet", p["files"][f"{stem}.sequences.parquet"]))
        if f"{stem}.images.npy" in p["files"]:
            f = root / f"{stem}.images.npy"
            if _file_crc(f) != p["files"][f.name]["crc32"]:
                raise StoreError(f"{f} is corrupted (checksum mismatch)", path=f)
            imgs.append(np.load(f, allow_pickle=False))
    tokens = pd.concat(tok, ignore_index=True) if tok else pd.DataFrame()
    sequences = pd.concat(seq, ignore_index=True) if seq else pd.DataFrame()
    params = dict(meta["params"])
    return Capture(
        tokens=tokens,
        sequences=sequences,
        layers=tuple(meta["layers"]),
        heads=tuple(meta["heads"]),
        n_heads=meta["n_heads"],
        n_kv_heads=meta["n_kv_heads"],
        d_head=meta["d_head"],
        causal=meta["causal"],
        scaling={int(k): v for k, v in meta["scaling"].items()},
        sliding_window={int(k): v for k, v in meta["sliding_window"].items()},
        model=meta["model"],
        params=params,
        images=np.concatenate(imgs) if imgs else None,
        _tensors=_DiskTensors(root, parts),
    )


def replace_dir(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, replacing what is there.

    The old folder is renamed aside before the new one moves in, so a crash leaves either the old
    store or the new one at ``path``, never a half-written mix.
    """
    if path.exists():
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
