"""Every framework and model, for real, through `mlbench run` on the CPU at tiny sizes.

The session's one real sweep (`real_sweep` in conftest.py: every framework and model, with the
gate and the ceilings) serves all the checks: status ok, learning above chance, the same
parameter counts and the same data bytes in every framework, a run directory that reproduces a
cell.
"""
import json

import pytest

from cliutil import by_cell, run_inproc, run_subprocess

pytestmark = pytest.mark.framework  # every test here starts a real ML framework

FRAMEWORKS = ["pytorch", "tensorflow", "jax", "numpy"]
MODELS = ["mlp", "cnn", "transformer", "lstm", "vit"]
CHANCE = {"mlp": 0.1, "cnn": 0.1, "transformer": 1 / 64, "lstm": 0.25, "vit": 0.1}

@pytest.fixture(scope="module")
def sweep(real_sweep):
    assert real_sweep.models == MODELS, "MLBENCH_TEST_SWEEP narrowed the sweep: unset it"
    return real_sweep


def _cell(fw, model):
    return f"{fw}-{model}.tiny-cpu-bs16-fp32"


def test_every_framework_and_model_runs_ok(sweep):
    cells = sweep.cells
    assert sweep.rc == 0, sweep.out[-3000:]
    for fw in FRAMEWORKS:
        for model in MODELS:
            c = cells[_cell(fw, model)]
            if fw == "numpy" and model != "mlp":
                assert c["status"] == "skipped" and "only mlp" in c["reason"]
                continue
            assert c["status"] == "ok", (c["cell_id"], c.get("reason"), c.get("stderr_tail"))
            m = c["metrics"]
            assert m["train"]["steady_steps"] == 2 * (1024 // 16) - 1 - 10
            assert len(m["train"]["step_times_s"]) == len(m["train"]["steady_blocks"])
            assert len(m["train"]["warmup_step_times_s"]) == 10
            assert m["train"]["first_step_s"] > 0
            inf = m["inference"]  # at least timed_iterations samples and min_time_s seconds
            assert len(inf["latencies_s"]) >= 10 and (inf["sampled_s"] >= 0.2 or inf["capped"])
            blocks = m["train"]["steady_blocks"]
            assert len(blocks) >= 3 and sum(b["seconds"] for b in blocks) >= 0.2
            assert c["host_peak_rss_bytes"] > 10 * 2**20
            assert c["hello"]["framework_version"]


def test_every_model_learns_in_every_framework(sweep):
    cells = sweep.cells
    for fw in FRAMEWORKS:
        for model in MODELS:
            c = cells[_cell(fw, model)]
            if c["status"] != "ok":
                continue
            acc = c["metrics"]["eval"]["accuracy"]
            assert acc > 2 * CHANCE[model], (c["cell_id"], acc)


def test_same_parameters_and_same_data_everywhere(sweep):
    cells = sweep.cells
    for model in MODELS:
        ok = [cells[_cell(fw, model)] for fw in FRAMEWORKS
              if cells[_cell(fw, model)]["status"] == "ok"]
        assert len(ok) >= 3
        assert len({(c["metrics"]["params"]["trainable"],
                     c["metrics"]["params"]["non_trainable"]) for c in ok}) == 1
        assert len({c["metrics"]["data_hash"] for c in ok}) == 1
        assert len({c["metrics"]["flops_per_sample"]["forward"] for c in ok}) == 1


def test_run_directory_holds_everything_to_reproduce_a_cell(sweep):
    cells, tmp = sweep.cells, sweep.dir
    out = tmp / "results"
    # the equivalence gate and the ceilings ran before the cells, in the same run
    for name in ("run.json", "results.jsonl", "results.json", "results.csv", "verify.json",
                 "ceilings.json"):
        assert (out / name).exists()
    cell = cells[_cell("pytorch", "mlp")]
    d = out / "cells" / cell["cell_id"]
    assert (d / "request.json").exists()
    cmd = (d / "command.txt").read_text()
    assert "CUDA_VISIBLE_DEVICES=''" in cmd and "pytorch_worker.py --request" in cmd
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in cmd and "XLA_PYTHON_CLIENT_PREALLOCATE=false" in cmd
    verdict = json.loads((out / "verify.json").read_text())
    assert verdict["passed"] is True and verdict["rows"]
    # a measured ceiling for every real framework
    ceilings = json.loads((out / "ceilings.json").read_text())["entries"]
    for fw in ("pytorch", "tensorflow", "jax"):
        entry = ceilings[f"{fw}|cpu"]
        assert entry["status"] == "ok" and entry["ceilings"]["fp32"]["best_flops"] > 0, entry
    assert "cell_warnings" in json.loads((out / "results.json").read_text())
    assert (out / cell["stderr_log"]).exists()
    assert (tmp / "report" / "index.html").exists()


def test_seed_command_frameworks_and_devices_verbatim(tmp_path):
    # `mlbench run --frameworks pytorch jax --devices cuda:0`, as the seed writes it; this
    # machine has no GPU, so every cell is skipped with that reason and the run still succeeds.
    proc = run_subprocess(["run", "--frameworks", "pytorch", "jax", "--devices", "cuda:0",
                           "--no-report"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cells = by_cell(tmp_path / "results")
    assert {c["framework"] for c in cells.values()} == {"pytorch", "jax"}
    assert {c["device"] for c in cells.values()} == {"cuda:0"}
    assert all(c["status"] == "skipped" and "cuda:0 not present" in c["reason"]
               for c in cells.values())


def test_list_values_after_one_flag_commas_and_repeats(tmp_path, capsys):
    from mlbench.cli import expand_list_args
    assert expand_list_args(["run", "--frameworks", "pytorch", "jax", "--devices", "cuda:0"]) \
        == ["run", "--frameworks", "pytorch", "--frameworks", "jax", "--devices", "cuda:0"]
    assert expand_list_args(["--models=mlp,cnn", "--batch-sizes", "8,16", "--resume"]) == \
        ["--models", "mlp", "--models", "cnn", "--batch-sizes", "8", "--batch-sizes", "16",
         "--resume"]
    rc, _, _ = run_inproc(["run", "--frameworks", "dummy", "--models", "mlp,cnn",
                           "--batch-sizes", "4", "--batch-sizes", "8", "--output",
                           str(tmp_path / "r"), "--no-report"], capsys)
    assert rc == 0 and len(by_cell(tmp_path / "r")) == 4
