"""How qkviz writes to disk: kinds, atomic files, atomic folder swaps, recovery, checksums, headers.

Every artefact qkviz saves (capture stores, embedding stores, HTML pages, cached conversions and
layouts) goes through this module, so the rules that protect users' files live in one place (they
are explained for users in ``docs/data-safety.md``):

* **Kinds.** A store folder names its ``format`` and ``version`` in ``meta.json``; a page names qkviz
  as its generator in its first bytes. A writer replaces only an artefact of its own kind
  (:func:`check_target`), never a folder or file qkviz did not write, and never a store folder that
  holds entries qkviz did not put there.
* **Complete first, then swap.** The new artefact is written in full under a hidden temporary
  sibling (:func:`temp_sibling`: ``.<name>.qkviz-<pid>-<8 hex>.tmp``, same folder, so the final rename
  never crosses file systems), flushed, and only then swapped in. Nothing is deleted first.
* **Atomic swap.** A file is renamed over the old one (:func:`atomic_write_bytes`; ``os.replace`` is
  atomic on POSIX and Windows). A folder is exchanged with the old one in one ``renameat2(...,
  RENAME_EXCHANGE)`` call on Linux (:func:`replace_dir`): at every instant the destination is the old
  or the new store. Elsewhere (or on a file system without the call) two renames are used, and a
  crash between them is repaired by :func:`recover`, which every reader and writer calls first.
* **Clean only what we left.** Temporary siblings of a writer that is gone are removed when qkviz
  next writes there — only names of exactly our pattern whose content is recognisably ours
  (:func:`clean_stale`); anything else is left alone with a warning.
* **Typed failures.** A full disk, a read-only folder or a library's write error becomes a
  :class:`~qkviz.StoreError` that says the previous artefact is unchanged (:func:`writing`).

The cache root (converted models, cached layouts) is ``$QKVIZ_CACHE_DIR`` or the platform's user
cache folder (:func:`cache_root`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import pathlib
import re
import shutil
import time
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .errors import StoreError

__all__ = [
    "META",
    "PAGE",
    "LIB_TEMP",
    "atomic_write_bytes",
    "array_crc",
    "file_crc",
    "replace_dir",
    "recover",
    "clean_stale",
    "clean_stale_in",
    "check_target",
    "kind_of",
    "writing",
    "read_json_header",
    "read_header",
    "field",
    "cache_root",
    "temp_sibling",
]

#: The header file of every store folder.
META = "meta.json"
#: The kind :func:`kind_of` gives a page written by qkviz.
PAGE = "qkviz.page"
#: Bytes that mark a page as qkviz's: every page has them in its ``<head>`` (see qkviz.export).
PAGE_MARK = b'<meta name="generator" content="qkviz'
_PAGE_HEAD_BYTES = 1024
#: The temporary file a library leaves next to its target when killed mid-write: safetensors'
#: ``save_file`` (0.7+) writes through a Rust ``tempfile`` named ``.tmp`` + 6 letters or digits in
#: the target's folder. Inside a store folder (always qkviz's) such a name is a write of ours.
LIB_TEMP = r"\.tmp[A-Za-z0-9]{6}"
#: Temporary siblings older than this are stale whatever their writer's pid says (pids are reused).
STALE_AFTER_S = 24 * 3600


def array_crc(a: np.ndarray) -> int:
    """CRC-32 of an array's bytes (C order)."""
    return zlib.crc32(np.ascontiguousarray(a).data.cast("B"))


