"""mlbench/report/recommend.py pinned value by value (the mutants mutmut left alive there, see
benchmarks/mutation_tool.py): every aspect's sentence (its verb, figure and direction), question
and figure, with the ratio and interval bootstrapped independently from the planted per-process
values; what "nothing to compare" records hold and why; the ranking as a geometric mean over
partial grids, ties, row order; configurations that disagree; the decision settings. The
evidence around a verdict (warnings, memory, gate, compile): test_recommend_evidence.py.

Planted processes are irregular (a drifting warm-up, an outlier, a spread between processes);
expected values come from numpy on the planted samples, never from the output under test.
"""
from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import polars as pl
import pytest

import fakestore as fs
from test_decision import KS, SHAPE, _boot, _frame
from mlbench.analysis import decision
from mlbench.report import recommend as rmod
from mlbench.report.recommend import recommend

LAT_SHAPE = (1.3, 1.0, 0.96, 1.05, 0.99, 2.2, 1.01, 0.98, 1.02)    # a slow first call, an outlier

# framework: step s, latency s, first step s per process, peak RSS bytes per process
# (memory: medians 611 and 402 MB, 34.2% less: a slip in the percentage shows after rounding)
PLAN = {"jax": (0.010, 0.0021, (0.31, 0.36, 0.29), (611e6, 655e6, 590e6)),
        "tensorflow": (0.0135, 0.0030, (0.74, 0.69, 0.81), (402e6, 388e6, 431e6))}
# per process, put into the frame as the aggregate would (the headline value: their median)
ENERGY = {"jax": [41.0, 44.5, 39.8], "tensorflow": [52.3, 49.9, 57.0]}       # J / 1000 samples
SS_P90 = {"jax": [0.0052, 0.0049, 0.0061], "tensorflow": [0.0071, 0.0083, 0.0069]}
QPS = {"jax": [410.0, 395.0, 432.0], "tensorflow": [520.0, 498.0, 541.0]}
THIRD = (0.0190, 0.0041, (0.52, 0.47, 0.55), (700e6, 720e6, 690e6))   # pytorch, eager


def _steps(step, k):
    return [step * k * f for f in SHAPE]


def _attempts(plan=PLAN, **kw):
    out = []
    for fw, (step, lat, firsts, rss) in plan.items():
        for r, k in enumerate(KS):
            out.append(fs.attempt(fw, repeat=r, step_times=_steps(step, k),
                                  latencies=[lat * k * g for g in LAT_SHAPE],
                                  first_step=firsts[r], host_rss=int(rss[r]), **kw))
    return out


def _put(frame, col, by_fw: dict, dtype=pl.Float64):
    """Set a column per framework (frameworks not named: null)."""
    return frame.with_columns(pl.col("framework").replace_strict(
        by_fw, default=None, return_dtype=dtype).alias(col))


def _per_process(by_fw, col):
    return {"head": (col, {fw: float(np.median(v)) for fw, v in by_fw.items()}, pl.Float64),
            "reps": (col + "_r", by_fw, pl.List(pl.Float64))}


def _all_aspects():
    cells = _frame(_attempts())
    for col, by_fw in (("train_j_per_ksample", ENERGY), ("ss_p90", SS_P90),
                       ("server_max_qps", QPS)):
        for name, values, dtype in _per_process(by_fw, col).values():
            cells = _put(cells, name, values, dtype)
    return cells


def _expect(lead, other, higher):
    """(ratio, lo, hi) the leader's lead: leader against runner-up, bootstrapped by numpy."""
    r, lo, hi = _boot([(lead, other)])
    return (r, lo, hi) if higher else (1 / r, 1 / hi, 1 / lo)


def _by(recs, aspect, model=None):
    return next(r for r in recs if r.aspect == aspect and (model is None or r.model == model))


