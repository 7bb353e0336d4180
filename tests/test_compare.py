"""`mlbench compare`: regressions beyond the threshold and the noise are flagged, noise is not."""
from __future__ import annotations

import fakestore as fs
import numpy as np
import pytest

from mlbench.analysis.compare import compare
from mlbench.errors import UserError


def _run(tmp, name, step_by_repeat, fw="pytorch", status="ok"):
    attempts = [fs.attempt(fw, repeat=r, step_times=[s] * 20, latencies=[0.002] * 20,
                           status=status) for r, s in enumerate(step_by_repeat)]
    return fs.write_store(tmp / name, attempts)


def test_regression_beyond_noise(tmp_path):
    base = _run(tmp_path, "base", [0.010, 0.0101, 0.0099])
    new = _run(tmp_path, "new", [0.013, 0.0131, 0.0129])  # ~23 % fewer samples/s
    res = compare(base, new, threshold=0.05)
    assert res.regressed
    row = next(r for r in res.rows if r.metric == "train samples/s")
    assert row.regressed and row.change == pytest.approx(0.010 / 0.013 - 1)
    text = res.render_text()
    assert "REGRESSED" in text and "train samples/s" in text


def test_within_noise_is_not_a_regression(tmp_path):
    base = _run(tmp_path, "base", [0.010, 0.008, 0.012])
    new = _run(tmp_path, "new", [0.0107, 0.0095, 0.0125])  # median 7 % slower, ranges overlap
    res = compare(base, new, threshold=0.05)
    assert not res.regressed
    row = next(r for r in res.rows if r.metric == "train samples/s")
    assert row.verdict == "within noise"


def test_small_change_and_improvement(tmp_path):
    base = _run(tmp_path, "base", [0.010, 0.0104, 0.0097])
    same = _run(tmp_path, "same", [0.0101, 0.0099, 0.0103])
    faster = _run(tmp_path, "faster", [0.005, 0.0052, 0.0049])
    assert not compare(base, same).regressed
    res = compare(base, faster)
    assert not res.regressed
    assert any(r.verdict == "improved" and "margin" in r.note for r in res.rows)


def test_single_measurement_cannot_tell_unless_strict(tmp_path):
    base = _run(tmp_path, "base", [0.010])
    new = _run(tmp_path, "new", [0.020])
    res = compare(base, new, threshold=0.05)
    row = next(r for r in res.rows if r.metric == "train samples/s")
    assert not res.regressed and row.verdict == "cannot tell" and "single process" in row.note
    # --strict: the older rule, the point change alone
    strict = compare(base, new, threshold=0.05, strict=True)
    assert strict.regressed and "single measurement" in strict.render_text()
    assert not compare(base, new, threshold=2.0, strict=True).regressed


def test_cell_that_now_fails_regresses(tmp_path):
    base = _run(tmp_path, "base", [0.010, 0.011, 0.0105])
    new = _run(tmp_path, "new", [0.010], status="oom")
    res = compare(base, new)
    assert res.regressed and "oom" in res.render_text()


def test_bad_threshold_and_empty_input(tmp_path):
    base = _run(tmp_path, "base", [0.010])
    with pytest.raises(UserError):
        compare(base, base, threshold=-1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError):
        compare(base, empty)


def test_change_carries_its_interval(tmp_path):
    base = _run(tmp_path, "base", [0.010, 0.0101, 0.0099])
    new = _run(tmp_path, "new", [0.013, 0.0131, 0.0129])
    row = next(r for r in compare(base, new).rows if r.metric == "train samples/s")
    assert row.significant and row.change_lo <= row.change <= row.change_hi < 0
    assert "95% CI" in compare(base, new).render_text()
    single = next(r for r in compare(_run(tmp_path, "b1", [0.010]),
                                     _run(tmp_path, "n1", [0.020])).rows
                  if r.metric == "train samples/s")
    assert single.change_lo is None and single.significant is None


def test_memory_of_different_figures_is_not_compared(tmp_path):
    # BASE from an older store (whole-process RSS), NEW with the worker's baseline (working
    # memory): a 10x "improvement" that is only a change of figure must not be reported
    base = fs.write_store(tmp_path / "b", [fs.attempt(host_rss=800_000_000)])
    a = fs.attempt(host_rss=800_000_000)
    a["metrics"]["memory"]["host_baseline_rss_bytes"] = 720_000_000
    new = fs.write_store(tmp_path / "n", [a])
    rows = [r for r in compare(base, new).rows if r.metric.startswith("memory")]
    assert len(rows) == 1 and rows[0].verdict == "not comparable"
    assert "host_peak vs working" in rows[0].note and not rows[0].regressed


# --- the noise-aware rule (mlbench.analysis.decision), through the command
# ------------------------------

