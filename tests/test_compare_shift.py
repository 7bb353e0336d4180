"""mlbench/analysis/compare.py's whole-run shift and verdict changes, pinned where mutmut's
mutants lived (benchmarks/mutation_tool.py; the table, the --strict rule and the rows:
test_compare_mutants.py): the shift and its bootstrap interval from numpy on the planted cells,
the lines that say it, the drift at its boundary and at 0, the serving figures (with and without
single-stream), each cell judged against the shift; the verdicts of both runs, a failed gate
included. Planted processes are irregular (a drifting warm-up and an outlier in every process).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import fakestore as fs
from mlbench.analysis import gate_verdicts, stats
from mlbench.analysis.compare import compare
from test_compare_mutants import SHAPE, _serving


# --- the whole run's shift ----------------------------------------------------------------------

CELL_F = {("pytorch", "mlp"): 0.90, ("pytorch", "cnn"): 0.93, ("tensorflow", "mlp"): 0.91,
          ("tensorflow", "cnn"): 0.86, ("jax", "mlp"): 0.92, ("jax", "cnn"): 0.89}
KS4 = (1.0, 1.01, 0.995, 1.005)


def _sweep(tmp, name, factor, ks=KS4, fws=("pytorch", "tensorflow", "jax"), models=("mlp", "cnn")):
    out = [fs.attempt(fw, model=m, repeat=r,
                      step_times=[0.004 * (1 + i + 2.5 * j) * k * factor(fw, m) * f
                                  for f in SHAPE],
                      latencies=[0.001 * (1 + i + 2.5 * j) * k * factor(fw, m) * f
                                 for f in SHAPE])
           for i, fw in enumerate(fws) for j, m in enumerate(models) for r, k in enumerate(ks)]
    return fs.write_store(tmp / name, out)


def _direct_median_ci(values):
    """The textbook percentile bootstrap of a median (stats.SEED, N_BOOT resamples)."""
    a = np.asarray(values)
    plan = np.random.default_rng(stats.SEED).integers(0, len(a), size=(stats.N_BOOT, len(a)))
    return np.quantile(np.median(a[plan], axis=1), [0.025, 0.975])


def test_the_shift_its_interval_and_its_lines(tmp_path):
    """Every cell 7-14% faster: the shift is the middle framework's median, its interval the
    bootstrap over the cells' log changes; each cell is judged against it."""
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0)
    new = _sweep(tmp_path, "n", lambda fw, m: CELL_F[(fw, m)])
    res = compare(base, new)
    # independent: per cell new/base throughput is 1 / factor (same processes, same shape)
    logs = {fw: [np.log(1 / CELL_F[(fw, m)]) for m in ("mlp", "cnn")]
            for fw in ("pytorch", "tensorflow", "jax")}
    shift = np.exp(np.median([np.median(v) for v in logs.values()]))
    lo, hi = np.exp(_direct_median_ci([x for v in logs.values() for x in v]))
    sh = res.shifts["train samples/s"]
    assert sh["shift"] == pytest.approx(shift) and (sh["lo"], sh["hi"]) == pytest.approx((lo, hi))
    assert sh["lo"] < sh["shift"] < sh["hi"] and sh["used"] and sh["why"] == ""
    lines = res.render_text().splitlines()
    assert (f"whole run: train samples/s moved {shift - 1:+.1%} [{lo - 1:+.1%}, {hi - 1:+.1%}] "
            "(the middle of 3 framework(s)' medians over 6 cells); within the ±15% a machine "
            "drifts between runs, so a cell is flagged only where it departs from that shift "
            "too") in lines
    # tensorflow-cnn ran 1/0.86 = +16% faster: beyond the 5% margin raw, -4% against the shift
    r = next(r for r in res.rows if r.cell_id.startswith("tensorflow-cnn")
             and r.metric == "train samples/s")
    rel = (1 / 0.86) / shift - 1
    assert r.relative == pytest.approx(rel)
    assert r.verdict == "within noise" and not r.regressed
    assert r.note.startswith(f"moved with the whole run ({shift - 1:+.1%}); against it "
                             f"{rel:+.1%}, ")
    raw = next(x for x in compare(base, new, drift=0).rows if x.cell_id == r.cell_id
               and x.metric == r.metric)
    assert raw.verdict == "improved" and raw.relative is None
    tail = r.note.split(f"{rel:+.1%}, ", 1)[1]
    assert not tail.startswith("cannot tell") and tail in (
        "within noise: the interval reaches inside the ±5% margin",
        "equivalent: the interval lies within the ±5% margin")


def test_drift_zero_says_nothing_about_the_shift(tmp_path):
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0)
    new = _sweep(tmp_path, "n", lambda fw, m: CELL_F[(fw, m)])
    res = compare(base, new, drift=0)
    assert not any(sh["used"] or sh["why"] for sh in res.shifts.values())
    assert "whole run" not in res.render_text()
    same = compare(base, base, drift=0)      # a shift of exactly 1 is still not used
    assert same.shifts["train samples/s"]["shift"] == 1.0
    assert not same.shifts["train samples/s"]["used"]
    assert all(r.relative is None for r in same.rows)