def test_every_aspect_says_who_wins_by_its_bootstrapped_ratio_in_its_own_words():
    recs = recommend(_all_aspects())
    sps = {fw: [32 / float(np.median(_steps(p[0], k))) for k in KS] for fw, p in PLAN.items()}
    lat = {fw: [float(np.median([p[1] * k * g for g in LAT_SHAPE])) for k in KS]
           for fw, p in PLAN.items()}
    comp = {fw: [p[2][r] - float(np.median(_steps(p[0], k))) for r, k in enumerate(KS)]
            for fw, p in PLAN.items()}
    mem = {fw: list(p[3]) for fw, p in PLAN.items()}
    # aspect: per-process values, higher is better, the planted winner, the sentence's tail
    want = {"train": (sps, True, "jax", "trains fastest: {r} the throughput of {o}."),
            "compile": (comp, False, "jax", "compiles fastest: {r} lower compile time than {o}."),
            "latency": (lat, False, "jax",
                        "serves with the lowest latency: {r} lower p50 latency than {o}."),
            "memory": (mem, False, "tensorflow",
                       "uses the least memory: {pct}% less memory than {o} ({r})."),
            "energy": (ENERGY, False, "jax",
                       "uses the least energy per sample: {r} lower energy per sample than {o}."),
            "single_stream": (SS_P90, False, "jax", "answers single queries fastest: {r} lower "
                              "single-stream p90 latency than {o}."),
            "server": (QPS, True, "tensorflow", "serves the most queries/s within the bound: "
                       "{r} the server QPS of {o}.")}
    assert [r.aspect for r in recs] == list(want)          # ASPECTS' order, each once
    for aspect, (vals, higher, win, tail) in want.items():
        rec = _by(recs, aspect)
        other = next(fw for fw in PLAN if fw != win)
        ratio, lo, hi = _expect(vals[win], vals[other], higher)
        assert lo > 1.05, aspect                           # the planted data is what it says
        assert (rec.winner, rec.leader, rec.runner_up, rec.verdict) == (win, win, other, "clear")
        assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((ratio, lo, hi)), aspect
        r = f"{ratio:.2f}x [{lo:.2f}-{hi:.2f}]"
        assert rec.text == f"{win} " + tail.format(r=r, o=other,
                                                   pct=f"{(1 - 1 / ratio) * 100:.0f}"), aspect
        assert rec.interval_kind == "95% CI of the ratio"
        assert rec.details[0] == "Configurations: bs32 fp32."
        assert (rec.title, rec.unit) == QUESTIONS[aspect], aspect


# the verdict's question and the figure compared (results.json's question and figure)
QUESTIONS = {
    "train": ("fastest to train", "steady-state training samples/s"),
    "compile": ("fastest to compile", "compile time (first step - median step)"),
    "latency": ("lowest latency", "inference p50 latency"),
    "memory": ("least memory", "peak host RSS (whole process, libraries included: this store "
                               "has no baseline)"),
    "energy": ("least energy per sample", "training energy (J per 1,000 samples)"),
    "single_stream": ("lowest single-stream latency", "single-stream p90 latency"),
    "server": ("most server QPS within the latency bound",
               "server QPS with p99 within the latency bound")}


def test_the_verdict_record_holds_the_figures_of_the_verdict():
    cells = _all_aspects()
    rec = _by(recommend(cells), "server")
    ratio, lo, hi = _expect(QPS["tensorflow"], QPS["jax"], True)
    # the serving figures rest on the latency samples: their warnings, leader's first
    lat_warn = {r["framework"]: r["warn_latency"] for r in cells.to_dicts()}
    assert all(lat_warn.values())                       # the planted outliers are flagged
    warnings = [f"{fw} (bs32 fp32): {w}" for fw in ("tensorflow", "jax") for w in lat_warn[fw]]
    got = rec.record()
    assert got.pop("ratio") == pytest.approx(ratio)
    assert (got.pop("ci_low"), got.pop("ci_high")) == pytest.approx((lo, hi))
    assert got == {"question": "most server QPS within the latency bound", "model": "mlp.small",
                   "device": "cpu", "figure": "server QPS with p99 within the latency bound",
                   "winner": "tensorflow", "leader": "tensorflow", "runner_up": "jax",
                   "reason": "the interval lies beyond the ±5% margin", "warnings": warnings}
    assert rec.record("asked differently")["question"] == "asked differently"
    assert rec.ratio_text == f"{ratio:.2f}x [{lo:.2f}-{hi:.2f}]"