def _noisy(tmp, name, scale=1.0, ks=(1.0, 1.06, 0.95, 1.02), fws=("pytorch", "jax")):
    """Irregular per-process speeds (a drifting warm-up and an outlier inside each process)."""
    shape = (1.5, 1.1, 1.0, 0.97, 1.04, 0.99, 1.02, 1.0, 1.35, 0.98)
    out = []
    for i, fw in enumerate(fws):
        for r, k in enumerate(ks):
            st = 0.010 * (1 + i) * k * scale
            out.append(fs.attempt(fw, repeat=r, step_times=[st * f for f in shape],
                                  latencies=[st / 4 * f for f in shape]))
    return fs.write_store(tmp / name, out)


def test_a_a_within_noise_exits_0_and_names_the_test(tmp_path, capsys):
    from cliutil import run_inproc
    from mlbench.analysis import decision
    base = _noisy(tmp_path, "a1")
    # the same config again: each process lands elsewhere (up to 9% apart)
    new = _noisy(tmp_path, "a2", ks=(0.96, 1.03, 1.05, 0.99))
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 0 and "REGRESSED" not in out and "no regressions" in out, out
    assert decision.TEST_NAME in out and "within noise" in out


def test_planted_20_percent_slowdown_with_4_processes_exits_1(tmp_path, capsys):
    from cliutil import run_inproc
    base = _noisy(tmp_path, "b")
    new = _noisy(tmp_path, "n", scale=1.2, ks=(0.96, 1.03, 1.05, 0.99))
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 1 and "REGRESSED" in out, out
    row = next(r for r in compare(base, new).rows if r.metric == "train samples/s")
    # independent: the ratio of medians of the per-process throughputs
    ks_b, ks_n = (1.0, 1.06, 0.95, 1.02), (0.96, 1.03, 1.05, 0.99)
    expect = np.median([1 / (1.2 * k) for k in ks_n]) / np.median([1 / k for k in ks_b]) - 1
    assert row.regressed and row.change_hi < -0.05
    assert row.change_lo <= expect <= row.change_hi


def test_single_process_says_cannot_tell_and_exits_0(tmp_path, capsys):
    from cliutil import run_inproc
    base = _noisy(tmp_path, "b", ks=(1.0,))
    new = _noisy(tmp_path, "n", scale=2.0, ks=(1.0,))   # twice as slow, one process each
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 0 and "cannot tell (single process" in out and "repeats: 3" in out, out
    assert out.count("repeats: 3") == 1                  # the advice once, not per row
    rc, _, _ = run_inproc(["compare", str(base), str(new), "--strict"], capsys)
    assert rc == 1                                       # the older rule on request


def test_contended_side_cannot_tell(tmp_path, monkeypatch):
    import polars as pl
    from mlbench.analysis import compare as cmp
    base = _noisy(tmp_path, "b")
    new = _noisy(tmp_path, "n", scale=1.3)
    assert compare(base, new).regressed
    real = cmp.load_frames
    text = "contended: other processes used 1.7 of 2 cores during the steady state"

    def contended(path):
        run, w, att, cells = real(path)
        if str(path) == str(new):
            cells = cells.with_columns(pl.lit([text]).alias("warn_all"))
        return run, w, att, cells
    monkeypatch.setattr(cmp, "load_frames", contended)
    res = compare(base, new)
    assert not res.regressed
    rows = [r for r in res.rows if r.metric != "status"]
    assert rows and all(r.verdict == "cannot tell" and "contended" in r.note for r in rows)


def test_runs_with_no_cell_in_common_exit_2(tmp_path, capsys):
    from cliutil import run_inproc
    base = _noisy(tmp_path, "b", fws=("pytorch",))
    new = _noisy(tmp_path, "n", fws=("jax",))
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 2 and "nothing compared" in out, out


def test_a_changed_winner_is_listed(tmp_path):
    base = _noisy(tmp_path, "b")                       # pytorch 2x faster than jax
    shape = (1.5, 1.1, 1.0, 0.97, 1.04, 0.99, 1.02, 1.0, 1.35, 0.98)
    out = [fs.attempt(fw, repeat=r, step_times=[st * k * f for f in shape],
                      latencies=[st / 4 * k * f for f in shape])
           for fw, st in (("pytorch", 0.030), ("jax", 0.020))
           for r, k in enumerate((1.0, 1.06, 0.95, 1.02))]
    new = fs.write_store(tmp_path / "n", out)          # now jax 1.5x faster
    text = compare(base, new).render_text()
    assert "verdict changed: mlp.small on cpu, fastest to train: pytorch -> jax" in text


# --- the whole run's shift (a machine that drifted between the runs) ----------------------------

