"""The sweep: plan which cells to run (new, resume, only, failed), run them, keep every result.

Owns the run directory's lifecycle: the lock against a second mlbench on the same directory,
refusing to mix a new run into another run's results, run.json, appending each attempt as it
finishes, Ctrl-C/SIGTERM (the running cell is stopped and recorded as interrupted), and the
derived results.json/csv at the end. Must not import any ML framework.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .. import __version__
from ..analysis import ceiling, gate_verdicts
from ..config import schema as cfg, guards
from . import contention, order, preflight
from ..host import sysinfo
from ..errors import UserError
from .executor import Executor
from .executor_table import create as create_executor
from .launcher import Stop
from .matrix import Cell, expand, resolve_only
from ..results.store import (
    STORAGE_ERRNOS, Store, foreign_attempts, latest_attempts, read_run, storage_error)

DONE = ("ok", "skipped")
FAILED = ("failed", "oom", "timeout", "crashed", "interrupted")


@dataclass
class Plan:
    mode: str  # new | resume | only | failed
    only: tuple[str, ...] = ()
    archive: bool = False


@dataclass
class Outcome:
    out_dir: Path
    planned: int
    ran: int
    latest: list[dict]
    interrupted_by: str | None = None
    warnings: list[str] = field(default_factory=list)
    stopped: int = 0  # of `ran`: the cells stopped by the interrupt (status interrupted)

    @property
    def exit_code(self) -> int:
        if self.interrupted_by:
            return 130 if self.interrupted_by == "SIGINT" else 143
        return 1 if any(a["status"] in FAILED for a in self.latest) else 0


class Hooks:
    """What the CLI shows while the sweep runs (the runner itself prints nothing)."""

    def note(self, text: str) -> None: ...
    def start(self, total: int, skipped_done: int) -> None: ...
    def cell_start(self, cell: Cell, index: int, total: int) -> None: ...
    def message(self, cell: Cell, msg: dict) -> None: ...
    def cell_end(self, cell: Cell, record: dict) -> None: ...
    def stop(self) -> None: ...


class RunLock:
    def __init__(self, out_dir: Path):
        self.path = out_dir / ".mlbench.lock"
        self.fh = None

    def __enter__(self) -> "RunLock":
        # never through a planted link (the pid would overwrite a foreign file), never a directory
        self.fh = os.fdopen(guards.open_for_write(self.path, "the run's lock file",
                                                  os.O_RDWR | os.O_CREAT), "r+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "?"
            self.fh.close()
            raise UserError(f"another mlbench run (pid {holder}) is using this output "
                            "directory; wait for it or choose another --output",
                            str(self.path.parent)) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def prepare_dir(out_dir: Path) -> None:
    if str(out_dir).strip() == "":
        raise UserError("output directory is empty; name a directory", "output_dir")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("output path exists and is not a directory", str(out_dir))
    guards.writable_dir(out_dir, "output directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        os.close(guards.open_for_write(probe, "a write test file", os.O_WRONLY | os.O_CREAT))
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory is not writable: {exc.strerror}", str(out_dir)) \
            from None
    guards.run_layout(out_dir)


def check_interpreters(config: cfg.Config) -> None:
    for fw, s in config.framework_settings.items():
        if s.python and not (os.path.isfile(s.python) and os.access(s.python, os.X_OK)):
            raise UserError(f"interpreter {s.python!r} does not exist or is not executable",
                            f"framework_settings.{fw}.python")
        if s.python:  # bounded: an interpreter that never answers is named, not waited for
            guards.interpreter_answers(s.python, f"framework_settings.{fw}.python")


def select(cells: list[Cell], previous: list[dict], plan: Plan) -> tuple[list[Cell], int]:
    """The cells to run now, and how many are already done and kept."""
    latest = {(a["cell_id"], int(a.get("repeat", 0))): a for a in latest_attempts(previous)}
    if plan.mode == "only":
        only = resolve_only(plan.only, cells)  # a model's id without its options hash too
        known = {c.cell_id for c in cells} | {a["cell_id"] for a in previous}
        missing = [o for o in only if o not in known]
        if missing:
            import difflib
            close = difflib.get_close_matches(missing[0], sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"no cell {missing[0]!r} in this run{hint}", "--only")
        gone = [o for o in only if o not in {c.cell_id for c in cells}]
        if gone:  # stored once, not in the sweep now: running nothing would say "done"
            raise UserError(f"cell {gone[0]!r} is not in this run's sweep any more; nothing "
                            "would run", "--only")
        todo = [c for c in cells if c.cell_id in only]
        return todo, len(cells) - len(todo)
    if plan.mode == "failed":
        todo = [c for c in cells if c.key in latest and latest[c.key]["status"] in FAILED]
        return todo, len(cells) - len(todo)
    if plan.mode == "resume":
        todo = [c for c in cells if not (c.key in latest and latest[c.key]["status"] in DONE
                                         and latest[c.key].get("fingerprint") == c.fingerprint)]
        return todo, len(cells) - len(todo)
    return list(cells), 0


def _stored_run_id(out_dir: Path) -> str:
    try:
        return read_run(out_dir / "run.json").raw.get("run_id") or "?"
    except UserError:
        return "?"


def archive_existing(out_dir: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = out_dir / "archive" / stamp
    n = 1
    while dest.exists():  # two archives in one second
        n += 1
        dest = out_dir / "archive" / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    # the gate's verdicts belong to the archived run; ceilings.json is a host cache and stays
    for name in ("run.json", "results.jsonl", "results.json", "results.csv", "cells",
                 gate_verdicts.GATE_JSON, gate_verdicts.GATE_WORK_DIR):
        if (out_dir / name).exists():
            shutil.move(str(out_dir / name), str(dest / name))
    return dest


def run_sweep(config: cfg.Config, out_dir: Path, plan: Plan, hooks: Hooks,
              executor: Executor | None = None,
              on_finalized: Callable[[Path], None] | None = None) -> Outcome:
    check_interpreters(config)
    ex = executor or create_executor(config)  # `ray` missing: refused before any write
    prepare_dir(out_dir)
    with RunLock(out_dir):
        store = Store(out_dir)
        previous = store.existing_attempts()  # the latest per cell: all that deciding needs
        if previous and plan.mode == "new":
            # decided before run.json is touched: a refused run changes nothing on disk
            if not plan.archive:
                raise UserError(
                    f"already holds {store.index().count} measured attempt(s) of run "
                    f"{_stored_run_id(out_dir)}; use --resume to finish it, --archive to move "
                    "them aside and start anew, or --output for another directory",
                    str(out_dir))
            archive_existing(out_dir)
            previous = []
            store = Store(out_dir)
        run = store_run_info(store, config, plan, previous)
        foreign = foreign_attempts(run, previous)
        if foreign:
            hooks.note(f"warning: {foreign}")
        cells = expand(config)
        todo, kept = select(cells, previous, plan)
        if plan.mode == "failed" and not todo:
            hooks.note(f"no failed cells in {out_dir}: nothing to rerun")
        todo = order.interleave(todo)  # frameworks alternate: drift is not the framework's
        run["order"] = order.as_record(todo)
        stop = Stop()
        old = _install_signals(stop)  # Ctrl-C stops the gate and the ceilings too
        try:
            if todo:
                _preflight(config, out_dir, plan, hooks, ex, run, stop, todo)
                store.write_run(run)
        except BaseException:
            _restore_signals(old)
            ex.close()
            raise
        del previous
        store.drop_records()
        by_key = {c.key: c for c in todo}
        ran = stopped = 0
        failure: BaseException | None = None
        try:
            hooks.start(len(todo), kept)
            index = 0

            def on_start(cell: Cell) -> None:
                nonlocal index
                index += 1
                hooks.cell_start(cell, index, len(todo))

            contended = []  # on_contention: retry reruns these once, after the sweep
            for record in ex.run(
                    todo, lambda c: store.cell_dir(c.cell_id), stop, on_start, hooks.message):
                record["run_id"] = run["run_id"]
                store.append(record)
                ran += 1
                stopped += record["status"] == "interrupted"
                hooks.cell_end(by_key[(record["cell_id"], record["repeat"])], record)
                if config.measurement.on_contention == "retry" and \
                        contention.is_contended(record):
                    contended.append(record)
            if contended and not stop.requested:
                ran += _retry(config, ex, store, contended, by_key, run["run_id"], stop, hooks)
        except OSError as exc:
            # A full or failing disk while preparing a cell (request.json, stderr log).
            failure = exc
            if exc.errno not in STORAGE_ERRNOS:
                raise
            failure = storage_error(exc, Path(exc.filename or out_dir),
                                    "could not write the cell's files")
            raise failure from None
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _restore_signals(old)
            hooks.stop()
            ex.close()
            run["ended_at"] = _now()
            try:
                store.write_run(run)
                latest = store.finalize(run, annotate=lambda lt: _warnings(lt, out_dir))
            except UserError:
                if failure is None:
                    raise
                # The first error is the one to show; the stored files are intact either way.
                pass
        if on_finalized:
            on_finalized(out_dir)
        return Outcome(out_dir, len(cells), ran, latest,
                       stop.signal_name if stop.requested else None, stopped=stopped)


def _retry(config: cfg.Config, ex: Executor, store: Store, contended: list[dict],
           by_key: dict, run_id: str, stop: Stop, hooks: Hooks) -> int:
    """Run each contended attempt's cell once more, each after waiting (at most quiet_wait_s)
    for a quiet machine. Both attempts are kept; the retry is the latest, so it is the one
    results.json holds, and its `retry` says which attempt it replaces and why."""
    prev = {(r["cell_id"], r["repeat"]): r for r in contended}
    cells = [by_key[k] for k in prev]
    waits: dict[tuple, tuple] = {}

    def on_start(cell: Cell) -> None:
        waits[cell.key] = contention.wait_for_quiet(int(cell.request["threads"]),
                                                    config.measurement.quiet_wait_s)
        hooks.note(f"retrying {cell.cell_id} r{cell.repeat} (contended)")
        hooks.cell_start(cell, cells.index(cell) + 1, len(cells))

    ran = 0
    for record in ex.run(cells, lambda c: store.cell_dir(c.cell_id), stop, on_start,
                         hooks.message):
        key = (record["cell_id"], record["repeat"])
        quiet, waited, other = waits.get(key, (None, None, None))
        record["run_id"] = run_id
        record["retry"] = {"of_attempt_started_at": prev[key].get("started_at"),
                           "reason": contention.warnings(prev[key]), "found_quiet": quiet,
                           "waited_s": waited, "other_cores_before": other}
        store.append(record)
        ran += 1
        hooks.cell_end(by_key[key], record)
    return ran


def _preflight(config: cfg.Config, out_dir: Path, plan: Plan, hooks: Hooks, ex: Executor,
               run: dict, stop: Stop, todo: list[Cell] | None = None) -> None:
    """The gate and the ceilings before the cells, where the cells run: their workers start
    through the executor (ex.launch) and stop on Ctrl-C. On a cluster also once per node kind;
    a driver that runs no cells measures nothing itself: the run's gate verdicts and
    ceilings.json are then the first node kind's."""
    run["executor"] = ex.describe()  # the nodes cells run on (starts/joins Ray)
    here = ex.runs_cells_here()
    if here:
        # a rerun (--resume, --failed, --only) reruns the gate rows of the cells it runs
        preflight.run_gate(config, out_dir, hooks.note, again=plan.mode == "new", stop=stop,
                           launch=ex.launch, cells=todo)
        if stop.requested:
            return
        run["ceilings"] = preflight.measure(config, out_dir, hooks.note, stop=stop,
                                           launch=ex.launch)
    if not ex.spans_nodes or stop.requested:
        return
    # the gate and the ceilings where the cells run: once per node kind
    host = run["host"]["hostname"] if here else None
    if config.verify and preflight.real_frameworks(config):
        elsewhere = ex.kinds_elsewhere(host)
        if elsewhere:  # the driver's own kind ran the gate above: not announced twice
            hooks.note(f"equivalence gate on node kind(s) {', '.join(elsewhere)} ...")
        run["gate_by_kind"] = ex.on_each_kind(preflight.gate_here, config, host)
        if not here and not preflight.adopt_gate_rows(run["gate_by_kind"], out_dir, config,
                                                      todo if plan.mode != "new" else None):
            _adopt(run["gate_by_kind"], "gate", out_dir / gate_verdicts.GATE_JSON)
    if config.ceiling and (run.get("ceilings") is not None or not here):
        elsewhere = ex.kinds_elsewhere(host)
        if elsewhere:
            hooks.note(f"device ceilings on node kind(s) {', '.join(elsewhere)} ...")
        run["ceilings_by_kind"] = ex.on_each_kind(preflight.ceilings_here, config, host)
        if not here:
            doc = _adopt(run["ceilings_by_kind"], "doc", out_dir / ceiling.CEILINGS_JSON)
            run["ceilings"] = ceiling.best_flops(doc) if doc else None


