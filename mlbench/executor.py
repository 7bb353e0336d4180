"""Executors: how cells reach workers. The runner hands over cells and gets attempt records back.

`LocalExecutor` runs cells one at a time on this machine: CPU cells must never overlap (they would
measure each other). A cluster executor (e.g. on Ray) implements the same `run` and plugs in
without touching the runner. Must not import any ML framework.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from . import launcher
from .matrix import Cell

OnMessage = Callable[[Cell, dict], None]
CellDir = Callable[[Cell], Path]


class Executor(Protocol):
    def run(self, cells: Iterable[Cell], cell_dir: CellDir, stop: launcher.Stop,
            on_start: Callable[[Cell], None], on_message: OnMessage) -> Iterator[dict]:
        """Yield one attempt record per cell, as each finishes; stop early when asked."""
        ...


class LocalExecutor:
    def run(self, cells: Iterable[Cell], cell_dir: CellDir, stop: launcher.Stop,
            on_start: Callable[[Cell], None], on_message: OnMessage) -> Iterator[dict]:
        for cell in cells:
            if stop.requested:
                return
            on_start(cell)
            yield launcher.run_cell(cell, cell_dir(cell), stop,
                                    lambda msg, c=cell: on_message(c, msg))
