"""Executors live in one table (mlbench.run.executor_table) that the config, the CLI and the runner
all read: an executor registered there is valid in a config and on the command line and is what the
runner builds and runs the cells with; one removed from it is refused by both, in one line; the
runner (and the config, and the CLI) import no executor module. Dummy worker: no framework."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cliutil import ROOT, dummy_config, run_inproc, write_config
from mlbench.config import schema as cfg
from mlbench.run import executor_table
from mlbench.errors import UserError
from mlbench.run.executor_table import ExecutorEntry
from mlbench.run.local_executor import LocalExecutor

BUILT = []  # every FakeExecutor built, with the config it was built from


class FakeExecutor(LocalExecutor):
    """Runs the cells as the local executor does, and says so in every placement."""

    @classmethod
    def from_config(cls, config):
        ex = cls()
        BUILT.append((ex, config))
        return ex

    def run(self, cells, cell_dir, stop, on_start, on_message):
        for record in super().run(cells, cell_dir, stop, on_start, on_message):
            record["placement"] = {**record["placement"], "executor": "fake"}
            yield record

    def describe(self) -> dict:
        return {**super().describe(), "kind": "fake"}


FAKE = ExecutorEntry(f"{__name__}:FakeExecutor", "the test's own executor", options=("address",))


@pytest.fixture
def fake(monkeypatch):
    BUILT.clear()
    monkeypatch.setitem(executor_table.EXECUTORS, "fake", FAKE)
    yield
    BUILT.clear()


def test_an_executor_in_the_table_is_valid_in_config_and_cli_and_runs_the_cells(tmp_path, fake,
                                                                                capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "run"
    rc, _, err = run_inproc(["run", "-c", str(conf), "-o", str(out), "--no-report",
                             "--executor", "fake"], capsys)
    assert rc == 0, err
    assert len(BUILT) == 1 and BUILT[0][1].executor.kind == "fake"
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert [c["cell_id"] for c in cells] == ["dummy-mlp-cpu-bs1-fp32", "dummy-mlp-cpu-bs2-fp32"]
    assert {c["placement"]["executor"] for c in cells} == {"fake"}
    assert json.loads((out / "run.json").read_text())["executor"]["kind"] == "fake"
    # in the config too, with the keys the table says it reads
    in_file = write_config(tmp_path / "f.yaml", executor={"kind": "fake", "address": "here"})
    rc, _, err = run_inproc(["run", "-c", str(in_file), "-o", str(tmp_path / "run2"),
                             "--no-report"], capsys)
    assert rc == 0, err
    assert BUILT[-1][1].executor.address == "here"


def test_an_executor_not_in_the_table_is_refused_by_config_and_cli_in_one_line(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    rc, _, err = run_inproc(["run", "-c", str(conf), "--no-report", "--executor", "fake"],
                            capsys)
    assert rc == 2 and err == "error: unknown executor 'fake'; use local or ray (--executor)\n"
    with pytest.raises(UserError) as refused:
        cfg.validate({"frameworks": ["dummy"], "models": ["mlp"], "batch_sizes": [1],
                      "executor": {"kind": "fake"}},
                     "c.yaml")
    assert "executor.kind" in str(refused.value)
    assert "allowed: local, ray" in str(refused.value)


def test_which_executors_take_an_address_is_the_tables_word(fake):
    raw = {"frameworks": ["dummy"], "models": ["mlp"], "batch_sizes": [1]}
    for kind in ("fake", "ray"):  # both list `address` among their options
        got = cfg.validate({**raw, "executor": {"kind": kind, "address": "auto"}}, "c.yaml")
        assert got.executor.address == "auto"
    with pytest.raises(UserError) as refused:
        cfg.validate({**raw, "executor": {"kind": "local", "address": "auto"}}, "c.yaml")
    assert "an address is for kind: ray or fake" in str(refused.value)
    assert "executor.address" in str(refused.value)


def test_the_run_help_names_every_executor_of_the_table(capsys):
    rc, out, _ = run_inproc(["run", "--help"], capsys)
    assert rc == 0
    text = " ".join(out.split())
    for name, entry in executor_table.EXECUTORS.items():
        assert f"{name} ({entry.summary})" in text, (name, text)


def test_a_missing_dependency_of_an_executor_is_one_user_error(monkeypatch):
    monkeypatch.setitem(executor_table.EXECUTORS, "absent", ExecutorEntry(
        "mlbench_absent_dependency.sub:Cls", "x", needs="mlbench_absent_dependency",
        needs_name="Absent", install="pip install absent"))
    with pytest.raises(UserError) as refused:
        executor_table.executor_class("absent")
    assert str(refused.value) == ("the absent executor needs Absent, which is not installed; "
                                  "install it with pip install absent (executor.kind)")
    # an import error of anything else is a bug, not a missing dependency: it propagates
    monkeypatch.setitem(executor_table.EXECUTORS, "broken", ExecutorEntry(
        "mlbench_absent_module:Cls", "x", needs="ray"))
    with pytest.raises(ImportError):
        executor_table.executor_class("broken")


def _path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _imports(module: str) -> set[str]:
    """Every module `module` imports, at module level or inside a function (relative imports
    resolved from its package), as dotted names, `from a import b` as both a and a.b."""
    import importlib.util
    package = module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _executor_modules() -> set[str]:
    return {entry.target.partition(":")[0] for entry in executor_table.EXECUTORS.values()}


@pytest.mark.parametrize("module", ["mlbench.run.runner", "mlbench.config.schema", "mlbench.cli",
                                    "mlbench.run.executor_table", "mlbench.run.executor"])
def test_the_readers_of_the_table_import_no_executor(module):
    imported = _imports(module)
    assert "mlbench.results.store" in imported or module != "mlbench.run.runner"  # resolved
    assert _executor_modules() == {"mlbench.run.local_executor", "mlbench.run.ray_executor"}
    assert not imported & _executor_modules(), imported & _executor_modules()


def test_the_runner_names_no_executor():
    tree = ast.parse(_path("mlbench.run.runner").read_text())
    named = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
             and node.value in executor_table.EXECUTORS}
    assert not named, named  # no `kind == "local"`: what differs is the executor's own


def test_every_executor_of_the_table_implements_the_protocol():
    from mlbench.run.executor import Executor
    wanted = {n for n in dir(Executor) if not n.startswith("_")} | {"spans_nodes"}
    for name in executor_table.names():
        try:
            cls = executor_table.executor_class(name)
        except UserError:  # its dependency is not installed here (ray)
            continue
        assert wanted <= set(dir(cls)), (name, wanted - set(dir(cls)))
