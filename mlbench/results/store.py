"""The results store of a run directory: append-only attempts, and the files derived from them.

Owns the on-disk format:
  run.json        config snapshot, mlbench version, host, start/end (rewritten atomically)
  results.jsonl   one JSON line per attempt (the record of mlbench.results.attempt, its `format` in
  it),
                  appended, flushed and fsynced; never rewritten (older formats are upgraded
                  as they are read, a newer one is an error naming the file)
  results.json    derived: {"schema", "run", "cells": latest attempt per (cell_id, repeat)}
  results.csv     derived: one flat row per cell of results.json
  cells/<cell_id>/  request.json, command.txt, stderr.log (written by the launcher)
"Latest attempt wins" everywhere; readers tolerate a torn last line.
Must not import any ML framework.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import attempt, records
from ..config import guards
from .atomic import STORAGE_ERRNOS, atomic_write, storage_error  # noqa: F401 - the store's API too
from ..errors import UserError

SCHEMA = 1  # results.json's document version (each record has its own `format`)
RESULTS_JSONL = "results.jsonl"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
RUN_JSON = "run.json"


@dataclass
class Loaded:
    run: dict
    attempts: list[dict]
    warnings: list[str] = field(default_factory=list)

    @property
    def latest(self) -> list[dict]:
        return latest_attempts(self.attempts)


def attempt_key(a: dict) -> tuple[str, int]:
    return a["cell_id"], int(a.get("repeat", 0))


def latest_attempts(attempts: list[dict]) -> list[dict]:
    """The last attempt of every (cell_id, repeat), in first-seen order."""
    latest: dict[tuple[str, int], dict] = {}
    for a in attempts:
        key = attempt_key(a)
        latest.pop(key, None)
        latest[key] = a
    return sorted(latest.values(), key=lambda a: a.get("order", 0))


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Parse results.jsonl; a torn, corrupt or ill-typed line is skipped with a warning naming
    the file, the line and the problem, never fatal."""
    attempts, warnings = [], []
    guards.regular_file(path, "results file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", str(path)) from None
    lines = data.split(b"\n")
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        last = i == len(lines) or (i == len(lines) - 1 and not lines[-1])
        rec = _parse_line(raw, path, i, last, warnings)
        if rec is not None:
            attempts.append(rec)
    return attempts, warnings


# The head of every line Store.append writes: it puts the identity first, whatever the order
# of the record it is given. Matching it lets resume find the latest line per cell without
# parsing 100,000 lines of step times; a line that does not match (another writer, another key
# order, an escaped id) is parsed in full, so any valid line still counts. _OLD_HEAD: the
# lines of mlbench <= 0.1 (the launcher's record began run_id, cell_id, repeat).
_HEAD = re.compile(rb'\{"cell_id": "([^"\\]*)", "repeat": (\d+)[,}]')
_OLD_HEAD = re.compile(rb'\{"run_id": (?:null|"[^"\\]*"), "cell_id": "([^"\\]*)", '
                       rb'"repeat": (\d+),')


@dataclass
class Index:
    """The latest attempt per (cell_id, repeat) of a results.jsonl, fully parsed; `count` is
    the number of attempt lines (corrupt lines that a later attempt supersedes may be counted:
    only the latest line of a cell is parsed in full)."""
    latest: dict[tuple[str, int], dict] = field(default_factory=dict)
    count: int = 0
    warnings: list[str] = field(default_factory=list)

    def attempts(self) -> list[dict]:
        return sorted(self.latest.values(), key=lambda a: a.get("order", 0))