def file_crc(path: pathlib.Path) -> int:
    """CRC-32 of a file's bytes, read in 4 MiB blocks."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


# --------------------------------------------------------------------------------------------
# temporary names
# --------------------------------------------------------------------------------------------


def temp_sibling(path: pathlib.Path, suffix: str = "tmp") -> pathlib.Path:
    """A hidden, unique name next to ``path``: ``.<name>.qkviz-<pid>-<8 hex>.<suffix>``.

    The pid lets a later writer tell a leftover of a killed run from a writer still at work.
    """
    return path.with_name(f".{path.name}.qkviz-{os.getpid()}-{uuid.uuid4().hex[:8]}.{suffix}")


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.qkviz-(\d+)-([0-9a-f]{{8}})\.(tmp|new|old)$")


def _siblings(path: pathlib.Path) -> list[tuple[pathlib.Path, int, str]]:
    """Our temporary siblings of ``path``: ``(entry, writer pid, "tmp" | "new" | "old")``."""
    pattern = _temp_pattern(path.name)
    out = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = pattern.match(entry.name)
        if m:
            out.append((entry, int(m.group(1)), m.group(3)))
    return out


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):
        return False  # a pid no process can have (a name that only looks like ours)
    except (PermissionError, OSError):
        return True  # someone else's process: alive
    return True


def _gone(entry: pathlib.Path, pid: int) -> bool:
    """Whether the writer of a temporary sibling is gone (dead, or the entry is days old)."""
    try:
        age = time.time() - entry.lstat().st_mtime
    except OSError:
        return False
    return not _pid_alive(pid) or age > STALE_AFTER_S


# --------------------------------------------------------------------------------------------
# kinds
# --------------------------------------------------------------------------------------------


def _folder_format(path: pathlib.Path) -> str | None:
    """The ``format`` a folder's ``meta.json`` names, or ``None`` if it has no readable one."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    return fmt if isinstance(fmt, str) and fmt.startswith("qkviz.") else None


def kind_of(path: str | os.PathLike[str]) -> str | None:
    """What is at ``path``: ``None`` (nothing), a store's ``format`` (``"qkviz.capture"``...),
    :data:`PAGE` for a page qkviz wrote, or ``"foreign"`` for anything else.

    Only the marker is read, so a *damaged* store of a kind is still recognised as that kind.
    """
    path = pathlib.Path(path)
    recover(path)
    if not os.path.lexists(path):
        return None
    if path.is_dir() and not path.is_symlink():
        return _folder_format(path) or "foreign"
    if path.is_file() and not path.is_symlink():
        try:
            with open(path, "rb") as fh:
                head = fh.read(_PAGE_HEAD_BYTES)
        except OSError:
            return "foreign"
        return PAGE if PAGE_MARK in head else "foreign"
    return "foreign"


_KIND_NAMES = {"qkviz.capture": "capture", "qkviz.embedding": "embedding", PAGE: "page", "foreign": "foreign"}


def _kind_name(kind: str) -> str:
    return _KIND_NAMES.get(kind, kind)