SHAPE = (1.5, 1.1, 1.0, 0.97, 1.04, 0.99, 1.02, 1.0, 1.35, 0.98)  # warm-up drift, an outlier


def _sweep(tmp, name, factor, ks=(1.0, 1.04, 0.97, 1.01),
           fws=("pytorch", "tensorflow", "jax"), models=("mlp", "cnn")):
    """Every framework x model cell, 4 processes each; `factor(fw, model)` multiplies that cell's
    step times (and latencies): 1.0 unchanged, 0.9 a 10% shorter step."""
    out = []
    for i, fw in enumerate(fws):
        for j, m in enumerate(models):
            for r, k in enumerate(ks):
                st = 0.004 * (1 + i + 2.5 * j) * k * factor(fw, m)
                out.append(fs.attempt(fw, model=m, repeat=r, step_times=[st * f for f in SHAPE],
                                      latencies=[st / 4 * f for f in SHAPE]))
    return fs.write_store(tmp / name, out)


def _ratio(b_ks, n_ks, f):
    """Independent: new/base of a cell's headline throughput, samples per step over the median
    step time pooled over its processes (the same in every cell of _sweep)."""
    return (np.median([k * s for k in b_ks for s in SHAPE])
            / np.median([k * f * s for k in n_ks for s in SHAPE]))


def test_a_machine_faster_by_10_percent_everywhere_flags_nothing(tmp_path, capsys):
    from cliutil import run_inproc
    ks_b, ks_n = (1.0, 1.01, 0.995, 1.005), (1.0, 1.008, 0.997, 1.003)
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0, ks=ks_b)
    new = _sweep(tmp_path, "n", lambda fw, m: 0.91, ks=ks_n)  # every cell ~10% faster
    raw = compare(base, new, drift=0)
    assert [r.verdict for r in raw.rows if r.metric == "train samples/s"] == ["improved"] * 6
    res = compare(base, new)
    train = [r for r in res.rows if r.metric == "train samples/s"]
    assert len(train) == 6 and not any(r.verdict in ("improved", "REGRESSED") for r in train)
    assert all("moved with the whole run" in r.note for r in train)
    sh = res.shifts["train samples/s"]
    assert sh["used"] and sh["cells"] == 6 and sh["frameworks"] == 3
    assert sh["shift"] == pytest.approx(_ratio(ks_b, ks_n, 0.91))
    assert sh["lo"] <= sh["shift"] <= sh["hi"]
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 0 and "whole run: train samples/s moved +" in out and "no regressions" in out


@pytest.mark.parametrize("machine", [1.0, 0.92])
def test_one_framework_slower_still_regresses_on_a_still_or_drifting_machine(tmp_path, capsys,
                                                                            machine):
    """pytorch's cells (both models) 25% slower per step than the machine's own shift (none, or
    every cell 8% faster): the shift is the middle framework's, pytorch departs from it."""
    from cliutil import run_inproc
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0)
    new = _sweep(tmp_path, "n", lambda fw, m: machine * (1.25 if fw == "pytorch" else 1.0),
                 ks=(0.99, 1.02, 0.98, 1.03))
    res = compare(base, new)
    sh = res.shifts["train samples/s"]
    assert sh["used"] and sh["cells"] == 6 and sh["frameworks"] == 3
    # independent: the unchanged frameworks' cells moved by the machine alone
    assert sh["shift"] == pytest.approx(_ratio((1.0, 1.04, 0.97, 1.01), (0.99, 1.02, 0.98, 1.03),
                                               machine))
    verdicts = {"-".join(r.cell_id.split("-")[:2]): r.verdict
                for r in res.rows if r.metric == "train samples/s"}
    assert verdicts == {"pytorch-mlp": "REGRESSED", "pytorch-cnn": "REGRESSED",
                        "jax-mlp": "within noise", "jax-cnn": "within noise",
                        "tensorflow-mlp": "within noise", "tensorflow-cnn": "within noise"}
    r = next(r for r in res.rows if r.cell_id.startswith("pytorch-mlp")
             and r.metric == "train samples/s")
    assert r.relative == pytest.approx((1 + r.change) / sh["shift"] - 1)
    assert 1 + r.relative == pytest.approx(0.8, rel=0.01)  # 1 / 1.25
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 1 and "4 regression(s) in 2 cell(s)" in out, out  # throughput, latency


def test_two_frameworks_cannot_tell_a_machine_from_one_framework(tmp_path):
    """pytorch 20% slower, jax unchanged: with two frameworks the shift would be either's;
    every cell is judged on its own, and pytorch regresses."""
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0, fws=("pytorch", "jax"))
    new = _sweep(tmp_path, "n", lambda fw, m: 1.25 if fw == "pytorch" else 1.0,
                 ks=(0.99, 1.02, 0.98, 1.03), fws=("pytorch", "jax"))
    res = compare(base, new)
    assert not res.shifts["train samples/s"]["used"]
    assert "fewer than 3 frameworks" in res.render_text()
    verdicts = [r.verdict for r in res.rows if r.metric == "train samples/s"]
    assert sorted(verdicts) == ["REGRESSED", "REGRESSED", "within noise", "within noise"]


