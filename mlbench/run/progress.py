"""What the user sees while a sweep runs and when it ends (rich, through typer).

Owns the live progress display (cell n of N, the cell, its phase and elapsed time, the sweep's
ETA), one line per finished cell, and the end-of-run summary by status with the command that
reruns each failed cell. On a terminal the display is live; when the output is a file or a CI
log, a plain line every HEARTBEAT_S seconds (mlbench.run.heartbeat, which also reports the gate's
and the ceilings' workers) says what runs and for how long ("cell X (3 of 8): train epoch 1
step 40/64, 23 s"), so a long silent wait never looks like a hang.
Must not import any ML framework.
"""
from __future__ import annotations

import shlex
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from .heartbeat import HEARTBEAT_S, Heartbeat
from .matrix import Cell
from .runner import FAILED, Hooks, Outcome

STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "oom": "magenta",
         "timeout": "red", "crashed": "red", "interrupted": "yellow"}


class CellElapsed(ProgressColumn):
    """The running cell's own elapsed time (the bar's clock is the sweep's)."""

    def __init__(self, hooks: "RichHooks"):
        super().__init__()
        self.hooks = hooks

    def render(self, task):
        return f"{time.monotonic() - self.hooks.t_cell:4.0f} s" if self.hooks.t_cell else ""


# the worker's phase markers, as a person reads them (the markers themselves are for the
# parent's contention and energy meters)
PHASE_WORDS = {"train_steady": "train, steady state",
               "inference_steady": "inference, timed samples"}


class RichHooks(Hooks):
    def __init__(self, console: Console | None = None, heartbeat_s: float = HEARTBEAT_S):
        self.console = console or Console(stderr=True)
        self.heartbeat_s = heartbeat_s
        self.progress: Progress | None = None
        self.task = None
        self.t_cell = 0.0
        self.heart: Heartbeat | None = None
        self.label = ""

    def note(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    def start(self, total: int, skipped_done: int) -> None:
        if skipped_done:
            self.console.print(f"keeping {skipped_done} cell(s) already done; {total} to run")
        self.progress = Progress(
            TextColumn("[bold]{task.fields[cell]}"), TextColumn("{task.fields[phase]}"),
            CellElapsed(self), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=True,
            refresh_per_second=2, disable=not self.console.is_terminal)
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=total, cell="", phase="")
        if not self.console.is_terminal:
            self.heart = Heartbeat(self.note, self.heartbeat_s).start()

    def cell_start(self, cell: Cell, index: int, total: int) -> None:
        self.t_cell = time.monotonic()
        label = f"{cell.cell_id}" + (f" r{cell.repeat}" if cell.repeat else "")
        self.label = f"cell {label} ({index} of {total})"
        self.progress.update(self.task, cell=escape(label), phase="starting")
        if self.heart:
            self.heart.set(f"{self.label}: starting")

    def message(self, cell: Cell, msg: dict) -> None:
        phase = msg.get("phase") or msg.get("type", "")
        phase = ("train: extra steady-state blocks (measurement minimums)" if msg.get("extra")
                 else PHASE_WORDS.get(phase, phase))
        if msg.get("type") == "progress" and "epoch" in msg:
            phase = f"train epoch {msg['epoch'] + 1} step {msg.get('step')}/{msg.get('steps')}"
        self.progress.update(self.task, phase=escape(str(phase)))
        if self.heart:
            self.heart.set(f"{self.label}: {phase}", restart=False)

    def cell_end(self, cell: Cell, record: dict) -> None:
        status = record["status"]
        extra = f" — {escape(str(record.get('reason') or ''))[:160]}" if status != "ok" else ""
        rep = f" r{cell.repeat}" if cell.repeat else ""
        self.console.print(f"[{STYLE.get(status, 'white')}]{status:<11}[/] "
                           f"{escape(cell.cell_id)}{rep} ({record['wall_s']:.1f} s){extra}",
                           highlight=False, soft_wrap=True)
        self.progress.advance(self.task)
        if self.heart:
            self.heart.set(None)

    def stop(self) -> None:
        if self.heart:
            self.heart.stop()
        if self.progress:
            self.progress.stop()


def print_summary(outcome: Outcome, console: Console, rerun_prefix: list[str]) -> None:
    counts: dict[str, int] = {}
    for a in outcome.latest:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    console.print(f"[bold]{escape(counts_line(outcome))}[/]", soft_wrap=True)
    table = Table()
    table.add_column("status")
    table.add_column("cells", justify="right")
    for status in ("ok", "skipped", *FAILED):
        if counts.get(status):
            table.add_row(f"[{STYLE[status]}]{status}[/]", str(counts[status]))
    console.print(table)
    # an interrupted cell was stopped, not failed: --resume finishes it (below)
    broken = [a for a in outcome.latest if a["status"] in FAILED and a["status"] != "interrupted"]
    if broken:
        console.print("[bold]to rerun a failed cell alone:[/]")
        for a in broken:
            cmd = shlex.join([*rerun_prefix, "--only", a["cell_id"]])
            console.print(f"  {escape(a['cell_id'])}: {escape(str(a.get('reason')))[:120]}\n"
                          f"    {escape(cmd)}", highlight=False, soft_wrap=True)
        console.print(f"every failed cell: {escape(shlex.join([*rerun_prefix, '--failed']))}",
                      soft_wrap=True)
    stopped = [a["cell_id"] for a in outcome.latest if a["status"] == "interrupted"]
    if outcome.interrupted_by or stopped:
        why = f"interrupted by {outcome.interrupted_by}" if outcome.interrupted_by else \
            "interrupted earlier"
        more = " ..." if len(stopped) > 5 else ""
        what = f" ({len(stopped)} stopped: {', '.join(stopped[:5])}{more})" if stopped else ""
        console.print(f"[yellow]{escape(why + what)}; finish with "
                      f"{escape(shlex.join([*rerun_prefix, '--resume']))}[/]", soft_wrap=True)


def counts_line(outcome: Outcome) -> str:
    """The sweep in numbers: its cells, those with a result in the run directory, what this
    session did (run to the end, stopped by an interrupt) and what it never started."""
    finished = outcome.ran - outcome.stopped
    text = (f"{outcome.planned} cell(s) in the sweep, {len(outcome.latest)} with a result in "
            f"{outcome.out_dir}: {finished} run now")
    if outcome.stopped:
        text += f", {outcome.stopped} stopped by the interrupt"
    not_started = outcome.planned - len(outcome.latest)
    if not_started > 0:
        text += f"; {not_started} not started"
    return text
