"""mlbench/analysis/stats.py pinned where mutmut's mutants lived (benchmarks/mutation_tool.py):
the interval is the textbook percentile bootstrap with its documented size, seed and 95%, on
irregular per-process values; what is not a number is left out everywhere; the thresholds of the
warnings at their documented boundaries. Expected values come from numpy / scipy.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from mlbench.analysis import decision, stats

SKEWED = [1.31, 0.97, 1.08, 1.52, 1.02, 0.99]        # 6 processes, one slow pair
# 14 processes, skewed: enough distinct resample medians that another seed or size would show
MANY = [1.31, 0.97, 1.08, 1.52, 1.02, 0.99, 1.17, 1.05, 0.94, 1.26, 1.011, 1.13, 0.985, 2.4]


def _textbook(values, seed=20240601, n_boot=2000):
    """np.median over 2000 resamples drawn by numpy's default_rng(20240601), 2.5% / 97.5%."""
    a = np.asarray(values, dtype=float)
    plan = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    return tuple(np.quantile(np.median(a[plan], axis=1), [0.025, 0.975]))


def test_the_interval_is_the_textbook_bootstrap_of_its_documented_size_and_seed():
    want = pytest.approx(_textbook(MANY), rel=1e-12)
    assert stats.bootstrap_median_ci(MANY) == want
    assert stats.bootstrap_median_ci_many([MANY, [2.0]])[0] == want
    # the data chosen so that another seed or size would show
    assert _textbook(MANY, seed=20240602) != want and _textbook(MANY, n_boot=2001) != want
    # an explicit seed is that seed's resampling
    assert stats.bootstrap_median_ci(MANY, seed=5) == pytest.approx(_textbook(MANY, seed=5))
    assert _textbook(MANY, seed=5) != want
    # 90% asked: the 5% / 95% quantiles of the same replicates
    a = np.asarray(MANY)
    plan = np.random.default_rng(20240601).integers(0, len(a), size=(2000, len(a)))
    assert stats.bootstrap_median_ci(MANY, confidence=0.9) == pytest.approx(
        tuple(np.quantile(np.median(a[plan], axis=1), [0.05, 0.95])), rel=1e-12)


def test_the_ratio_interval_is_the_textbook_one_widened_by_welch():
    a, b = [1.31, 0.97, 1.08, 1.52, 1.02], [1.0, 1.04, 0.96, 1.11, 0.98, 1.02]
    rng = np.random.default_rng(20240601)
    pa = rng.integers(0, 5, size=(2000, 5))
    pb = rng.integers(0, 6, size=(2000, 6))
    boot = np.quantile(np.median(np.asarray(a)[pa], axis=1) / np.median(np.asarray(b)[pb],
                                                                            axis=1),
                       [0.025, 0.975])
    import scipy.stats
    w = scipy.stats.ttest_ind(np.log(a), np.log(b), equal_var=False).confidence_interval()
    want = (min(boot[0], math.exp(w.low)), max(boot[1], math.exp(w.high)))
    r = stats.ratio_ci(a, b)
    assert (r.lo, r.hi) == pytest.approx(want, rel=1e-12)
    assert r.ratio == pytest.approx(np.median(a) / np.median(b)) and (r.n_a, r.n_b) == (5, 6)


def test_what_is_not_a_finite_number_is_left_out():
    dirty = [1.31, float("nan"), 0.97, None, 1.08, float("inf"), 1.52, "1.0", 1.02, 0.99]
    assert stats.bootstrap_median_ci(dirty) == pytest.approx(_textbook(SKEWED), rel=1e-12)
    assert stats.median(SKEWED) == np.median(SKEWED)
    assert stats.cv(dirty) == pytest.approx(np.std(SKEWED, ddof=1) / np.mean(SKEWED))
    assert stats.cv_many([dirty]) == [stats.cv(SKEWED)]
    assert stats.ratio_ci(dirty, [1.0, float("nan"), 1.1]).n_a == 6
    # no spread relative to a mean of 0 (every process at 0), nor from one process
    assert stats.cv([0.0, 0.0, 0.0]) is None and stats.cv_many([[0.0, 0.0], [3.0]]) == [None, None]
    lat = [0.0021, 0.0019, 0.0026]                      # seconds: a mean under 1 is a mean
    assert stats.cv_many([lat])[0] == pytest.approx(np.std(lat, ddof=1) / np.mean(lat))


def test_the_advice_on_repeats_reads_as_documented():
    d = decision.decide([1.0], [1.2, 1.3, 1.25], higher_is_better=True)
    assert d.advice == "run with repeats: 3 or more (each repeat is a fresh process)"


