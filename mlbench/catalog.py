"""What can be benchmarked: frameworks, their worker scripts, and the model specs of workers/.

Owns the framework names and aliases, where the worker scripts live, and read-only access to
workers/specs.py (loaded from its file: that module is stdlib-only at import time, so reading
presets and parameter counts from it imports no ML framework and keeps one source of truth).
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from types import ModuleType

FRAMEWORKS = ("pytorch", "tensorflow", "jax", "numpy")
TEST_FRAMEWORKS = ("dummy",)  # the fault-injection worker of the test suite and benchmarks
ALIASES = {"torch": "pytorch", "tf": "tensorflow", "flax": "jax", "np": "numpy"}
# The distribution whose version `mlbench list` shows, per framework.
DISTRIBUTIONS = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax", "numpy": "numpy",
                 "dummy": None}
PRECISIONS = ("fp32", "bf16", "fp16")


def workers_dir() -> Path:
    override = os.environ.get("MLBENCH_WORKERS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "workers"


def worker_script(framework: str) -> Path:
    return workers_dir() / f"{framework}_worker.py"


def canonical_framework(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


@lru_cache(maxsize=1)
def specs() -> ModuleType:
    path = workers_dir() / "specs.py"
    spec = importlib.util.spec_from_file_location("_mlbench_worker_specs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def models() -> tuple[str, ...]:
    return tuple(specs().MODELS)