def test_nothing_to_compare_holds_no_figures():
    recs = recommend(_frame([fs.attempt("jax", step_times=_steps(0.01, 1.0))]))
    assert recs and all(r.verdict == "nothing-to-compare" for r in recs)
    train = _by(recs, "train")
    assert train.text == "Nothing to compare: only jax has steady-state training samples/s " \
                         "results."
    assert train.record() == {
        "question": "fastest to train", "model": "mlp.small", "device": "cpu",
        "figure": "steady-state training samples/s", "winner": None, "leader": None,
        "runner_up": None, "ratio": None, "ci_low": None, "ci_high": None,
        "reason": "only jax has steady-state training samples/s results", "warnings": []}
    assert (train.interval_kind, train.details, train.ratio_text) == (None, (), "–")
    # verdicts are shared by the page, results.json and the modes section: none may alter one
    with pytest.raises(FrozenInstanceError):
        train.winner = "jax"
    with pytest.raises(FrozenInstanceError):
        rmod.ASPECTS[0].higher_is_better = False
    # an interval-less ratio prints alone
    for bounds in ({}, {"lo": 1.2}, {"hi": 1.9}):
        assert rmod.Recommendation("m", "cpu", "train", None, "no-clear-winner", "t",
                                   ratio=1.5, **bounds).ratio_text == "1.50x"


# --- ranking over a partial grid -----------------------------------------------------------------
# step seconds per (framework, batch, precision); latencies a fifth of them. Lower is better,
# so the badness is v / best: jax is best everywhere; tensorflow 1.1x, 1.25x and 1.15x behind
# (geometric mean 1.165); pytorch, measured in bs32 fp32 only, 1.3x behind. The configurations
# differ tenfold in scale: a ranking that did not divide by each one's best, or averaged logs
# wrongly, would put pytorch (one small configuration) second or first.
GRID = {("jax", 32, "fp32"): 0.0100, ("tensorflow", 32, "fp32"): 0.0110,
        ("pytorch", 32, "fp32"): 0.0130,
        ("jax", 32, "bf16"): 0.0800, ("tensorflow", 32, "bf16"): 0.1000,
        ("jax", 64, "fp32"): 0.0180, ("tensorflow", 64, "fp32"): 0.0207}


def _grid_attempts(grid=GRID):
    out = []
    for (fw, bs, prec), step in grid.items():
        for r, k in enumerate(KS):
            # warm-up steps (fakestore's, scaled by the first step) above the steady ones
            out.append(fs.attempt(fw, batch_size=bs, precision=prec, repeat=r,
                                  step_times=_steps(step, k), first_step=40 * step * k,
                                  latencies=[step / 5 * k * g for g in LAT_SHAPE]))
    return out


def test_ranking_is_the_geometric_mean_of_each_configurations_distance_from_its_best():
    cells = _frame(_grid_attempts())
    recs = recommend(cells)
    both = [(32, "bf16"), (32, "fp32"), (64, "fp32")]
    sps = {fw: [[bs / float(np.median(_steps(GRID[fw, bs, p], k))) for k in KS]
                for bs, p in both] for fw in ("jax", "tensorflow")}
    lat = {fw: [[float(np.median([GRID[fw, bs, p] / 5 * k * g for g in LAT_SHAPE]))
                 for k in KS] for bs, p in both] for fw in ("jax", "tensorflow")}
    for aspect, vals, higher in (("train", sps, True), ("latency", lat, False)):
        rec = _by(recs, aspect)
        assert (rec.winner, rec.runner_up, rec.verdict) == ("jax", "tensorflow", "clear"), aspect
        r, lo, hi = _boot(list(zip(vals["jax"], vals["tensorflow"])))
        want = (r, lo, hi) if higher else (1 / r, 1 / hi, 1 / lo)
        assert (rec.ratio, rec.lo, rec.hi) == pytest.approx(want), aspect
        assert rec.interval_kind == "95% CI of the geometric mean over 3 configurations"
        assert rec.details[:2] == ("Configurations: bs32 bf16, bs32 fp32, bs64 fp32.",
                                   "Also measured: pytorch.")
    # the same cells in another order: the same verdicts, configurations listed alike
    again = recommend(cells.reverse())
    assert [r.record() for r in again] == [r.record() for r in recs]
    assert [r.details for r in again] == [r.details for r in recs]


