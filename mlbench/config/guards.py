"""Up-front checks on the paths a user hands mlbench: before anything runs or is read.

Owns: "is this a regular file of sane size" (a FIFO would hang a reader forever, /dev/zero would
fill memory), "can this directory be written" (checked before a sweep, so a read-only report
folder never costs a finished sweep), the layout of an existing run directory (a tampered
`cells`, `results.jsonl`, `run.json` or `archive` is a clear error, never a traceback), and
writing: every file mlbench writes is opened here (open_for_write, write_text,
atomic_write_text: O_NOFOLLOW, regular files only), so a planted symbolic link never redirects
a write outside the run directory; paths too long or with control characters are refused.
Every problem is a UserError. Must not import any ML framework.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from ..errors import UserError

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
    sane_path(path, what)
    no_link_loop(path, what)
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
              ("verify", "a directory", Path.is_dir),
              ("results.jsonl", "a file", Path.is_file), ("run.json", "a file", Path.is_file),
              ("results.json", "a file", Path.is_file), ("results.csv", "a file", Path.is_file),
              ("verify.json", "a file", Path.is_file), ("ceilings.json", "a file", Path.is_file),
              (".mlbench.lock", "a file", Path.is_file))
    for name, kind, ok in checks:
        p = out_dir / name
        if p.is_symlink():  # mlbench writes here: a link would carry the write elsewhere
            raise UserError(f"the run's {name} is a symbolic link; it must be a real {kind[2:]} "
                            "inside the run directory (move the link away)", str(p))
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


def cell_files(cell_dir: Path) -> None:
    """A cell's directory holds the files mlbench wrote: a link among them is refused."""
    try:
        entries = list(os.scandir(cell_dir))
    except OSError as exc:
        raise UserError(f"cannot read a cell's directory: {exc.strerror}", str(cell_dir)) \
            from None
    for e in entries:
        if e.is_symlink():
            raise UserError("a cell's directory holds a symbolic link; mlbench writes there "
                            "(move the link away)", e.path)


# --- writing: never through a planted link -------------------------------------------------------
# Every file mlbench writes inside a run, gate or report directory goes through `open_for_write`
# (or `atomic_write_text`, built on it): a symbolic link, FIFO, device or directory planted where
# mlbench writes would otherwise let a run truncate or append to a file outside its directory.

NAME_MAX = 255  # bytes in one path component (Linux, every common filesystem)
PATH_MAX = 4096  # bytes in a whole path


def refuse_special(path: Path, what: str) -> None:
    """UserError unless `path` is absent or a regular file (a link is refused, not followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"cannot use {what}: {exc.strerror}", str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"{what} is a symbolic link; mlbench writes only regular files inside "
                        "its own directories (move the link away)", str(path))
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UserError(f"{what} is {kind}; expected a regular file (move it away)", str(path))


def open_for_write(path: Path, what: str, flags: int, mode: int = 0o644) -> int:
    """os.open of a file mlbench writes, with O_NOFOLLOW (a link planted between the check and
    the open fails rather than redirects the write); special files and links are UserErrors."""
    refuse_special(path, what)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{what} is a symbolic link; mlbench writes only regular files "
                            "inside its own directories (move the link away)", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device swapped in after the check
        os.close(fd)
        raise UserError(f"{what} is not a regular file (move it away)", str(path))
    return fd


def write_text(path: Path, text: str, what: str | None = None) -> None:
    """Create or replace a small file in place (request.json, command.txt), never via a link."""
    fd = open_for_write(path, what or path.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_text(path: Path, text: str, what: str | None = None) -> None:
    """Write a whole file or nothing: a fresh temporary file (O_EXCL: never a planted one),
    fsynced, renamed over `path`, which must be absent or a regular file."""
    what = what or path.name
    refuse_special(path, what)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if os.path.lexists(tmp):
        refuse_special(tmp, f"{what}'s temporary file")
        os.unlink(tmp)  # our own leftover from a killed run with the same pid
    try:
        fd = open_for_write(tmp, what, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def refuse_links(directory: Path, names: tuple[str, ...] | list[str], what: str) -> None:
    """Before a writer this module cannot reach (the report's renderer): each named entry of
    `directory` must be absent or a regular file."""
    for name in names:
        refuse_special(Path(directory) / name, f"{what} {name}")


def sane_path(path: Path | str, what: str) -> None:
    """A path the OS can hold: no control characters, components <= NAME_MAX bytes, the whole
    <= PATH_MAX bytes (else "File name too long" deep inside a write)."""
    text = os.fspath(path)
    if not text.strip():
        raise UserError(f"{what} is empty; name a path", what)
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UserError(f"{what} contains a control character ({bad!r}); rename it",
                        repr(text[:200]))
    raw = os.fsencode(text)
    long_part = next((p for p in raw.split(b"/") if len(p) > NAME_MAX), None)
    if long_part is not None:
        raise UserError(f"{what} has a name of {len(long_part)} bytes; the limit is {NAME_MAX}",
                        text[:120] + "…")
    if len(os.fsencode(os.path.abspath(text))) > PATH_MAX:
        raise UserError(f"{what} is a path of over {PATH_MAX} bytes", text[:120] + "…")


def no_link_loop(path: Path, what: str) -> None:
    """A symbolic link loop (a -> b -> a) on the way to `path` is a UserError, not ELOOP later."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{what} is a symbolic link loop", str(path)) from None


PROBE_S = 10.0  # an interpreter that cannot print its version in this long will not run a cell


def interpreter_answers(python: str, where: str, timeout: float = PROBE_S) -> None:
    """A framework's `python:` must start and answer: one that hangs (a wrapper script waiting
    on something) is an error naming the key within `timeout`, not a silent stall later."""
    import subprocess
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.version_info[0])"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"interpreter {python!r} did not answer within {timeout:g} s", where) \
            from None
    except OSError as exc:
        raise UserError(f"interpreter {python!r} cannot be started: {exc.strerror}", where) \
            from None
    if done.returncode != 0 or done.stdout.strip() != b"3":
        tail = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"interpreter {python!r} is not a working Python 3"
                        f"{': ' + tail[-1][:160] if tail else ''}", where)
