"""mlbench.analysis.stats: bootstrap intervals, ratio significance, pyperf-like warnings, repeats
needed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

import fakestore as fs
from mlbench.results import aggregate
from mlbench.analysis import stats


def test_bootstrap_ci_contains_true_median():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(50):
        x = rng.normal(100.0, 5.0, size=15)  # true median 100
        lo, hi = stats.bootstrap_median_ci(x)
        assert lo <= np.median(x) <= hi
        hits += lo <= 100.0 <= hi
    assert hits >= 42  # ~95% nominal; bootstrap of a median at n=15 is a bit optimistic


def test_bootstrap_is_deterministic_and_needs_two_processes():
    x = [1.0, 1.2, 0.9, 1.1]
    assert stats.bootstrap_median_ci(x) == stats.bootstrap_median_ci(x)
    assert stats.bootstrap_median_ci([1.0]) is None and stats.bootstrap_median_ci([]) is None
    many = stats.bootstrap_median_ci_many([x, [2.0], [3.0, 3.3, 2.9]])
    assert many[1] is None and many[0][0] <= 1.05 <= many[0][1]


def test_ratio_significance():
    rng = np.random.default_rng(2)
    a, b = rng.normal(100, 2, 5), rng.normal(150, 3, 5)
    r = stats.ratio_ci(b, a)
    assert r.significant and r.lo > 1 and r.ratio == pytest.approx(np.median(b) / np.median(a))
    same = rng.normal(100, 5, 5)
    assert stats.ratio_ci(same, same).significant is False
    c, d = rng.normal(100, 8, 5), rng.normal(101, 8, 5)
    assert stats.ratio_ci(c, d).significant is False
    single = stats.ratio_ci([2.0], [1.0, 1.1])
    assert single.significant is None and "single process" in single.text()


def test_unstable_spread_warns_with_repeats_needed():
    reps = [100.0, 85.0, 115.0]          # std/mean = 15%
    w = stats.judge(train_r=reps)
    assert len(w) == 1 and "unstable training throughput" in w[0] and "15%" in w[0]
    assert f"about {stats.repeats_needed(stats.cv(reps))} repeats" in w[0]
    assert stats.judge(train_r=[100.0, 101.0, 99.0]) == []


def test_outlier_and_short_samples_warn():
    rng = np.random.default_rng(3)
    samples = list(rng.normal(0.010, 0.0002, 200)) + [0.08]   # one 8x outlier
    n, mx = stats.extremes(samples)
    assert n == 1 and mx > 7
    w = stats.judge(step_extreme=n, step_n=len(samples), step_max_rel=mx)
    assert any("extreme values" in x for x in w)
    assert stats.extremes(list(rng.normal(0.010, 0.0002, 200)))[0] == 0
    w = stats.judge(step_median=0.0004, lat_median=0.002)
    assert len(w) == 1 and "too short" in w[0] and "400 µs" in w[0]


def test_repeats_needed_formula():
    assert stats.repeats_needed(0.10) == 16      # (1.96 * 0.10 / 0.05)^2 = 15.4
    assert stats.repeats_needed(0.01) == 2       # never fewer than 2
    assert stats.repeats_needed(0.20, target=0.10) == 16
    assert stats.repeats_needed(None) is None


def test_busy_machine_and_device():
    assert stats.busy_warnings({"loadavg_1m": 7.0, "cores_logical": 8}, None, "cpu")
    assert not stats.busy_warnings({"loadavg_1m": 2.0, "cores_logical": 8}, None, "cpu")
    # the previous cell's own threads do not count
    assert not stats.busy_warnings({"loadavg_1m": 2.0, "cores_logical": 2}, None, "cpu", 2)
    assert stats.busy_warnings({"cpu_busy_pct": 60.0, "loadavg_1m": 0.0}, None, "cpu")
    dev = {"processes": [{"pid": 9, "used_memory_bytes": 2 << 30}], "utilization_gpu_pct": 90}
    w = stats.busy_warnings({}, dev, "cuda:0")
    assert len(w) == 2 and "other compute process" in w[0]


def test_cell_warnings_from_records():
    # irregular samples within each process; the processes' medians differ by -15%/+15%
    recs = [fs.attempt(repeat=r, step_times=fs.irregular(fs.STEP_TIMES, s)) for r, s in
            enumerate([1.0, 0.85, 1.15])]
    recs[0]["machine_before"] = {"loadavg_1m": 15.0, "cores_logical": 16}
    w = aggregate.cell_warnings(recs)
    assert any("unstable training throughput" in x for x in w)
    assert any("busy machine" in x for x in w)
    # 2 of 12 samples of each process are beyond Q3 + 3 IQR (0.0127, 0.0172 x scale)
    q1, q3 = np.percentile(fs.STEP_TIMES, [25, 75])
    assert sum(v > q3 + 3 * (q3 - q1) for v in fs.STEP_TIMES) == 2
    assert any("extreme" in x for x in w)
    assert aggregate.warnings_by_cell(recs) == {recs[0]["cell_id"]: w}


def _direct_ci(values, n_boot=stats.N_BOOT):
    """The textbook form the vectorised code must reproduce bit for bit: materialise every
    resample (shared plan per size) and take np.median / np.quantile."""
    a = np.asarray(values, dtype=float)
    plan = np.random.default_rng(stats.SEED).integers(0, len(a), size=(n_boot, len(a)))
    meds = np.median(a[plan], axis=1)
    lo, hi = np.quantile(meds, [0.025, 0.975])
    return float(lo), float(hi)


def test_vectorised_bootstrap_is_bit_identical_to_direct_resampling():
    rng = np.random.default_rng(7)
    cells = [list(rng.lognormal(5, 0.3, size=n)) for n in (2, 3, 3, 4, 5, 6, 3, 2, 7)]
    cells += [[1.0, 1.0, 2.0], [3.0, 3.0, 3.0], [2.0, 1.0, 1.0, 2.0], [5.0], []]
    many = stats.bootstrap_median_ci_many(cells)
    for values, got in zip(cells, many):
        assert got == (_direct_ci(values) if len(values) >= 2 else None)
        assert got == stats.bootstrap_median_ci(values)
    # many cells with the same size (the 10,000-attempt report: shared rank permutations)
    big = [list(rng.lognormal(5, 0.3, size=3)) for _ in range(500)]
    assert stats.bootstrap_median_ci_many(big) == [_direct_ci(v) for v in big]


def test_ratio_many_equals_one_by_one_and_is_cached():
    rng = np.random.default_rng(8)
    pairs = [(list(rng.lognormal(5, 0.2, size=na)), list(rng.lognormal(5, 0.2, size=nb)))
             for na, nb in ((3, 3), (2, 3), (4, 4), (3, 1), (5, 2), (3, 3))]
    pairs += [([], [1.0]), ([1.0, 2.0], [0.0, 0.0])]
    stats._RATIO_CACHE.clear()
    many = stats.ratio_ci_many(pairs)
    assert many == [stats.ratio_ci(a, b) for a, b in pairs]
    assert many[-1] is None and many[-2] is None and not many[3].has_ci
    assert stats.ratio_ci_many(pairs) == many and len(stats._RATIO_CACHE) == 5


def test_cv_many_and_judge_from_match_the_one_cell_forms():
    rng = np.random.default_rng(9)
    cells = [list(rng.lognormal(3, 0.2, size=n)) for n in (1, 2, 3, 3, 4, 8, 11)] + [[], None]
    assert stats.cv_many(cells) == [stats.cv(v) for v in cells]
    reps = [100.0, 80.0, 125.0]
    assert stats.judge(train_r=reps, lat_r=[1.0, 1.0], step_median=0.0004) == stats.judge_from(
        train_cv=stats.cv(reps), train_k=3, lat_cv=0.0, lat_k=2, step_median=0.0004)


def test_stats_imports_no_other_mlbench_module():
    # no aggregate <-> stats cycle: stats is the bottom layer (numpy only)
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(stats))
    rel = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
           and (n.level > 0 or (n.module or "").startswith("mlbench"))]
    assert rel == [], [ast.dump(n) for n in rel]


def test_thresholds_at_their_documented_boundaries():
    # one extreme step of 100: warns when it is 5x the median or more (1% share alone does not)
    def ext(mx):
        return stats.judge_from(train_cv=None, train_k=0, lat_cv=None, lat_k=0,
                                step_extreme=1, step_n=100, step_max_rel=mx)
    assert len(ext(5.0)) == 1 and ext(4.99) == []
    # 20% of the CPU used by others before the cell is busy; 19.9% is not
    assert stats.busy_warnings({"cpu_busy_pct": 20.0}, None, "cpu")
    assert stats.busy_warnings({"cpu_busy_pct": 19.9}, None, "cpu") == []
    # load beyond our own threads: 8.5 on 16 cores minus 1 thread of ours is 7.5 < 8
    assert stats.busy_warnings({"loadavg_1m": 8.5, "cores_logical": 16}, None, "cpu", 1) == []
    assert stats.busy_warnings({"loadavg_1m": 8.5, "cores_logical": 16}, None, "cpu")


def test_ratio_of_medians_below_one_and_of_a_zero_median():
    a, b = [0.5, 0.62, 0.7], [0.2, 0.31, 0.25]
    (r,) = stats.ratio_ci_many([(a, b)])
    assert r.ratio == pytest.approx(np.median(a) / np.median(b))   # medians under 1 are fine
    assert r.lo < r.ratio < r.hi
    single = stats.ratio_ci(a, b)
    assert single.ratio == pytest.approx(r.ratio)
    # a zero median on either side has no ratio (a 0 s time is a broken measurement)
    assert stats.ratio_ci([0.0, 0.0, 0.0], b) is None and stats.ratio_ci(a, [0.0] * 3) is None
    assert stats.ratio_ci_many([([0.0, 0.0, 0.0], b), (a, [0.0, 0.0, 0.0])]) == [None, None]


# --- Welch's t interval on the logs (widens the bootstrap at few processes) ---------------------

def test_welch_log_interval_is_scipys_welch_interval_on_the_logs():
    rng = np.random.default_rng(11)
    for na, nb in ((3, 3), (2, 5), (4, 3), (10, 10)):
        a, b = rng.lognormal(5, 0.2, size=na), rng.lognormal(5.1, 0.05, size=nb)
        ci = scipy.stats.ttest_ind(np.log(a), np.log(b), equal_var=False).confidence_interval()
        got = stats.welch_log_interval([(list(a), list(b))])
        assert got == pytest.approx((np.exp(ci.low), np.exp(ci.high)), rel=1e-9)


def test_welch_log_interval_over_pairs_pools_their_variances():
    # two pairs whose log means differ by log(1.2) and log(1.1): the centre is their average
    # and the variance the sum of the four sides' over k^2 (Welch-Satterthwaite df)
    p1 = ([1.2 * 0.98, 1.2 * 1.02, 1.2], [0.99, 1.01, 1.0])
    p2 = ([1.1, 1.1 * 1.03, 1.1 * 0.97, 1.1], [1.0, 1.0, 1.02])
    lo, hi = stats.welch_log_interval([p1, p2])
    centre = np.mean([np.log(p[0]).mean() - np.log(p[1]).mean() for p in (p1, p2)])
    assert math.sqrt(lo * hi) == pytest.approx(math.exp(centre), rel=1e-12)
    v = [np.var(np.log(x), ddof=1) / len(x) / 4 for x in (*p1, *p2)]
    df = sum(v) ** 2 / sum(vi * vi / (len(x) - 1) for vi, x in zip(v, (*p1, *p2)))
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(sum(v))
    assert math.log(hi / lo) / 2 == pytest.approx(half, rel=1e-9)


def test_welch_log_interval_refuses_what_it_cannot_use():
    assert stats.welch_log_interval([([1.0], [1.0, 2.0])]) is None
    assert stats.welch_log_interval([([1.0, 0.0], [1.0, 2.0])]) is None
    assert stats.welch_log_interval([]) is None
    assert stats.welch_log_interval([([2.0, 2.0], [1.0, 1.0])]) == (2.0, 2.0)   # no spread


def test_every_ratio_interval_is_the_wider_of_bootstrap_and_welch():
    """ratio_ci, ratio_ci_many, geomean_ratio_ci(_many) and its per-pair Ratios all widen."""
    a, b = [34.4e3, 33.1e3, 39.6e3], [26.4e3, 28.9e3, 21.9e3]
    w = stats.welch_log_interval([(a, b)])
    stats._RATIO_CACHE.clear()
    one = stats.ratio_ci(a, b)
    assert one.lo == pytest.approx(w[0]) and one.hi >= w[1]
    assert stats.ratio_ci_many([(a, b)]) == [one]
    per: dict = {}
    g = stats.geomean_ratio_ci_many([[(a, b)]], pairs_out=per)[0]
    assert (g.lo, g.hi) == pytest.approx((one.lo, one.hi))
    assert (per[(tuple(a), tuple(b))].lo, per[(tuple(a), tuple(b))].hi) == pytest.approx(
        (one.lo, one.hi))
    tight = ([120.0, 121.0, 119.0], [100.0, 101.0, 99.0])
    wt = stats.welch_log_interval([tight])
    rt = stats.ratio_ci(*tight)
    assert rt.lo <= wt[0] and rt.hi >= wt[1]


def test_where_the_bootstrap_is_wider_its_ends_are_kept():
    """Eight processes in two modes: the median jumps between them, the mean of the logs does
    not, so the bootstrap interval is wider than Welch's at both ends and is the one kept."""
    a = [1.0, 1.02, 0.99, 1.01, 2.0, 2.02, 1.98, 2.01]
    b = [1.49, 1.5, 1.51, 1.5, 1.49, 1.51, 1.5, 1.52]
    plan = np.random.default_rng(stats.SEED)
    pa = plan.integers(0, 8, size=(stats.N_BOOT, 8))
    pb = plan.integers(0, 8, size=(stats.N_BOOT, 8))
    boot = np.quantile(np.median(np.asarray(a)[pa], axis=1) / np.median(np.asarray(b)[pb], axis=1),
                       [0.025, 0.975])
    w = stats.welch_log_interval([(a, b)])
    assert boot[0] < w[0] and boot[1] > w[1]          # the planted data is what the test says
    stats._RATIO_CACHE.clear()
    for r in (stats.ratio_ci(a, b), stats.ratio_ci_many([(a, b)])[0],
              stats.geomean_ratio_ci([(a, b)])):
        assert (r.lo, r.hi) == pytest.approx((boot[0], boot[1]))
