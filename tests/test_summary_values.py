"""Every number of results.json's `summaries`, recomputed independently from the raw samples.

The planted records carry irregular samples (right-skewed block times with outliers and a drift,
heavy-tailed latencies, decaying warm-up steps, repeats that differ), so no statistic can stand in
for another. Expected values come from the config (batch size, steps per epoch, FLOPs per sample,
ceilings) and from numpy on the samples this file generated itself, never from a derived field of
the record or the summary under test. Percentiles are numpy's default ("linear") method, which
the schema's p50/p90/p99 document; intervals are the percentile bootstrap of the median of the
per-process values (mlbench.analysis.stats), whose 95% bounds over 3 and 7 processes are known order
statistics (see _check_interval).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import fakestore as fs
from mlbench.results import summary

BS = 32
TRAIN_SAMPLES = 1024
STEPS_PER_EPOCH = TRAIN_SAMPLES // BS          # the config's, not the record's
FLOPS_FWD, FLOPS_TRAIN = 1100.0, 3300.0        # the model's analytic FLOPs per sample
CEILINGS = {("pytorch", "cpu", "fp32"): 2.0e9, ("jax", "cpu", "fp32"): 3.5e9,
            ("pytorch", "cuda:0", "bf16"): 4.0e14}
H100_BF16 = 989.4e12                           # NVIDIA's datasheet, dense


def _planted(rng, repeat: int, scale: float) -> dict:
    """Raw samples of one process, generated here: the truth the summary is checked against."""
    sizes = rng.integers(6, 10, size=14)                            # steps per block (varies)
    per_step = scale * rng.lognormal(0.0, 0.08, size=14) * (1 + 0.002 * np.arange(14))
    per_step[rng.integers(0, 14)] *= 1.7                            # one outlier block
    lat = scale * 0.3 * rng.lognormal(0.0, 0.1, size=25) * rng.pareto(5.0, size=25).clip(0, 3) \
        + scale * 0.3
    warm = scale * np.array([3.1, 1.9, 1.4, 1.15]) * rng.uniform(0.9, 1.1)
    return {"repeat": repeat, "sizes": sizes, "per_step": per_step, "lat": lat, "warm": warm,
            "first": scale * 40 * rng.uniform(0.7, 1.3), "epochs": list(
                STEPS_PER_EPOCH * scale * rng.uniform(1.5, 2.5) * np.array([1.8, 1.05, 1.0])),
            "loss_means": list(rng.uniform(0.2, 0.5) * np.array([2.0, 1.3, 1.0])),
            "accuracy": float(rng.uniform(0.8, 0.95)),
            "peak": int(rng.integers(700, 900)) * 1_000_000,
            "base": int(rng.integers(300, 400)) * 1_000_000,
            "parent_peak": int(rng.integers(650, 950)) * 1_000_000,
            "dev_peak": int(rng.integers(2000, 3000)) * 1_000_000}


def _record(fw: str, device: str, precision: str, p: dict) -> dict:
    a = fs.attempt(fw, device=device, batch_size=BS, precision=precision, repeat=p["repeat"],
                   peak_device=p["dev_peak"] if device != "cpu" else None)
    t = a["metrics"]["train"]
    t.update(first_step_s=p["first"], warmup_step_times_s=list(p["warm"]),
             warmup_s=float(p["warm"].sum()), steps_per_epoch=STEPS_PER_EPOCH,
             steady_blocks=[{"steps": int(n), "seconds": float(n * s)}
                            for n, s in zip(p["sizes"], p["per_step"])],
             step_times_s=[float(s) for s in p["per_step"]], epoch_times_s=p["epochs"],
             epoch_loss_means=p["loss_means"])
    t.pop("epoch_losses")
    a["metrics"]["inference"]["latencies_s"] = [float(v) for v in p["lat"]]
    a["metrics"]["eval"]["accuracy"] = p["accuracy"]
    a["metrics"]["flops_per_sample"] = {"forward": FLOPS_FWD, "train_step": FLOPS_TRAIN}
    a["metrics"]["memory"].update(host_peak_rss_bytes=p["peak"], host_baseline_rss_bytes=p["base"])
    a["host_peak_rss_bytes"] = p["parent_peak"]
    if device != "cpu":
        a["hello"]["device_name"] = "NVIDIA H100 80GB HBM3"
        a["gpu"]["nvml_peak_process_bytes"] = p["dev_peak"] + 500_000_000
    return a


CELLS = {  # cell -> (framework, device, precision, repeats, seconds per step)
    "torch-cpu": ("pytorch", "cpu", "fp32", 3, 0.011),
    "jax-cpu": ("jax", "cpu", "fp32", 1, 0.0093),
    "torch-gpu": ("pytorch", "cuda:0", "bf16", 7, 0.0021),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(7)
    truth, records = {}, []
    for name, (fw, dev, prec, n, scale) in CELLS.items():
        truth[name] = [_planted(rng, r, scale) for r in range(n)]
        records += [_record(fw, dev, prec, p) for p in truth[name]]
    run_dir = fs.write_store(tmp_path_factory.mktemp("sv") / "run", records)
    entries = {f"{fw}|{dev}": {"framework": fw, "device": dev, "status": "ok",
                               "hello": {"framework_version": "1"},
                               "ceilings": {prec: {"best_flops": v, "median_flops": v * 0.9,
                                                   "size": 256}}}
               for (fw, dev, prec), v in CEILINGS.items()}
    (run_dir / "ceilings.json").write_text(json.dumps({"schema": 1, "host": {},
                                                       "entries": entries}))
    for i, r in enumerate(records, 1):
        r["order"] = i
    doc = summary.annotate(records, run_dir)
    assert "summaries_error" not in doc, doc.get("summaries_error")
    summary.validate({"schema": 1, "run": {"config": {}}, "cells": records, **doc})
    by_fw_dev = {(s["framework"], s["device"]): s for s in doc["summaries"]}
    got = {name: by_fw_dev[(fw, dev)] for name, (fw, dev, *_r) in CELLS.items()}
    return truth, got


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=0.0)


@pytest.mark.parametrize("name", CELLS)
def test_step_time_and_throughput_from_the_raw_blocks(planted, name):
    truth, got = planted
    s = got[name]
    pooled = np.concatenate([p["per_step"] for p in truth[name]])
    p50, p90, p99 = np.percentile(pooled, [50, 90, 99], method="linear")
    assert s["step_time_s"] == {"p50": approx(p50), "p90": approx(p90), "p99": approx(p99)}
    # samples/s: the config's batch size over the pooled median step time
    assert s["train_samples_per_s"]["median"] == approx(BS / np.median(pooled))
    per_process = [BS / np.median(p["per_step"]) for p in truth[name]]
    ci = (s["train_samples_per_s"]["ci_low"], s["train_samples_per_s"]["ci_high"])
    _check_interval(ci, per_process)


@pytest.mark.parametrize("name", CELLS)
def test_latency_percentiles_and_interval(planted, name):
    truth, got = planted
    s = got[name]
    pooled = np.concatenate([p["lat"] for p in truth[name]])
    p50, p90, p99 = np.percentile(pooled, [50, 90, 99], method="linear")
    assert s["latency_s"] == {"p50": approx(p50), "p90": approx(p90), "p99": approx(p99)}
    ci = s["latency_p50_ci"]
    assert ci["median"] == approx(p50)
    _check_interval((ci["ci_low"], ci["ci_high"]), [np.median(p["lat"]) for p in truth[name]])


def _check_interval(ci, per_process):
    lo, hi = ci
    if len(per_process) == 1:
        assert lo is None and hi is None
        return
    # A bootstrap median of n (odd) values is one of them. With 3 values it is the smallest with
    # probability 7/27 > 2.5%: the 95% interval is their range. With 7 it is the smallest with
    # probability 1.0% and at most the second smallest with 10.8%: the interval runs from the
    # second smallest to the second largest (2000 resamples: far from the 2.5% boundary).
    v = np.sort(per_process)
    assert len(v) in (3, 7)
    k = 0 if len(v) == 3 else 1
    assert (lo, hi) == (approx(v[k]), approx(v[-1 - k]))


@pytest.mark.parametrize("name", CELLS)
def test_epoch_time_parts_and_compile(planted, name):
    truth, got = planted
    s, ps = got[name], truth[name]
    e = s["epoch_time_s"]
    assert e["total"] == approx(np.median([p["epochs"][0] for p in ps]))  # the first epoch
    assert e["first_step"] == approx(np.median([p["first"] for p in ps]))
    assert e["warmup"] == approx(np.median([p["warm"].sum() for p in ps]))
    assert e["steady"] == approx(np.median([STEPS_PER_EPOCH * np.median(p["per_step"])
                                            for p in ps]))
    compile_r = [max(0.0, p["first"] - np.median(p["per_step"])) for p in ps]
    assert s["compile_s"]["median"] == approx(np.median(compile_r))
    _check_interval((s["compile_s"]["ci_low"], s["compile_s"]["ci_high"]), compile_r)
    # the first warm-up step is slower than the median step: calibrating from it would show
    assert e["first_step"] > e["warmup"] > e["steady"] / STEPS_PER_EPOCH


@pytest.mark.parametrize("name", CELLS)
def test_flops_mfu_accuracy_loss_and_counts(planted, name):
    truth, got = planted
    s, ps = got[name], truth[name]
    fw, dev, prec, n, _ = CELLS[name]
    sps = BS / np.median(np.concatenate([p["per_step"] for p in ps]))
    lat50 = np.median(np.concatenate([p["lat"] for p in ps]))
    assert s["achieved_flops"]["train"] == approx(FLOPS_TRAIN * sps)
    assert s["achieved_flops"]["inference"] == approx(FLOPS_FWD * BS / lat50)
    yard = max(v for (f, d, pr), v in CEILINGS.items() if d == dev and pr == prec)
    yard_fw = [f for (f, d, pr), v in CEILINGS.items() if v == yard][0]
    own = CEILINGS[(fw, dev, prec)]
    m = s["mfu"]
    assert m["yardstick_flops_s"] == approx(yard) and m["yardstick_framework"] == yard_fw
    assert m["value"] == approx(FLOPS_TRAIN * sps / yard)
    assert m["inference"] == approx(FLOPS_FWD * BS / lat50 / yard)
    assert m["vs_own_ceiling"] == approx(FLOPS_TRAIN * sps / own)
    if dev == "cpu":
        assert m["vs_datasheet"] is None and m["datasheet_flops_s"] is None
    else:
        assert m["datasheet_flops_s"] == approx(H100_BF16)
        assert m["vs_datasheet"] == approx(FLOPS_TRAIN * sps / H100_BF16)
    assert s["eval_accuracy"] == approx(np.median([p["accuracy"] for p in ps]))
    assert s["train_loss_mean_last_epoch"] == approx(np.median([p["loss_means"][-1] for p in ps]))
    assert (s["repeats"], s["ok_repeats"], s["stale_repeats"]) == (n, n, 0)
    assert s["batch_size"] == BS and s["precision"] == prec
    assert s["ci_basis"] == ("single process" if n == 1 else f"bootstrap over {n} processes")


@pytest.mark.parametrize("name", CELLS)
def test_memory_figures(planted, name):
    truth, got = planted
    s, ps = got[name], truth[name]
    mem = s["memory"]
    peak = [max(p["peak"], p["parent_peak"]) for p in ps]   # the larger of worker and parent
    assert mem["host_peak_rss_bytes"] == max(peak)
    assert mem["host_baseline_rss_bytes"] == approx(np.median([p["base"] for p in ps]))
    working = [pk - p["base"] for pk, p in zip(peak, ps)]
    assert mem["working_bytes"] == max(working)
    if CELLS[name][1] == "cpu":
        assert mem["headline_figure"] == "working"
        assert mem["headline_bytes"] == approx(np.median(working))
        assert mem["peak_device_bytes"] is None and mem["nvml_peak_process_bytes"] is None
    else:
        dev = [p["dev_peak"] for p in ps]
        assert mem["headline_figure"] == "device_peak"
        assert mem["headline_bytes"] == approx(np.median(dev))
        assert mem["peak_device_bytes"] == max(dev)
        assert mem["nvml_peak_process_bytes"] == max(dev) + 500_000_000


def test_the_planted_samples_are_irregular(planted):
    """The premise of this file: every statistic differs from the others on these samples."""
    truth, _ = planted
    for ps in truth.values():
        x = np.concatenate([p["per_step"] for p in ps])
        figures = [x.mean(), np.median(x), *np.percentile(x, [90, 99]), x[0], x.min(), x.max()]
        assert len({round(v, 12) for v in figures}) == len(figures)
        first = np.median([p["first"] for p in ps])
        assert first > 10 * np.median(x)


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_results_json_of_a_real_run_agrees_with_its_raw_samples(tmp_path, monkeypatch):
    """Through `mlbench run` (dummy worker, 3 repeats): each summary in results.json against
    numpy on the raw samples stored beside it in the same file and the config's batch size."""
    from cliutil import run_inproc, write_config
    monkeypatch.chdir(tmp_path)   # the report goes under ./reports
    out = tmp_path / "results"
    conf = write_config(tmp_path / "c.yaml", frameworks=["dummy"], models=["mlp"],
                        batch_sizes=[3, 8], repeats=3, train_samples=96, eval_samples=32,
                        warmup_iterations=1, timed_iterations=7, ceiling=False, verify=False,
                        output_dir=str(out))
    assert run_inproc(["run", "--config", str(conf)])[0] == 0
    doc = json.loads((out / "results.json").read_text())
    raw: dict[str, list] = {}
    for c in doc["cells"]:
        raw.setdefault(c["cell_id"], []).append(c["metrics"])
    assert {s["batch_size"] for s in doc["summaries"]} == {3, 8}
    for s in doc["summaries"]:
        ms, bs = raw[s["cell_id"]], s["batch_size"]
        assert len(ms) == 3 and s["ok_repeats"] == 3
        # the steady samples are the blocks' mean step times (seconds / steps of each block)
        steps = [np.array([b["seconds"] / b["steps"] for b in m["train"]["steady_blocks"]])
                 for m in ms]
        pooled = np.concatenate(steps)
        assert s["step_time_s"]["p90"] == approx(np.percentile(pooled, 90))
        assert s["step_time_s"]["p50"] == approx(np.median(pooled))
        assert s["train_samples_per_s"]["median"] == approx(bs / np.median(pooled))
        per = np.sort([bs / np.median(x) for x in steps])
        assert (s["train_samples_per_s"]["ci_low"], s["train_samples_per_s"]["ci_high"]) == \
            (approx(per[0]), approx(per[-1]))
        lat = np.concatenate([m["inference"]["latencies_s"] for m in ms])
        assert s["latency_s"]["p99"] == approx(np.percentile(lat, 99))
        assert s["epoch_time_s"]["first_step"] == approx(
            np.median([m["train"]["first_step_s"] for m in ms]))
        # the epoch at the steady pace: the dummy's epoch is 24 steps whatever the config says
        # (workers/dummy_worker.py)
        assert s["epoch_time_s"]["steady"] == approx(np.median(
            [24 * np.median(x) for x in steps]))
        assert s["achieved_flops"]["train"] == approx(
            ms[0]["flops_per_sample"]["train_step"] * bs / np.median(pooled))


