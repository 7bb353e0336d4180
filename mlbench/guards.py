"""Up-front checks on the paths a user hands mlbench: before anything runs or is read.

Owns: "is this a regular file of sane size" (a FIFO would hang a reader forever, /dev/zero would
fill memory), "can this directory be written" (checked before a sweep, so a read-only report
folder never costs a finished sweep), and the layout of an existing run directory (a tampered
`cells`, `results.jsonl`, `run.json` or `archive` is a clear error, never a traceback).
Every problem is a UserError. Must not import any ML framework.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import UserError

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config is a page of YAML; 4 MiB is generous
MAX_JSON_BYTES = 4 * 1024 ** 3  # results.json / run.json: bounded so a device file cannot be read


def regular_file(path: Path, what: str, max_bytes: int | None = None) -> os.stat_result:
    """The stat of `path` if it is a regular file (links followed) no larger than `max_bytes`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} not found", str(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror}", str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{what} is a directory, not a file", str(path))
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else (
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
            "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise UserError(f"{what} is {kind}; give a regular file", str(path))
    if max_bytes is not None and st.st_size > max_bytes:
        raise UserError(f"{what} is too large ({st.st_size:,} bytes; the limit is "
                        f"{max_bytes:,})", str(path))
    return st


def writable_dir(path: Path, what: str) -> None:
    """Refuse a directory that cannot be created or written, without creating it: the nearest
    existing ancestor gets a probe file (os.access lies for root and for read-only mounts)."""
    path = Path(os.path.abspath(path))
    probe_in = path
    while not probe_in.exists():
        if probe_in.is_symlink():  # a dangling link: mkdir would fail
            raise UserError(f"{what} is a broken symbolic link", str(probe_in))
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        where = path if probe_in == path else probe_in
        raise UserError(f"{what} is not a directory (a file is in the way)", str(where))
    try:
        fd, name = tempfile.mkstemp(prefix=".mlbench-write-test-", dir=probe_in)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UserError(f"{what} is not writable: {exc.strerror or exc}", str(path)) from None


def run_layout(out_dir: Path) -> None:
    """An existing run directory whose parts are the wrong kind of thing (a hand edit, a copy
    gone wrong): refused before anything is read or written."""
    checks = (("cells", "a directory", Path.is_dir), ("archive", "a directory", Path.is_dir),
              ("results.jsonl", "a file", Path.is_file), ("run.json", "a file", Path.is_file),
              ("results.json", "a file", Path.is_file))
    for name, kind, ok in checks:
        p = out_dir / name
        if name == "cells" and p.is_symlink():
            raise UserError("the run's cells directory is a symbolic link; it must be a real "
                            "directory inside the run directory", str(p))
        if (p.exists() or p.is_symlink()) and not ok(p):
            raise UserError(f"{name} must be {kind}; this run directory was altered by hand "
                            "(move the stray entry away)", str(p))
    cells = out_dir / "cells"
    if cells.is_dir():
        try:
            entries = list(os.scandir(cells))
        except OSError as exc:
            raise UserError(f"cannot read the cells directory: {exc.strerror}", str(cells)) \
                from None
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                raise UserError("every entry of cells/ must be a cell's directory, this one is "
                                "not (move it away)", e.path)