def test_a_shift_of_exactly_the_drift_is_the_machines(tmp_path):
    """Every step exactly half as long (binary-exact): throughput x2, the shift exactly 2; with
    drift 1.0 (+100%) that is within what the machine may drift."""
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0)
    new = _sweep(tmp_path, "n", lambda fw, m: 0.5)
    res = compare(base, new, drift=1.0)
    sh = res.shifts["train samples/s"]
    assert sh["shift"] == 2.0 and sh["used"]
    assert all(r.verdict == "within noise" for r in res.rows if r.metric == "train samples/s")
    beyond = compare(base, new, drift=0.999)
    assert not beyond.shifts["train samples/s"]["used"]
    assert (f"whole run: train samples/s moved +100.0% [+100.0%, +100.0%] (the middle of 3 "
            "framework(s)' medians over 6 cells); beyond the ±100% a machine drifts between "
            "runs: not explained away, every cell judged on its own") in \
        beyond.render_text().splitlines()


@pytest.mark.parametrize("single_stream", [True, False])
def test_the_serving_figures_shift_with_the_machine_too(tmp_path, single_stream):
    """Three frameworks' servers 8-11% slower (single-stream p90 up, max QPS down): the machine.
    Without single-stream figures (a server-only run) the QPS shift is still taken."""
    fws = ("pytorch", "tensorflow", "jax")
    qps = [812.0, 809.0, 815.0, 810.0]
    base = _serving(tmp_path, "b", 1.0, qps, fws=fws, single_stream=single_stream)
    f = {"pytorch": 0.92, "tensorflow": 0.89, "jax": 0.91}
    new = _serving(tmp_path, "n", 1.0, qps, fws=fws, single_stream=single_stream, factors=f)
    res = compare(base, new)
    assert res.shifts["server max QPS"]["shift"] == pytest.approx(0.91) and \
        res.shifts["server max QPS"]["used"]
    got = {r.metric for r in res.rows if "moved with the whole run" in r.note}
    assert "server max QPS" in got
    if single_stream:
        # p90 of the batch-1 latencies, each framework's scaled by 1 / f
        assert res.shifts["single-stream p90 ms"]["shift"] == pytest.approx(1 / 0.91)
        assert "single-stream p90 ms" in got
    else:
        assert "single-stream p90 ms" not in res.shifts
    assert not res.regressed
    raw = compare(base, new, drift=0)
    assert any(r.verdict == "REGRESSED" for r in raw.rows if r.metric == "server max QPS")


# --- the verdicts of both runs --------------------------------------------------------------------

def _two(tmp, name, st_pt, st_jax, gate_fails=None):
    out = [fs.attempt(fw, repeat=r, step_times=[st * k * f for f in SHAPE])
           for fw, st in (("pytorch", st_pt), ("jax", st_jax)) for r, k in enumerate(KS4)]
    run = fs.write_store(tmp / name, out)
    if gate_fails:
        row = gate_verdicts.GateRow(model="mlp", model_label="mlp", device="cpu",
                                    precision="fp32", framework=gate_fails, reference="jax",
                                    passed=False, reason="outputs differ")
        (run / "verify.json").write_text(json.dumps(
            gate_verdicts.GateReport(rows=[row]).to_json()))
    return run


def test_verdict_changes_name_both_winners_or_why_there_is_none(tmp_path):
    q = "verdict changed: mlp.small on cpu, fastest to train: "
    fast_pt = _two(tmp_path, "a", 0.010, 0.020)
    tie = _two(tmp_path, "t", 0.010, 0.0101)

    def changes(b, n):
        return [c for c in compare(b, n).verdict_changes if c.startswith(q)]
    (lost,) = changes(fast_pt, tie)
    assert lost.startswith(q + "pytorch -> no winner (") and lost.endswith(")")
    assert changes(tie, fast_pt) == [q + "no winner -> pytorch"]
    # the same measurements, but NEW's pytorch failed the equivalence gate: not comparable
    gated = _two(tmp_path, "g", 0.010, 0.020, gate_fails="pytorch")
    (c,) = changes(fast_pt, gated)
    assert c.startswith(q + "pytorch -> ")
    assert not c.startswith(q + "pytorch -> pytorch")


def test_a_mode_change_names_a_side_with_no_options(tmp_path):
    def run(name, mode, settings):
        out = []
        for r, k in enumerate(KS4):
            a = fs.attempt("fast", repeat=r, step_times=[0.010 * k * f for f in SHAPE])
            a.update(base_framework="pytorch", mode=mode, mode_settings=settings)
            out.append(a)
        return fs.write_store(tmp_path / name, out)
    plain, tuned = run("b", "default", {}), run("n", "custom", {"compile": "max-autotune"})
    assert compare(plain, tuned).notes == [
        "mode changed: fast-mlp-cpu-bs32-fp32 ran default (no options) in BASE, custom "
        "(compile=max-autotune) in NEW"]
    assert compare(tuned, plain).notes == [
        "mode changed: fast-mlp-cpu-bs32-fp32 ran custom (compile=max-autotune) in BASE, default "
        "(no options) in NEW"]