def scan_latest(path: Path) -> Index:
    """Index a results.jsonl by reading each line's head only; parse just the latest line of
    every cell (falling back to its previous line if that one is torn or corrupt)."""
    index = Index()
    guards.regular_file(path, "results file")
    lines: dict[tuple[str, int], list[tuple[int, int, bool]]] = {}
    parsed: dict[int, dict] = {}
    with open(path, "rb") as fh:
        offset, lineno = 0, 0
        for raw in fh:
            lineno += 1
            start, offset = offset, offset + len(raw)
            m = _HEAD.match(raw) or _OLD_HEAD.match(raw)
            if m:
                key = (m[1].decode("utf-8", "replace"), int(m[2]))
            else:
                if not raw.strip():
                    continue
                rec = _parse_line(raw, path, lineno, not raw.endswith(b"\n"), index.warnings)
                if rec is None:
                    continue
                key = attempt_key(rec)
                parsed[start] = rec
            lines.setdefault(key, []).append((start, lineno, not raw.endswith(b"\n")))
            index.count += 1
        for key, where in lines.items():
            for start, lineno, last in reversed(where):
                rec = parsed.get(start)
                if rec is None:
                    fh.seek(start)
                    rec = _parse_line(fh.readline(), path, lineno, last, index.warnings)
                if rec is not None:
                    index.latest[key] = rec
                    break
                index.count -= 1
    index.latest = {attempt_key(a): a for a in index.attempts()}
    return index


def _parse_line(raw: bytes, path: Path, lineno: int, last: bool,
                warnings: list[str]) -> dict | None:
    """The record of one line in the current format, or None (a warning said why)."""
    try:
        return records.check_attempt(records.parse_json(raw))
    except attempt.NewerFormat as exc:  # never guessed at, never skipped quietly
        raise UserError(str(exc), f"{path}:{lineno}: format") from None
    except ValueError as exc:  # BadJSON included
        torn = last and isinstance(exc, records.BadJSON)
        what = "torn last line" if torn else "corrupt line"
        warnings.append(f"{path}:{lineno}: skipped {what} ({_cut(str(exc), 160)})")
        return None


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


def load(path: str | Path) -> Loaded:
    """Load a store from a run directory, its results.jsonl, or a results.json. Every record
    skipped is told on stderr (`warning: <file>:<line>: ...`), at most MAX_SHOWN of them."""
    loaded = _load(path)
    for w in loaded.warnings[:MAX_SHOWN]:
        print(f"warning: {w}", file=sys.stderr)
    if len(loaded.warnings) > MAX_SHOWN:
        print(f"warning: {len(loaded.warnings) - MAX_SHOWN} more records skipped",
              file=sys.stderr)
    return loaded


MAX_SHOWN = 5


def foreign_attempts(run: dict, attempts: list[dict]) -> str | None:
    """A warning when stored attempts carry another run's id than run.json's (a results.jsonl
    line copied from another run): reported as this run's, they may answer another sweep."""
    own = run.get("run_id") if isinstance(run, dict) else None
    if not own:
        return None
    other = [a for a in attempts if a.get("run_id") not in (None, own)]
    if not other:
        return None
    return (f"{len(other)} attempt(s) carry another run's id than run.json's {own} (e.g. cell "
            f"{other[0]['cell_id']} of run {str(other[0].get('run_id'))[:40]}): copied in from "
            "another run?")


def _load(path: str | Path) -> Loaded:
    loaded = _load_any(path)
    foreign = foreign_attempts(loaded.run, loaded.attempts)
    if foreign:
        loaded.warnings.append(foreign)
    return loaded


def _load_any(path: str | Path) -> Loaded:
    p = Path(path)
    if p.is_dir():
        run = read_run(p / RUN_JSON).raw if _present(p / RUN_JSON) else {}
        if _present(p / RESULTS_JSONL):
            attempts, warnings = read_jsonl(p / RESULTS_JSONL)
            return Loaded(run, attempts, warnings)
        if _present(p / RESULTS_JSON):
            return _load_any(p / RESULTS_JSON)
        raise UserError("no results.jsonl or results.json in this directory", str(p))
    if not _present(p):
        raise UserError("results file not found", str(p))
    guards.regular_file(p, "results file")
    if p.suffix == ".jsonl":
        run_path = p.parent / RUN_JSON
        run = read_run(run_path).raw if _present(run_path) else {}
        attempts, warnings = read_jsonl(p)
        return Loaded(run, attempts, warnings)
    doc = _read_json(p)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(
            doc.get("cells"), list):
        raise UserError("not an mlbench results file (expected keys schema, run, cells)", str(p))
    run = doc.get("run") or {}
    if not isinstance(run, dict):
        raise UserError("not an mlbench results file: 'run' is not a mapping", str(p))
    attempts, warnings = [], []
    for i, cell in enumerate(doc["cells"]):
        try:
            attempts.append(records.check_attempt(cell))
        except attempt.NewerFormat as exc:
            raise UserError(str(exc), f"{p}: cells[{i}].format") from None
        except ValueError as exc:
            warnings.append(f"{p}: cells[{i}]: skipped ({_cut(str(exc), 160)})")
    return Loaded(run, attempts, warnings)


