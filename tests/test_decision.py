"""The one decision rule (mlbench.analysis.decision) and the verdicts built on it.

Promises: a winner only when the 95% bootstrap interval of the ratio of medians over processes
lies beyond the margin, with at least min_processes per side and no voiding warning; each
voiding kind voids, the others do not; the README quotes the rule and the voiding list as the
code has them; the ranking over partial grids (a framework missing a precision, two frameworks)
takes the geometric mean over the configurations both measured; "fastest to compile" is asked of
compiled modes only; CPU memory verdicts name both figures and say when they disagree; a failed
gate never enters a verdict or a break-even; results.json's verdicts validate against the schema
and are the page's verdict table. Expected values come from numpy on the planted samples.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import fakestore as fs
import jsonschema
import numpy as np
import scipy.stats
import polars as pl
import pytest

from mlbench.results import aggregate, summary
from mlbench.analysis import decision, gate_verdicts, stats
from mlbench.report import build_report
from mlbench.report import modes
from mlbench.report.recommend import recommend

ROOT = Path(__file__).resolve().parents[1]


def _boot(pairs, n=stats.N_BOOT):
    """Independent percentile bootstrap of the geometric mean over pairs of the ratio of
    medians (numpy; one pair: the plain ratio of medians). Pairs of the same sizes share one
    plan per side (the repeat indices), a then b from a generator seeded for those sizes."""
    plans = {}
    for a, b in pairs:
        if (len(a), len(b)) not in plans:
            rng = np.random.default_rng(stats.SEED)
            plans[(len(a), len(b))] = (rng.integers(0, len(a), size=(n, len(a))),
                                       rng.integers(0, len(b), size=(n, len(b))))
    logs = np.zeros(n)
    point = []
    for a, b in pairs:
        pa, pb = plans[(len(a), len(b))]
        a, b = np.asarray(a, float), np.asarray(b, float)
        logs += np.log(np.median(a[pa], axis=1) / np.median(b[pb], axis=1))
        point.append(np.log(np.median(a) / np.median(b)))
    lo, hi = np.quantile(np.exp(logs / len(pairs)), [0.025, 0.975])
    w_lo, w_hi = _welch(pairs)
    return float(np.exp(np.mean(point))), min(float(lo), w_lo), max(float(hi), w_hi)


def _welch(pairs):
    """Welch's t interval (95%) of the geometric-mean ratio over pairs, on the logs, from
    scipy.stats (independent of stats.py's): one pair is scipy's own ttest_ind interval."""
    logs = [(np.log(np.asarray(a, float)), np.log(np.asarray(b, float))) for a, b in pairs]
    if len(pairs) == 1:
        ci = scipy.stats.ttest_ind(*logs[0], equal_var=False).confidence_interval(0.95)
        return float(np.exp(ci.low)), float(np.exp(ci.high))
    k = len(pairs)
    centre = sum(la.mean() - lb.mean() for la, lb in logs) / k
    parts = [(x.var(ddof=1) / len(x) / k ** 2, len(x) - 1) for pair in logs for x in pair]
    var = sum(v for v, _ in parts)
    df = var ** 2 / sum(v * v / d for v, d in parts)
    half = scipy.stats.t.ppf(0.975, df) * np.sqrt(var)
    return float(np.exp(centre - half)), float(np.exp(centre + half))


# --- the rule on planted per-process values ---------------------------------------------------

INSIDE = ([100.9, 103.1, 98.7, 101.9, 99.2], [99.5, 101.8, 100.6, 98.9, 102.4])
BEYOND = ([130.2, 127.5, 141.0, 128.9], [100.3, 96.1, 104.7, 99.0])
REACHES = ([108.0, 101.0, 115.0], [100.0, 99.0, 102.0])


def test_interval_inside_the_margin_gives_no_winner():
    ratio, lo, hi = _boot([INSIDE])
    assert 1 / 1.05 <= lo and hi <= 1.05        # the planted data is what the test says
    d = decision.decide(*INSIDE, higher_is_better=True)
    assert d.outcome == "equivalent" and d.winner is None
    assert d.leader == "a" and (d.ratio, d.ci_low, d.ci_high) == pytest.approx((ratio, lo, hi))


def test_interval_beyond_the_margin_names_the_winner_either_way_round():
    ratio, lo, hi = _boot([BEYOND])
    assert lo > 1.05
    d = decision.decide(*BEYOND, higher_is_better=True)
    assert d.winner == "a" and (d.ratio, d.ci_low, d.ci_high) == pytest.approx((ratio, lo, hi))
    # lower is better (latency): b leads, its lead is a/b with the interval as it is
    d = decision.decide(*BEYOND, higher_is_better=False)
    assert d.winner == "b" and (d.ratio, d.ci_low, d.ci_high) == pytest.approx((ratio, lo, hi))
    # b / a: the lead is the inverse, its interval the inverted bounds
    d = decision.decide(BEYOND[1], BEYOND[0], higher_is_better=True)
    assert d.winner == "b" and d.ratio == pytest.approx(ratio)
    assert (d.ci_low, d.ci_high) == pytest.approx(tuple(1 / x for x in _boot(
        [(BEYOND[1], BEYOND[0])])[:0:-1]))


def test_interval_reaching_into_the_margin_is_within_noise_and_names_the_leader():
    ratio, lo, hi = _boot([REACHES])
    assert lo <= 1.05 < hi
    d = decision.decide(*REACHES, higher_is_better=True)
    assert d.outcome == "unclear" and d.winner is None and d.leader == "a"
    assert "margin" in d.reason and d.ratio == pytest.approx(ratio)


# issue 20's quiet A/A: tensorflow-mlp trained at these per-process samples/s in two runs of one
# config; all three of the second run beat all three of the first by chance (its processes
# spread 2x over ten runs), so the percentile bootstrap alone (the range) cleared the margin
SAME_CONFIG = ([34.4e3, 33.1e3, 39.6e3], [26.4e3, 28.9e3, 21.9e3])
# three tight processes a side, 20% apart: a clear answer the t interval keeps
TIGHT = ([120.0, 121.0, 119.0], [100.0, 101.0, 99.0])


def _boot_only(a, b, n=stats.N_BOOT):
    rng = np.random.default_rng(stats.SEED)
    pa, pb = rng.integers(0, len(a), size=(n, len(a))), rng.integers(0, len(b), size=(n, len(b)))
    r = np.median(np.asarray(a)[pa], axis=1) / np.median(np.asarray(b)[pb], axis=1)
    return tuple(float(q) for q in np.quantile(r, [0.025, 0.975]))


def test_three_processes_beating_three_by_chance_give_no_winner():
    assert _boot_only(*SAME_CONFIG)[0] > 1.10         # the bootstrap alone: a "winner"
    w_lo, w_hi = _welch([SAME_CONFIG])
    assert w_lo < 1.05 < w_hi
    d = decision.decide(*SAME_CONFIG, higher_is_better=True)
    assert d.outcome == "unclear" and d.winner is None and d.leader == "a"
    assert (d.ci_low, d.ci_high) == pytest.approx(
        (w_lo, max(w_hi, _boot_only(*SAME_CONFIG)[1])), rel=1e-9)


def test_three_tight_processes_a_side_still_give_a_winner():
    d = decision.decide(*TIGHT, higher_is_better=True)
    assert d.winner == "a" and d.ci_low > 1.15 and d.ci_high < 1.25
    ratio, lo, hi = _boot([TIGHT])
    assert (d.ratio, d.ci_low, d.ci_high) == pytest.approx((ratio, lo, hi))


def test_margin_is_configurable():
    ratio, lo, hi = _boot([REACHES])
    d = decision.decide(*REACHES, higher_is_better=True,
                        settings=decision.Settings(margin=lo - 1 - 1e-3))
    assert d.winner == "a"


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_processes_never_give_a_winner(n):
    a, b = [200.0, 212.0, 190.0][:n], [100.0, 98.0, 103.0][:n]
    d = decision.decide(a, b, higher_is_better=True)
    assert d.winner is None and d.outcome == "cannot tell" and d.leader == "a"
    assert d.ratio == pytest.approx(np.median(a) / np.median(b))
    assert ("single process" in d.reason) if n == 1 else ("only 2 processes" in d.reason)
    assert d.advice == stats.REPEATS_ADVICE
    # min_processes is the setting's: 2 allowed, 2 suffice
    if n == 2:
        assert decision.decide(a, b, higher_is_better=True,
                               settings=decision.Settings(min_processes=2)).winner == "a"


VOIDING_TEXTS = {
    "contended": "contended: other processes used 1.7 of 2 cores during the steady state",
    "busy machine": stats.busy_warnings({"cpu_busy_pct": 55.0}, None, "cpu")[0],
    "busy device": stats.busy_warnings({}, {"processes": [{"used_memory_bytes": 2 ** 30}]},
                                       "cuda:0")[0],
    "samples too short": stats.judge_from(train_cv=None, train_k=0, lat_cv=None, lat_k=0,
                                          step_median=0.0004)[0],
}
NOT_VOIDING = [
    stats.judge_from(train_cv=0.21, train_k=4, lat_cv=None, lat_k=0)[0],        # unstable
    stats.judge_from(train_cv=None, train_k=0, lat_cv=None, lat_k=0, step_extreme=3,
                     step_n=30, step_max_rel=6.0)[0],                          # extreme values
]


def test_every_voiding_kind_has_a_planted_text():
    assert set(VOIDING_TEXTS) == set(decision.VOIDING)
    assert NOT_VOIDING[0].startswith("unstable") and NOT_VOIDING[1].startswith("extreme values")


@pytest.mark.parametrize("kind", sorted(VOIDING_TEXTS))
def test_each_voiding_warning_voids_a_clear_winner(kind):
    d = decision.decide(*BEYOND, higher_is_better=True, warnings=[VOIDING_TEXTS[kind]])
    assert d.winner is None and d.outcome == "cannot tell" and d.leader == "a"
    assert d.reason == f"cannot tell: voided by {kind}" and d.ci_low > 1.05
    assert d.voided_by == (VOIDING_TEXTS[kind],)


@pytest.mark.parametrize("text", NOT_VOIDING)
def test_a_non_voiding_warning_does_not_void(text):
    assert decision.decide(*BEYOND, higher_is_better=True, warnings=[text]).winner == "a"


def test_readme_quotes_the_rule_and_the_voiding_list_of_the_code():
    readme = " ".join((ROOT / "README.md").read_text().replace("> ", " ").split())
    assert " ".join(decision.RULE.split()) in readme
    assert "Voiding warnings: " + ", ".join(f"`{v}`" for v in decision.VOIDING) + "." in readme
    assert decision.TEST_NAME in readme


def test_settings_come_from_the_run_config_and_the_config_validates_them():
    from mlbench.config import schema as cfg
    c = cfg.validate({"frameworks": ["pytorch"], "models": ["mlp"], "batch_sizes": [32],
                      "decision": {"margin": 0.1, "min_processes": 4}}, "t.yaml")
    s = decision.settings_from({"config": cfg.dump(c)})
    assert s == decision.Settings(0.1, 4)
    assert decision.settings_from({"config": {}}) == decision.Settings()
    from mlbench.errors import UserError
    with pytest.raises(UserError, match="min_processes"):
        cfg.validate({"frameworks": ["pytorch"], "models": ["mlp"], "batch_sizes": [32],
                      "decision": {"min_processes": 1}}, "t.yaml")


# --- verdicts on planted cells ------------------------------------------------------------------

SHAPE = (1.6, 1.2, 1.0, 0.98, 1.03, 0.99, 1.01, 1.0, 0.97, 1.4, 1.02)  # warm-up drift, outlier
KS = (1.0, 1.04, 0.97)                                                   # between processes


def _cells(plan, **kw):
    """plan: {(framework, precision): step seconds}; three processes each, irregular."""
    out = []
    for (fw, prec), step in plan.items():
        for r, k in enumerate(KS):
            out.append(fs.attempt(fw, precision=prec, repeat=r,
                                  step_times=[step * k * f for f in SHAPE],
                                  latencies=[step / 4 * k * f for f in SHAPE], **kw))
    return out


def _sps(step, bs=32):
    return [bs / float(np.median([step * k * f for f in SHAPE])) for k in KS]


def _frame(attempts):
    return aggregate.cells_frame(aggregate.attempts_frame(attempts))


def test_partial_grid_geometric_mean_over_the_configurations_both_measured():
    plan = {("jax", "fp32"): 0.010, ("jax", "bf16"): 0.008, ("pytorch", "fp32"): 0.015,
            ("pytorch", "bf16"): 0.013, ("tensorflow", "fp32"): 0.020}  # no tensorflow bf16
    rec = next(r for r in recommend(_frame(_cells(plan))) if r.aspect == "train")
    ratio, lo, hi = _boot([(_sps(0.008), _sps(0.013)), (_sps(0.010), _sps(0.015))])
    assert rec.winner == "jax" and rec.runner_up == "pytorch" and lo > 1.05
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((ratio, lo, hi))
    assert "geometric mean over 2" in rec.interval_kind
    assert any("tensorflow" in d for d in rec.details)


def test_two_frameworks_only_and_the_slower_one_is_never_the_winner():
    plan = {("tensorflow", "fp32"): 0.020, ("pytorch", "fp32"): 0.0125}
    rec = next(r for r in recommend(_frame(_cells(plan))) if r.aspect == "train")
    ratio, lo, hi = _boot([(_sps(0.0125), _sps(0.020))])
    assert rec.winner == "pytorch" and rec.runner_up == "tensorflow"
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((ratio, lo, hi))


def test_a_voiding_warning_in_a_cell_voids_the_verdict_and_extreme_values_do_not():
    cells = _frame(_cells({("jax", "fp32"): 0.010, ("pytorch", "fp32"): 0.015}))
    # the planted outliers raise "extreme values": a winner all the same
    assert any(w.startswith("extreme values") for w in cells["warn_train"].explode()
               .drop_nulls().to_list())
    assert next(r for r in recommend(cells) if r.aspect == "train").winner == "jax"
    busy = cells.with_columns(pl.when(pl.col("framework") == "pytorch")
                              .then(pl.lit([VOIDING_TEXTS["contended"]]))
                              .otherwise(pl.col("warn_all")).alias("warn_all"))
    rec = next(r for r in recommend(busy) if r.aspect == "train")
    assert rec.winner is None and rec.leader == "jax" and "contended" in rec.reason
    assert rec.lo is not None and rec.lo > 1.05 and f"[{rec.lo:.2f}-{rec.hi:.2f}]" in rec.text


def test_compile_is_asked_of_compiled_modes_only():
    a = _cells({("pytorch", "fp32"): 0.010, ("tensorflow", "fp32"): 0.011,
                ("jax", "fp32"): 0.012})
    for x in a:  # pytorch eager: 3 ms first-step overhead; tf 0.6 s and jax 0.3 s to compile
        x["metrics"]["train"]["first_step_s"] = {"pytorch": 0.013, "tensorflow": 0.611,
                                                 "jax": 0.312}[x["framework"]]
    rec = next(r for r in recommend(_frame(a)) if r.aspect == "compile")
    assert rec.winner != "pytorch" and rec.leader == "jax" and rec.runner_up == "tensorflow"
    assert "eager: no compilation: pytorch (first-step overhead" in rec.text
    overhead = float(re.search(r"overhead ([\d.]+) ms", rec.text).group(1))
    # first step - median step, per process; the median over the processes
    assert overhead == pytest.approx(1e3 * float(np.median(
        [0.013 - np.median([0.010 * k * f for f in SHAPE]) for k in KS])), rel=0.01)
    only_eager = _cells({("pytorch", "fp32"): 0.010})
    rec = next(r for r in recommend(_frame(only_eager)) if r.aspect == "compile")
    assert rec.verdict == "nothing-to-compare" and "eager: no compilation" in rec.text


def test_cpu_memory_verdict_names_working_memory_and_peak_rss_and_their_disagreement():
    a = _cells({("tensorflow", "fp32"): 0.010, ("pytorch", "fp32"): 0.010})
    for x in a:  # tf: 100 MiB working on a 1000 MiB process; pytorch: 200 on 500
        mib = 2 ** 20 * (1 + 0.01 * x["repeat"])
        peak, base = (1000, 900) if x["framework"] == "tensorflow" else (500, 300)
        x["host_peak_rss_bytes"] = x["metrics"]["memory"]["host_peak_rss_bytes"] = int(peak * mib)
        x["metrics"]["memory"]["host_baseline_rss_bytes"] = int(base * mib)
    rec = next(r for r in recommend(_frame(a)) if r.aspect == "memory")
    assert rec.winner == "tensorflow" and "working memory" in rec.unit
    assert rec.ratio == pytest.approx(2.0, rel=0.01)
    detail = " ".join(rec.details)
    peak = {fw: max(int(p * 2 ** 20 * (1 + 0.01 * r)) for r in range(3)) / 2 ** 20
            for fw, p in (("tensorflow", 1000), ("pytorch", 500))}   # the cell's: the max
    assert "peak RSS disagrees" in detail
    assert f"tensorflow {peak['tensorflow']:.0f} MiB against pytorch {peak['pytorch']:.0f} MiB" \
        in detail
    # the other way round (pytorch leaner on both figures): they agree, and it is said
    for x in a:
        if x["framework"] == "tensorflow":
            x["metrics"]["memory"]["host_baseline_rss_bytes"] = int(
                x["metrics"]["memory"]["host_peak_rss_bytes"] - 400 * 2 ** 20)
    rec = next(r for r in recommend(_frame(a)) if r.aspect == "memory")
    assert rec.winner == "pytorch" and "peak RSS agrees" in " ".join(rec.details)


def test_failed_gate_never_enters_a_verdict_or_a_break_even(tmp_path):
    recs = _cells({("tensorflow", "fp32"): 0.004, ("jax", "fp32"): 0.010})
    for r, k in enumerate(KS):  # tensorflow-xla, its best mode, 5 ms
        x = fs.attempt("tensorflow-xla", repeat=r, step_times=[0.005 * k * f for f in SHAPE],
                       first_step=1.0)
        x.update(base_framework="tensorflow", mode="best", mode_settings={"jit_compile": True})
        recs.append(x)
    cells = _frame(recs)
    gate = gate_verdicts.GateVerdicts(gate_verdicts.GateReport(rows=[gate_verdicts.GateRow(
        model="mlp", model_label="mlp", device="cpu", precision="fp32", framework="tensorflow",
        reference="jax", passed=False, reason="outputs differ")]))
    assert next(r for r in recommend(cells) if r.aspect == "train").leader == "tensorflow"
    for v in modes.verdicts(cells, gate):
        assert v.rec.leader != "tensorflow" and v.rec.runner_up != "tensorflow"
    costs = {r["framework"]: r for r in modes.compile_costs(cells, gate).to_dicts()}
    assert costs["tensorflow"]["break_even_text"].startswith("not comparable")
    assert "vs tensorflow" not in costs["tensorflow-xla"]["break_even_text"]
    assert costs["tensorflow-xla"]["break_even"] is None


def test_results_json_verdicts_validate_and_are_the_page_verdict_table(tmp_path):
    from mlbench.results.store import latest_attempts
    attempts = _cells({("jax", "fp32"): 0.010, ("pytorch", "fp32"): 0.0104,
                       ("tensorflow", "fp32"): 0.016})
    run = fs.write_store(tmp_path / "r", attempts)
    latest = latest_attempts(attempts)
    doc = {"schema": 1, "run": json.loads((run / "run.json").read_text()), "cells": latest,
           **summary.annotate(latest, run)}
    jsonschema.validate(doc, json.loads(summary.SCHEMA_FILE.read_text()))
    assert "summaries_error" not in doc
    got = doc["verdicts"]
    assert {v["question"] for v in got} == {"fastest to train", "fastest to compile",
                                           "lowest latency", "least memory"}
    broken = json.loads(json.dumps(doc))
    broken["verdicts"][0]["ratio"] = "fast"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(summary.SCHEMA_FILE.read_text()))
    html = build_report(run, tmp_path / "o").read_text()
    table = html[html.index('id="verdict-table"'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr class="verdict-row [^"]+"><td>([^<]*)</td><td>([^<]*)</td>'
                      r"<td>([^<]*)<br>.*?</td><td>(.*?)</td><td class=\"n\">([^<]*)</td>"
                      r"<td>([^<]*)</td>", table)
    assert len(rows) == len(got)
    for v, (model, device, question, answer, ratio, reason) in zip(got, rows):
        assert (model, device, question) == (v["model"], v["device"], v["question"])
        assert (f"<b>{v['winner']}</b>" in answer) if v["winner"] else "<b>" not in answer
        if v["ratio"] is not None and v["ci_low"] is not None:
            assert ratio == f"{v['ratio']:.2f}x [{v['ci_low']:.2f}-{v['ci_high']:.2f}]"
        assert reason == v["reason"].replace("±", "±")
    # the planted ranking: jax and pytorch 4% apart, tensorflow far behind
    train = next(v for v in got if v["question"] == "fastest to train")
    assert train["leader"] == "jax" and train["runner_up"] == "pytorch"
    assert train["winner"] is None and "margin" in train["reason"]


def test_repeated_advice_is_said_once_on_the_page(tmp_path):
    attempts = [fs.attempt(fw, model=m, batch_size=bs, step_times=[s * f for f in SHAPE])
                for fw, s in (("jax", 0.01), ("pytorch", 0.02)) for m in ("mlp", "cnn")
                for bs in (32, 64)]
    html = build_report(fs.write_store(tmp_path / "r", attempts), tmp_path / "o").read_text()
    recs = html[html.index('id="recommendations"'):html.index('id="figures"')]
    assert recs.count(stats.REPEATS_ADVICE) == 1
    assert "do not over-read" not in html and recs.count("geometric mean over") == 1


def test_energy_aspect_only_where_measured():
    cells = _frame(_cells({("jax", "fp32"): 0.010, ("pytorch", "fp32"): 0.015}))
    assert "energy" not in {r.aspect for r in recommend(cells)}           # no column
    none = cells.with_columns(pl.lit(None, dtype=pl.Float64).alias("train_j_per_ksample"))
    assert "energy" not in {r.aspect for r in recommend(none)}            # all null
    joules = {"jax": [41.0, 44.5, 39.8], "pytorch": [60.2, 66.0, 58.1]}   # per process
    per = cells.with_columns(
        pl.col("framework").replace_strict({k: float(np.median(v)) for k, v in joules.items()},
                                           return_dtype=pl.Float64).alias("train_j_per_ksample"),
        pl.col("framework").replace_strict(joules, return_dtype=pl.List(pl.Float64))
        .alias("train_j_per_ksample_r"))
    rec = next(r for r in recommend(per) if r.aspect == "energy")
    ratio, lo, hi = _boot([(joules["pytorch"], joules["jax"])])
    assert rec.title == "least energy per sample" and rec.winner == "jax"
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((ratio, lo, hi))


def test_modes_verdicts_are_data_too(tmp_path):
    recs = _cells({("pytorch", "fp32"): 0.010, ("jax", "fp32"): 0.006})
    for r, k in enumerate(KS):
        x = fs.attempt("pytorch-compile", repeat=r, step_times=[0.004 * k * f for f in SHAPE])
        x.update(base_framework="pytorch", mode="best", mode_settings={"compile": True})
        recs.append(x)
    got = {v["question"]: v for v in modes.verdict_records(_frame(recs))}
    assert got["fastest to train out of the box"]["winner"] == "jax"
    assert got["fastest to train at its best"]["winner"] == "pytorch-compile"
    # eager pytorch is not asked how fast it compiles; its compiled mode is
    assert got["fastest to compile"]["runner_up"] != "pytorch"


def test_configurations_that_disagree_give_no_winner():
    # jax 2x faster in fp32, pytorch 1.25x faster in bf16: the geometric mean favours jax
    # beyond the margin, but bf16 says the opposite beyond it
    plan = {("jax", "fp32"): 0.010, ("pytorch", "fp32"): 0.020,
            ("jax", "bf16"): 0.0125, ("pytorch", "bf16"): 0.010}
    rec = next(r for r in recommend(_frame(_cells(plan))) if r.aspect == "train")
    ratio, lo, hi = _boot([(_sps(0.0125), _sps(0.010)), (_sps(0.010), _sps(0.020))])
    assert lo > 1.05 or hi < 1 / 1.05        # the mean alone would name a winner
    per_bf16 = _boot([(_sps(0.010), _sps(0.0125))])
    assert per_bf16[1] > 1.05                 # pytorch ahead in bf16 beyond the margin
    assert rec.winner is None and rec.leader == "jax"
    assert rec.reason == "configurations disagree: pytorch is ahead beyond the margin in " \
                         "bs32 bf16"
