"""Promises of the report and of compare pinned by planted numbers with a known answer: the
slower framework is never named the winner, the ratio interval is printed low-high around the
ratio, every string of a real record is escaped in the HTML, the CSV's throughput is batch size
over the median step time, and `mlbench compare` exits 1 on a regression.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import re
import statistics

import fakestore as fs
import pytest

from cliutil import by_cell, run_inproc, write_config
from mlbench.results import aggregate
from mlbench.report import build_report
from mlbench.report.recommend import recommend

# per framework: training step time (s), inference latency (s), host memory (bytes); three
# repeats each with a small spread. Known answer: jax trains fastest, tensorflow serves with the
# lowest latency, pytorch uses the least memory.
PLANTED = {"pytorch": (0.020, 0.0040, 300_000_000),
           "tensorflow": (0.030, 0.0010, 900_000_000),
           "jax": (0.010, 0.0030, 600_000_000)}
WINNER = {"train": "jax", "latency": "tensorflow", "memory": "pytorch"}
JITTER = (1.0, 1.02, 0.98)


def _planted(planted=PLANTED) -> list[dict]:
    out = []
    for fw, (step, lat, rss) in planted.items():
        for r, j in enumerate(JITTER):
            out.append(fs.attempt(fw, repeat=r, step_times=[step * j] * 10,
                                  latencies=[lat * j] * 10, host_rss=int(rss * j)))
    return out


def _recs(attempts):
    cells = aggregate.cells_frame(aggregate.attempts_frame(attempts))
    return {r.aspect: r for r in recommend(cells)}


def test_the_planted_winner_wins_every_aspect():
    recs = _recs(_planted())
    for aspect, fw in WINNER.items():
        assert recs[aspect].winner == fw, (aspect, recs[aspect].text)
        assert recs[aspect].text.startswith(fw), recs[aspect].text


@pytest.mark.parametrize("aspect", sorted(WINNER))
def test_the_slower_framework_never_wins_when_the_numbers_swap(aspect):
    # swap the winner's and the worst framework's figures for this aspect: the verdict follows
    idx = {"train": 0, "latency": 1, "memory": 2}[aspect]
    winner = WINNER[aspect]
    worst = max(PLANTED, key=lambda fw: PLANTED[fw][idx])
    swapped = {fw: list(v) for fw, v in PLANTED.items()}
    swapped[winner][idx], swapped[worst][idx] = swapped[worst][idx], swapped[winner][idx]
    rec = _recs(_planted({fw: tuple(v) for fw, v in swapped.items()}))[aspect]
    assert rec.winner == worst and rec.winner != winner, rec.text


def test_the_ratio_interval_is_low_high_around_the_ratio():
    recs = _recs(_planted())
    text = recs["train"].text
    ratio = float(re.search(r"(\d+\.\d+)x", text).group(1))
    lo, hi = map(float, re.search(r"\d+\.\d+x \[(\d+\.\d+)-(\d+\.\d+)\]", text).groups())
    assert ratio == pytest.approx(0.020 / 0.010, rel=0.01)   # jax 2x the throughput of pytorch
    assert lo <= ratio <= hi and lo > 1.0, text               # ahead beyond the noise
    lat = recs["latency"].text
    ratio = float(re.search(r"(\d+\.\d+)x \[[\d.-]+\] lower", lat).group(1))
    lo, hi = map(float, re.search(r"\d+\.\d+x \[(\d+\.\d+)-(\d+\.\d+)\]", lat).groups())
    assert ratio == pytest.approx(3.0, rel=0.01) and lo <= ratio <= hi, lat


# --- escaping: every string field of a real record -------------------------------------------

def _string_paths(obj, path=()):
    """Every path to a string value in a JSON document (the schema of a real record, walked)."""
    if isinstance(obj, str):
        yield path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _string_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _string_paths(v, path + (i,))


def _set(doc, path, value):
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def _payload(i: int) -> str:
    return f'</script><script>window.__pwned{i}=1</script>"><img src=x onerror="__pwned{i}=1">'


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real dummy run: one ok cell and one failed cell, with every optional field present."""
    tmp = tmp_path_factory.mktemp("real")
    conf = write_config(tmp / "c.yaml", batch_sizes=[1, 2], framework_settings={
        "dummy": {"options": {"echo": True, "fault": "raise", "fault_batch_sizes": [2]}}})
    run_inproc(["run", "-c", str(conf), "--no-report"])
    return tmp / "results"


