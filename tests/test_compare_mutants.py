"""mlbench/analysis/compare.py pinned where mutmut's mutants lived (benchmarks/mutation_tool.py;
the whole-run shift and the verdict changes: test_compare_shift.py): the text a user reads
(every column, the rule line, notes) value by value; the older --strict rule branch by branch
and at its thresholds; rows with a figure missing, zero or of another kind; a server that no
longer meets its bound; the arguments' bounds.

Planted processes are irregular (a drifting warm-up and an outlier in every process, a spread
between processes); expected figures come from numpy on the planted samples.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import fakestore as fs
from mlbench.analysis import decision, stats
from mlbench.analysis.compare import compare
from mlbench.errors import UserError

SHAPE = (1.5, 1.1, 1.0, 0.97, 1.04, 0.99, 1.02, 1.0, 1.35, 0.98)   # warm-up drift, an outlier
# 9 latencies whose median is exactly the planted value (x 1.0): thresholds hit to the bit
LAT9 = (1.4, 0.97, 1.0, 1.06, 0.93, 2.5, 0.99, 1.12, 0.95)
KS_B, KS_N = (1.0, 1.03, 0.98, 1.01), (1.21, 1.25, 1.19, 1.23)
RSS = (500_000_000, 510_000_000, 505_000_000, 498_000_000)


def _store(tmp, name, ks, fws=("pytorch",), step=0.010, lat=0.0025, rss=RSS, lat_shape=SHAPE,
           **kw):
    out = [fs.attempt(fw, repeat=r, step_times=[step * k * f for f in SHAPE],
                      latencies=[lat * k * f for f in lat_shape], host_rss=rss[r % len(rss)],
                      **kw)
           for fw in fws for r, k in enumerate(ks)]
    return fs.write_store(tmp / name, out)


def _cols(line: str) -> list[str]:
    return re.split(r" {2,}", line)


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def test_the_text_column_by_column(tmp_path):
    base, new = _store(tmp_path, "b", KS_B), _store(tmp_path, "n", KS_N)
    res = compare(base, new)
    lines = res.render_text().splitlines()
    assert lines[0] == (f"compare {base} -> {new} (threshold 5.0%; test: {decision.TEST_NAME}; "
                        "beyond the threshold in the whole interval, at least 3 processes per "
                        "side, no voiding warning)")
    assert _cols(lines[1]) == ["cell", "metric", "base", "new", "change", "95% CI", "verdict"]
    # independent: 32 samples per step over the pooled median step, the pooled median latency,
    # the median of the processes' peak RSS in MiB
    sps = {k: 32 / np.median([0.010 * x * f for x in ks for f in SHAPE])
           for k, ks in (("b", KS_B), ("n", KS_N))}
    p50 = {k: 1000 * np.median([0.0025 * x * f for x in ks for f in SHAPE])
           for k, ks in (("b", KS_B), ("n", KS_N))}
    mib = np.median(RSS) / 2 ** 20
    rows = {r.metric: r for r in res.rows}
    cell = "pytorch-mlp-cpu-bs32-fp32"
    for line, (metric, b, n, verdict) in zip(lines[2:5], (
            ("train samples/s", sps["b"], sps["n"], "REGRESSED"),
            ("inference p50 ms", p50["b"], p50["n"], "REGRESSED"),
            ("memory (headline figure) MiB", mib, mib, "within noise"))):
        r = rows[metric]
        assert _cols(line) == [cell, metric, f"{b:.4g}", f"{n:.4g}", _pct(n / b - 1),
                               f"[{_pct(r.change_lo)}, {_pct(r.change_hi)}]",
                               f"{verdict} ({r.note})"], line
        # the columns line up under the head
        assert line.index(metric) == lines[1].index("metric")
        assert line.index(verdict) == lines[1].index("verdict")
    assert lines[-1] == "2 regression(s) in 1 cell(s)"
    # the interval is the rule's own (stats.ratio_ci) on the per-process values, minus 1
    per = {k: [32 / np.median([0.010 * x * f for f in SHAPE]) for x in ks]
           for k, ks in (("b", KS_B), ("n", KS_N))}
    want = stats.ratio_ci(per["n"], per["b"])
    train = rows["train samples/s"]
    assert (train.change_lo, train.change_hi) == pytest.approx((want.lo - 1, want.hi - 1))
    assert train.relative is None and res.advice == ""    # no shift used, nothing to advise
    assert res.shifts["train samples/s"]["why"].startswith("fewer than 3 frameworks")
    assert lines[5] == (f"whole run: train samples/s moved {_pct(sps['n'] / sps['b'] - 1)} (the "
                        "middle of 1 framework(s)' medians over 1 cells); fewer than 3 frameworks "
                        "cannot tell it from one framework's own change: every cell judged on "
                        "its own")


def test_a_single_process_shows_dashes_and_the_advice_once(tmp_path):
    base, new = _store(tmp_path, "b", (1.0,)), _store(tmp_path, "n", (1.02,))
    res = compare(base, new)
    row = next(r for r in res.rows if r.metric == "train samples/s")
    assert row.change_lo is None and row.change_hi is None and row.significant is None
    lines = res.render_text().splitlines()
    line = next(x for x in lines if "train samples/s" in x and x.startswith("pytorch"))
    assert _cols(line)[5] == "–"
    assert f"to tell: {stats.REPEATS_ADVICE}" in lines
    assert lines[-1] == "no regressions"


def test_no_cell_in_common_says_so_in_full(tmp_path):
    base = _store(tmp_path, "b", KS_B, fws=("pytorch",))
    new = _store(tmp_path, "n", KS_B, fws=("jax",))
    res = compare(base, new)
    assert res.nothing_compared
    assert res.notes == ["not in NEW: pytorch-mlp-cpu-bs32-fp32",
                         "only in NEW: jax-mlp-cpu-bs32-fp32",
                         "no cell has results in both runs: nothing was compared"]
    assert res.render_text().splitlines()[-1] == ("nothing compared: the two runs have no cell "
                                                  "with results in both")


def test_a_cell_missing_or_failed_in_new_does_not_stop_the_cells_after_it(tmp_path):
    """BASE's cells in the order compare meets them: jax (absent from NEW), pytorch (failed in
    NEW), tensorflow (compared)."""
    b = [fs.attempt(fw, repeat=r, step_times=[0.010 * k * f for f in SHAPE])
         for fw in ("pytorch", "tensorflow", "jax") for r, k in enumerate(KS_B)]
    n = [fs.attempt("pytorch", repeat=0, status="oom")]
    n += [fs.attempt("tensorflow", repeat=r, step_times=[0.013 * k * f for f in SHAPE])
          for r, k in enumerate(KS_B)]
    base = fs.write_store(tmp_path / "b", b)
    from mlbench.results.frames import load_frames
    assert [c.split("-")[0] for c in load_frames(base)[3]["cell_id"]] == [
        "jax", "pytorch", "tensorflow"]
    res = compare(base, fs.write_store(tmp_path / "n", n))
    status = next(r for r in res.rows if r.cell_id.startswith("pytorch"))
    assert (status.metric, status.verdict, status.regressed, status.note) == (
        "status", "REGRESSED", True, "had results, now oom")
    assert res.notes[0] == "not in NEW: jax-mlp-cpu-bs32-fp32"
    tf = next(r for r in res.rows if r.cell_id.startswith("tensorflow") and r.metric ==
              "train samples/s")
    assert tf.verdict == "REGRESSED"


def test_threshold_bounds_and_the_key_they_name(tmp_path):
    base = _store(tmp_path, "b", KS_B)
    assert compare(base, base, threshold=0).threshold == 0.0
    for bad in (10, 10.5):
        with pytest.raises(UserError) as e:
            compare(base, base, threshold=bad)
        assert e.value.where == "--threshold"


# --- the older rule (--strict): the point change, the interval only guarding -------------------

def _lat_store(tmp, name, lat, ks):
    """Latencies whose pooled median is exactly `lat` x the middle k (LAT9's median is 1.0)."""
    return _store(tmp, name, ks, lat=lat, lat_shape=LAT9)


@pytest.mark.parametrize("factor, verdict", [(1.25, "unchanged"), (0.75, "unchanged"),
                                             (1.2500001, "REGRESSED"), (0.7499999, "improved")])
def test_strict_flags_only_beyond_the_threshold_itself(tmp_path, factor, verdict):
    """One process a side, p50 latency exactly 25% up or down with threshold 25%: not beyond."""
    lat = 2 ** -8
    base, new = _lat_store(tmp_path, "b", lat, (1.0,)), _lat_store(tmp_path, "n", lat * factor,
                                                                   (1.0,))
    row = next(r for r in compare(base, new, threshold=0.25, strict=True).rows
               if r.metric == "inference p50 ms")
    assert row.change == pytest.approx(factor - 1, abs=1e-15)
    assert row.verdict == verdict
    assert row.note == "single measurement"
    assert (row.base, row.new) == pytest.approx((lat * 1000, lat * factor * 1000))


def test_strict_rows_branch_by_branch(tmp_path):
    """Each case moves the step and the latency alike (training throughput the other way)."""
    tight_b, tight_n = (1.0, 1.01, 0.99, 1.005), (1.0, 1.008, 0.995, 1.003)
    wide = (0.8, 1.25, 0.9, 1.3)

    def rows(ks_b, ks_n, step_n):
        b = _store(tmp_path, f"b{len(list(tmp_path.iterdir()))}", ks_b)
        n = _store(tmp_path, f"n{len(list(tmp_path.iterdir()))}", ks_n, step=step_n,
                   lat=0.0025 * step_n / 0.010)
        got = {r.metric: r for r in compare(b, n, threshold=0.05, strict=True).rows}
        return got["train samples/s"], got["inference p50 ms"]

    def sps(ks, step):
        return 32 / np.median([step * k * f for k in ks for f in SHAPE])

    def p50(ks, step):
        return 1000 * np.median([0.0025 * step / 0.010 * k * f for k in ks for f in SHAPE])
    for ks_n, step, want, note in (
            (tight_n, 0.0125, "REGRESSED", ""),          # 20% slower, tight intervals
            (wide, 0.0115, "within noise", "95% CI of the ratio includes 1"),
            (tight_n, 0.008, "improved", ""),
            (wide, 0.0075, "unchanged", ""),            # faster by the point, interval holds 1
            (tight_n, 0.0101, "unchanged", ""),
            (tight_n, 0.0098, "unchanged", "")):         # 2% faster: told apart, under 5%
        train, lat = rows(tight_b, ks_n, step)
        for r, b, n in ((train, sps(tight_b, 0.010), sps(ks_n, step)),
                        (lat, p50(tight_b, 0.010), p50(ks_n, step))):
            assert (r.verdict, r.regressed, r.note) == (want, want == "REGRESSED", note), \
                (r, step)
            assert (r.base, r.new) == pytest.approx((b, n))
            assert r.change == pytest.approx(n / b - 1)
        if step == 0.0098:
            assert train.significant and lat.significant
    lines = compare(_store(tmp_path, "sb", tight_b), _store(tmp_path, "sn", tight_n),
                    strict=True).render_text().splitlines()
    assert lines[0].endswith("(threshold 5.0%; --strict: the point change alone beyond the "
                             "threshold)")
    assert _cols(next(x for x in lines if "train samples/s" in x and x.startswith("py"))) \
        [-1] == "unchanged"                           # no note: the verdict alone


@pytest.mark.parametrize("ks_n, step, lat, want", [(KS_N, 0.010, 0.0025, "within noise"),
                                                   (KS_N, 0.007, 0.0015, "unchanged")])
def test_strict_an_interval_ending_exactly_at_1_holds_1(tmp_path, monkeypatch, ks_n, step, lat,
                                                       want):
    """As stats.Ratio.significant: an interval whose end is exactly 1 does not exclude 1, so a
    point change beyond the threshold is not flagged (either metric's direction)."""
    from dataclasses import replace
    real = stats.ratio_ci

    def touching(a, b, *args, **kw):
        r = real(a, b, *args, **kw)
        return replace(r, hi=1.0) if r.hi < 1 else replace(r, lo=1.0) if r.lo > 1 else r
    base = _store(tmp_path, "b", KS_B)
    new = _store(tmp_path, "n", ks_n, step=step, lat=lat)
    monkeypatch.setattr(stats, "ratio_ci", touching)
    rows = {r.metric: r for r in compare(base, new, strict=True).rows}
    for metric in ("train samples/s", "inference p50 ms"):
        assert abs(rows[metric].change) > 0.15 and rows[metric].verdict == want


# --- figures missing, zero, or not the same figure ------------------------------------------------

def _serving(tmp, name, ss_scale, qps_by_repeat, fws=("pytorch",), single_stream=True,
             factors=None):
    out = []
    for fw in fws:
        f_fw = (factors or {}).get(fw, 1.0)
        for r, qps in enumerate(qps_by_repeat):
            a = fs.attempt(fw, batch_size=1, repeat=r)
            serving = {"server": {
                "max_qps": qps and qps * f_fw, "latency_bound_ms": 10.0,
                "trials": [{"offered_qps": qps * f_fw if qps else 200.0,
                            "p99_s": 0.008 if qps else 0.031,
                            "achieved_qps": qps * f_fw if qps else 180.0,
                            "within_bound": bool(qps)}]}}
            if single_stream:
                serving["single_stream"] = {"latencies_s": [
                    0.0010 * ss_scale / f_fw * (1 + 0.004 * r) * f for f in SHAPE]}
            a["metrics"]["serving"] = serving
            out.append(a)
    return fs.write_store(tmp / name, out)


def test_a_figure_on_one_side_only_is_not_comparable(tmp_path):
    base = _serving(tmp_path, "b", 1.0, [812.0, 790.0, 845.0, 801.0])
    new = _store(tmp_path, "n", KS_B, batch_size=1)               # served nothing this time
    rows = {r.metric: r for r in compare(base, new).rows}
    ss = rows["single-stream p90 ms"]
    assert (ss.verdict, ss.regressed, ss.note, ss.new, ss.change) == (
        "not comparable", False, "missing on one side", None, None)
    pooled = [0.0010 * (1 + 0.004 * r) * f for r in range(4) for f in SHAPE]
    assert ss.base == pytest.approx(np.percentile(pooled, 90) * 1000)
    line = next(x for x in compare(base, new).render_text().splitlines()
                if "single-stream" in x)
    assert _cols(line)[3:6] == ["–", "–", "–"]


def test_a_server_that_meets_its_bound_no_more_regressed(tmp_path):
    """BASE served ~806 QPS within the bound; NEW met the bound at no offered rate (max QPS 0)."""
    base = _serving(tmp_path, "b", 1.0, [812.0, 790.0, 845.0, 801.0],
                    fws=("pytorch", "tensorflow", "jax"))
    new = _serving(tmp_path, "n", 1.0, [None] * 4, fws=("pytorch", "tensorflow", "jax"))
    res = compare(base, new)
    qps = [r for r in res.rows if r.metric == "server max QPS"]
    assert len(qps) == 3 and all(r.regressed and r.verdict == "REGRESSED" for r in qps)
    assert all(r.base == pytest.approx(np.median([812.0, 790.0, 845.0, 801.0])) and r.new == 0
               and r.change == -1 for r in qps)
    assert qps[0].note == "now 0: no offered rate met the latency bound"
    assert res.regressed and "server max QPS" not in res.shifts


def test_a_server_under_1_qps_is_judged_by_the_rule(tmp_path):
    base = _serving(tmp_path, "b", 1.0, [0.81, 0.79, 0.84, 0.80])
    new = _serving(tmp_path, "n", 1.0, [0.80, 0.83, 0.78, 0.82])
    row = next(r for r in compare(base, new).rows if r.metric == "server max QPS")
    assert row.verdict == "within noise" and not row.regressed
    assert row.change == pytest.approx(np.median([0.80, 0.83, 0.78, 0.82])
                                       / np.median([0.81, 0.79, 0.84, 0.80]) - 1)


def test_memory_zero_in_base_and_other_figures_keep_their_values(tmp_path):
    zero = fs.attempt(host_rss=800_000_000)
    zero["metrics"]["memory"]["host_baseline_rss_bytes"] = 800_000_000   # working memory 0
    base = fs.write_store(tmp_path / "b", [zero])
    new = fs.attempt(host_rss=800_000_000)
    new["metrics"]["memory"]["host_baseline_rss_bytes"] = 720_000_000
    row = next(r for r in compare(base, fs.write_store(tmp_path / "n", [new])).rows
               if r.metric.startswith("memory"))
    assert (row.verdict, row.note) == ("not comparable", "missing on one side")
    assert row.new == pytest.approx(80_000_000 / 2 ** 20)
    old = fs.write_store(tmp_path / "o", [fs.attempt(host_rss=800_000_000)])   # no baseline
    row = next(r for r in compare(old, fs.write_store(tmp_path / "n2", [new])).rows
               if r.metric.startswith("memory"))
    assert row.verdict == "not comparable"
    assert (row.base, row.new) == pytest.approx((800_000_000 / 2 ** 20, 80_000_000 / 2 ** 20))
