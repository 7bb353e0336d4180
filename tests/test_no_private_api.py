"""No private name of a dependency (typer, signal, xdist, torch, jax, ...) is used anywhere in the
project: every module of mlbench/, workers/, tests/, benchmarks/ and .ci/ is parsed with ast and
each import of a `_name` from another package, and each `_name` attribute reached from another
package's module (`signal.Signals._x`, `torch._x`, an alias of them), is a finding. A dunder is
public; so is `os._exit`, documented by the standard library as the way to exit a forked child.
Also the one replacement that is a small function of its own: launcher.signal_name."""
from __future__ import annotations

import ast
import signal
from pathlib import Path

import pytest

from mlbench.run import launcher

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("mlbench", "workers", "tests", "benchmarks", ".ci")
PUBLIC = {("os", "_exit")}  # documented public API despite the underscore


def _files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _ours() -> set[str]:
    """Top-level names of the project's own modules (workers and tests import siblings bare)."""
    return {"mlbench", "workers"} | {p.stem for p in _files()} | \
        {p.name for folder in FOLDERS for p in (ROOT / folder).rglob("*") if p.is_dir()}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def findings(source: str, ours: set[str]) -> list[str]:
    """`line: what` for every private name of another package used in `source`."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # a local name -> the foreign module (or member) it is bound to
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ours:
                    continue
                modules[alias.asname or alias.name.split(".")[0]] = alias.name
                if any(map(_private, alias.name.split("."))):
                    out.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.split(".")[0] in ours | {"__future__"}:
                continue
            for alias in node.names:
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if any(map(_private, node.module.split("."))) or _private(alias.name):
                    out.append(f"{node.lineno}: from {node.module} import {alias.name}")
    changed = True
    while changed:  # `torch = _torch` (a module bound by a function's import) is torch too
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                pairs = [(node.targets[0], node.value)]
                if isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(node.targets[0].elts, node.value.elts))
                for target, value in pairs:
                    if isinstance(target, ast.Name) and isinstance(value, ast.Name) \
                            and value.id in modules and target.id not in modules:
                        modules[target.id] = modules[value.id]
                        changed = True
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules and \
                    (modules[root.id], node.attr) not in PUBLIC:
                out.append(f"{node.lineno}: {modules[root.id]}...{node.attr}")
    return sorted(out)


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_no_module_of_the_project_uses_a_private_name_of_a_dependency():
    ours = _ours()
    found = {str(p.relative_to(ROOT)): f for p in _files() if (f := findings(p.read_text(), ours))}
    assert found == {}, found


@pytest.mark.parametrize("source, found", [
    ("import signal\nx = 3 in signal.Signals._value2member_map_\n",
     ["2: signal..._value2member_map_"]),
    ("from typer.core import TyperOption\np = TyperOption\np._runtime_param = None\n",
     ["3: typer.core.TyperOption..._runtime_param"]),
    ("from jax._src.lib import cuda_versions\n", ["1: from jax._src.lib import cuda_versions"]),
    ("from torch.optim.optimizer import _get_fused\n",
     ["1: from torch.optim.optimizer import _get_fused"]),
    ("torch = None\ndef f():\n    global torch\n    import torch as _t\n    torch = _t\n"
     "    torch._fused_sdp_choice()\n", ["6: torch..._fused_sdp_choice"]),
    ("import os\nos._exit(0)\nimport mlbench\nmlbench._x\nx.__class__\n", []),
])
def test_the_scan_finds_what_it_looks_for(source, found):
    assert findings(source, {"mlbench"}) == found


@pytest.mark.parametrize("rc, name", [
    (-signal.SIGKILL, "SIGKILL"), (-signal.SIGTERM, "SIGTERM"), (-signal.SIGSEGV, "SIGSEGV"),
    (0, None), (1, None), (-200, None),
])
def test_a_signal_is_named_from_the_returncode(rc, name):
    assert launcher.signal_name(rc) == name


def test_a_signal_number_without_a_name_is_left_unnamed():
    unnamed = next(n for n in range(1, 128) if n not in {s.value for s in signal.Signals})
    assert launcher.signal_name(-unnamed) is None
