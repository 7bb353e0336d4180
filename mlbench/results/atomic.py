"""Files written whole or not at all, and a full or read-only disk as a user's error.

Owns `atomic_write` (a temporary file, fsynced, renamed over the old one) and the storage
errnos that mean "the disk cannot take it" (`STORAGE_ERRNOS`, `storage_error`). Below the store
and the ceilings, which both write with it. Standard library and mlbench.errors only.
"""
from __future__ import annotations

import errno
from pathlib import Path

from ..errors import UserError

STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES,
                  errno.EPERM, errno.EFBIG)


def storage_error(exc: OSError, path: Path, what: str = "could not write") -> UserError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"disk full: {what}; everything stored before is intact (free some "
                         "space, then mlbench run --resume)", str(path))
    return UserError(f"{what}: {exc.strerror or exc}; everything stored before is intact",
                     str(path))


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file, fsynced, renamed over the old one. On
    failure (disk full) the old file is left as it was and the temporary one removed. A link or
    special file where it writes is refused (mlbench.config.guards.atomic_write_text)."""
    from ..config.guards import atomic_write_text
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(exc, path, f"could not write {path.name}") from None
        raise