def test_a_tie_goes_to_the_first_name_whatever_the_row_order():
    plan = {"pytorch": PLAN["jax"], "jax": PLAN["jax"]}     # the same samples
    cells = _frame(_attempts(plan))
    sps = [32 / float(np.median(_steps(0.010, k))) for k in KS]
    r, lo, hi = _boot([(sps, sps)])
    for frame in (cells, cells.reverse()):
        rec = _by(recommend(frame), "train")
        assert (rec.leader, rec.runner_up, rec.winner) == ("jax", "pytorch", None)
        assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((r, lo, hi)) and r == 1.0
        assert rec.text == f"No clear winner: jax leads pytorch by 1.00x [{lo:.2f}-{hi:.2f}]; " \
                           "within noise: the interval reaches inside the ±5% margin."


def test_leader_and_runner_up_never_measured_together():
    # jax best in fp32, pytorch best in bf16, tensorflow behind in both
    grid = {("jax", 32, "fp32"): 0.010, ("tensorflow", 32, "fp32"): 0.014,
            ("pytorch", 32, "bf16"): 0.009, ("tensorflow", 32, "bf16"): 0.012}
    rec = _by(recommend(_frame(_grid_attempts(grid))), "train")
    why = "jax and pytorch were never measured in the same configuration"
    assert (rec.leader, rec.runner_up, rec.winner, rec.verdict) == (
        "jax", "pytorch", None, "no-clear-winner")
    assert (rec.text, rec.reason, rec.ratio) == (f"No clear winner: {why}.", why, None)


@pytest.mark.parametrize("attempts, why", [
    ([fs.attempt("jax", precision="fp32", step_times=_steps(0.01, 1.0)),
      fs.attempt("pytorch", precision="bf16", step_times=_steps(0.02, 1.04))],
     "no configuration has results from two frameworks"),
    ([fs.attempt("jax", step_times=[]), fs.attempt("pytorch", step_times=[])],
     "no steady-state training samples/s results"),
])
def test_nothing_to_compare_says_why(attempts, why):
    rec = _by(recommend(_frame(attempts)), "train")
    assert (rec.verdict, rec.winner, rec.leader) == ("nothing-to-compare", None, None)
    assert (rec.text, rec.reason) == (f"Nothing to compare: {why}.", why)


def test_four_frameworks_the_last_two_also_measured_in_rank_order():
    plan = {**PLAN, "pytorch": THIRD, "numpy": (0.0300, 0.0070, (0.9, 0.8, 1.0), THIRD[3])}
    rec = _by(recommend(_frame(_attempts(plan))), "train")
    assert (rec.winner, rec.runner_up) == ("jax", "tensorflow")
    assert rec.details[1] == "Also measured: pytorch, numpy."        # 19 ms, then 30 ms steps


def test_configurations_that_disagree_only_matter_when_the_mean_names_a_winner():
    # jax 2x ahead in fp32, pytorch 1.8x ahead in bf16: the geometric mean (1.05x) is within
    # noise, and that is the reason given, though bf16 alone is beyond the margin
    plan = {("jax", 32, "fp32"): 0.010, ("pytorch", 32, "fp32"): 0.020,
            ("jax", 32, "bf16"): 0.018, ("pytorch", 32, "bf16"): 0.010}
    rec = _by(recommend(_frame(_grid_attempts(plan))), "train")
    sps = {fw: [[32 / float(np.median(_steps(plan[fw, 32, p], k))) for k in KS]
                for p in ("bf16", "fp32")] for fw in ("jax", "pytorch")}
    r, lo, hi = _boot(list(zip(sps["jax"], sps["pytorch"])))
    assert lo < 1.05 < hi and _boot([(sps["pytorch"][0], sps["jax"][0])])[1] > 1.05
    assert (rec.leader, rec.winner) == ("jax", None)
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((r, lo, hi))
    assert rec.reason == "within noise: the interval reaches inside the ±5% margin"


