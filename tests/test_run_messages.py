"""What the run says around its cells, in words that match what happened: the counts after an
interrupt, an interrupted cell offered to --resume (not as a failed cell), --failed with nothing
failed, --resume with the same config on another executor, and the gate announced once per node
kind that has not run it. Dummy worker and planted outcomes: no framework."""
from __future__ import annotations

import io
import json

from rich.console import Console

from cliutil import dummy_config, run_inproc
from mlbench.run import launcher, preflight, progress, runner
from mlbench.config.schema import Config, ExecutorSettings


def _attempt(cell_id: str, status: str) -> dict:
    return {"cell_id": cell_id, "repeat": 0, "status": status,
            "reason": None if status == "ok" else f"stopped by SIGINT ({status})"}


def _summary(outcome: runner.Outcome) -> str:
    buf = io.StringIO()
    progress.print_summary(outcome, Console(file=buf, width=300), ["mlbench", "run",
                                                                   "--output", "out"])
    return buf.getvalue()


def test_after_an_interrupt_the_counts_are_right_and_the_stopped_cell_goes_to_resume(tmp_path):
    # a 4-cell sweep stopped in its second cell: one ran to the end, one was stopped, two
    # never started
    latest = [_attempt("dummy-mlp-cpu-bs1-fp32", "ok"),
              _attempt("dummy-mlp-cpu-bs2-fp32", "interrupted")]
    text = _summary(runner.Outcome(tmp_path, planned=4, ran=2, latest=latest,
                                   interrupted_by="SIGINT", stopped=1))
    assert (f"4 cell(s) in the sweep, 2 with a result in {tmp_path}: 1 run now, 1 stopped by "
            "the interrupt; 2 not started") in text
    assert "to rerun a failed cell alone" not in text
    assert "--only" not in text
    assert "1 stopped: dummy-mlp-cpu-bs2-fp32" in text and "--resume" in text


def test_a_failed_cell_is_still_offered_alone_beside_a_stopped_one(tmp_path):
    latest = [_attempt("a", "failed"), _attempt("b", "interrupted"), _attempt("c", "ok")]
    text = _summary(runner.Outcome(tmp_path, planned=3, ran=3, latest=latest,
                                   interrupted_by="SIGINT", stopped=1))
    offered = text.split("to rerun a failed cell alone", 1)[1].split("every failed cell")[0]
    assert "--only a" in offered and "--only b" not in offered
    assert "3 cell(s) in the sweep, 3 with a result" in text and ": 2 run now, 1 stopped" in text


def test_failed_with_nothing_failed_says_so(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    rc, _, err = run_inproc(["run", "--failed", "--output", str(out), "--no-report"], capsys)
    assert rc == 0 and f"no failed cells in {out}: nothing to rerun" in err


def test_resume_with_the_same_config_on_another_executor_warns_of_no_difference(tmp_path,
                                                                                capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    # as if the run had been made with --executor ray: where the cells ran is stored with it
    run_json = out / "run.json"
    run = json.loads(run_json.read_text())
    run["config"]["executor"]["kind"] = "ray"
    run_json.write_text(json.dumps(run))
    rc, _, err = run_inproc(["run", "--resume", "--config", str(conf), "--output", str(out),
                             "--no-report"], capsys)
    assert rc == 0 and "differs" not in err and "executor" not in err
    # a real difference is still reported
    conf.write_text(conf.read_text() + "timed_iterations: 7\n")
    rc, _, err = run_inproc(["run", "--resume", "--config", str(conf), "--output", str(out),
                             "--no-report"], capsys)
    assert rc == 0 and "differs from the run's stored one in timed_iterations" in err
    assert "executor" not in err


class _Cluster:
    """A cluster executor whose driver host runs cells; `elsewhere`: its other node kinds."""

    spans_nodes = True

    def __init__(self, elsewhere):
        self.elsewhere = elsewhere

    def describe(self):
        return {"kind": "ray", "nodes": []}

    def runs_cells_here(self):
        return True

    def launch(self, job, job_dir, stop, on_message=lambda m: None):
        raise AssertionError("the planted gate starts nothing")

    def kinds_elsewhere(self, host):
        return list(self.elsewhere)

    def on_each_kind(self, fn, *args):
        return {"here": {"node_id": "n0", "hostname": "driver",
                         "result": {"same_as_driver": True}}}


def test_the_gate_is_announced_only_for_node_kinds_that_have_not_run_it(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "run_gate", lambda *a, **k: None)
    monkeypatch.setattr(preflight, "measure", lambda *a, **k: None)
    config = Config(frameworks=["pytorch"], models=[{"name": "mlp", "preset": "tiny"}],
                    batch_sizes=[16], threads=1, ceiling=False)

    class Notes(runner.Hooks):
        def __init__(self):
            self.lines = []

        def note(self, text):
            self.lines.append(text)

    for elsewhere, expect in (([], []), (["gpu-a100"], ["equivalence gate on node kind(s) "
                                                         "gpu-a100 ..."])):
        hooks = Notes()
        runner._preflight(config, tmp_path, runner.Plan("new"), hooks, _Cluster(elsewhere),
                          {"host": {"hostname": "driver"}}, launcher.Stop())
        assert [t for t in hooks.lines if "node kind" in t] == expect


def test_kinds_elsewhere_leaves_out_the_drivers_own_kind():
    from mlbench.run.ray_executor import RayExecutor
    ex = RayExecutor(ExecutorSettings(kind="ray"))
    ex._nodes = [{"node_id": "a", "hostname": "driver"}, {"node_id": "b", "hostname": "n2"},
                 {"node_id": "c", "hostname": "n3"}]
    ex._kinds = {"a": "cpu-x86", "b": "cpu-x86", "c": "gpu-h100"}
    assert ex.kinds_elsewhere("driver") == ["gpu-h100"]
    assert ex.kinds_elsewhere(None) == ["cpu-x86", "gpu-h100"]
