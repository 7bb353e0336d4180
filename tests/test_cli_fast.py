"""The CLI answers without loading what it does not need: `--help`, `--version`, `list` and an
unknown option never import polars, plotly or pydantic, `list` no rich either; a missing config
file or a YAML syntax error is answered before the config's models are built
(mlbench.config.schema); a config error never imports the report's libraries. Pinned by effect, the
modules present in `sys.modules` after the command ran in a fresh interpreter, not by a timing
(benchmarks/cli_startup.py measures the milliseconds). The CLI reaches typer through its public
API only (test_no_private_api.py): a command with value options imports pydantic because typer
0.29 coerces option values with it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import re
from pathlib import Path

import pytest

from cliutil import ROOT
from mlbench.config import catalog
from mlbench import cli
from mlbench.host import sysinfo

HEAVY = ("polars", "plotly", "pydantic", "numpy", "yaml", "jinja2", "rich", "psutil", "pynvml",
         "mlbench.config.schema")
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


def test_list_reads_the_catalog_without_rich_pydantic_polars_or_plotly(tmp_path):
    got = _fresh(["list"], tmp_path)
    assert got["rc"] == 0, got
    allowed = {"pynvml"} | (set() if sys.platform.startswith("linux") else {"psutil"})
    assert set(got["loaded"]) <= allowed, got["loaded"]  # NVIDIA GPUs; cores from sysfs
    out = got["stdout"]
    for fw in catalog.FRAMEWORKS:  # every framework, with this interpreter's version if any
        version = next(filter(None, map(sysinfo._metadata, catalog.REGISTRY[fw].distributions)),
                       None)  # importlib.metadata's answer
        assert re.search(rf"^{re.escape(fw)} +{'yes' if version else 'no'} +"
                         rf"{re.escape(version or '-')} ", out, re.M), (fw, version, out)
    specs = catalog.specs()
    for model in specs.MODELS:  # every model and preset (vit and vit-b16 among them)
        for preset in specs.PRESETS[model]:
            assert re.search(rf"^{model} +{preset}\b", out, re.M), (model, preset)
    assert re.search(r"^cpu +\S", out, re.M) and "jit_compile" in out  # devices, modes


def test_physical_cores_counts_as_psutil_does():
    import psutil
    assert sysinfo.physical_cores() == psutil.cpu_count(logical=False)


def test_versions_read_in_one_pass_agree_with_importlib_metadata():
    import importlib.metadata
    found = sysinfo._installed(tuple(sys.path))
    assert found is not None
    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    assert names and all(found.get(sysinfo._normalise(n)) == importlib.metadata.version(n)
                         for n in names), names


def test_the_first_distribution_along_the_path_wins_and_a_zip_defers_to_importlib(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, version in ((first, "1.0"), (second, "2.0")):
        info = folder / "Foo_Bar-x.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: Foo_Bar\n"
                                       f"Version: {version}\n\nVersion: 9 (the body)\n")
    assert sysinfo._installed((str(first), str(second)))["foo_bar"] == "1.0"
    assert sysinfo._installed((str(second), str(first)))["foo_bar"] == "2.0"
    (tmp_path / "lib.zip").write_bytes(b"PK")
    assert sysinfo._installed((str(tmp_path / "lib.zip"), str(first))) is None


SYNTAX = "frameworks: [numpy\nmodels: [mlp]\n"


@pytest.mark.parametrize("args", [
    ["run", "--config", "missing.yaml"],
    ["run", "--config", "syntax.yaml"],
    # every kind of option value: str, int, list, Path, a flag
    ["run", "--config", "syntax.yaml", "--frameworks", "numpy", "jax", "--epochs", "3",
     "--repeats", "-1", "--executor", "local", "--output", "out", "--report-dir", "r",
     "--batch-sizes", "8", "--no-gate"],
    ["gate", "--config", "syntax.yaml", "--models", "mlp"],
    ["run", "--batch-sizes", "eight"],
    ["run", "--epochs", "three"],
], ids=["missing", "yaml-syntax", "all-option-kinds", "gate", "bad-batch-size", "bad-epochs"])
def test_file_yaml_and_option_value_errors_answer_before_the_config_models(args, tmp_path):
    (tmp_path / "syntax.yaml").write_text(SYNTAX)
    got = _fresh(args, tmp_path)
    assert got["rc"] == 2 and got["stderr"].startswith("error: "), got
    assert got["stderr"].count("\n") == 1, got["stderr"]
    allowed = {"pydantic"} | ({"yaml"} if "syntax.yaml" in args else set())
    assert set(got["loaded"]) <= allowed, got["loaded"]


def test_a_bad_option_value_is_refused_in_typers_words(tmp_path):
    got = _fresh(["run", "--epochs", "three"], tmp_path)
    assert got["rc"] == 2 and got["stderr"] == (
        "error: Invalid value for '--epochs': Input should be a valid integer, unable to parse "
        "string as an integer (command line)\n"), got


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    (tmp_path / "syntax.yaml").write_text(SYNTAX)
    got = _fresh(["run", "--config", "syntax.yaml"], tmp_path)
    assert "YAML syntax error" in got["stderr"] and "(syntax.yaml: line 2," in got["stderr"], got


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
