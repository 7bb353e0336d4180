"""The local executor: cells one at a time on this machine (CPU cells must never overlap: they
would measure each other), each through mlbench.run.launcher.run_cell, the one spawner. Its entry in
mlbench.run.executor_table is `local`, the default. Must not import any ML framework, nor ray.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ..host import gpu
from . import launcher
from .executor import CellDir, Executor, OnMessage

if TYPE_CHECKING:
    from ..config.schema import Config
    from .matrix import Cell


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
    spans_nodes = False

    @classmethod
    def from_config(cls, config: Config) -> Executor:
        return cls()

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

    def kinds_elsewhere(self, driver_host: str | None) -> list[str]:
        return []

    def runs_cells_here(self) -> bool:
        return True

    def launch(self, job: launcher.Job, job_dir: Path, stop: launcher.Stop,
               on_message: Callable[[dict], None] = lambda m: None) -> dict:
        return launcher.launch(job, job_dir, stop, on_message)

    def close(self) -> None:
        pass