def _present(p: Path) -> bool:
    return p.exists() or p.is_symlink()


@dataclass
class RunDoc:
    """run.json, validated: `raw` as stored (every key kept), `config` the stored config."""
    raw: dict
    config: dict


def read_run(path: Path) -> RunDoc:
    """run.json, validated against records.RunInfo; anything else is a UserError (exit 2)."""
    from pydantic import ValidationError
    try:
        doc = _read_json(path)
    except UserError as exc:
        raise UserError(f"run.json is not mlbench output ({exc.what})", str(path)) from None
    if not isinstance(doc, dict):
        raise UserError("run.json is not mlbench output (not a JSON object)", str(path))
    try:
        info = records.RunInfo.model_validate(doc)
    except ValidationError as exc:
        raise UserError(f"run.json is not mlbench output ({records.first_problem(exc)})",
                        str(path)) from None
    return RunDoc(doc, info.config)


def _read_json(path: Path):
    guards.regular_file(path, path.name, guards.MAX_JSON_BYTES)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror}", str(path)) from None
    try:
        return records.parse_json(data)
    except records.BadJSON as exc:
        raise UserError(f"not valid JSON: {_cut(str(exc), 160)}", str(path)) from None


class Store:
    """Writer side of a run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.jsonl = self.root / RESULTS_JSONL
        self._order = 0
        self._index: Index | None = None
        self._stale = False  # appended since the index was read: reread before finalize

    def cell_dir(self, cell_id: str) -> Path:
        d = self.root / "cells" / cell_id
        if d.resolve().parent != (self.root / "cells").resolve():
            raise UserError(f"cell id {cell_id!r} would escape the run directory", str(self.root))
        d.mkdir(parents=True, exist_ok=True)
        return d

    def index(self) -> Index:
        """What is stored already: the latest attempt per cell, read once (a sweep never holds
        every attempt in memory; appends mark it stale, and finalize reads the latest back)."""
        if self._index is None:
            self._index = scan_latest(self.jsonl) if self.jsonl.exists() else Index()
            for w in self._index.warnings:
                print(f"warning: {w}", file=sys.stderr)
            self._order = max((a.get("order", 0) for a in self._index.latest.values()),
                              default=0)
        return self._index

    def drop_records(self) -> None:
        """Forget the stored records once the sweep is planned (keeping the count and the
        order), so a long sweep's memory stays flat; finalize reads the latest back."""
        self.index().latest = {}
        self._stale = True

    def existing_attempts(self) -> list[dict]:
        """The latest stored attempt per (cell_id, repeat), in the order they were first run."""
        return self.index().attempts()

    def append(self, record: dict) -> None:
        """Append one attempt durably: one write, flush, fsync. A crash leaves at most a torn
        last line, which readers skip. A failed write (disk full) is taken back, so the lines
        before it stay exactly as they were, and becomes a UserError."""
        index = self.index()
        # identity first (the head scan_latest reads), then the rest in the record's order
        record = {"cell_id": record.get("cell_id"), "repeat": record.get("repeat", 0),
                  **record, "format": attempt.FORMAT, "order": self._order + 1}
        try:
            line = (json.dumps(record, allow_nan=False, default=str) + "\n").encode()
        except ValueError:  # a NaN or infinity somewhere: stored as null, never lost
            line = (json.dumps(records.finite_copy(record), allow_nan=False, default=str)
                    + "\n").encode()
        _check_written(line, record.get("cell_id"))
        what = f"could not store the attempt of cell {record.get('cell_id')}"
        try:  # never through a planted link: the results would land in a foreign file
            fd = guards.open_for_write(self.jsonl, RESULTS_JSONL,
                                       os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise storage_error(exc, self.jsonl, what) from None
        try:
            size = os.fstat(fd).st_size
            try:
                _ensure_line_start(fd, self.jsonl)
                _write_all(fd, line)
                os.fsync(fd)
            except OSError as exc:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise storage_error(exc, self.jsonl, what) from None
        finally:
            os.close(fd)
        self._order += 1
        index.count += 1
        self._stale = True

    def write_run(self, run: dict) -> None:
        atomic_write(self.root / RUN_JSON, json.dumps(run, indent=2, default=str))

    def finalize(self, run: dict, annotate=None) -> list[dict]:
        """Write results.json and results.csv from the store (latest attempt per cell).

        `annotate(latest) -> dict` adds derived, per-run keys (e.g. warnings) to results.json.
        """
        if self._stale or self._index is None:
            self._index = scan_latest(self.jsonl) if self.jsonl.exists() else Index()
            self._stale = False
        latest = self._index.attempts()
        doc = {"schema": SCHEMA, "run": run, "cells": latest,
               **(annotate(latest) if annotate and latest else {})}
        atomic_write(self.root / RESULTS_JSON, json.dumps(doc, indent=1, default=str))
        atomic_write(self.root / RESULTS_CSV, to_csv(latest))
        return latest


def _check_written(line: bytes, cell_id) -> None:
    """The line as readers will read it, against the record's model: a record that does not
    validate is still stored (nothing measured is lost) and said, since readers will skip it."""
    from pydantic import ValidationError
    try:
        attempt.Attempt.model_validate_json(line)
    except ValidationError as exc:
        print(f"warning: the attempt of cell {cell_id} is stored as measured, but readers will "
              f"skip it ({records.first_problem(exc)})", file=sys.stderr)


def _ensure_line_start(fd: int, path: Path) -> None:
    """If a previous writer died mid-line, start on a fresh line so our record stays whole."""
    size = os.fstat(fd).st_size
    if size:
        # read through the descriptor already opened (O_NOFOLLOW), never the name again
        if os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


CSV_FIELDS = ["cell_id", "repeat", "framework", "model", "device", "batch_size", "precision",
              "status", "reason", "wall_s", "train_samples_per_s", "first_step_s",
              "epoch_time_s", "train_loss_mean_last_epoch", "eval_accuracy", "latency_p50_ms",
              "peak_device_bytes", "host_peak_rss_bytes", "params_trainable", "exit_code",
              "signal"]


def flat_row(a: dict) -> dict:
    """The headline figures of one attempt, for results.csv: read from the one flat row of an
    attempt (mlbench.results.aggregate.flatten), medians by mlbench.analysis.stats.median."""
    from . import aggregate
    from ..analysis import stats
    f = aggregate.flatten(0, a)
    step = stats.median(f["step_times_s"])
    lat = stats.median(f["latencies_s"])
    return {
        "cell_id": a["cell_id"], "repeat": a.get("repeat", 0), "framework": a.get("framework"),
        "model": a.get("model"), "device": a.get("device"), "batch_size": f["batch_size"],
        "precision": a.get("precision"), "status": a["status"], "reason": f["reason"],
        "wall_s": f["wall_s"],
        "train_samples_per_s": f["samples_per_step"] / step if step else None,
        "first_step_s": f["first_step_s"], "epoch_time_s": f["epoch_last_s"],
        "train_loss_mean_last_epoch": f["train_loss_mean_last_epoch"],
        "eval_accuracy": f["accuracy"],
        "latency_p50_ms": lat * 1000 if lat is not None else None,
        "peak_device_bytes": f["peak_device_bytes"],
        "host_peak_rss_bytes": f["host_peak_rss_bytes"],
        "params_trainable": f["params_trainable"], "exit_code": f["exit_code"],
        "signal": f["signal"],
    }


def to_csv(attempts: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for a in attempts:
        writer.writerow(flat_row(a))
    return buf.getvalue()
