"""The user's own model file (`models: [{name: mine, source: my_model.py}]`), read at config time.

Owns: finding the file (a path relative to the config, or an importable module name looked up on
sys.path without importing anything), parsing it with `ast` (never importing it: it imports
frameworks, which the parent never does), reading `INPUT` as a literal and checking its kind and
sizes, listing the builder functions (`pytorch`, `jax`, `tensorflow`, `keras`) and their keyword
parameters, checking that its shared weights (`canonical_weights()` and `load_<framework>()`)
come as a pair, and the file's content hash (part of every cell's fingerprint, so an edited file is
re-run by --resume). Each problem is a ValueError of one sentence naming the file (and line).
Must not import an ML framework, and must never import or execute the user's file.
"""
from __future__ import annotations

import ast
import difflib
import errno
import hashlib
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import catalog

KINDS = {"image": ("shape", "num_classes"), "vector": ("shape", "num_classes"),
         "tokens": ("seq_len", "vocab_size")}
SHAPE_RANK = {"image": 3, "vector": 1}
# the function a framework calls (the framework table's `user_function`); keras-* all run the
# one Keras 3 model
BUILDERS = {name: fw.user_function for name, fw in catalog.REGISTRY.items() if fw.user_function}
MAX_BYTES = 2_000_000
MAX_SIZE = 1_000_000


@dataclass(frozen=True)
class UserModelFile:
    path: str                        # absolute
    sha256: str
    input: dict
    functions: dict[str, tuple[frozenset, bool]]   # name -> (keyword names, takes **kwargs)
    flops_per_sample: int | None     # a literal `flops_per_sample = N`, else None

    def builders(self) -> list[str]:
        return [f for f in dict.fromkeys(BUILDERS.values()) if f in self.functions]


def resolve(source: str, base: Path) -> str:
    """The absolute path of `source`: a .py path (relative to `base`, the config's folder) or a
    dotted module name found on sys.path (without importing it or its packages)."""
    text = source.strip()
    if not text:
        raise ValueError("source is empty; give the path of a .py file or a module name")
    if text.endswith(".py") or os.sep in text or "/" in text:
        p = Path(text).expanduser()
        try:
            return str(p if p.is_absolute() else (base / p).resolve())
        except (RuntimeError, OSError):  # a symbolic link loop (a -> b -> a), a name too long
            raise ValueError(f"model file {text!r} cannot be resolved (a symbolic link loop?)") \
                from None
    parts = text.split(".")
    if not all(x.isidentifier() for x in parts):
        raise ValueError(f"source {text!r} is neither a .py file nor a module name")
    for root in [str(base), *sys.path]:
        stem = Path(root or ".", *parts)
        for cand in (stem.with_suffix(".py"), stem / "__init__.py"):
            if cand.is_file():
                return str(cand.resolve())
    raise ValueError(f"model module {text!r} not found (not a .py file, and not on the "
                     "Python path)")


def inspect(path: str) -> UserModelFile:
    """Read and check the file at `path` (absolute); ValueError naming the file otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        why = "is a symbolic link loop" if exc.errno == errno.ELOOP else "not found"
        raise ValueError(f"model file {path} {why}") from None
    if not os.path.isfile(path):
        raise ValueError(f"model file {path} is not a regular file")
    if st.st_size > MAX_BYTES:
        raise ValueError(f"model file {path} is larger than {MAX_BYTES:,} bytes")
    return _inspect(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _inspect(path: str, size: int, mtime_ns: int) -> UserModelFile:
    raw = Path(path).read_bytes()
    try:
        tree = ast.parse(raw, filename=path)
    except SyntaxError as exc:
        raise ValueError(f"syntax error in model file {path}, line {exc.lineno}: "
                         f"{exc.msg}") from None
    except ValueError as exc:  # NUL bytes
        raise ValueError(f"model file {path} cannot be parsed: {exc}") from None
    except (MemoryError, RecursionError):  # e.g. 150,000 nested `not`: the parser gives up
        raise ValueError(f"model file {path} cannot be parsed: an expression is nested too "
                         "deeply for Python's parser") from None
    assigned: dict[str, ast.expr] = {}
    functions: dict[str, tuple[frozenset, bool]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    assigned[t.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.value is not None:
            assigned[node.target.id] = node.value
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = frozenset(x.arg for x in a.args + a.kwonlyargs)
            functions[node.name] = (names, a.kwarg is not None)
        _bound_builders(node, functions)
    if "INPUT" not in assigned:
        raise ValueError(f"model file {path} defines no INPUT (e.g. INPUT = {{'kind': 'image', "
                         "'shape': [32, 32, 3], 'num_classes': 10}})")
    try:
        value = ast.literal_eval(assigned["INPUT"])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"INPUT in model file {path} (line {assigned['INPUT'].lineno}) must be "
                         "a literal dict (no names or calls)") from None
    flops = None
    if "flops_per_sample" in assigned:
        try:
            f = ast.literal_eval(assigned["flops_per_sample"])
            flops = f if isinstance(f, int) and not isinstance(f, bool) and f > 0 else None
        except (ValueError, TypeError, SyntaxError):
            flops = None  # a function: the worker asks it
    return UserModelFile(path, hashlib.sha256(raw).hexdigest(), check_input(value, path),
                         functions, flops)


def _bound_builders(node: ast.stmt, functions: dict[str, tuple[frozenset, bool]]) -> None:
    """A builder need not be a `def`: `from m import f as pytorch`, `pytorch = lambda ...:` and
    `pytorch = build` (another function of the file) bind it too. A lambda's parameters are
    read; any other binding's are unknown, so every option is let through to the worker."""
    unknown = (frozenset(), True)
    builders = set(BUILDERS.values())
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            name = alias.asname or alias.name
            if name in builders:
                functions[name] = unknown
        return
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
        if isinstance(node, ast.AnnAssign) and node.value is not None else []
    for t in targets:
        if not (isinstance(t, ast.Name) and t.id in builders):
            continue
        value = node.value
        if isinstance(value, ast.Lambda):
            a = value.args
            functions[t.id] = (frozenset(x.arg for x in a.args + a.kwonlyargs),
                               a.kwarg is not None)
        elif isinstance(value, ast.Name) and value.id in functions:
            functions[t.id] = functions[value.id]
        else:
            functions[t.id] = unknown


