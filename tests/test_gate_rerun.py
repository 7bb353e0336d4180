"""Every rerun (--failed, --only, --resume) reruns the gate rows its cells depend on, merged into
the run's verify.json with the other rows kept as stored; a model that fails to build in the
gate is a "builder error", not a numerical disagreement; `mlbench gate` never overwrites a run's
verify.json.

The planted "pytorch" is the numpy reference worker (run from a copy of workers/,
MLBENCH_WORKERS_DIR) whose builder raises for the model with hidden [32] while a marker file
exists: a transient builder error, fixed by removing the file. Numpy processes only: fast.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cliutil import ROOT, run_inproc, write_config

BUILD = "    def build_model(self, spec: dict) -> None:\n"


def _plant(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "workers"
    shutil.copytree(ROOT / "workers", d, ignore=shutil.ignore_patterns("__pycache__"))
    src = (d / "numpy_worker.py").read_text()
    assert BUILD in src, "numpy_worker.py changed: update the planted framework"
    marker = tmp_path / "broken"
    src = src.replace(BUILD, BUILD + (
        "        import os\n"
        f"        if spec.get('hidden') == [32] and os.path.exists({str(marker)!r}):\n"
        "            raise RuntimeError('planted: the builder cannot find its layer')\n"))
    (d / "pytorch_worker.py").write_text(src)
    monkeypatch.setenv("MLBENCH_WORKERS_DIR", str(d))
    marker.write_text("x")
    return marker


def _config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "c.yaml", frameworks=["pytorch"], batch_sizes=[16], threads=1, epochs=1,
        models=[{"name": "mlp", "preset": "tiny"},
                {"name": "mlp", "preset": "tiny", "options": {"hidden": [32]},
                 "label": "narrow"}],
        train_samples=64, eval_samples=32, warmup_iterations=1, timed_iterations=3,
        repeats=1, ceiling=False)


def _rows(out: Path) -> dict[str, dict]:
    return {r["model_label"]: r for r in json.loads((out / "verify.json").read_text())["rows"]}


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
@pytest.mark.parametrize("rerun", [["--failed"], ["--only", "pytorch-narrow-cpu-bs16-fp32"]])
def test_a_rerun_reruns_the_gate_rows_of_its_cells_and_keeps_the_others(tmp_path, monkeypatch,
                                                                        capsys, rerun):
    marker = _plant(tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc, _, err = run_inproc(["run", "-c", str(_config(tmp_path)), "-o", str(out),
                             "--no-report"], capsys)
    assert rc == 1, err
    rows = _rows(out)
    assert rows["narrow"]["passed"] is False
    assert rows["narrow"]["reason"].startswith("builder error: RuntimeError: planted")
    assert rows["mlp.tiny"]["passed"] is True
    before = (out / "verify.json").read_text()
    kept = json.loads(before)
    marker.unlink()  # the cause is fixed

    rc, _, err = run_inproc(["run", "-o", str(out), "--no-report", *rerun], capsys)
    assert rc == 0, err
    after = (out / "verify.json").read_text()
    rows = _rows(out)
    assert rows["narrow"]["passed"] is True and rows["narrow"]["reason"] is None
    assert "equivalence gate: rerunning the rows of 1 (model, device, precision) group(s)" in err
    # the other model's row and pairs: the same JSON text as before
    doc = json.loads(after)
    for part in ("rows", "pairs"):
        old = [d for d in kept[part] if d["model_label"] == "mlp.tiny"]
        new = [d for d in doc[part] if d["model_label"] == "mlp.tiny"]
        assert new == old and (old or part == "pairs")  # judged against numpy: no pairs
        for d in old:
            assert json.dumps(d, indent=1).replace("\n", "\n  ") in after
    assert doc["passed"] is True


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_a_run_without_failed_cells_leaves_verify_json_alone(tmp_path, monkeypatch, capsys):
    marker = _plant(tmp_path, monkeypatch)
    marker.unlink()
    out = tmp_path / "run"
    rc, _, err = run_inproc(["run", "-c", str(_config(tmp_path)), "-o", str(out),
                             "--no-report"], capsys)
    assert rc == 0, err
    before = (out / "verify.json").read_bytes()
    rc, _, err = run_inproc(["run", "-o", str(out), "--no-report", "--failed"], capsys)
    assert rc == 0 and f"no failed cells in {out}: nothing to rerun" in err
    assert (out / "verify.json").read_bytes() == before
    assert "equivalence gate" not in err


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_mlbench_gate_refuses_to_overwrite_a_runs_verdicts(tmp_path, monkeypatch, capsys):
    marker = _plant(tmp_path, monkeypatch)
    marker.unlink()
    conf = _config(tmp_path)
    out = tmp_path / "run"
    rc, _, err = run_inproc(["run", "-c", str(conf), "-o", str(out), "--no-report"], capsys)
    assert rc == 0, err
    before = (out / "verify.json").read_bytes()
    rc, _, err = run_inproc(["gate", "-c", str(conf), "-o", str(out)], capsys)
    assert rc == 2 and err.startswith("error: ") and "--failed" in err and "--only" in err
    assert (out / "verify.json").read_bytes() == before


class _RemoteCluster:
    """A cluster whose driver runs no cells; its one node kind answers the gate with `doc`."""

    spans_nodes = True

    def __init__(self, doc):
        self.doc = doc

    def describe(self):
        return {"kind": "cluster", "nodes": []}

    def kinds_elsewhere(self, host):
        return ["kind-a"]

    def runs_cells_here(self):
        return False

    def launch(self, job, job_dir, stop, on_message=lambda m: None):
        raise AssertionError(f"{job.script.name} started on the driver")

    def on_each_kind(self, fn, *args):
        return {"kind-a": {"node_id": "n1", "hostname": "node1", "result": {"gate": self.doc}}}


def test_a_rerun_on_a_cluster_merges_the_node_kinds_rows_for_its_cells(tmp_path):
    from mlbench.analysis import gate_verdicts
    from mlbench.run import launcher, matrix, runner
    from mlbench.config.schema import Config
    config = Config(frameworks=["pytorch"], batch_sizes=[16], threads=1, ceiling=False,
                    models=[{"name": "mlp", "preset": "tiny"},
                            {"name": "mlp", "preset": "tiny", "options": {"hidden": [32]},
                             "label": "narrow"}])

    def row(label, passed, reason):
        return gate_verdicts.GateRow(model="mlp", model_label=label, device="cpu",
                                     precision="fp32", framework="pytorch", reference="numpy",
                                     passed=passed, reason=reason, max_abs_err=3.5e-7)

    stored = gate_verdicts.GateReport(rows=[row("mlp.tiny", True, None),
                                            row("narrow", False, "builder error: KeyError: x")],
                                      seconds=4.0)
    stored.write(tmp_path)
    before = (tmp_path / "verify.json").read_text()
    fresh = gate_verdicts.GateReport(rows=[row("mlp.tiny", False, "changed elsewhere"),
                                           row("narrow", True, None)]).to_json()
    todo = [c for c in matrix.expand(config) if c.model.id_label == "narrow"]
    runner._preflight(config, tmp_path, runner.Plan("failed"), runner.Hooks(),
                      _RemoteCluster(fresh), {"host": {"hostname": "driver"}},
                      launcher.Stop(), todo)
    rows = _rows(tmp_path)
    assert rows["narrow"]["passed"] is True and rows["narrow"]["reason"] is None
    kept = json.loads(before)["rows"][0]
    assert rows["mlp.tiny"] == kept and json.dumps(kept, indent=1).replace("\n", "\n  ") in \
        (tmp_path / "verify.json").read_text()
    # a new run adopts the node kind's whole document
    runner._preflight(config, tmp_path, runner.Plan("new"), runner.Hooks(),
                      _RemoteCluster(fresh), {"host": {"hostname": "driver"}}, launcher.Stop(),
                      todo)
    assert _rows(tmp_path)["mlp.tiny"]["reason"] == "changed elsewhere"
