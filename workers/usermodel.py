"""The user's own model file, inside a worker: import it, call its builder, check what it built.

Owns: importing the file named by the spec (`specs.user_spec`; only workers ever import it: it
imports frameworks), calling `<framework>(**options)` (`pytorch`, `jax`, `tensorflow`, `keras`),
turning a builder that raises or returns the wrong type into one clear error naming the file
and the function, the expected logits shape for INPUT, FLOPs from the file (`flops_per_sample`:
a number or a function of the options) when it gives them, the dtype name of an output, and the
file's shared starting weights (`load_canonical`: its `canonical_weights()` given to its
`load_<function>()` for this framework, the numeric equivalence gate of a native model).
Imports only the standard library at module level (numpy, weights and the frameworks' helpers
lazily, inside the worker); never mlbench.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys

_MODULES: dict = {}


class UserModelError(Exception):
    """The user's model file cannot give this framework a working model (the message says
    why, naming the file and the function)."""


def load(spec: dict):
    path = spec["source"]
    mod = _MODULES.get(path)
    if mod is not None:
        return mod
    name = "mlbench_user_model_" + hashlib.sha1(path.encode()).hexdigest()[:10]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None:
        raise UserModelError(f"model file {path} cannot be loaded")
    mod = importlib.util.module_from_spec(loader_spec)
    sys.path.insert(0, os.path.dirname(path))  # the file may import its own helpers
    sys.modules[name] = mod
    try:
        loader_spec.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure, one message
        raise UserModelError(f"model file {path} failed to import: "
                             f"{type(exc).__name__}: {exc}") from exc
    _MODULES[path] = mod
    return mod


def build(spec: dict, function: str, expected: type | tuple, what: str):
    """`function(**options)` of the user's file, checked to return an `expected` instance."""
    path = spec["source"]
    fn = getattr(load(spec), function, None)
    if not callable(fn):
        # this framework's cells are skipped (the sweep's others run): the file simply does
        # not define the model for it
        from harness import SkipCell
        raise SkipCell(f"no {function}() in the model file {path}")
    try:
        model = fn(**spec["options"])
    except Exception as exc:  # noqa: BLE001
        raise UserModelError(f"{function}() in model file {path} raised "
                             f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, expected):
        raise UserModelError(f"{function}() in model file {path} returned "
                             f"{type(model).__module__}.{type(model).__name__}, not {what}")
    return model


def expected_logits(spec: dict, rows: int) -> tuple:
    inp = spec["input"]
    if inp["kind"] == "tokens":
        return (rows, inp["seq_len"], inp["vocab_size"])
    return (rows, inp["num_classes"])


def check_logits(spec: dict, shape, rows: int, function: str) -> None:
    want = expected_logits(spec, rows)
    if tuple(int(s) for s in shape) != want:
        per = ("[batch, seq_len, vocab_size]" if spec["input"]["kind"] == "tokens"
               else "[batch, num_classes]")
        raise UserModelError(f"{function}() in model file {spec['source']} produces logits of "
                             f"shape {list(shape)} for a batch of {rows}; INPUT "
                             f"({spec['input']['kind']}) needs {list(want)} {per}")


def file_flops(spec: dict) -> int | None:
    """FLOPs per sample (forward) that the file states: `flops_per_sample` as a number or as
    a function of the options; None when it states none."""
    if spec.get("flops_per_sample"):
        return int(spec["flops_per_sample"])
    f = getattr(load(spec), "flops_per_sample", None)
    if callable(f):
        try:
            value = f(**spec["options"])
        except Exception as exc:  # noqa: BLE001
            raise UserModelError(f"flops_per_sample() in model file {spec['source']} raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        return int(value) if value else None
    return None


def dtype_name(value) -> str:
    """'float32' for a torch, jax, numpy or TF output (or the first of a tuple)."""
    if isinstance(value, tuple):
        value = value[0]
    d = getattr(value, "dtype", None)
    name = getattr(d, "name", None)
    return name if isinstance(name, str) else str(d).replace("torch.", "")


def load_canonical(backend, spec: dict, seed: int) -> str | None:
    """Load the file's canonical weights into `backend`'s model with the file's loader for this
    framework; return their hash (weights.params_hash: equal in every framework that loaded
    them), or None when the file has no `canonical_weights()` or no `load_<function>()`.

    `canonical_weights(**options)` returns {name: numpy array}, the same in every process (the
    options it names are passed, and `seed` when it takes one). Loaders: `load_pytorch(model,
    weights)`, `load_tensorflow(model, weights)`, `load_keras(model, weights)` assign in place;
    `load_jax(variables, weights)` gets {"params": ..., "batch_stats": ...} as nested dicts of
    arrays (linen's layout; an NNX module's attributes by name) and returns the new ones."""
    mod = load(spec)
    make = getattr(mod, "canonical_weights", None)
    function = getattr(backend, "user_function", backend.name)
    loader = getattr(mod, f"load_{function}", None)
    if not callable(make) or not callable(loader):
        return None
    import numpy as np
    import weights as weights_lib

    path = spec["source"]
    params = inspect.signature(make).parameters
    star = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in spec["options"].items() if star or k in params}
    if "seed" in params or star:
        kwargs.setdefault("seed", seed)
    try:
        canon = make(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code: one message
        raise UserModelError(f"canonical_weights() in model file {path} raised "
                             f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(canon, dict) or not canon or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in canon.items()):
        raise UserModelError(f"canonical_weights() in model file {path} must return a dict "
                             "of name -> numpy array")
    try:
        if function == "jax":  # functional parameters: the jax worker's helper swaps them in
            import jax_nnx
            jax_nnx.load_user(backend, loader, canon)
        else:
            loader(backend.model, canon)
    except Exception as exc:  # noqa: BLE001
        raise UserModelError(f"load_{function}() in model file {path} raised "
                             f"{type(exc).__name__}: {exc}") from exc
    return weights_lib.params_hash(canon)
