"""The sweep matrix: a Config expanded into cells, each with its worker request and fingerprint.

Owns cell identity (a path-safe id), the request a worker receives, and the fingerprint that tells
resume whether a stored result still answers the same question. Each framework variant of the
sweep (config.variants: a framework in one mode, e.g. pytorch-compile) is a competitor of its own:
its label takes the framework's place in the cell id, the request keeps the real framework (it
picks the worker script) and carries the variant's options, which the fingerprint covers.
Must not import ML frameworks.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

import psutil

from . import selection
from ..config.schema import Config, ModelEntry
from .protocol import BenchRequest
from .selection import cell_id  # noqa: F401 - the id of a cell, also the matrix API

# Request fields that do not change what is measured, left out of the fingerprint.
_NOT_FINGERPRINTED = ("cell_id", "repeat", "timeout_s")


@dataclass(frozen=True)
class Cell:
    cell_id: str
    framework: str
    model: ModelEntry
    device: str
    batch_size: int
    precision: str
    repeat: int
    request: dict
    fingerprint: str
    python: str
    timeout_s: float
    label: str = ""            # the variant's label ("" : the framework's name)
    mode: str = "default"      # default | best | custom (catalog.classify_mode)
    mode_settings: dict = field(default_factory=dict)  # the options that define the mode

    @property
    def competitor(self) -> str:
        """What the record and the report call this cell's framework: the variant label."""
        return self.label or self.framework

    @property
    def key(self) -> tuple[str, int]:
        return self.cell_id, self.repeat


def short_id(cell: Cell) -> str:
    """The cell's id with its model's options hash left out (`pytorch-mine-cpu-bs64-fp32` for
    the model label `mine.1a2b3c` of a model given options but no label)."""
    m = cell.model
    label = m.id_label
    if m.options and not m.label:
        label = label.rsplit(".", 1)[0]
    return cell_id(cell.competitor, label, cell.device, cell.batch_size, cell.precision)


def resolve_only(names: tuple[str, ...] | list[str], cells: list[Cell]) -> list[str]:
    """`--only` names as cell ids: an id as is; a short id (short_id) that names exactly one
    cell of the sweep, as that cell's id; anything else as given (the caller says it is
    unknown)."""
    ids = {c.cell_id for c in cells}
    by_short: dict[str, set[str]] = {}
    for c in cells:
        by_short.setdefault(short_id(c), set()).add(c.cell_id)
    out = []
    for name in names:
        if name not in ids and len(by_short.get(name, ())) == 1:
            name = next(iter(by_short[name]))
        out.append(name)
    return out


def resolve_threads(config: Config) -> int:
    """The same thread count for every framework: the config's, or one per physical core."""
    return config.threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1


def expand(config: Config) -> list[Cell]:
    threads = resolve_threads(config)
    cells = []
    for var, model, device, bs, prec in selection.combinations(config):
        fw, options = var.framework, var.options
        settings = config.framework_settings.get(fw)
        python = (settings.python if settings and settings.python else sys.executable)
        cid = selection.cell_id(var.label, model.id_label, device, bs, prec)
        request = BenchRequest(
            cell_id=cid, framework=fw, model=model.name,
            model_options=model.model_options, device=device, batch_size=bs,
            precision=prec, epochs=config.epochs, seed=config.seed,
            train_samples=model.train_samples or config.train_samples,
            eval_samples=model.eval_samples or config.eval_samples,
            warmup_iterations=config.warmup_iterations,
            timed_iterations=config.timed_iterations, threads=threads,
            tf32=config.tf32, options=options, init=config.init,
            data_path=model.data,  # absolute: config.load_config resolves it
            memory_limit_mb=config.memory_limit_mb,
            # a user's model file's hash: fingerprinted
            user_model=model.user_model if model.source is not None else None,
            measurement=config.measurement.wire(),
            serving=config.serving.request(config.scenarios),
        ).to_wire()
        fp = fingerprint(request)
        for r in range(config.repeats):
            cells.append(Cell(cid, fw, model, device, bs, prec, r, {**request, "repeat": r}, fp,
                              python, config.timeout_s, var.label, var.mode, dict(options)))
    return cells


def fingerprint(request: dict) -> str:
    body = {k: v for k, v in request.items() if k not in _NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