def test_stale_repeats_and_warnings_reach_results_json(tmp_path):
    # repeat 0 ran under an older request; repeat 1 under the latest: 1 stale. The latest
    # repeat's steps hold two samples beyond Q3 + 3 IQR (fakestore.STEP_TIMES): 2 of 12 > 5%
    old = fs.attempt(repeat=0, step_times=fs.irregular(fs.STEP_TIMES, 3.0))
    old["fingerprint"] = "fp-older"
    new = fs.attempt(repeat=1)
    for i, r in enumerate([old, new], 1):
        r["order"] = i
    q1, q3 = np.percentile(fs.STEP_TIMES, [25, 75])
    assert sum(v > q3 + 3 * (q3 - q1) for v in fs.STEP_TIMES) == 2
    doc = summary.annotate([old, new], fs.write_store(tmp_path / "r", [old, new]))
    (s,) = doc["summaries"]
    assert (s["repeats"], s["ok_repeats"], s["stale_repeats"]) == (1, 1, 1)
    assert s["step_time_s"]["p50"] == approx(np.median(fs.STEP_TIMES))  # the stale one left out
    assert any("extreme values" in w and "2 of 12 step times" in w for w in s["warnings"])
    assert doc["cell_warnings"] == {s["cell_id"]: s["warnings"]}
