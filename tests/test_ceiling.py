"""The device ceiling: the worker runs in real processes for numpy, pytorch and jax on the CPU,
gives positive FLOP/s, is cached in ceilings.json, and MFU follows from it."""
from __future__ import annotations

import json
import statistics
import time

import fakestore as fs
import pytest

from mlbench.results import aggregate, frames
from mlbench.analysis import ceiling
from mlbench.report import build_report


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    d = tmp_path_factory.mktemp("ceil")
    t0 = time.monotonic()
    res = ceiling.measure_ceilings(d, ["numpy", "pytorch", "jax"], ["cpu"], ["fp32", "bf16"],
                                   threads=1, size=128, iterations=3, timeout_s=60,
                                   max_seconds_per_precision=0.5, rounds=2)
    return d, res, time.monotonic() - t0


def test_ceiling_worker_measures_every_framework(measured):
    d, res, _ = measured
    doc = json.loads((d / "ceilings.json").read_text())
    for fw in ("numpy", "pytorch", "jax"):
        assert res[fw]["cpu"]["fp32"] > 1e6, res
        # two rounds of a fresh process each, within the asked iterations (not a wall-clock
        # bound: a busy machine starts the frameworks slower)
        entry = doc["entries"][f"{fw}|cpu"]
        assert entry["rounds"] == 2 and len(entry["ceilings"]["fp32"]["round_best_flops"]) == 2
        assert 2 <= entry["ceilings"]["fp32"]["iterations"] <= 3, entry
    assert "bf16" not in res["numpy"]["cpu"]          # skipped, with its reason on disk
    np_entry = doc["entries"]["numpy|cpu"]
    assert "skip" in np_entry["ceilings"]["bf16"] and np_entry["hello"]["cpu_affinity"]
    assert np_entry["ceilings"]["fp32"]["median_flops"] <= np_entry["ceilings"]["fp32"][
        "best_flops"]


def test_ceilings_are_reused(measured):
    d, res, _ = measured
    before = (d / "ceilings.json").stat().st_mtime_ns
    files = sorted(d.rglob("*"))
    again = ceiling.measure_ceilings(d, ["numpy", "pytorch", "jax"], ["cpu"], ["fp32", "bf16"],
                                     threads=1, size=128, iterations=3, rounds=2)
    assert again == res
    assert sorted(d.rglob("*")) == files  # no worker started again: nothing new written
    assert (d / "ceilings.json").stat().st_mtime_ns == before
    # another size is another measurement
    ceiling.measure_ceilings(d, ["numpy"], ["cpu"], ["fp32"], threads=1, size=64, iterations=2,
                             rounds=1)
    assert json.loads((d / "ceilings.json").read_text())["entries"]["numpy|cpu"]["size"] == 64


def test_rounds_interleave_frameworks_and_the_best_round_counts(tmp_path, monkeypatch):
    calls = []
    speed = {("a", 0): 5.0, ("a", 1): 9.0, ("a", 2): 7.0, ("b", 0): 3.0, ("b", 1): 2.0,
             ("b", 2): 4.0, ("c", 0): 1.0, ("c", 1): 1.0, ("c", 2): 1.0}

    def fake_worker(python, request, job_dir, timeout_s, stop=None, launch=None):
        fw, r = request["framework"], len([c for c in calls if c[0] == request["framework"]])
        calls.append((fw, r))
        if fw == "c":
            return {"status": "skipped", "reason": "not here"}
        v = speed[(fw, r)]
        return {"status": "ok", "ceilings": {"fp32": {"best_flops": v, "median_flops": v / 2}}}

    monkeypatch.setattr(ceiling, "run_worker", fake_worker)
    monkeypatch.setattr(ceiling.sysinfo, "framework_version", lambda fw, python: "1")
    res = ceiling.measure_ceilings(tmp_path, ["a", "b", "c"], ["cpu"], ["fp32"], rounds=3)
    # round 0: a b c; round 1 starts one later: b a (c skipped once, not asked again); round 2: a b
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert res == {"a": {"cpu": {"fp32": 9.0}}, "b": {"cpu": {"fp32": 4.0}}}
    doc = json.loads((tmp_path / "ceilings.json").read_text())
    assert doc["entries"]["a|cpu"]["ceilings"]["fp32"]["round_best_flops"] == [5.0, 9.0, 7.0]
    assert doc["entries"]["a|cpu"]["rounds"] == 3 and doc["entries"]["c|cpu"]["status"] == "skipped"


def test_unknown_framework_is_skipped(tmp_path):
    res = ceiling.measure_ceilings(tmp_path, ["nosuch"], ["cpu"], ["fp32"], size=32)
    assert res == {}
    e = json.loads((tmp_path / "ceilings.json").read_text())["entries"]["nosuch|cpu"]
    assert e["status"] == "skipped"


def test_mfu_from_measured_ceiling(measured, tmp_path):
    _, res, _ = measured
    # a fake cell: 3000 FLOPs per sample per train step, 32 samples per step at the median of
    # its (irregular) planted step times
    cells = aggregate.cells_frame(aggregate.attempts_frame([fs.attempt("pytorch")]), res)
    row = cells.row(0, named=True)
    assert row["train_flops_s"] == pytest.approx(3000 * 32 / statistics.median(fs.STEP_TIMES))
    # one yardstick: the best ceiling any framework reached on the device and precision
    best = max(per["cpu"]["fp32"] for per in res.values() if "cpu" in per)
    assert row["mfu"] == pytest.approx(row["train_flops_s"] / best)
    assert row["mfu_own"] == pytest.approx(row["train_flops_s"] / res["pytorch"]["cpu"]["fp32"])
    assert 0 < row["mfu"] <= row["mfu_own"] < 1.5
    assert ceiling.mfu(None, "pytorch", "cpu", "fp32", res) is None


def test_report_shows_ceiling_and_mfu(tmp_path):
    run = fs.write_store(tmp_path / "run", [fs.attempt("pytorch"), fs.attempt("jax")])
    doc = {"schema": 1, "host": {}, "entries": {f"{fw}|cpu": {
        "framework": fw, "device": "cpu", "status": "ok", "hello": {"framework_version": "1"},
        "ceilings": {"fp32": {"best_flops": 1e8, "median_flops": 9e7, "size": 256},
                     "bf16": {"skip": "no bf16 <here>"}}} for fw in ("pytorch", "jax")}}
    (run / "ceilings.json").write_text(json.dumps(doc))
    html = build_report(run, tmp_path / "out").read_text()
    assert "Device ceiling" in html and "100 MFLOP/s" in html and "no bf16 &lt;here&gt;" in html
    assert 'id="fig-mfu"' in html
    _, _, _, cells = frames.load_frames(run)
    # 3000 training FLOPs per sample x batch 32 / median step time, over the 1e8 yardstick
    want = 3000 * 32 / statistics.median(fs.STEP_TIMES) / 1e8
    assert cells["mfu"].to_list() == pytest.approx([want, want])
