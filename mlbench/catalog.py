"""What can be benchmarked: frameworks, their worker scripts, and the model specs of workers/.

Owns the framework names and aliases, where the worker scripts live, the table of each
framework's modes (what "out of the box" and "at its best" mean: MODES, the one place that says
so; `mlbench list` prints it) and the variant of a framework a sweep runs, and read-only access to
workers/specs.py (loaded from its file: that module is stdlib-only at import time, so reading
presets and parameter counts from it imports no ML framework and keeps one source of truth).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

FRAMEWORKS = ("pytorch", "tensorflow", "jax", "numpy", "keras-jax", "keras-torch",
              "keras-tensorflow")
# One Keras 3 model on each Keras backend: workers/keras_worker.py serves the three.
KERAS = {"keras-jax": "jax", "keras-torch": "torch", "keras-tensorflow": "tensorflow"}
TEST_FRAMEWORKS = ("dummy",)  # the fault-injection worker of the test suite and benchmarks
ALIASES = {"torch": "pytorch", "tf": "tensorflow", "flax": "jax", "np": "numpy"}
# The distribution whose version `mlbench list` shows, per framework.
DISTRIBUTIONS = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax", "numpy": "numpy",
                 "dummy": None, **{k: "keras" for k in KERAS}}
PRECISIONS = ("fp32", "bf16", "fp16")


def workers_dir() -> Path:
    """The worker scripts: MLBENCH_WORKERS_DIR if set; an installed package's mlbench/workers;
    in a source checkout (or an editable install) the repository's workers/."""
    override = os.environ.get("MLBENCH_WORKERS_DIR")
    return Path(override) if override else _shipped("workers")


def configs_dir() -> Path:
    """The shipped configs (quick_test.yaml, the examples): mlbench/configs when installed, the
    repository's configs/ in a source checkout."""
    return _shipped("configs")


def _shipped(name: str) -> Path:
    # pyproject.toml maps the repository's top-level <name>/ to mlbench/<name> in the wheel; a
    # checkout has no mlbench/<name>, so the installed copy wins wherever it exists.
    here = Path(__file__).resolve().parent
    installed = here / name
    return installed if installed.is_dir() else here.parent / name


def worker_script(framework: str) -> Path:
    if framework in KERAS:
        return workers_dir() / "keras_worker.py"
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


# --- modes: each framework out of the box and at its best ----------------------------------------

@dataclass(frozen=True)
class Modes:
    """One framework's modes. `key`: the worker option that switches the mode (None: one mode
    only); `off`: its out-of-the-box value (what the worker does without the option); `best`:
    the options of the recommended fast mode ({} when the default already is the best);
    `best_values`: every value of `key` that is that fast mode (torch.compile's modes)."""
    framework: str
    default: str               # what the default mode is, in words
    best: dict[str, Any]
    best_label: str | None     # the best variant's label in a sweep (None: no separate cell)
    best_text: str             # what the best mode is, in words
    key: str | None = None
    off: Any = None
    best_values: tuple = field(default=())
    # the worker's own defaults (workers/<fw>_worker.py OPTIONS): set to these, an option
    # changes nothing and does not make a mode custom
    defaults: dict[str, Any] = field(default_factory=dict)


MODES = {
    "pytorch": Modes("pytorch", "eager", {"compile": True}, "pytorch-compile",
                     "torch.compile, its default mode (compile: max-autotune where asked)",
                     key="compile", off=False,
                     best_values=(True, "default", "reduce-overhead", "max-autotune",
                                  "max-autotune-no-cudagraphs"),
                     defaults={"compile": False, "channels_last": False}),
    "tensorflow": Modes("tensorflow", "tf.function without XLA", {"jit_compile": True},
                        "tensorflow-xla", "tf.function with XLA (jit_compile: true)",
                        key="jit_compile", off=False, best_values=(True,),
                        defaults={"jit_compile": False}),
    "jax": Modes("jax", "jax.jit (XLA), buffers donated", {}, None,
                 "its default: jax.jit already compiles with XLA", defaults={"donate": True}),
    "numpy": Modes("numpy", "numpy (the reference)", {}, None,
                   "none: the numpy reference has no faster mode"),
    "dummy": Modes("dummy", "fault-injection test worker", {}, None, "none"),
    # Keras 3: model.compile (jit_compile auto) + train_on_batch; no other mode
    **{k: Modes(k, "Keras compile", {}, None, "the default") for k in KERAS},
}
MODE_NAMES = ("default", "best")


@dataclass(frozen=True)
class Variant:
    """A framework as one competitor of a sweep: `label` names it in cell ids and reports,
    `framework` picks the worker, `options` (the framework's settings with the variant's own
    merged over them) is what the worker receives, `mode` is default | best | custom."""
    label: str
    framework: str
    options: dict
    mode: str


def classify_mode(framework: str, options: dict) -> str:
    """default: nothing set away from the worker's defaults; best: exactly the framework's fast
    mode; custom: anything else (say what it is in the label)."""
    m = MODES.get(framework)
    if m is None:
        return "custom"
    set_ = {k: v for k, v in options.items()
            if not ((k == m.key and v is None) or (k in m.defaults and v == m.defaults[k]
                                                   and type(v) is type(m.defaults[k])))}
    if not set_:
        return "default"
    if m.key is not None and set(set_) == {m.key} and any(
            set_[m.key] == b and type(set_[m.key]) is type(b) for b in m.best_values):
        return "best"
    return "custom"


def mode_variants(framework: str, modes: tuple[str, ...] | list[str], settings: dict
                  ) -> list[Variant]:
    """A plain `frameworks:` entry expanded by `modes:` ([default] keeps it as it is). The
    default variant of a [default, best] sweep runs with the mode key at its out-of-the-box
    value even if framework_settings sets it; a framework whose best is its default (jax) gets
    one cell, not two."""
    m = MODES.get(framework)
    out = []
    for mode in modes:
        if mode == "default":
            opts = dict(settings)
            if "best" in modes and m is not None and m.key is not None:
                opts.pop(m.key, None)
            out.append(Variant(framework, framework, opts, classify_mode(framework, opts)))
        elif mode == "best" and m is not None and m.best_label is not None:
            opts = {**settings, **m.best}
            out.append(Variant(m.best_label, framework, opts, classify_mode(framework, opts)))
        elif mode == "best" and "default" not in modes:
            out.append(Variant(framework, framework, dict(settings),
                               classify_mode(framework, settings)))
    return out


def modes_table() -> list[dict]:
    """Rows for `mlbench list`: per framework, its default and its best."""
    return [{"framework": fw, "default": m.default, "best": m.best_text,
             "best options": ", ".join(f"{k}: {v}" for k, v in m.best.items()) or "-",
             "best label": m.best_label or (f"{fw} (its default)"
                                            if m.best_text.startswith("its default") else "-")}
            for fw, m in MODES.items() if fw in FRAMEWORKS and fw not in KERAS]  # one mode each
