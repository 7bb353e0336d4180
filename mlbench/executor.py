"""Executors: how cells reach workers. The runner hands over cells and gets attempt records back.

An executor is a class with `run` (cells in, one attempt record per cell out, as each finishes),
`describe` (where cells run, for run.json), `on_each_kind` (the gate and the ceilings once per
node kind), `runs_cells_here`, `launch` (one worker that is not a cell: a gate process, a
ceiling; every worker, cells included, starts through mlbench.launcher.launch, the one spawner)
and `close`. `LocalExecutor` runs cells one at a time on this machine: CPU cells must never
overlap (they would measure each other). The Ray executor (mlbench.ray_executor, imported only
when chosen) runs them in parallel over a Ray cluster through the same launcher. Every attempt
record carries `placement`: where it ran. Must not import any ML framework, nor ray.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from . import gpu, launcher
from .config import Config
from .errors import UserError
from .matrix import Cell

OnMessage = Callable[[Cell, dict], None]
CellDir = Callable[[Cell], Path]


class Executor(Protocol):
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

    def runs_cells_here(self) -> bool:
        """Whether this host runs cells (else the gate and the ceilings are measured only on
        the nodes that do, never here)."""
        ...

    def launch(self, job: launcher.Job, job_dir: Path, stop: launcher.Stop,
               on_message: Callable[[dict], None] = lambda m: None) -> dict:
        """Start one worker that is not a cell (a gate process, a ceiling) where this executor
        runs workers, through the one spawner; its attempt record."""
        ...


def local_placement(cell: Cell) -> dict:
    """Where a local cell ran: this host, the cell's own GPU index and that GPU's UUID through
    the visible-device mapping (an inherited CUDA_VISIBLE_DEVICES=3 makes `cuda:0` GPU 3, so
    the raw PCI index would name another GPU)."""
    index = int(cell.device.split(":")[1]) if cell.device.startswith("cuda") else None
    v = gpu.visible(cell.device) if index is not None else None
    return {"executor": "local", "hostname": platform.node(), "node_id": None,
            "gpu_ids": [] if index is None else [str(index)],
            "gpu_uuid": None if v is None else v.uuid, "node_kind": "local"}


class LocalExecutor:
    def run(self, cells: Iterable[Cell], cell_dir: CellDir, stop: launcher.Stop,
            on_start: Callable[[Cell], None], on_message: OnMessage) -> Iterator[dict]:
        for cell in cells:
            if stop.requested:
                return
            on_start(cell)
            record = launcher.run_cell(cell, cell_dir(cell), stop,
                                       lambda msg, c=cell: on_message(c, msg))
            record["placement"] = local_placement(cell)
            yield record

    def describe(self) -> dict:
        return {"kind": "local", "nodes": [{"hostname": platform.node(), "node_id": None}]}

    def on_each_kind(self, fn: Callable, *args) -> dict[str, dict]:
        return {"local": {"node_id": None, "hostname": platform.node(), "result": fn(*args)}}

    def runs_cells_here(self) -> bool:
        return True

    def launch(self, job: launcher.Job, job_dir: Path, stop: launcher.Stop,
               on_message: Callable[[dict], None] = lambda m: None) -> dict:
        return launcher.launch(job, job_dir, stop, on_message)

    def close(self) -> None:
        pass


def make_executor(config: Config) -> Executor:
    """The executor a config asks for. `ray` without Ray installed is a UserError (exit 2)."""
    settings = config.executor
    if settings.kind == "local":
        return LocalExecutor()
    try:
        from .ray_executor import RayExecutor
    except ImportError as exc:
        if exc.name != "ray" and not str(exc.name or "").startswith("ray."):
            raise
        raise UserError("the ray executor needs Ray, which is not installed; install it with "
                        "pip install 'mlbench[ray]'", "executor.kind") from None
    pythons = {fw: (s.python if (s := config.framework_settings.get(fw)) and s.python
                    else sys.executable) for fw in config.frameworks}
    return RayExecutor(settings, pythons)
