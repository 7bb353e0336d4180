"""The executor table: every way cells can run, by name. The one place that knows them.

Read by the config (which `executor.kind` names are valid, which `executor.*` keys each one
reads), the CLI (`--executor`'s choices and help) and the runner (which class to build, through
`create`). An entry names its class as "module:Class", imported only when that executor is
chosen (the Ray one imports ray): this module imports nothing of them, nor pydantic, so the CLI
reads it at start-up for free, and no module that reads the table imports an executor.

Adding an executor: its class (a classmethod `from_config(config)` returning an instance of
mlbench.run.executor.Executor) and one entry here; config, CLI and runner follow.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

DEFAULT = "local"


@dataclass(frozen=True)
class ExecutorEntry:
    target: str  # "package.module:Class", imported only when chosen
    summary: str  # what it does, for --help and the config's error lines
    options: tuple[str, ...] = ()  # the executor.* keys it reads besides `kind`
    needs: str | None = None  # a module it imports that may be missing ...
    needs_name: str = ""  # ... as the user knows it
    install: str = ""  # ... and how to install it


EXECUTORS: dict[str, ExecutorEntry] = {
    "local": ExecutorEntry("mlbench.run.local_executor:LocalExecutor",
                           "one cell at a time on this machine"),
    "ray": ExecutorEntry("mlbench.run.ray_executor:RayExecutor", "in parallel on a Ray cluster",
                         options=("address", "cells_per_node"), needs="ray", needs_name="Ray",
                         install="pip install 'mlbench[ray]'"),
}


def names() -> tuple[str, ...]:
    return tuple(EXECUTORS)


def choices_text() -> str:
    """`local (one cell at a time on this machine) or ray (...)`: --executor's help."""
    parts = [f"{name} ({entry.summary})" for name, entry in EXECUTORS.items()]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else parts[0]


def takes(option: str) -> tuple[str, ...]:
    """The executors that read `executor.<option>`."""
    return tuple(name for name, entry in EXECUTORS.items() if option in entry.options)


def executor_class(name: str) -> type:
    """The class of executor `name`, imported now; a missing dependency is a UserError."""
    entry = EXECUTORS[name]
    module, _, attr = entry.target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        missing = str(exc.name or "")
        if entry.needs is None or not (missing == entry.needs
                                       or missing.startswith(entry.needs + ".")):
            raise
        raise UserError(f"the {name} executor needs {entry.needs_name or entry.needs}, which is "
                        f"not installed; install it with {entry.install}",
                        "executor.kind") from None


def create(config: Any) -> Any:
    """The executor a validated config asks for (config.executor.kind), built by its class."""
    return executor_class(config.executor.kind).from_config(config)
