"""One name for the equivalence gate on the command line: `mlbench gate` is the command and
`--gate/--no-gate` the run flag; the former names (`mlbench verify`, `--verify/--no-verify`) are
hidden aliases that do exactly the same, so existing scripts keep working.

Framework-free: the gate itself (preflight.run_gate) and the sweep (runner.run_sweep) are
replaced by spies that record what the command line asked for."""
from pathlib import Path

import pytest
import typer

from cliutil import run_inproc
from mlbench.analysis import gate_verdicts
from mlbench.run import preflight, runner

CONF = """
frameworks: [pytorch, jax]
models: [{name: mlp, preset: tiny}]
batch_sizes: [8]
precisions: [fp32]
"""


def _row(fw: str, passed: bool | None) -> gate_verdicts.GateRow:
    return gate_verdicts.GateRow(model="mlp", model_label="mlp", device="cpu", precision="fp32",
                                 framework=fw, reference="numpy", passed=passed,
                                 reason=None if passed else "outputs differ beyond tolerance")


@pytest.fixture
def gate_spy(monkeypatch, tmp_path):
    calls = []
    verdict = {"rows": [_row("pytorch", True), _row("jax", False)]}

    def run_gate(config, out_dir, say, again, stop=None, launch=None, cells=None):
        calls.append({"frameworks": list(config.base_frameworks), "out": Path(out_dir),
                      "again": again, "verify": config.verify})
        return gate_verdicts.GateReport(rows=verdict["rows"])

    monkeypatch.setattr(preflight, "run_gate", run_gate)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(CONF)
    return calls, verdict


@pytest.mark.parametrize("command", ["gate", "verify"])
def test_gate_and_its_former_name_run_the_same_gate_and_exit_by_its_verdict(gate_spy, command,
                                                                          capsys):
    calls, verdict = gate_spy
    rc, out, _ = run_inproc([command, "-c", "c.yaml", "--frameworks", "jax", "pytorch",
                             "-o", "g"], capsys)
    assert rc == 1 and "equivalence gate: FAILED for 1 cell(s)" in out
    assert "jax" in out and "outputs differ beyond tolerance" in out
    assert calls == [{"frameworks": ["jax", "pytorch"], "out": Path("g"), "again": True,
                      "verify": True}]
    verdict["rows"] = [_row("pytorch", True), _row("jax", True)]
    rc, out, _ = run_inproc([command, "-c", "c.yaml", "-o", "g2"], capsys)
    assert rc == 0 and "equivalence gate: passed" in out and calls[-1]["out"] == Path("g2")


def test_each_name_keeps_its_default_output_folder(gate_spy, capsys):
    calls, _ = gate_spy
    assert run_inproc(["gate", "-c", "c.yaml"], capsys)[0] == 1
    assert run_inproc(["verify", "-c", "c.yaml"], capsys)[0] == 1   # scripts read results/verify
    assert [c["out"] for c in calls] == [Path("results/gate"), Path("results/verify")]


def test_help_names_the_gate_and_hides_the_former_names(capsys):
    rc, top, _ = run_inproc(["--help"], capsys)
    assert rc == 0
    commands = top.split("Commands:", 1)[1]
    assert "gate" in commands and "equivalence gate" in commands and "verify" not in commands
    rc, run_help, _ = run_inproc(["run", "--help"], capsys)
    assert rc == 0 and "--gate / --no-gate" in run_help and "verify" not in run_help.replace(
        "config: verify", "")
    rc, gate_help, _ = run_inproc(["gate", "--help"], capsys)
    assert rc == 0 and "same weights and batches" in gate_help and "--no-gate" in gate_help


@pytest.fixture
def sweep_spy(monkeypatch, tmp_path):
    seen = []

    def run_sweep(config, out_dir, plan, hooks):
        seen.append(config.verify)
        raise typer.Exit(7)

    monkeypatch.setattr(runner, "run_sweep", run_sweep)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(CONF)
    return seen


@pytest.mark.parametrize("flags,gate_on", [
    ([], True), (["--no-gate"], False), (["--gate"], True),
    (["--no-verify"], False), (["--verify"], True), (["--no-gate", "--no-verify"], False)])
def test_run_takes_no_gate_and_its_former_name(sweep_spy, flags, gate_on, capsys):
    rc, _, err = run_inproc(["run", "-c", "c.yaml", "--no-report", *flags], capsys)
    assert rc == 7, err
    assert sweep_spy == [gate_on]


def test_contradicting_gate_flags_are_one_error_line(sweep_spy, capsys):
    rc, out, err = run_inproc(["run", "-c", "c.yaml", "--no-gate", "--verify"], capsys)
    assert rc == 2 and sweep_spy == []
    assert err.strip().splitlines() == [
        "error: --gate/--no-gate and --verify/--no-verify (its former name) disagree "
        "(command line)"]
