"""A long step's progress while it runs: its elapsed time, live on a terminal, as a plain line
every few seconds otherwise (a file, a CI log), so a long silent wait never looks like a hang.

Owns Heartbeat (a daemon thread saying "<what>, <N> s" every HEARTBEAT_S seconds) and `watched`,
which wraps the one spawner (mlbench.run.launcher.Launch) so that every worker of the steps before
the cells (the equivalence gate, the device ceilings) is said when it starts and ends, with its
time. mlbench.run.progress uses Heartbeat for the cells. Imports neither the runner nor an ML
framework (mlbench.run.preflight, which the runner imports, uses it).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.markup import escape

HEARTBEAT_S = 10.0  # a plain line this often while a step runs and the output is no terminal


class Heartbeat:
    """While something long runs: `what` (and how far it got) said with its elapsed time
    every `interval` seconds by a daemon thread, as a plain line, until `stop()`. Used only when
    the output is not a terminal (a terminal has the live display)."""

    def __init__(self, say: Callable[[str], None], interval: float = HEARTBEAT_S):
        self.say, self.interval = say, interval
        self.what: str | None = None   # None: nothing running, nothing to say
        self.since = time.monotonic()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def set(self, what: str | None, restart: bool = True) -> None:
        """What runs now (None: nothing); `restart` starts its clock."""
        if restart:
            self.since = time.monotonic()
        self.what = what

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._beat, name="mlbench-heartbeat",
                                        daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            what = self.what
            if what is not None:
                self.say(f"{what}, {time.monotonic() - self.since:.0f} s")

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=1)


def _console_of(say) -> Console | None:
    """The rich console behind a `say` (RichHooks.note), if any."""
    return getattr(getattr(say, "__self__", None), "console", None)


def watched(launch, say: Callable[[str], None], step: Callable[[object, Path], str],
            interval: float = HEARTBEAT_S):
    """`launch` (mlbench.run.launcher.Launch) wrapped so that every worker it starts is said
    (`step(job, job_dir)`: e.g. "equivalence gate: tensorflow on cpu fp32 (mlp, cnn.tiny)")
    with its outcome and time when it ends, and, while it runs, its elapsed time: a live status
    line on a terminal, a plain line every `interval` seconds otherwise."""
    console = _console_of(say)
    live = console is not None and console.is_terminal

    def run(job, job_dir, stop):
        what = step(job, job_dir)
        t0 = time.monotonic()
        if live:
            with console.status(escape(what)) as status:
                beat = threading.Event()

                def tick():
                    while not beat.wait(1.0):
                        status.update(escape(f"{what}, {time.monotonic() - t0:.0f} s"))
                ticker = threading.Thread(target=tick, daemon=True)
                ticker.start()
                try:
                    record = launch(job, job_dir, stop)
                finally:
                    beat.set()
                    ticker.join(timeout=2)
        else:
            say(f"{what} ...")
            heart = Heartbeat(say, interval)
            heart.set(what)
            heart.start()
            try:
                record = launch(job, job_dir, stop)
            finally:
                heart.stop()
        status_text = record.get("status", "?") if isinstance(record, dict) else "?"
        say(f"{what}: {status_text} in {time.monotonic() - t0:.1f} s")
        return record
    return run

STYLE = {"ok": "green", "skipped": "yellow", "failed": "red", "oom": "magenta",
         "timeout": "red", "crashed": "red", "interrupted": "yellow"}


