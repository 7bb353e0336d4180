"""The CLI answers without loading what it does not need: `--help`, `--version`, `list` and a bad
command line never import polars, plotly or pydantic (the config models), `list` no rich either;
a missing config file or a YAML syntax error is answered before pydantic loads (typer's own
pydantic coercion of option values included), and a config error never imports the report's
libraries. Pinned by effect, the modules present in `sys.modules`
after the command ran in a fresh interpreter, not by a timing (benchmarks/cli_startup.py measures
the milliseconds).
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
from mlbench import catalog, cli, sysinfo

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
    # every kind of option value typer would coerce with pydantic: str, int, float-free list, Path
    ["run", "--config", "syntax.yaml", "--frameworks", "numpy", "jax", "--epochs", "3",
     "--repeats", "-1", "--executor", "local", "--output", "out", "--report-dir", "r",
     "--batch-sizes", "8", "--no-gate"],
    ["gate", "--config", "syntax.yaml", "--models", "mlp"],
    ["run", "--batch-sizes", "eight"],
    ["run", "--epochs", "three"],
], ids=["missing", "yaml-syntax", "all-option-kinds", "gate", "bad-batch-size", "bad-epochs"])
def test_file_yaml_and_option_value_errors_answer_before_pydantic_loads(args, tmp_path):
    (tmp_path / "syntax.yaml").write_text(SYNTAX)
    got = _fresh(args, tmp_path)
    assert got["rc"] == 2 and got["stderr"].startswith("error: "), got
    assert got["stderr"].count("\n") == 1, got["stderr"]
    assert set(got["loaded"]) <= ({"yaml"} if "syntax.yaml" in args else set()), got["loaded"]


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    (tmp_path / "syntax.yaml").write_text(SYNTAX)
    got = _fresh(["run", "--config", "syntax.yaml"], tmp_path)
    assert "YAML syntax error" in got["stderr"] and "(syntax.yaml: line 2," in got["stderr"], got


VALUES = [None, "x", "", " ", " 3", "12", "-3", "007", "1_0", "1.5", "-0.25", "1e3", "３", "٣",
          "9" * 30, "a//b/", "-", "+", ".", "nan", "-inf", "Infinity", "0x10", ("a", "b"), (),
          ("1",), Path("results/gate")]


def test_plain_values_are_coerced_exactly_as_typer_does(tmp_path, monkeypatch):
    """The stand-in for typer's pydantic coercion answers only where it gives typer's own
    result (the same value, of the same type); everything else is left to typer."""
    import typer
    (tmp_path / "file.yaml").write_text("a: 1\n")
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    values = [*VALUES, "file.yaml", "missing.yaml", "dir", str(tmp_path / "file.yaml"),
              "file.yaml/"]
    group = typer.main.get_command(cli.app)
    answered = set()
    for command in group.commands.values():
        ctx = command.make_context(command.name, [], resilient_parsing=True)
        for param in command.params:
            plain = param.get_runtime_param()
            assert isinstance(plain, cli._PlainValues), (command.name, param.name)
            param._runtime_param = None
            own = param.get_runtime_param()  # typer's own (pydantic), for the comparison
            param._runtime_param = plain
            for value in values:
                got = plain._plain(value)
                if got is cli._NOT_PLAIN:
                    continue
                answered.add((command.name, param.name, value))
                if isinstance(got, cli._Refused):  # typer refuses it too, in the same words
                    with pytest.raises(typer.BadParameter) as refused:
                        own.coerce(value, param=param, ctx=ctx)
                    assert refused.value.message == got, (command.name, param.name, value)
                    continue
                want = own.coerce(value, param=param, ctx=ctx)
                assert (got, type(got)) == (want, type(want)), (command.name, param.name, value)
    # and it does answer the common values, of each kind, without pydantic
    assert {("run", "config", "file.yaml"), ("run", "config", "missing.yaml"),
            ("run", "epochs", "12"), ("run", "epochs", "x"), ("compare", "threshold", "x"),
            ("run", "frameworks", ("a", "b")), ("run", "executor", "x"),
            ("run", "output", None), ("compare", "threshold", "-0.25"),
            ("gate", "output", Path("results/gate"))} <= answered


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