def test_a_shift_beyond_the_drift_is_not_explained_away(tmp_path, capsys):
    from cliutil import run_inproc
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0)
    new = _sweep(tmp_path, "n", lambda fw, m: 1.3, ks=(0.99, 1.02, 0.98, 1.03))  # -23%
    res = compare(base, new)
    assert not res.shifts["train samples/s"]["used"]
    train = [r for r in res.rows if r.metric == "train samples/s"]
    assert [r.verdict for r in train] == ["REGRESSED"] * 6
    rc, out, _ = run_inproc(["compare", str(base), str(new)], capsys)
    assert rc == 1 and "beyond the ±15% a machine drifts" in out
    # a wider allowance explains it as the machine's: nothing regresses
    rc, out, _ = run_inproc(["compare", str(base), str(new), "--drift", "0.3"], capsys)
    assert rc == 0 and "no regressions" in out, out


def test_one_framework_judges_every_cell_alone(tmp_path):
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0, fws=("pytorch",), models=("mlp", "cnn"))
    new = _sweep(tmp_path, "n", lambda fw, m: 0.9, fws=("pytorch",), ks=(0.95, 0.99, 0.96, 0.985))
    res = compare(base, new)
    assert not res.shifts["train samples/s"]["used"]
    assert [r.verdict for r in res.rows if r.metric == "train samples/s"] == ["improved"] * 2


def test_bad_drift_is_a_user_error(tmp_path):
    base = _sweep(tmp_path, "b", lambda fw, m: 1.0, fws=("pytorch",), models=("mlp",))
    for bad in (-0.1, 10, True, "x"):
        with pytest.raises(UserError):
            compare(base, base, drift=bad)


def _serving_store(tmp, name, ss_scale, qps_by_repeat, fws=("pytorch",)):
    """Cells that served: irregular batch-1 latencies per process, and each process's max QPS."""
    out = []
    for fw in fws:
        for r, qps in enumerate(qps_by_repeat):
            a = fs.attempt(fw, model="mlp", batch_size=1, repeat=r)
            lat = [0.0010 * ss_scale * (1 + 0.03 * r) * f for f in SHAPE]
            a["metrics"]["serving"] = {
                "single_stream": {"latencies_s": lat},
                "server": {"max_qps": qps, "latency_bound_ms": 10.0,
                           "trials": [{"offered_qps": qps, "p99_s": 0.008, "achieved_qps": qps,
                                       "within_bound": True}]}}
            out.append(a)
    return fs.write_store(tmp / name, out)


def test_serving_figures_are_compared_by_the_same_rule(tmp_path):
    base = _serving_store(tmp_path, "b", 1.0, [812.0, 790.0, 845.0, 801.0])
    new = _serving_store(tmp_path, "n", 1.3, [602.0, 640.0, 615.0, 590.0])
    rows = {r.metric: r for r in compare(base, new).rows}
    ss, qps = rows["single-stream p90 ms"], rows["server max QPS"]
    # independent: the pooled p90 of the batch-1 latencies, and the median of per-process QPS
    pooled = lambda k: [0.0010 * k * (1 + 0.03 * r) * f for r in range(4) for f in SHAPE]
    assert ss.base == pytest.approx(np.percentile(pooled(1.0), 90) * 1000)
    assert ss.new == pytest.approx(np.percentile(pooled(1.3), 90) * 1000)
    assert ss.verdict == "REGRESSED" and ss.regressed
    assert qps.base == pytest.approx(np.median([812.0, 790.0, 845.0, 801.0]))
    assert qps.new == pytest.approx(np.median([602.0, 640.0, 615.0, 590.0]))
    assert qps.verdict == "REGRESSED" and qps.change < -0.2
    same = compare(base, _serving_store(tmp_path, "s", 1.0, [800.0, 830.0, 795.0, 820.0]))
    assert {r.metric: r.verdict for r in same.rows}["server max QPS"] == "within noise"


def test_the_command_line_defaults_are_compares_own():
    """cli.py spells the defaults out (it imports compare only when the command runs): they
    must be the module's, or `mlbench compare` and compare() would judge differently."""
    import inspect

    from mlbench import cli
    from mlbench.analysis import compare as mod
    params = inspect.signature(cli.compare).parameters
    own = inspect.signature(mod.compare).parameters
    assert params["drift"].default == own["drift"].default == mod.DRIFT
    assert params["threshold"].default == own["threshold"].default
