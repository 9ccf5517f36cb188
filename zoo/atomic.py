"""Atomic file writes: write to a temp file in the same folder, fsync, then rename over the target.

A write that fails for a reason the user can fix (read-only or full disk, no permission, file too
large) raises :class:`WriteError` naming the target file, whichever library did the writing
(``OSError`` from Python, ``SafetensorError`` from safetensors, ``RuntimeError`` from faiss).
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from zoo.registry import ZooError

#: errno values of write failures the user can fix, with the fix
WRITE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space (disk quota) or write somewhere else",
    errno.EFBIG: "the file is too large for this file system or limit; write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "no permission to write there; write somewhere else or fix the folder's permissions",
    errno.EPERM: "no permission to write there; write somewhere else or fix the folder's permissions",
}
#: how libraries that do their own I/O report an OS error (safetensors: ``IoError(Os { code: 28, ...``)
_LIBRARY_ERRNO = re.compile(r"Os \{ code: (\d+)|\[Errno (\d+)\]|\(os error (\d+)\)")
_LIBRARY_TEXT = {"No space left on device": errno.ENOSPC, "Read-only file system": errno.EROFS,
                 "Disk quota exceeded": errno.EDQUOT, "File too large": errno.EFBIG}


class WriteError(ZooError, OSError):
    """An output that cannot be written (read-only or full disk, no permission)."""


def write_failure_errno(exc: BaseException) -> int | None:
    """The errno of ``exc`` when it is a fixable write failure (:data:`WRITE_ERRNOS`), else None."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        text = str(exc)
        match = _LIBRARY_ERRNO.search(text)
        if match:
            code = int(next(g for g in match.groups() if g))
        else:
            code = next((c for s, c in _LIBRARY_TEXT.items() if s in text), None)
    return code if code in WRITE_ERRNOS else None


def write_error(path: str | os.PathLike, code: int | None, reason: str = "") -> WriteError:
    """``cannot write PATH: <OS reason>; <fix>``."""
    fix = WRITE_ERRNOS.get(code or -1, "write somewhere else")
    err = WriteError(f"cannot write {path}: {os.strerror(code) if code else reason}; {fix}")
    err.errno = code
    return err


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed onto ``path``, else removed.

    Raises :class:`WriteError` (naming ``path``) when the folder or the file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc.errno, exc.strerror or str(exc)) from exc
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
        except Exception as exc:
            code = write_failure_errno(exc)
            if code is None:
                raise
            raise write_error(path, code) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` through a temp file and an atomic rename."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