def _a(noun: str) -> str:
    """``noun`` with its indefinite article (``an embedding``, ``a capture``)."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def check_target(
    path: str | os.PathLike[str],
    kind: str,
    *,
    what: str,
    overwrite: bool,
    own: re.Pattern[str] | None = None,
    hint: str = "pass overwrite=True to replace it",
) -> pathlib.Path:
    """Check that a writer of ``kind`` may write ``path``; returns it as a path.

    Nothing there: fine. The same kind: fine with ``overwrite``, else a :class:`StoreError` saying
    ``hint``. Another kind, or something qkviz did not write: a :class:`StoreError`, whatever
    ``overwrite`` says. A store folder holding entries that are not ``own`` (the names its writer
    uses) is refused too: replacing the folder would delete them.

    Parameters
    ----------
    kind : str
        ``"qkviz.capture"``, ``"qkviz.embedding"``, :data:`PAGE`...
    what : str
        The artefact in messages ("capture", "embedding", "page").
    own : re.Pattern, optional
        Entry names a store folder of this kind may hold.
    """
    path = pathlib.Path(path)
    found = kind_of(path)
    if found is None:
        return path
    if found != kind:
        if found == "foreign":
            what_is = "a folder" if path.is_dir() else "a file"
            raise StoreError(
                f"cannot write {path}: it exists and is not a qkviz {what}; refusing to replace it ({what_is} "
                f"qkviz did not write, or whose qkviz marker is gone). Choose another path.",
                path=path,
            )
        raise StoreError(
            f"cannot write {path}: it is a qkviz {_kind_name(found)}, not {_a(what)}; {_a(what)} never replaces "
            f"{_a(_kind_name(found))}. Choose another path.",
            path=path,
        )
    if not overwrite:
        raise StoreError(f"{path} already exists; {hint}", path=path)
    if own is not None and path.is_dir():
        foreign = sorted(e.name for e in path.iterdir() if not own.match(e.name))
        if foreign:
            raise StoreError(
                f"{path} holds files qkviz did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); replacing the {what} would delete them. Move them "
                "out first, or choose another path.",
                path=path,
            )
    return path


# --------------------------------------------------------------------------------------------
# recovery and clean-up
# --------------------------------------------------------------------------------------------


def recover(path: str | os.PathLike[str]) -> None:
    """Repair a folder swap that a crash cut between its two renames (the non-Linux fallback).

    When ``path`` is missing and a writer that is gone left a complete new folder (``.new``), it is
    renamed into place (roll forward: the writer finished it and was replacing the old one);
    otherwise a lone old folder (``.old``) is renamed back. Does nothing in every other case.
    """
    path = pathlib.Path(path)
    if os.path.lexists(path):
        return
    found = [(e, pid, tag) for e, pid, tag in _siblings(path) if tag in ("new", "old") and _gone(e, pid)]
    for tag in ("new", "old"):
        candidates = sorted((e for e, _, t in found if t == tag), key=lambda e: e.lstat().st_mtime, reverse=True)
        for entry in candidates:
            try:
                os.rename(entry, path)
            except OSError:
                continue
            _fsync_dir(path.parent)
            # the other copies of the swap that was cut short: the replaced store (or another new
            # one), of the same kind as the restored one
            restored = _folder_format(path)
            for other, _, _ in found:
                if other != entry and restored is not None and _folder_format(other) == restored:
                    _remove(other)
            return


def clean_stale(
    path: str | os.PathLike[str],
    *,
    own: re.Pattern[str] | None = None,
    page: bool = False,
    owned_folder: bool = False,
) -> None:
    """Remove the temporary siblings of ``path`` that a writer which is gone left behind.

    Only entries named exactly ``.<name>.qkviz-<pid>-<hex>.(tmp|new|old)`` whose writer is gone are
    considered, and only removed when their content is recognisably qkviz's: a folder whose every
    entry matches ``own``; a file that is (a prefix of) a qkviz page when ``page``. With
    ``owned_folder`` (qkviz's own cache folders) the name alone decides. Anything else is left in
    place, with a warning naming it.
    """
    path = pathlib.Path(path)
    for entry, pid, _tag in _siblings(path):
        if not _gone(entry, pid):
            continue
        if owned_folder or _looks_ours(entry, own=own, page=page):
            _remove(entry)
        else:
            warnings.warn(
                f"{entry} is named like a leftover of a qkviz save but holds files qkviz did not write "
                f"({', '.join(_foreign_names(entry, own))}); it was left in place",
                stacklevel=3,
            )


_ANY_TEMP = re.compile(r"^\..+\.qkviz-(\d+)-[0-9a-f]{8}\.(tmp|new|old)$")


def clean_stale_in(folder: str | os.PathLike[str]) -> None:
    """Remove every temporary a writer that is gone left in ``folder``, one of qkviz's own cache
    folders (where every name is qkviz's, so the name alone decides)."""
    try:
        entries = list(pathlib.Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        m = _ANY_TEMP.match(entry.name)
        if m and _gone(entry, int(m.group(1))):
            _remove(entry)


def _foreign_names(entry: pathlib.Path, own: re.Pattern[str] | None) -> list[str]:
    if not entry.is_dir():
        return [entry.name]
    return sorted(e.name for e in entry.iterdir() if own is None or not own.match(e.name))[:5]


def _looks_ours(entry: pathlib.Path, *, own: re.Pattern[str] | None, page: bool) -> bool:
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return own is not None and all(own.match(e.name) for e in entry.iterdir())
    if not page:
        return False
    try:
        with open(entry, "rb") as fh:
            head = fh.read(_PAGE_HEAD_BYTES)
    except OSError:
        return False
    # a page of ours, or a write of ours cut before its mark (every page starts the same way)
    return PAGE_MARK in head or (len(head) < _PAGE_HEAD_BYTES and head == _PAGE_START[: len(head)])


#: How every qkviz page starts (set by qkviz.export at import; a file temp that is a prefix of it
#: is a write of ours cut short).
_PAGE_START = b"<!DOCTYPE html>\n<html"


def _remove(entry: pathlib.Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _write_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "this write failed" (a full disk, a read-only folder...)."""
    types: list[type[BaseException]] = [OSError]
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        types.append(SafetensorError)
    with contextlib.suppress(ImportError):
        import pyarrow as pa

        types.append(pa.ArrowException)
    return tuple(types)


@contextlib.contextmanager
def writing(path: pathlib.Path, what: str, *, cleanup: pathlib.Path | None = None) -> Iterator[None]:
    """Turn a failed write into a :class:`StoreError`; ``cleanup`` (a temporary) is removed on failure.

    The message says that whatever was at ``path`` before is unchanged: writers only ever write to a
    temporary sibling until the final swap.
    """
    try:
        yield
    except StoreError:
        if cleanup is not None:
            _remove(cleanup)
        raise
    except _write_errors() as e:
        if cleanup is not None:
            _remove(cleanup)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise StoreError(
            f"cannot write {path}: {' '.join(reason.split())}. Nothing was replaced: the previous {what} at "
            f"{path} (if any) is unchanged.",
            path=path,
        ) from e
    except BaseException:
        if cleanup is not None:
            _remove(cleanup)
        raise


def _fsync_dir(folder: pathlib.Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: pathlib.Path,
    data: bytes,
    *,
    kind: str | None = None,
    what: str = "file",
    overwrite: bool = True,
) -> None:
    """Write ``data`` to ``path`` through a flushed temporary sibling and an atomic rename.

    With ``kind`` (e.g. :data:`PAGE`), what is at ``path`` is checked (:func:`check_target`) before
    writing and again just before the rename, and stale temporaries of earlier killed writes of
    ``path`` are removed. A failed write raises :class:`StoreError` and leaves ``path`` as it was.
    """
    path = pathlib.Path(path)
    if kind is not None:
        check_target(path, kind, what=what, overwrite=overwrite)
        clean_stale(path, page=kind == PAGE)
    tmp = temp_sibling(path)
    with writing(path, what, cleanup=tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if kind is not None:
            check_target(path, kind, what=what, overwrite=overwrite)
        os.replace(tmp, path)
    _fsync_dir(path.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _load_renameat2() -> Any:
    global _renameat2
    if _renameat2 is None:
        fn: Any = False
        if hasattr(os, "uname") and os.uname().sysname == "Linux":
            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
            except (AttributeError, OSError):
                fn = False
        _renameat2 = fn
    return _renameat2


def _exchange(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns ``False`` where the call or the file system does not support it (the caller then falls
    back to two renames); raises ``OSError`` for any other failure.
    """
    fn = _load_renameat2()
    if not fn:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(
    tmp: pathlib.Path,
    path: pathlib.Path,
    *,
    kind: str | None = None,
    what: str = "store",
    own: re.Pattern[str] | None = None,
) -> None:
    """Swap the finished folder ``tmp`` in at ``path``, replacing what is there.

    ``tmp`` is first renamed to ``.new`` (a rename marks it complete for :func:`recover`). Then, when
    ``path`` exists, the two are exchanged in one atomic call on Linux, and the old folder (now at the
    ``.new`` name) is removed; elsewhere ``path`` is renamed to ``.old``, ``.new`` to ``path``, and the
    old one removed — a crash between those two renames is repaired by :func:`recover`. With ``kind``,
    what is at ``path`` is checked again just before the swap (:func:`check_target`).
    """
    new = tmp.with_name(tmp.name[: -len(".tmp")] + ".new") if tmp.name.endswith(".tmp") else temp_sibling(path, "new")
    with writing(path, what, cleanup=tmp):
        os.rename(tmp, new)
    with writing(path, what, cleanup=new):
        if kind is not None:
            check_target(path, kind, what=what, overwrite=True, own=own)
        if not os.path.lexists(path):
            os.rename(new, path)
        elif _exchange(new, path):
            _fsync_dir(path.parent)
            _remove(new)  # now the old folder
        else:
            old = temp_sibling(path, "old")
            # the ``.old`` is the replaced folder renamed, and a rename keeps its mtime (when it was
            # written: last week, say); an entry over a day old counts as abandoned, so a reader's
            # recover() would take this live swap apart. Touched first, it is as new as the swap.
            with contextlib.suppress(OSError):
                os.utime(path)
            os.rename(path, old)
            try:
                os.rename(new, path)
            except BaseException:
                # the second rename failed (or Ctrl-C came between the two): put the old folder
                # back, so that "nothing was replaced" is true and the path is not left empty
                with contextlib.suppress(OSError):
                    os.rename(old, path)
                raise
            _fsync_dir(path.parent)
            _remove(old)
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------------------------
# reading headers
# --------------------------------------------------------------------------------------------


def read_json_header(root: pathlib.Path, what: str) -> dict[str, Any]:
    """Parse ``root/meta.json`` without checking its format.

    Raises
    ------
    StoreError
        No folder, no header, or a header that is not a readable JSON object.
    """
    root = pathlib.Path(root)
    recover(root)
    if not root.exists():
        raise StoreError(f"no {what} at {root}", path=root)
    mp = root / META
    if root.is_file() or not mp.is_file():
        raise StoreError(f"{root} is not a qkviz {what} (no {META})", path=root)
    try:
        meta = json.loads(mp.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{mp} is truncated or corrupted ({e}); write the {what} again", path=mp) from e
    if not isinstance(meta, dict):
        raise StoreError(f"{mp} is corrupted (not a JSON object)", path=mp)
    return meta


def read_header(root: pathlib.Path, fmt: str, version: int | tuple[int, ...], what: str) -> dict[str, Any]:
    """Parse ``root/meta.json`` and check that it names ``fmt`` at ``version``.

    Parameters
    ----------
    root : path
        The store folder.
    fmt : str
        The format this reader understands.
    version : int or tuple of int
        The version(s) it reads.
    what : str
        How to call the artefact in messages ("capture store", "embedding").

    Raises
    ------
    StoreError
        No folder, no header, a damaged header, another format, or another version.
    """
    meta = read_json_header(root, what)
    if meta.get("format") != fmt:
        found = meta.get("format")
        named = f"a qkviz {_kind_name(found)}" if isinstance(found, str) and found.startswith("qkviz.") else None
        raise StoreError(
            f"{root} is {named}, not a qkviz {what}"
            if named
            else f"{root} is not a qkviz {what} (format {found!r}, expected {fmt!r})",
            path=root,
        )
    versions = (version,) if isinstance(version, int) else tuple(version)
    if meta.get("version") not in versions:
        raise StoreError(
            f"{root} has {what} format version {meta.get('version')!r}; this qkviz reads version "
            f"{' or '.join(map(str, versions))}. Load it with the qkviz version that wrote it, or write the "
            f"{what} again.",
            path=root,
        )
    return meta


def field(
    meta: Any, key: str, kind: type | tuple[type, ...], where: pathlib.Path, check: Callable[[Any], bool] | None = None
) -> Any:
    """``meta[key]`` when it is a ``kind`` (and passes ``check``), else a :class:`StoreError`.

    For the header checks of the store readers: a ``meta.json`` that is valid JSON with a missing
    or mistyped field must say so, not fail later with a ``KeyError`` deep inside a reader.
    """
    value = meta.get(key, _MISSING) if isinstance(meta, dict) else _MISSING
    if value is _MISSING:
        raise StoreError(f"{where}: field {key!r} is missing; the store is damaged (write it again)", path=where)
    bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    if not isinstance(value, kind) or bad_bool or (check is not None and not check(value)):
        raise StoreError(
            f"{where}: field {key!r} holds {value!r:.60}, which is not valid here; the store is damaged "
            "(write it again)",
            path=where,
        )
    return value


_MISSING = object()


def cache_root() -> pathlib.Path:
    """Root of qkviz's caches: ``$QKVIZ_CACHE_DIR``, else the user cache folder.

    Converted offline models live in ``models/`` under it, cached layouts in ``layouts/``. The old
    ``$QKVIZ_CACHE`` (models only) is still honoured, with a warning.
    """
    env = os.environ.get("QKVIZ_CACHE_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    legacy = os.environ.get("QKVIZ_CACHE")
    if legacy:
        warnings.warn(
            "QKVIZ_CACHE is deprecated; set QKVIZ_CACHE_DIR (models go to its models/ folder)",
            DeprecationWarning,
            stacklevel=3,
        )
        return pathlib.Path(legacy).expanduser()
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("qkviz"))
