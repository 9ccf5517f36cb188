"""Integrity of weight files: the one sha256 helper, the size + hash check, and the inter-process lock.

The lock is :class:`filelock.FileLock` (``fcntl`` on POSIX, ``msvcrt`` on Windows), held on a
hidden ``.NAME.lock`` file beside the target for the whole fetch of one file, so two processes
fetching the same file take turns and the second finds the first one's verified result.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterator

from filelock import FileLock

from zoo.weights.errors import IntegrityError

HASH_CHUNK = 1 << 20


def sha256_of(source: str | Path | bytes, chunk: int = HASH_CHUNK) -> str:
    """The full sha256 (hex) of ``source``: the bytes given, or the file at that path read in ``chunk``-byte blocks."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    h = hashlib.sha256()
    with open(source, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, size: int | None, sha256: str | None, what: str) -> None:
    """Raise :class:`IntegrityError` unless ``path`` has exactly ``size`` bytes and ``sha256``.

    The size is checked first (cheap, and it tells a truncated download from a wrong file).
    """
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        kind = "truncated" if actual_size < size else "too large"
        raise IntegrityError(
            f"{what}: {path} is {kind}: expected {size} bytes, got {actual_size} bytes"
            + (f" (expected sha256 {sha256})" if sha256 else "")
        )
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256:
            raise IntegrityError(
                f"{what}: {path} has sha256 {actual}, expected {sha256} ({actual_size} bytes); "
                "the file is tampered or not the one the manifest lists, refused"
            )


def matches(path: Path, size: int | None, sha256: str | None) -> bool:
    """Whether ``path`` passes :func:`check_file`."""
    try:
        check_file(path, size, sha256, str(path))
    except IntegrityError:
        return False
    return True


def lock_path(target: Path) -> Path:
    """The lock file guarding ``target`` (``.NAME.lock`` in the same folder)."""
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def file_lock(target: Path) -> Iterator[None]:
    """An exclusive inter-process lock for writing ``target`` (works on POSIX and Windows)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path(target))):
        yield