def _adopt(by_kind: dict, key: str, path: Path) -> dict | None:
    """The first node kind's document (its gate verdicts or ceilings.json) as the run's own."""
    from ..results.store import atomic_write
    for kind in sorted(by_kind):
        doc = (by_kind[kind].get("result") or {}).get(key)
        if isinstance(doc, dict):
            atomic_write(path, json.dumps(doc, indent=1, default=str))
            return doc
    return None


def _warnings(latest: list[dict], run_dir: Path | None = None) -> dict:
    """Per cell: warnings and the summary the report shows (mlbench.results.summary.annotate)."""
    from ..results import summary
    return summary.annotate(latest, run_dir)


def store_run_info(store: Store, config: cfg.Config, plan: Plan, previous: list[dict]) -> dict:
    existing = {}
    run_path = store.root / "run.json"
    if previous and run_path.exists():
        existing = read_run(run_path).raw  # validated: a damaged run.json is a clear exit 2
    run = {
        "schema": 1,
        "run_id": existing.get("run_id") or uuid.uuid4().hex[:12],
        "mlbench_version": __version__,
        "started_at": existing.get("started_at") or _now(),
        "sessions": existing.get("sessions", []) + [{"started_at": _now(), "mode": plan.mode}],
        "config": cfg.dump(config),
        "host": sysinfo.host(),
        "frameworks": sysinfo.frameworks(config.framework_settings, config.base_frameworks),
    }
    store.write_run(run)
    return run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _install_signals(stop: Stop):
    def handler(signum, frame):
        stop.requested = True
        stop.signal_name = signal.Signals(signum).name

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)