def test_extreme_means_beyond_three_iqr_and_a_tenth_of_the_median():
    rng = np.random.default_rng(4)
    body = list(0.010 * rng.lognormal(0, 0.05, 60))
    q1, med, q3 = np.quantile(body, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    far = max(q3 + 3.5 * iqr, 1.12 * med)            # between 3 and 4 IQR, > 10% off
    assert far < q3 + 4 * iqr
    a = body + [far]
    q1, med, q3 = np.quantile(a, [0.25, 0.5, 0.75])
    assert far > q3 + 3 * (q3 - q1) and far - med >= 0.1 * med
    assert stats.extremes(a) == (1, pytest.approx(far / med))


def test_a_gpu_at_its_busy_threshold_is_busy():
    assert stats.busy_warnings({}, {"utilization_gpu_pct": 10.0}, "cuda:0") == [
        "busy device: cuda:0 at 10% utilisation before the cell"]
    assert stats.busy_warnings({}, {"utilization_gpu_pct": 9.9}, "cuda:0") == []


def test_every_warning_sentence_in_full():
    train, lat = [100.0, 83.0, 121.0], [0.0021, 0.0019, 0.0026, 0.0020]
    cv_t, cv_l = (np.std(x, ddof=1) / np.mean(x) for x in (train, lat))
    import scipy.stats
    z = scipy.stats.norm.ppf(0.975)
    n_t, n_l = (math.ceil((z * c / 0.05) ** 2) for c in (cv_t, cv_l))
    w = stats.judge(train_r=train, lat_r=lat, step_median=0.0004, lat_median=0.0009,
                    step_extreme=3, step_n=40, step_max_rel=2.26, lat_extreme=1, lat_n=200,
                    lat_max_rel=6.0)
    assert w == [
        f"unstable training throughput: std is {cv_t:.0%} of the mean over 3 processes (>= 10%); "
        f"about {n_t} repeats would give a ±5% interval",
        f"unstable inference p50 latency: std is {cv_l:.0%} of the mean over 4 processes "
        f"(>= 10%); about {n_l} repeats would give a ±5% interval",
        "extreme values beyond Q1/Q3 ± 3×IQR: 3 of 40 step times (max 2.3× the median); 1 of 200 "
        "inference latencies (max 6.0× the median)",
        "samples too short (median under 1 ms, timer and dispatch overheads weigh in; use a "
        "larger batch or model): training step 400 µs, inference batch 900 µs"]
    # 2 of 40 is 5%: not more than 5%, and no value 5x the median
    assert stats.judge(step_extreme=2, step_n=40, step_max_rel=4.9) == []
    assert stats.judge(step_extreme=3, step_n=40) == [
        "extreme values beyond Q1/Q3 ± 3×IQR: 3 of 40 step times"]
    assert stats.judge(step_median=0.001, lat_median=0.0) == []
    # a spread of exactly 10% of the mean is unstable (pyperf's ">= 10%")
    assert len(stats.judge_from(train_cv=0.10, train_k=3, lat_cv=0.0999, lat_k=3)) == 1


def test_every_busy_sentence_in_full():
    assert stats.busy_warnings({"cpu_busy_pct": 61.4, "loadavg_1m": 0.0}, None, "cpu") == [
        "busy machine: CPU 61% used just before the cell"]
    assert stats.busy_warnings({"loadavg_1m": 7.0, "cores_logical": 8}, None, "cpu") == [
        "busy machine: 1-min load average 7.00 on 8 logical cores before the cell"]
    assert stats.busy_warnings({"loadavg_1m": 7.0, "cores_logical": 8}, None, "cpu", 2) == [
        "busy machine: 1-min load average 7.00 on 8 logical cores before the cell (beyond the "
        "2 threads of our own previous cell)"]
    # one logical core: a load of 0.9 is busy; a machine that reports no cores is never judged
    assert stats.busy_warnings({"loadavg_1m": 0.9, "cores_logical": 1}, None, "cpu") == [
        "busy machine: 1-min load average 0.90 on 1 logical cores before the cell"]
    assert stats.busy_warnings({"loadavg_1m": 0.9, "cores_logical": 0}, None, "cpu") == []
    # load exactly half the cores beyond our own threads is not busy
    assert stats.busy_warnings({"loadavg_1m": 6.0, "cores_logical": 8}, None, "cpu", 2) == []
    dev = {"processes": [{"pid": 9, "used_memory_bytes": 2 << 30},
                         {"pid": 11, "used_memory_bytes": 512 << 20}, "junk"],
           "utilization_gpu_pct": 97}
    assert stats.busy_warnings({}, dev, "cuda:0") == [
        "busy device: 2 other compute process(es) on cuda:0 (2560 MiB) before the cell",
        "busy device: cuda:0 at 97% utilisation before the cell"]
    assert stats.busy_warnings({}, dev, "cpu") == [] and stats.busy_warnings({}, {}, "cuda:0") == []
    assert stats.busy_warnings({"cpu_busy_pct": True}, None, "cpu") == []


def test_a_ratio_reads_its_interval_and_touching_1_is_not_significant():
    r = stats.Ratio(1.2345, 1.0, 1.4021, 3, 3)
    assert r.significant is False and stats.Ratio(0.9, 0.81, 1.0, 3, 3).significant is False
    assert stats.Ratio(1.2, 1.0001, 1.4, 3, 3).significant is True
    assert stats.Ratio(0.9, 0.8, 0.9999, 3, 3).significant is True
    assert r.text() == "1.23x [95% CI 1.00–1.40]" and r.text(3) == "1.234x [95% CI 1.000–1.402]"
    one = stats.Ratio(2.0, None, None, 1, 3)
    assert one.text() == "2.00x (single process, no CI)" and one.significant is None
    assert not stats.Ratio(2.0, 1.5, None, 2, 3).has_ci
    assert not stats.Ratio(2.0, None, 2.5, 2, 3).has_ci


def test_a_cached_ratio_cannot_be_changed_by_whoever_holds_it():
    """ratio_ci_many hands the same cached Ratio to every caller asking for the same pair."""
    from dataclasses import FrozenInstanceError
    stats._RATIO_CACHE.clear()
    pair = ([1.31, 0.97, 1.08], [1.0, 1.04, 0.96])
    first = stats.ratio_ci_many([pair])[0]
    assert stats.ratio_ci_many([pair])[0] is first
    with pytest.raises(FrozenInstanceError):
        first.lo = 0.5


def test_welch_on_values_under_1_and_a_zero_on_either_side():
    """Latencies in seconds are all under 1: still Welch's interval on their logs (scipy)."""
    import scipy.stats
    a, b = [0.0021, 0.0019, 0.0026, 0.0020], [0.0017, 0.00175, 0.0016, 0.0019]
    ci = scipy.stats.ttest_ind(np.log(a), np.log(b), equal_var=False).confidence_interval()
    assert stats.welch_log_interval([(a, b)]) == pytest.approx((math.exp(ci.low),
                                                                math.exp(ci.high)), rel=1e-9)
    assert stats.welch_log_interval([([1.0, 2.0], [0.0, 1.0])]) is None
    assert stats.welch_log_interval([([0.0, 2.0], [1.0, 1.5])]) is None


# a replicate drawing two zeros has median 0 and ratio 0, whose log is -inf (geometric mean 0)
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_a_process_at_zero_keeps_the_bootstrap_interval_alone():
    """One process whose server met its bound at no rate (max QPS 0): the medians are still
    positive, the logs are not: the ratio keeps its bootstrap interval (the textbook one)."""
    # 6 v 5 processes: enough distinct replicate ratios that another quantile would show
    a, b = [0.0, 805.0, 790.0, 812.5, 779.0, 798.0], [812.0, 801.0, 799.0, 820.0, 806.5]
    rng = np.random.default_rng(20240601)
    pa, pb = rng.integers(0, 6, size=(2000, 6)), rng.integers(0, 5, size=(2000, 5))
    want = np.quantile(np.median(np.asarray(a)[pa], axis=1) / np.median(np.asarray(b)[pb],
                                                                            axis=1),
                       [0.025, 0.975])
    stats._RATIO_CACHE.clear()
    per: dict = {}
    g = stats.geomean_ratio_ci_many([[(a, b)]], pairs_out=per)[0]
    for r in (stats.ratio_ci(a, b), stats.ratio_ci_many([(a, b)])[0], g,
              per[(tuple(a), tuple(b))]):
        assert (r.lo, r.hi) == pytest.approx(tuple(want), rel=1e-12)
        assert r.ratio == pytest.approx(np.median(a) / np.median(b))


def test_a_pair_without_a_ratio_does_not_stop_the_pairs_after_it():
    a, b = [1.31, 0.97, 1.08], [1.0, 1.04, 0.96]
    stats._RATIO_CACHE.clear()
    got = stats.ratio_ci_many([([], [1.0]), ([1.0], []), ([0.0, 0.0, 1.0], b), (a, b)])
    assert got[:3] == [None, None, None] and got[3] == stats.ratio_ci(a, b)


def test_the_geometric_mean_interval_is_the_textbook_one_widened_by_welch():
    """Three configurations (two of 3 v 3 processes sharing one plan, one of 4 v 3 on its own):
    every replicate's geometric mean of the three ratios, widened by Welch over the pairs."""
    import scipy.stats
    pairs = [([1.31, 0.97, 1.08], [1.0, 1.04, 0.96]),
             ([2.2, 2.05, 2.6, 2.31], [2.0, 1.9, 2.12]),
             ([0.51, 0.55, 0.49], [0.47, 0.5, 0.46])]
    logs = np.zeros(2000)
    for size in ((3, 3), (4, 3)):
        rng = np.random.default_rng(20240601)
        pa, pb = (rng.integers(0, n, size=(2000, n)) for n in size)
        for a, b in pairs:
            if (len(a), len(b)) == size:
                logs += np.log(np.median(np.asarray(a)[pa], axis=1)
                               / np.median(np.asarray(b)[pb], axis=1))
    boot = np.quantile(np.exp(logs / 3), [0.025, 0.975])
    la = [(np.log(a), np.log(b)) for a, b in pairs]
    centre = np.mean([x.mean() - y.mean() for x, y in la])
    v = [np.var(x, ddof=1) / len(x) / 9 for p in la for x in p]
    df = sum(v) ** 2 / sum(vi * vi / (len(x) - 1) for vi, x in zip(v, [x for p in la for x in p]))
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(sum(v))
    want = (min(boot[0], math.exp(centre - half)), max(boot[1], math.exp(centre + half)))
    per: dict = {}
    stats._RATIO_CACHE.clear()
    g = stats.geomean_ratio_ci_many([pairs, [pairs[0], ([], [1.0])]], pairs_out=per)
    assert (g[0].lo, g[0].hi) == pytest.approx(want, rel=1e-9)
    assert g[0].ratio == pytest.approx(np.exp(np.mean([np.log(np.median(a) / np.median(b))
                                                       for a, b in pairs])))
    assert (g[0].n_a, g[0].n_b) == (3, 3) and g[1] is None
    assert stats.geomean_ratio_ci(pairs) == g[0]
    for a, b in pairs:
        one = stats.ratio_ci(a, b)
        assert (per[(tuple(a), tuple(b))].lo, per[(tuple(a), tuple(b))].hi) == pytest.approx(
            (one.lo, one.hi), rel=1e-12)
    # two processes a side are enough for an interval; a zero median on either side, none
    two = stats.geomean_ratio_ci([([1.2, 1.3], [1.0, 1.1]), pairs[0]])
    assert two.has_ci and (two.n_a, two.n_b) == (2, 2)
    b = pairs[0][1]
    assert stats.geomean_ratio_ci_many([[([], b)], [([0.0, 0.0, 1.0], b)], [(b, [0.0, 0.0, 1.0])],
                                        [([1.2], b)], pairs]) == [
        None, None, None, stats.Ratio(1.2, None, None, 1, 3), g[0]]   # 1.2 / median(b)
    single = stats.geomean_ratio_ci([([1.2], [1.0, 1.1]), pairs[0]])
    assert not single.has_ci and (single.n_a, single.n_b) == (1, 2)   # the fewest per side


def test_extremes_at_their_fences_and_at_a_tenth_of_the_median():
    # q1 20, median 21, q3 22 (numpy's quantiles of 9 values fall on samples 3, 5, 7): the
    # fences are 14 and 28; a value on a fence is not beyond it
    on = [21.5, 14.0, 20.0, 28.0, 20.5, 21.0, 19.0, 23.0, 22.0]
    assert tuple(np.quantile(on, [0.25, 0.5, 0.75])) == (20.0, 21.0, 22.0)
    assert stats.extremes(on) == (0, 28.0 / 21.0)
    beyond = [21.5, 13.5, 20.0, 28.5, 20.5, 21.0, 19.0, 23.0, 22.0]   # same quartiles
    assert stats.extremes(beyond) == (2, 28.5 / 21.0)
    # tight samples around exactly 10: 11 is beyond the fence and exactly 10% off: extreme;
    # 10.9 is beyond the fence too but under 10% off: not
    tight = [9.99, 10.0, 10.01, 9.995, 10.005, 10.0, 10.0, 10.0]
    assert stats.extremes(tight + [11.0]) == (1, 1.1)
    assert stats.extremes(tight + [10.9]) == (0, pytest.approx(1.09))
    # 4 samples are enough to judge; a median of 0 has no ratio
    assert stats.extremes([1.0, 1.01, 0.99, 1.0]) == (0, 1.01)
    assert stats.extremes([0.0, 0.0, 0.0, 0.0, 5.0]) == (0, None)
    assert stats.extremes([1.0, 1.01, 0.99]) == (0, None)
