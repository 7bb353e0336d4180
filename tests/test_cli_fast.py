"""The CLI answers without loading what it does not need: `--help`, `--version`, `list` and a bad
command line never import polars, plotly or pydantic (the config models), and a config error
never imports the report's libraries. Pinned by effect, the modules present in `sys.modules`
after the command ran in a fresh interpreter, not by a timing (benchmarks/cli_startup.py measures
the milliseconds).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cliutil import ROOT

HEAVY = ("polars", "plotly", "pydantic", "numpy", "yaml", "jinja2", "rich", "psutil", "pynvml")
# In a fresh interpreter: run the command through mlbench.cli.main with its output captured, then
# print the exit code, the heavy modules present and the error stream as one JSON line.
CHILD = """
import contextlib, io, json, sys
heavy = {heavy!r}
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    if {args!r} is None:
        import mlbench.cli
        rc = 0
    else:
        from mlbench import cli
        rc = cli.main({args!r})
print(json.dumps({{"rc": rc, "loaded": sorted(m for m in heavy if m in sys.modules),
                  "stdout": out.getvalue(), "stderr": err.getvalue()}}))
"""


def _fresh(args: list[str] | None, tmp_path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLBENCH_WORKERS_DIR", None)
    proc = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY, args=args)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library(tmp_path):
    assert _fresh(None, tmp_path)["loaded"] == []


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["--version"]])
def test_help_and_version_load_no_heavy_library(args, tmp_path):
    got = _fresh(args, tmp_path)
    assert got["rc"] == 0 and got["loaded"] == [], got
    assert ("Usage: mlbench" in got["stdout"]) if "--help" in args else \
        got["stdout"].startswith("mlbench ")


def test_list_reads_the_catalog_without_pydantic_polars_or_plotly(tmp_path):
    got = _fresh(["list"], tmp_path)
    assert got["rc"] == 0, got
    assert "transformer" in got["stdout"] and "numpy" in got["stdout"]  # specs and frameworks
    assert not set(got["loaded"]) & {"polars", "plotly", "pydantic", "numpy", "yaml", "jinja2"}, \
        got["loaded"]


def test_a_bad_command_line_is_one_error_line_without_loading_rich_or_pydantic(tmp_path):
    got = _fresh(["run", "--no-such-option"], tmp_path)
    assert got["rc"] == 2 and got["loaded"] == [], got
    assert got["stderr"].startswith("error: ") and got["stderr"].count("\n") == 1, got["stderr"]


def test_a_config_error_does_not_load_the_report_libraries(tmp_path):
    (tmp_path / "c.yaml").write_text("frameworks: [numpy]\nmodels: [mlp]\nbatch_sizes: [8]\n"
                                     "epochz: 1\n")
    got = _fresh(["run", "--config", "c.yaml"], tmp_path)
    assert got["rc"] == 2 and "unknown key 'epochz'" in got["stderr"], got
    assert not set(got["loaded"]) & {"polars", "plotly", "jinja2"}, got["loaded"]


def test_an_error_line_shows_control_characters_instead_of_obeying_them(tmp_path):
    got = _fresh(["run", "--config", "a\rb\x1b[2Jc.yaml"], tmp_path)
    assert got["rc"] == 2, got
    line = got["stderr"]
    assert "\r" not in line and "\x1b" not in line, repr(line)
    assert "a\\x0db\\x1b[2Jc.yaml" in line, repr(line)
