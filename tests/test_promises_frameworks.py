"""Fairness read back from the real frameworks: one tiny `mlbench run` of every framework (mlp,
fp32 and bf16, one thread), then what each worker reported about itself.

Every framework must run on the same OS-enforced CPU set (the `hello` message's cpu_affinity)
with the same thread count in its own settings, and bf16 must really run on the CPU in every
framework that supports it (a regression that skips mixed precision must not pass).
"""
from __future__ import annotations

import csv
import json
import io
import os
import statistics

import pytest

from cliutil import by_cell, run_inproc, write_config

pytestmark = pytest.mark.framework
FRAMEWORKS = ["pytorch", "tensorflow", "jax", "numpy"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fw")
    conf = write_config(tmp / "c.yaml", frameworks=FRAMEWORKS,
                        models=[{"name": "mlp", "preset": "tiny"}], batch_sizes=[16],
                        precisions=["fp32", "bf16"], train_samples=256, eval_samples=64,
                        warmup_iterations=1, timed_iterations=3, threads=1, timeout_s=300)
    rc = run_inproc(["run", "-c", str(conf), "--no-report", "--no-verify", "--no-ceiling"])[0]
    return rc, by_cell(tmp / "results"), tmp / "results"


def _threads(fw: str, settings: dict) -> int:
    """The thread count the framework itself says it uses."""
    if fw == "tensorflow":
        return settings["threads"]["intra_op"]
    return settings["threads"]


def test_every_framework_runs_on_the_same_cpus_with_the_same_threads(tiny_run):
    _, cells, _ = tiny_run
    ok = [c for c in cells.values() if c["status"] == "ok"]
    assert {c["framework"] for c in ok} == set(FRAMEWORKS), \
        {c["cell_id"]: c["reason"] for c in cells.values()}
    sets = {c["cell_id"]: tuple(c["hello"]["cpu_affinity"]) for c in ok}
    assert len(set(sets.values())) == 1, sets
    assert len(next(iter(sets.values()))) == 1
    for c in ok:
        assert _threads(c["framework"], c["metrics"]["settings"]) == 1, c["metrics"]["settings"]
    jax = next(c for c in ok if c["framework"] == "jax")["metrics"]["settings"]
    assert jax["threads_enforced"] is True and len(jax["cpu_affinity"]) == 1
    if len(os.sched_getaffinity(0)) > 1:
        # pinned, not merely inherited: the parent may use every CPU
        assert len(next(iter(sets.values()))) < len(os.sched_getaffinity(0))


def test_bf16_really_runs_on_the_cpu(tiny_run):
    _, cells, _ = tiny_run
    for fw in ("pytorch", "tensorflow", "jax"):
        c = cells[f"{fw}-mlp.tiny-cpu-bs16-bf16"]
        assert c["status"] == "ok", (c["cell_id"], c["reason"])
        assert len(c["metrics"]["train"]["step_times_s"]) > 0
        settings = c["metrics"]["settings"]
        dtype = settings.get("autocast_dtype") or settings.get("compute_dtype")
        assert "bfloat16" in str(dtype), (fw, settings)   # really computed in bf16
    numpy = cells["numpy-mlp.tiny-cpu-bs16-bf16"]
    assert numpy["status"] == "skipped" and "fp32 only" in numpy["reason"]


def test_results_csv_throughput_is_batch_over_median_step_time(tiny_run):
    _, cells, out = tiny_run
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    for row in rows:
        c = cells[row["cell_id"]]
        if c["status"] != "ok":
            continue
        train = c["metrics"]["train"]
        want = train["samples_per_step"] / statistics.median(train["step_times_s"])
        assert float(row["train_samples_per_s"]) == pytest.approx(want, rel=1e-9)


def test_pytorch_agrees_with_the_numpy_reference_but_is_not_it(tmp_path, capsys):
    # the gate's reference itself is checked: a real framework (another implementation of the
    # same mlp, same weights and batches) agrees with it within fp32 tolerance, and the error is
    # measured, not zero (a framework compared with itself would give exactly 0)
    conf = write_config(tmp_path / "g.yaml", frameworks=["pytorch"], batch_sizes=[16], threads=1,
                        models=[{"name": "mlp", "preset": "tiny"}])
    rc, text, _ = run_inproc(["verify", "-c", str(conf), "--output", str(tmp_path / "g")], capsys)
    rows = json.loads((tmp_path / "g" / "verify.json").read_text())["rows"]
    row = next(r for r in rows if r["framework"] == "pytorch")
    assert row["reference"] == "numpy" and row["passed"] is True and rc == 0, text
    assert 0 < row["max_abs_err"] < 1e-4