def test_every_configuration_that_disagrees_is_named():
    # jax 3x ahead in fp32, pytorch 1.25x ahead in bf16 and in fp16
    plan = {("jax", 32, "fp32"): 0.010, ("pytorch", 32, "fp32"): 0.030,
            ("jax", 32, "bf16"): 0.0125, ("pytorch", 32, "bf16"): 0.010,
            ("jax", 32, "fp16"): 0.0126, ("pytorch", 32, "fp16"): 0.0101}
    rec = _by(recommend(_frame(_grid_attempts(plan))), "train")
    sps = {fw: [[32 / float(np.median(_steps(plan[fw, 32, p], k))) for k in KS]
                for p in ("bf16", "fp16", "fp32")] for fw in ("jax", "pytorch")}
    assert _boot(list(zip(sps["jax"], sps["pytorch"])))[1] > 1.05
    assert all(_boot([(sps["pytorch"][i], sps["jax"][i])])[1] > 1.05 for i in (0, 1))
    assert (rec.leader, rec.winner) == ("jax", None)
    assert rec.reason == "configurations disagree: pytorch is ahead beyond the margin in " \
                         "bs32 bf16, bs32 fp16"


def test_the_per_process_ratio_decides_when_the_headline_values_rank_the_other_way():
    # the headline (pooled) throughput ranks jax first; the medians of its processes are
    # behind tensorflow's: the verdict follows the processes and says so the right way round
    cells = _put(_frame(_attempts()), "train_sps", {"jax": 2400.0, "tensorflow": 2300.0})
    per = {"jax": [1905.0, 1870.0, 1931.0], "tensorflow": [2390.0, 2455.0, 2312.0]}
    cells = _put(cells, "train_sps_r", per, pl.List(pl.Float64))
    rec = _by(recommend(cells), "train")
    r, lo, hi = _boot([(per["jax"], per["tensorflow"])])     # jax ranked first: a = jax
    ratio, lo, hi = 1 / r, 1 / hi, 1 / lo
    assert lo > 1.05
    assert (rec.winner, rec.leader, rec.runner_up) == ("tensorflow", "tensorflow", "jax")
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((ratio, lo, hi))
    assert rec.text == f"tensorflow trains fastest: {ratio:.2f}x [{lo:.2f}-{hi:.2f}] the " \
                       "throughput of jax."


def test_the_decision_settings_reach_every_verdict_and_each_configuration():
    settings = decision.Settings(margin=0.30)
    recs = recommend(_all_aspects(), settings=settings)
    train = _by(recs, "train")
    assert 1.05 < train.lo <= 1.30 < train.hi           # beyond 5%, not beyond 30%
    assert train.winner is None and train.reason == \
        "within noise: the interval reaches inside the ±30% margin"
    rec = _by(recommend(_all_aspects(), settings=decision.Settings(min_processes=4)), "latency")
    assert rec.winner is None and rec.reason == \
        "cannot tell: only 3 processes on one side (at least 4 needed)"
    # jax 2x ahead in fp32, pytorch 1.25x ahead in bf16: with a 17% margin bf16's interval no
    # longer lies beyond it (its low end 1.17-), the geometric mean's (1.18) still does
    plan = {("jax", 32, "fp32"): 0.010, ("pytorch", 32, "fp32"): 0.020,
            ("jax", 32, "bf16"): 0.0125, ("pytorch", 32, "bf16"): 0.010}
    cells = _frame(_grid_attempts(plan))
    assert _by(recommend(cells), "train").reason.startswith("configurations disagree")
    wide = _by(recommend(cells, settings=decision.Settings(margin=0.17)), "train")
    sps = {fw: [[32 / float(np.median(_steps(plan[fw, 32, p], k))) for k in KS]
                for p in ("bf16", "fp32")] for fw in ("jax", "pytorch")}
    r, lo, hi = _boot(list(zip(sps["jax"], sps["pytorch"])))
    bf16 = _boot([(sps["pytorch"][0], sps["jax"][0])])
    assert lo > 1.17 > bf16[1]                          # the mean beyond 17%, bf16 not
    assert wide.winner == "jax" and wide.reason == "the interval lies beyond the ±17% margin"
