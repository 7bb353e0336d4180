"""Tests declare themselves: each file's own `pytestmark` (or a test's decorator) says
`framework` or `slow`; the markers are the registered ones, and the xdist scheduling that keeps
every real-framework test on one worker covers every file that says `framework`."""
import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import conftest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _module_marks(path: Path) -> set[str]:
    """The markers of a file's module-level `pytestmark` (one mark or a list of them)."""
    marks = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) \
                else [node.value]
            for v in values:
                v = v.func if isinstance(v, ast.Call) else v
                if isinstance(v, ast.Attribute):
                    marks.add(v.attr)
    return marks


def _all_marks(path: Path) -> set[str]:
    """Every `pytest.mark.<name>` a file uses."""
    return {n.attr for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
            and n.value.attr == "mark" and isinstance(n.value.value, ast.Name)
            and n.value.value.id == "pytest"}


def test_every_file_marked_framework_runs_on_the_framework_worker():
    marked = {p.name for p in TESTS.glob("test_*.py") if "framework" in _module_marks(p)}
    assert {"test_verify.py", "test_pytorch_worker.py", "test_jax_worker.py"} <= marked
    assert marked <= conftest.XDIST_FRAMEWORK_FILES, marked - conftest.XDIST_FRAMEWORK_FILES


def test_only_registered_markers_are_used():
    registered = {m.split(":")[0] for m in tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
    builtin = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}
    for path in TESTS.glob("test_*.py"):
        unknown = _all_marks(path) - registered - builtin
        assert not unknown, (path.name, unknown)


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_the_fast_part_holds_no_file_marked_framework_or_slow():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "-m", "not framework and not slow"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    files = {line.split("::")[0].rsplit("/", 1)[-1] for line in out.splitlines() if "::" in line}
    heavy = {p.name for p in TESTS.glob("test_*.py") if _module_marks(p) & {"framework", "slow"}}
    assert files and not files & heavy, files & heavy
    assert "test_stats.py" in files
