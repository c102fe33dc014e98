"""Join the stores of a sharded capture into one store, as if one machine had captured everything.

``qkviz.capture(..., shard=(i, n), out=path_i)`` runs the batches ``i, i + n, i + 2n, ...`` of the
planned inputs (``_plan``), each with the same padding a single capture would use, and records
each sequence's index in the inputs (``sequences["input"]``). :func:`merge` puts the sequences
back in input order, renumbers ``seq`` and ``offset``, and copies every vector unchanged: the
result has the same tokens, sequences, geometry and bit-identical vectors as ``qkviz.capture`` of
all inputs at once.

It reads one shard part at a time (memory bounded by the largest part), writes the new store under
a temporary name next to ``out`` and moves it into place only once it is complete; an existing
``out`` is replaced only if it is a capture store and ``overwrite=True``. The shards are never
modified or deleted.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._fs import check_target, clean_stale, replace_dir, temp_sibling
from ..errors import InputError, StoreError
from ._container import Capture, load
from ._geometry import HeadGeometry
from ._store import FORMAT, OWN, StoreContents, StoreWriter, read_store

__all__ = ["merge"]

#: Parameters that may differ between shards (where each ran), besides the shard itself.
_LOCAL = ("shard", "device", "attn_implementation")


def merge(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, overwrite: bool = False) -> Capture:
    """Join the shard stores of ``qkviz.capture(..., shard=(i, n), out=...)`` into one store.

    Parameters
    ----------
    paths : list of path
        The ``n`` shard stores, in any order (each complete: resume an interrupted shard first).
    out : path
        The merged store to write. It must not be one of the shards.
    overwrite : bool
        Replace ``out`` if it is an existing capture store (anything else is never replaced).

    Returns
    -------
    Capture
        The merged store, read from ``out``: equal to a capture of all inputs on one machine
        (same tokens, sequences, geometry; bit-identical vectors).

    Raises
    ------
    StoreError
        A shard is missing, partial, damaged, duplicated, or was captured with other settings, or
        ``out`` exists and may not be replaced.

    Examples
    --------
    >>> paths = [f"run-{i}.qkv" for i in range(4)]                                  # doctest: +SKIP
    >>> for i, p in enumerate(paths):                                               # doctest: +SKIP
    ...     qkviz.capture("smollm2", texts, shard=(i, 4), out=p)
    >>> cap = qkviz.merge(paths, "run.qkv")                                         # doctest: +SKIP
    """
    if isinstance(paths, (str, os.PathLike)) or not isinstance(paths, Sequence) or not paths:
        raise InputError("paths must be a non-empty list of shard stores")
    roots = [pathlib.Path(p) for p in paths]
    out = pathlib.Path(out)
    if any(_same(out, r) for r in roots):
        raise InputError(f"out={out} is one of the shards; merge into a new path (the shards are kept)")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")
    # only a capture store, and only with overwrite; never a folder holding files qkviz did not write
    check_target(out, FORMAT, what="capture", overwrite=overwrite, own=OWN,
                 hint="pass overwrite=True (--force) to replace it, or choose a new path")  # fmt: skip
    clean_stale(out, own=OWN)
    shards = [_read_shard(r) for r in roots]
    header = _header(shards, roots)

    # every sequence, in input order: (shard, local seq)
    owner = np.concatenate([np.full(len(c.sequences), s, np.int64) for s, c in enumerate(shards)])
    local = np.concatenate([np.arange(len(c.sequences), dtype=np.int64) for c in shards])
    inputs = np.concatenate([c.sequences["input"].to_numpy(np.int64) for c in shards])
    order = np.argsort(inputs, kind="stable")
    if len(np.unique(inputs)) != len(inputs):
        raise StoreError("the shards hold the same input more than once; were two shards given twice?", path=roots[0])

    tmp = temp_sibling(out)
    try:
        writer = StoreWriter(tmp, header)
        writer.set_terms(_terms(shards))
        n_seq = n_tok = 0
        cache: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for s, part, first, stop in _segments(shards, owner[order], local[order]):
            c = shards[s]
            if (s, part) not in cache:
                cache.clear()  # one part in memory at a time
                cache[(s, part)] = c.tensors.part_tensors(part)[1]
            part_t0 = int(sum(p["n_tokens"] for p in c.meta["parts"][:part]))
            seqs = c.sequences.iloc[first:stop].reset_index(drop=True)
            t0 = int(seqs["offset"].iloc[0])
            t1 = int(seqs["offset"].iloc[-1] + seqs["n_tokens"].iloc[-1])
            tensors = {key: a[t0 - part_t0 : t1 - part_t0] for key, a in cache[(s, part)].items()}
            new_seq = np.arange(n_seq, n_seq + len(seqs), dtype=np.int64)
            seq_dtype = c.sequences["seq"].to_numpy().dtype
            tokens = c.tokens.iloc[t0:t1].reset_index(drop=True)
            renumber = dict(zip(seqs["seq"].to_numpy(np.int64).tolist(), new_seq.tolist()))
            tokens["seq"] = tokens["seq"].map(renumber).astype(c.tokens["seq"].dtype)
            seqs["seq"] = new_seq.astype(seq_dtype)
            seqs["offset"] = (seqs["offset"] - t0 + n_tok).astype(c.sequences["offset"].dtype)
            images = None if c.images is None else c.images[first:stop]
            writer.append(tensors, tokens, seqs, images)
            n_seq += len(seqs)
            n_tok += t1 - t0
        writer.finish()
        replace_dir(tmp, out, kind=FORMAT, what="capture", own=OWN)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load(out)


def _same(a: pathlib.Path, b: pathlib.Path) -> bool:
    return a.resolve() == b.resolve()


def _read_shard(root: pathlib.Path) -> StoreContents:
    c = read_store(root)
    if c.meta.get("status") != "complete":
        raise StoreError(
            f"{root} is a partial shard; finish it with qkviz.capture(..., shard=..., out=path, resume=True)",
            path=root,
        )
    if "shard" not in c.meta["params"] or "input" not in c.sequences:
        raise StoreError(f"{root} is not a shard of a capture (made without shard=(i, n)); nothing to merge", path=root)
    return c


def _header(shards: list[StoreContents], roots: list[pathlib.Path]) -> dict[str, Any]:
    """The merged store's ``meta.json`` header; checks that the shards belong together."""
    ids = [tuple(c.meta["params"]["shard"]) for c in shards]
    n = ids[0][1]
    if any(k != n for _, k in ids):
        raise StoreError(f"the shards come from different splits: {sorted(ids)}", path=roots[0])
    # shards past the number of batches had nothing to run (capture refuses them)
    expected = min(n, int(shards[0].meta["params"].get("batches", n)))
    seen: dict[int, pathlib.Path] = {}
    for (i, _), root in zip(ids, roots):
        if i in seen:
            raise StoreError(f"{root} and {seen[i]} are both shard {i} of {n}", path=root)
        seen[i] = root
    missing = sorted(set(range(expected)) - set(seen))
    if missing:
        raise StoreError(f"shard(s) {missing} of {n} are missing; pass all {expected} shard stores", path=roots[0])

    ref = shards[0].meta

    def settings(meta: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meta["params"].items() if k not in _LOCAL}

    for c, root in zip(shards[1:], roots[1:]):
        if c.meta["model"] != ref["model"] or settings(c.meta) != settings(ref):
            raise StoreError(f"{root} was captured with another model or other settings than {roots[0]}", path=root)
        if HeadGeometry.from_json(c.meta) != HeadGeometry.from_json(ref):
            raise StoreError(f"{root} holds other heads or another geometry than {roots[0]}", path=root)
    params = {k: v for k, v in ref["params"].items() if k not in ("shard", "batches")}
    return {
        "format": ref["format"],
        "version": ref["version"],
        "model": ref["model"],
        "params": params,
        **HeadGeometry.from_json(ref).to_json(),
        "merged": {"shards": n, "devices": [c.meta["params"].get("device") for c in shards]},
    }


def _terms(shards: list[StoreContents]) -> dict[str, np.ndarray]:
    """The score terms of the merged store: per term, the shard's that covers the longest sequence
    (offset tables grow with it; every other term is the same in every shard)."""
    out: dict[str, np.ndarray] = {}
    for c in shards:
        for key, a in c.terms.items():
            if key not in out or a.size > out[key].size:
                out[key] = a
    return out


def _segments(shards: list[StoreContents], owner: np.ndarray, local: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Runs of consecutive sequences (in input order) stored together in one part of one shard:
    ``(shard, part, first local seq, stop)``."""
    part_of = []
    for c in shards:
        counts = [p["n_seqs"] for p in c.meta["parts"]]
        part_of.append(np.repeat(np.arange(len(counts)), counts))
    out: list[tuple[int, int, int, int]] = []
    for s, j in zip(owner.tolist(), local.tolist()):
        p = int(part_of[s][j])
        if out and out[-1][0] == s and out[-1][1] == p and out[-1][3] == j:
            out[-1] = (s, p, out[-1][2], j + 1)
        else:
            out.append((s, p, j, j + 1))
    return out