def test_every_string_of_a_real_record_is_escaped(real_run, tmp_path):
    cells = by_cell(real_run)
    ok, bad = cells["dummy-mlp-cpu-bs1-fp32"], cells["dummy-mlp-cpu-bs2-fp32"]
    assert ok["status"] == "ok" and bad["status"] == "failed"
    planted, n = [], 0
    for rec in (ok, bad):
        rec = copy.deepcopy(rec)
        paths = [p for p in _string_paths(rec) if p != ("status",)]
        assert len(paths) > 10, paths          # the walk found the record's strings
        for p in paths:
            _set(rec, p, _payload(n))
            n += 1
        rec["metrics" if rec["metrics"] else "hello"].setdefault("settings", {})[_payload(n)] = 1
        n += 1
        planted.append(rec)
    planted.append(dict(copy.deepcopy(ok), status=_payload(n), cell_id="odd-status"))
    n += 1
    run = json.loads((real_run / "run.json").read_text())
    for p in _string_paths(run):
        _set(run, p, _payload(n))
        n += 1
    d = fs.write_store(tmp_path / "store", planted, run)
    html = build_report(d, tmp_path / "report").read_text()
    assert "window.__pwned" in html               # the strings are shown ...
    for i in range(n):
        assert _payload(i) not in html, i          # ... never verbatim
    assert "<img src=x" not in html
    body = html.split("</head>", 1)[1]
    for script in re.findall(r"<script>(.*?)</script>", body, re.S):
        assert "__pwned" not in script or "<" not in script


# --- CSV throughput ----------------------------------------------------------------------------

def test_csv_throughput_is_batch_over_median_step_time(real_run):
    rows = list(csv.DictReader(io.StringIO((real_run / "results.csv").read_text())))
    cells = by_cell(real_run)
    checked = 0
    for row in rows:
        rec = cells[row["cell_id"]]
        if rec["status"] != "ok":
            assert row["train_samples_per_s"] == ""
            continue
        train = rec["metrics"]["train"]
        want = train["samples_per_step"] / statistics.median(train["step_times_s"])
        assert float(row["train_samples_per_s"]) == pytest.approx(want, rel=1e-9)
        lat = statistics.median(rec["metrics"]["inference"]["latencies_s"])
        assert float(row["latency_p50_ms"]) == pytest.approx(lat * 1000, rel=1e-9)
        checked += 1
    assert checked == 1


def test_report_summary_throughput_matches_the_raw_samples(tmp_path):
    attempts = _planted()
    html_dir = tmp_path / "o"
    build_report(fs.write_store(tmp_path / "r", attempts), html_dir)
    rows = list(csv.DictReader(io.StringIO((html_dir / "summary.csv").read_text())))
    by_fw = {r["framework"]: r for r in rows}
    for fw, (step, lat, _) in PLANTED.items():
        # batch 32 over the step times (not the latencies), and the latency median as is
        assert float(by_fw[fw]["train_sps"]) == pytest.approx(32 / step, rel=0.03), by_fw[fw]
        assert float(by_fw[fw]["lat_median"]) == pytest.approx(lat, rel=0.03), by_fw[fw]


# --- compare's exit code -----------------------------------------------------------------------

def _store(tmp, name, step):
    return fs.write_store(tmp / name, [fs.attempt("pytorch", repeat=r, step_times=[step * j] * 20,
                                                  latencies=[0.002] * 20)
                                       for r, j in enumerate(JITTER)])


def test_compare_exits_1_on_a_regression_and_0_without(tmp_path, capsys):
    base = _store(tmp_path, "base", 0.010)
    same = _store(tmp_path, "same", 0.010)
    slower = _store(tmp_path, "slower", 0.013)
    rc, out, _ = run_inproc(["compare", str(base), str(same)], capsys)
    assert rc == 0 and "REGRESSED" not in out
    rc, out, _ = run_inproc(["compare", str(base), str(slower)], capsys)
    assert rc == 1 and "REGRESSED" in out
    rc, out, _ = run_inproc(["compare", str(slower), str(base)], capsys)   # faster: fine
    assert rc == 0
