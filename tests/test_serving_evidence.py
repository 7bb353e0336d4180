"""The serving evidence computed in the parent, against planted irregular per-process results:
the server scenario's max QPS over processes (a process that met the bound at no rate counts as
0 QPS within it, never dropped), the verdict voided when only some processes met the bound, and
an exported runtime's export break-even in batch-1 queries. Expected values are computed here
from the planted raw numbers (numpy), never read from the code under test."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fakestore import LATENCIES, attempt, run_doc
from mlbench.results import aggregate, summary
from mlbench.report import serving
from mlbench.report.recommend import recommend

BOUND_MS = 10.0


def _trials(max_qps: float | None, seed: int) -> list[dict]:
    """A search's trials ending in `max_qps` achieved at the best passing rate (None: every
    rate tried was over the bound). Irregular: the rates and p99s differ per process."""
    rng = np.random.default_rng(seed)
    if max_qps is None:  # halving downwards, never within the bound
        rates = [900.0 / 2 ** k * rng.uniform(0.9, 1.1) for k in range(3)]
        p99s = [0.031, 0.019, 0.0124 + rng.uniform(0, 1e-3)]
    else:
        rates = [max_qps * 1.07, max_qps * 1.35, max_qps * 1.21]
        p99s = [0.0081, 0.047, 0.0166]
    out = []
    for r, p99 in zip(rates, p99s):
        within = p99 <= BOUND_MS / 1e3
        out.append({"offered_qps": r, "achieved_qps": max_qps if within else r * 0.93,
                    "queries": 300 + int(r // 7), "mean_s": p99 / 3.1, "p50_s": p99 / 3.4,
                    "p90_s": p99 / 1.6, "p99_s": p99, "mean_batch": 1.0,
                    "within_bound": within})
    return out


def _server_attempt(fw: str, repeat: int, max_qps: float | None, batch_size: int = 1) -> dict:
    a = attempt(fw, "mlp", "cpu", batch_size, "fp32", repeat=repeat,
                latencies=[v * (1 + 0.013 * repeat) for v in LATENCIES])
    a["metrics"]["serving"] = {"server": {
        "max_qps": max_qps, "latency_bound_ms": BOUND_MS, "max_batch": batch_size,
        "trials": _trials(max_qps, seed=hash((fw, repeat)) % 1000)}}
    return a


def _cells(attempts: list[dict]):
    return aggregate.frames(attempts, run_doc(frameworks=sorted({a["framework"]
                                                                 for a in attempts})), None)[1]


def _server_verdict(cells):
    (rec,) = [r for r in recommend(cells) if r.aspect == "server"]
    return rec


# irregular per-process results (skewed; None: no rate within the bound)
LEADER = [1033.7, None, 955.1, 1190.4]
RUNNER = [402.6, 388.1, 431.9, 395.0]


def test_max_qps_counts_a_process_without_a_rate_within_the_bound_as_zero():
    planted = [812.4, None, 1033.7, 955.1, None]
    cells = _cells([_server_attempt("pytorch", r, q) for r, q in enumerate(planted)])
    (s,) = summary.summaries(cells)
    as_zero = [0.0 if q is None else q for q in planted]
    assert s["server"]["max_qps"] == pytest.approx(float(np.median(as_zero)))  # 812.4
    # the biased figure (survivors only) would be 955.1: the planted data tells them apart
    assert float(np.median([q for q in planted if q is not None])) != pytest.approx(812.4)
    assert s["server"]["processes"] == 5 and s["server"]["met_bound"] == 3
    assert sorted(cells.row(0, named=True)["server_max_qps_r"]) == sorted(as_zero)


def test_most_processes_without_a_rate_gives_zero_and_is_not_ranked():
    atts = [_server_attempt("pytorch", r, q) for r, q in enumerate(RUNNER[:3])]
    atts += [_server_attempt("jax", r, q) for r, q in enumerate([None, 1604.2, None])]
    cells = _cells(atts)
    by = {s["framework"]: s for s in summary.summaries(cells)}
    assert by["jax"]["server"]["max_qps"] == 0.0 and by["jax"]["server"]["met_bound"] == 1
    rec = _server_verdict(cells)
    assert rec.verdict == "nothing-to-compare"  # pytorch alone remains
    assert any("not ranked: jax (bs1 fp32: 1 of 3 processes)" in d for d in rec.details)


def test_verdict_is_voided_when_some_processes_of_a_side_met_the_bound_and_some_did_not():
    # control: every process met the bound: the leader wins (so the test below can fail)
    full = [q if q is not None else 1088.8 for q in LEADER]
    atts = [_server_attempt("jax", r, q) for r, q in enumerate(full)]
    atts += [_server_attempt("pytorch", r, q) for r, q in enumerate(RUNNER)]
    rec = _server_verdict(_cells(atts))
    assert rec.winner == "jax" and rec.verdict == "clear"
    assert rec.ratio == pytest.approx(np.median(full) / np.median(RUNNER))
    # one jax process met no rate: three surviving processes would still "win"; voided instead
    atts = [_server_attempt("jax", r, q) for r, q in enumerate(LEADER)]
    atts += [_server_attempt("pytorch", r, q) for r, q in enumerate(RUNNER)]
    cells = _cells(atts)
    by = {s["framework"]: s for s in summary.summaries(cells)}
    assert by["jax"]["server"]["max_qps"] == pytest.approx(
        float(np.median([0.0 if q is None else q for q in LEADER])))
    rec = _server_verdict(cells)
    assert rec.winner is None and rec.verdict == "no-clear-winner"
    assert rec.reason == "cannot tell: voided by bound not met"
    assert "jax (bs1 fp32): bound not met: 1 of 4 processes found no rate whose p99 stayed " \
           "within 10 ms" in rec.warnings
    assert rec.record()["winner"] is None


# --- export break-even ------------------------------------------------------------------------

# per-process batch-1 query times (irregular, a slow tail) and export times
SRC_SS = [[0.00061, 0.00058, 0.00072, 0.00059, 0.00113], [0.00064, 0.00057, 0.00060, 0.00066],
          [0.00059, 0.00081, 0.00058, 0.00062, 0.00060, 0.00131]]
ORT_SS = [[0.00021, 0.00019, 0.00034, 0.00020], [0.00022, 0.00020, 0.00019, 0.00052, 0.00021],
          [0.00018, 0.00023, 0.00020]]
OV_SS = [[0.00091, 0.00088, 0.00097], [0.00089, 0.00140, 0.00087], [0.00090, 0.00093]]
ORT_EXPORT = [2.91, 2.47, 4.06]
OV_EXPORT = [3.3, 2.8, 3.9]


def _ss_attempt(fw: str, repeat: int, samples: list[float], export: float | None,
                batch_size: int = 1) -> dict:
    a = attempt(fw, "mlp", "cpu", batch_size, "fp32", repeat=repeat)
    a["metrics"]["serving"] = {"single_stream": {"latencies_s": samples, "loops": 1}}
    if export is not None:
        a["metrics"]["inference"]["export_s"] = export
        a["metrics"]["settings"] = {"source": "pytorch", "training": "skipped"}
    return a


def _export_cells():
    atts = [_ss_attempt("pytorch", r, s, None) for r, s in enumerate(SRC_SS)]
    atts += [_ss_attempt("ort-from-torch", r, s, e) for r, (s, e)
             in enumerate(zip(ORT_SS, ORT_EXPORT))]
    atts += [_ss_attempt("openvino", r, s, e) for r, (s, e) in enumerate(zip(OV_SS, OV_EXPORT))]
    # a batch-8 cell of the runtime: its export is not the batch-1 one, and it has no queries
    atts += [_ss_attempt("ort-from-torch", 0, [], 9.9, batch_size=8)]
    atts[-1]["metrics"]["serving"] = {}
    return _cells(atts)


def test_break_even_is_the_export_time_over_the_mean_time_saved_per_query():
    be = {r["framework"]: r for r in serving.break_even(_export_cells()).to_dicts()}
    assert set(be) == {"ort-from-torch", "openvino"}
    src_mean = np.mean(np.concatenate(SRC_SS))
    gain = src_mean - np.mean(np.concatenate(ORT_SS))
    want = math.ceil(np.median(ORT_EXPORT) / gain)
    ort = be["ort-from-torch"]
    assert ort["source"] == "pytorch" and ort["export_s"] == pytest.approx(np.median(ORT_EXPORT))
    assert ort["gain_s"] == pytest.approx(gain)
    assert ort["break_even_queries"] == want
    # the median query times would give another figure: the planted tails tell them apart
    by_median = math.ceil(np.median(ORT_EXPORT) / (np.median(np.concatenate(SRC_SS))
                                                     - np.median(np.concatenate(ORT_SS))))
    assert by_median != want
    # slower per query than its source: it never pays off
    ov = be["openvino"]
    assert ov["break_even_queries"] is None
    assert ov["gain_s"] == pytest.approx(src_mean - np.mean(np.concatenate(OV_SS)))


def test_break_even_figure_draws_the_paying_runtimes_and_names_the_others():
    figs = {f.id: f for f in serving.figures(_export_cells())}
    fig = figs["serving-export"]
    (bar,) = fig.spec["data"]
    gain = np.mean(np.concatenate(SRC_SS)) - np.mean(np.concatenate(ORT_SS))
    assert bar["meta"]["framework"] == "ort-from-torch"
    assert bar["y"] == [math.ceil(np.median(ORT_EXPORT) / gain)]
    slower = (np.mean(np.concatenate(OV_SS)) - np.mean(np.concatenate(SRC_SS))) * 1e3
    assert f"openvino (mlp.small, cpu, fp32): {slower:.3g} ms per query slower than pytorch" \
        in fig.caption
    assert "serving" not in figs  # no server scenario planted: no latency-load figure


def test_no_exported_runtime_no_break_even():
    cells = _cells([_ss_attempt("pytorch", r, s, None) for r, s in enumerate(SRC_SS)])
    assert serving.break_even(cells).is_empty()
    assert serving.figures(cells) == []


def test_a_verdict_voided_twice_names_both_reasons():
    import polars as pl
    atts = [_server_attempt("jax", r, q) for r, q in enumerate(LEADER)]
    atts += [_server_attempt("pytorch", r, q) for r, q in enumerate(RUNNER)]
    cells = _cells(atts)
    busy = "contended: other processes used 1.4 of 2 cores during the timed inference"
    cells = cells.with_columns(pl.when(pl.col("framework") == "pytorch")
                               .then(pl.col("warnings").list.concat(pl.lit([busy])))
                               .otherwise(pl.col("warnings")).alias("warnings"))
    rec = _server_verdict(cells)
    assert rec.winner is None
    assert rec.reason == "cannot tell: voided by contended, bound not met"
