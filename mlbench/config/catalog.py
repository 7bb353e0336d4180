"""What can be benchmarked: frameworks, their worker scripts, and the model specs of workers/.

Owns the framework table (REGISTRY: one entry per framework with its worker script,
distributions, modes, extra environment, report colour and marker, ceiling backend and aliases;
the launcher, the ceilings, sysinfo, preflight, config and the report read it: adding a framework
is its worker file plus one entry), each framework's modes (what "out of the box" and "at its
best" mean: MODES, derived from the table; `mlbench list` prints it) and the variant of a
framework a sweep runs, and read-only access to
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
from typing import Any, Callable


# --- the framework table ---------------------------------------------------------------------

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


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class Option:
    """One option of a framework's worker (`framework_settings.<fw>.options`): `allowed` says in
    words what it takes, `check` tells a good value."""
    allowed: str
    check: Callable[[Any], bool]


def _flag() -> Option:
    return Option("true or false", lambda v: isinstance(v, bool))


@dataclass(frozen=True)
class Framework:
    """One framework, everything mlbench needs to know about it: adding a framework is its
    worker file plus one entry of REGISTRY.

    `worker`: its worker script in workers/; `distributions`: the installed distribution(s)
    whose version is reported (the first installed wins); `modes`: its default and best mode;
    `env`: extra environment of its worker processes; `colour`/`symbol`: its fixed colour and
    marker in every figure (None: the report's spares); `ceiling`: its backend in
    workers/ceiling_worker.py (None: no ceiling of its own); `aliases`: other names a config
    may use; `test_only`: a worker of the test suite, not offered to users; `options`: the
    options its worker accepts, checked when a config is read (None: not checked, the dummy's
    free-form fault knobs; keep in step with the worker's OPTIONS, tests/test_bad_input.py
    checks); `user_function`: the function of a user's model file it builds (None: none)."""
    name: str
    worker: str
    distributions: tuple[str, ...]
    modes: Modes
    colour: str | None
    symbol: str | None
    env: dict[str, str] = field(default_factory=dict)
    ceiling: str | None = None
    aliases: tuple[str, ...] = ()
    test_only: bool = False
    options: dict[str, Option] | None = field(default_factory=dict)
    user_function: str | None = None


def _keras(backend: str, colour: str, symbol: str) -> Framework:
    """One Keras 3 model on a Keras backend: workers/keras_worker.py serves the three."""
    # Keras 3: model.compile (jit_compile auto) + train_on_batch; no other mode
    return Framework(f"keras-{backend}", "keras_worker.py", ("keras",),
                     Modes(f"keras-{backend}", "Keras compile", {}, None, "the default"),
                     colour, symbol, env={"KERAS_BACKEND": backend}, user_function="keras")


REGISTRY: dict[str, Framework] = {f.name: f for f in (
    Framework("pytorch", "pytorch_worker.py", ("torch",), Modes(
        "pytorch", "eager", {"compile": True}, "pytorch-compile",
        "torch.compile, its default mode (compile: max-autotune where asked)",
        key="compile", off=False,
        best_values=(True, "default", "reduce-overhead", "max-autotune",
                     "max-autotune-no-cudagraphs"),
        defaults={"compile": False, "channels_last": False}),
        "#D55E00", "circle", ceiling="pytorch", aliases=("torch",), user_function="pytorch",
        options={"compile": Option(f"true, false or one of {', '.join(COMPILE_MODES)}",
                                   lambda v: isinstance(v, bool) or v in COMPILE_MODES),
                 "channels_last": _flag()}),
    Framework("tensorflow", "tensorflow_worker.py", ("tensorflow", "tensorflow-cpu"), Modes(
        "tensorflow", "tf.function without XLA", {"jit_compile": True}, "tensorflow-xla",
        "tf.function with XLA (jit_compile: true)", key="jit_compile", off=False,
        best_values=(True,), defaults={"jit_compile": False}),
        "#0072B2", "square", ceiling="tensorflow", aliases=("tf",), user_function="tensorflow",
        options={"jit_compile": _flag()}),
    Framework("jax", "jax_worker.py", ("jax",), Modes(
        "jax", "jax.jit (XLA), buffers donated", {}, None,
        "its default: jax.jit already compiles with XLA", defaults={"donate": True}),
        "#009E73", "diamond", ceiling="jax", aliases=("flax",), user_function="jax",
        options={"donate": _flag()}),
    Framework("numpy", "numpy_worker.py", ("numpy",), Modes(
        "numpy", "numpy (the reference)", {}, None,
        "none: the numpy reference has no faster mode"),
        "#7F7F7F", "x", ceiling="numpy", aliases=("np",)),
    # inference-only runtimes serving a model exported from PyTorch (workers/exported.py;
    # README: Serving): no training phases, export time apart, the gate on the forward pass
    Framework("onnxruntime", "onnxruntime_worker.py", ("onnxruntime",), Modes(
        "onnxruntime", "ONNX Runtime (CPU or CUDA provider), exported by torch.onnx", {}, None,
        "the default", defaults={"source": "pytorch", "provider": "auto"}),
        "#8C564B", "hexagon", aliases=("ort",),
        options={"source": Option("pytorch (the exporter wired: torch.onnx)",
                                  lambda v: v == "pytorch"),
                 "provider": Option("auto, cpu, cuda or tensorrt",
                                    lambda v: v in ("auto", "cpu", "cuda", "tensorrt"))}),
    Framework("openvino", "openvino_worker.py", ("openvino",), Modes(
        "openvino", "OpenVINO CPU plugin (f32), exported by torch.onnx", {}, None,
        "the default", defaults={"source": "pytorch"}),
        "#6A3D9A", "pentagon", aliases=("ov",),
        options={"source": Option("pytorch (the exporter wired: torch.onnx)",
                                  lambda v: v == "pytorch")}),
    _keras("jax", "#56B4E9", "triangle-up"),
    _keras("torch", "#E69F00", "triangle-down"),
    _keras("tensorflow", "#CC79A7", "star"),
    # the fault-injection worker of the test suite and benchmarks
    Framework("dummy", "dummy_worker.py", (), Modes("dummy", "fault-injection test worker", {},
                                                    None, "none"),
              None, None, test_only=True, options=None),
)}
FRAMEWORKS = tuple(n for n, f in REGISTRY.items() if not f.test_only)
TEST_FRAMEWORKS = tuple(n for n, f in REGISTRY.items() if f.test_only)
KERAS = {n: f.env["KERAS_BACKEND"] for n, f in REGISTRY.items() if "KERAS_BACKEND" in f.env}
ALIASES = {a: n for n, f in REGISTRY.items() for a in f.aliases}
# The distribution whose version `mlbench list` shows, per framework.
DISTRIBUTIONS = {n: (f.distributions[0] if f.distributions else None)
                 for n, f in REGISTRY.items()}
MODES = {n: f.modes for n, f in REGISTRY.items()}
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
    here = Path(__file__).resolve().parent.parent  # mlbench/
    installed = here / name
    return installed if installed.is_dir() else here.parent / name


def worker_script(framework: str) -> Path:
    entry = REGISTRY.get(framework)
    return workers_dir() / (entry.worker if entry else f"{framework}_worker.py")


def framework_env(framework: str) -> dict[str, str]:
    """The extra environment of `framework`'s worker processes."""
    entry = REGISTRY.get(framework)
    return dict(entry.env) if entry else {}


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