MAX_ELEMENTS = 100_000_000  # one sample's values: 400 MB in fp32; 10^6 x 10^6 x 3 is absurd


def check_input(value: object, path: str) -> dict:
    where = f"INPUT in model file {path}"
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a dict, got {type(value).__name__}")
    kind = value.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where} has kind {kind!r}; allowed: {', '.join(KINDS)}")
    want = KINDS[kind]
    extra = sorted(set(value) - {"kind", *want}, key=str)
    missing = [k for k in want if k not in value]
    if missing or extra:
        raise ValueError(f"{where}: kind {kind!r} takes exactly {', '.join(want)}"
                         + (f" (missing {', '.join(missing)})" if missing else "")
                         + (f" (unknown {', '.join(map(str, extra))})" if extra else ""))

    def size(x: object, key: str) -> int:
        if isinstance(x, bool) or not isinstance(x, int) or not 0 < x <= MAX_SIZE:
            raise ValueError(f"{where}: {key} must be a positive integer up to {MAX_SIZE:,}, "
                             f"got {x!r}")
        return x

    out = {"kind": kind}
    if kind in SHAPE_RANK:
        shape = value["shape"]
        if not isinstance(shape, (list, tuple)) or len(shape) != SHAPE_RANK[kind]:
            form = "[H, W, C]" if kind == "image" else "[D]"
            raise ValueError(f"{where}: shape of a {kind} must be a list of "
                             f"{SHAPE_RANK[kind]} integers ({form}), got {shape!r}")
        out["shape"] = [size(s, "shape") for s in shape]
        total = 1
        for s_ in out["shape"]:
            total *= s_
        if total > MAX_ELEMENTS:  # each dimension is capped; their product must be too
            raise ValueError(f"{where}: shape {out['shape']} makes {total:,} values per sample;"
                             f" the limit is {MAX_ELEMENTS:,}")
        out["num_classes"] = size(value["num_classes"], "num_classes")
        if out["num_classes"] < 2:
            raise ValueError(f"{where}: num_classes must be at least 2")
    else:
        out["seq_len"] = size(value["seq_len"], "seq_len")
        out["vocab_size"] = size(value["vocab_size"], "vocab_size")
    return out


def check_frameworks(info: UserModelFile, frameworks: list[str]) -> str | None:
    """A sentence when no framework of the sweep has a builder in the file (naming every
    missing function), else None: a framework without one has its cells skipped with the
    reason (workers/usermodel.py: "no tensorflow() in the model file ..."), or left out by an
    `exclude` rule, while the others run."""
    missing = [(fw, fn) for fw in frameworks if (fn := BUILDERS.get(fw)) is not None
               and fn not in info.functions]
    # numpy (the mlp reference: it skips other models) and test workers call no builder
    callers = [fw for fw in frameworks if fw in BUILDERS]
    if not callers or len(missing) < len(callers):
        return None
    have = ", ".join(f"{b}()" for b in info.builders()) or "none"
    what = ", ".join(f"no {fn}() for framework {fw}" for fw, fn in missing)
    return f"model file {info.path} has {what} (it has: {have})"


def unknown_model(names: list[str], configured: object, builtins: tuple[str, ...]) -> str | None:
    """A sentence for the first of `names` (--models) that is neither a built-in model nor one
    of the config's own models (by name or label), with the closest of both suggested."""
    own = []
    for m in configured if isinstance(configured, list) else []:
        if isinstance(m, dict) and m.get("source") is not None:
            own += [k for k in (m.get("name"), m.get("label")) if isinstance(k, str)]
    allowed = list(builtins) + [k for k in dict.fromkeys(own) if k not in builtins]
    for name in names:
        if isinstance(name, str) and name not in allowed:
            close = difflib.get_close_matches(name[:200], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"unknown model {name[:200]!r}{hint}; allowed: {', '.join(allowed)}"
    return None


# a builder function's weight loader: load_<function>
LOADERS = {fn: f"load_{fn}" for fn in dict.fromkeys(BUILDERS.values())}


def check_weights(info: UserModelFile) -> str | None:
    """A sentence when the file's shared weights are half there: loaders without
    `canonical_weights()`, or `canonical_weights()` without any loader."""
    loaders = [n for n in LOADERS.values() if n in info.functions]
    if loaders and "canonical_weights" not in info.functions:
        return (f"model file {info.path} has {', '.join(f'{n}()' for n in loaders)} but no "
                "canonical_weights() to load")
    if "canonical_weights" in info.functions and not loaders:
        return (f"model file {info.path} has canonical_weights() but no loader (define "
                f"{', '.join(f'{LOADERS[b]}(...)' for b in info.builders())})")
    return None


def check_options(info: UserModelFile, options: dict, frameworks: list[str]) -> str | None:
    """A sentence when an option is not a keyword parameter of a builder the sweep calls."""
    for fw in frameworks:
        fn = BUILDERS.get(fw)
        if fn is None or fn not in info.functions:
            continue
        names, star = info.functions[fn]
        for key in options:
            if not star and key not in names:
                known = ", ".join(sorted(names)) or "none"
                return (f"option {key!r} is not a parameter of {fn}() in model file "
                        f"{info.path} (its parameters: {known})")
    return None
