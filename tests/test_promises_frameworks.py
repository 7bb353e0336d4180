"""Fairness read back from the real frameworks: what each worker reported about itself.

The fp32 cells are the session's real sweep (`real_sweep` in conftest.py: every framework and
model, one thread, with the gate); a tiny bf16 run of every framework (mlp, one thread) adds
mixed precision. Every framework must run on the same OS-enforced CPU set (the `hello` message's
cpu_affinity) with the same thread count in its own settings, and bf16 must really run on the CPU
in every framework that supports it (a regression that skips mixed precision must not pass).
"""
from __future__ import annotations

import csv
import io
import json
import os
import statistics

import pytest

from cliutil import by_cell, run_inproc, write_config

pytestmark = pytest.mark.framework
FRAMEWORKS = ["pytorch", "tensorflow", "jax", "numpy"]


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fw")
    conf = write_config(tmp / "c.yaml", frameworks=FRAMEWORKS,
                        models=[{"name": "mlp", "preset": "tiny"}], batch_sizes=[16],
                        precisions=["bf16"], train_samples=256, eval_samples=64,
                        warmup_iterations=1, timed_iterations=3, threads=1, timeout_s=300)
    rc = run_inproc(["run", "-c", str(conf), "--no-report", "--no-verify", "--no-ceiling"])[0]
    return rc, by_cell(tmp / "results"), tmp / "results"


@pytest.fixture(scope="module")
def both_runs(real_sweep, bf16_run):
    """(cells, results dir) of the fp32 sweep and of the bf16 run."""
    assert real_sweep.rc == 0, real_sweep.out[-3000:]
    assert bf16_run[0] == 0
    return [(real_sweep.cells, real_sweep.results), (bf16_run[1], bf16_run[2])]


def _threads(fw: str, settings: dict) -> int:
    """The thread count the framework itself says it uses."""
    if fw == "tensorflow":
        return settings["threads"]["intra_op"]
    return settings["threads"]


def test_every_framework_runs_on_the_same_cpus_with_the_same_threads(both_runs):
    cells = {k: c for run, _ in both_runs for k, c in run.items()}
    ok = [c for c in cells.values() if c["status"] == "ok"]
    assert {c["framework"] for c in ok} == set(FRAMEWORKS), \
        {c["cell_id"]: c["reason"] for c in cells.values()}
    assert {c["precision"] for c in ok} == {"fp32", "bf16"}
    sets = {c["cell_id"]: tuple(c["hello"]["cpu_affinity"]) for c in ok}
    assert len(set(sets.values())) == 1, sets
    assert len(next(iter(sets.values()))) == 1
    for c in ok:
        assert _threads(c["framework"], c["metrics"]["settings"]) == 1, c["metrics"]["settings"]
    for jax in (c["metrics"]["settings"] for c in ok if c["framework"] == "jax"):
        assert jax["threads_enforced"] is True and len(jax["cpu_affinity"]) == 1
    if len(os.sched_getaffinity(0)) > 1:
        # pinned, not merely inherited: the parent may use every CPU
        assert len(next(iter(sets.values()))) < len(os.sched_getaffinity(0))


def test_bf16_really_runs_on_the_cpu(bf16_run):
    _, cells, _ = bf16_run
    for fw in ("pytorch", "tensorflow", "jax"):
        c = cells[f"{fw}-mlp.tiny-cpu-bs16-bf16"]
        assert c["status"] == "ok", (c["cell_id"], c["reason"])
        assert len(c["metrics"]["train"]["step_times_s"]) > 0
        settings = c["metrics"]["settings"]
        dtype = settings.get("autocast_dtype") or settings.get("compute_dtype")
        assert "bfloat16" in str(dtype), (fw, settings)   # really computed in bf16
    numpy = cells["numpy-mlp.tiny-cpu-bs16-bf16"]
    assert numpy["status"] == "skipped" and "fp32 only" in numpy["reason"]


def test_results_csv_throughput_is_batch_over_median_step_time(both_runs):
    checked = 0
    for cells, out in both_runs:
        rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
        for row in rows:
            c = cells[row["cell_id"]]
            if c["status"] != "ok":
                continue
            train = c["metrics"]["train"]
            want = train["samples_per_step"] / statistics.median(train["step_times_s"])
            assert float(row["train_samples_per_s"]) == pytest.approx(want, rel=1e-9)
            checked += 1
    assert checked == sum(c["status"] == "ok" for cells, _ in both_runs for c in cells.values())


def test_pytorch_agrees_with_the_numpy_reference_but_is_not_it(real_sweep):
    # the gate's reference itself is checked: a real framework (another implementation of the
    # same mlp, same weights and batches) agrees with it within fp32 tolerance, and the error is
    # measured, not zero (a framework compared with itself would give exactly 0)
    rows = json.loads((real_sweep.results / "verify.json").read_text())["rows"]
    row = next(r for r in rows if r["framework"] == "pytorch" and r["model"] == "mlp")
    assert row["reference"] == "numpy" and row["passed"] is True, row
    assert real_sweep.rc == 0, real_sweep.out[-3000:]
    assert 0 < row["max_abs_err"] < 1e-4
