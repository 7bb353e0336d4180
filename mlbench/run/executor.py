"""The executor protocol: how cells reach workers. The runner hands over cells and gets attempt
records back, whichever executor it is (mlbench.run.executor_table names them all and builds the
chosen one; the runner imports none of them).

An executor is a class with `from_config` (built from the validated config), `run` (cells in,
one attempt record per cell out, as each finishes), `describe` (where cells run, for run.json),
`spans_nodes` and `kinds_elsewhere` (whether cells run on other machines, and which node kinds
are not this host's), `on_each_kind` (the gate and the ceilings once per node kind),
`runs_cells_here`, `launch` (one worker that is not a cell: a gate process, a ceiling; every
worker, cells included, starts through mlbench.run.launcher.launch, the one spawner) and `close`.
Every attempt record carries `placement`: where it ran. Must not import any ML framework.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

if TYPE_CHECKING:
    from . import launcher
    from ..config.schema import Config
    from .matrix import Cell

OnMessage = Callable[["Cell", dict], None]
CellDir = Callable[["Cell"], Path]


class Executor(Protocol):
    # cells may run on other machines: the gate and the ceilings then run once per node kind
    spans_nodes: bool

    @classmethod
    def from_config(cls, config: Config) -> Executor:
        """The executor for this validated config (config.executor holds its settings)."""
        ...

    def run(self, cells: Iterable[Cell], cell_dir: CellDir, stop: launcher.Stop,
            on_start: Callable[[Cell], None], on_message: OnMessage) -> Iterator[dict]:
        """Yield one attempt record per cell, as each finishes; stop early when asked."""
        ...

    def describe(self) -> dict:
        """Where cells run: the executor kind and its nodes (stored in run.json)."""
        ...

    def close(self) -> None:
        """Release what the executor holds (a Ray connection, a cluster it started)."""
        ...

    def on_each_kind(self, fn: Callable, *args) -> dict[str, dict]:
        """Run fn(*args) once on a node of every node kind (hardware and framework versions),
        holding that node alone: {kind: {"node_id", "hostname", "result" or "error"}}."""
        ...

    def kinds_elsewhere(self, driver_host: str | None) -> list[str]:
        """The node kinds on_each_kind measures on a host other than `driver_host`."""
        ...

    def runs_cells_here(self) -> bool:
        """Whether this host runs cells (else the gate and the ceilings are measured only on
        the nodes that do, never here)."""
        ...

    def launch(self, job: launcher.Job, job_dir: Path, stop: launcher.Stop,
               on_message: Callable[[dict], None] = lambda m: None) -> dict:
        """Start one worker that is not a cell (a gate process, a ceiling) where this executor
        runs workers, through the one spawner; its attempt record."""
        ...
