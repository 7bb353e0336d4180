"""`mlbench compare`: regressions beyond the threshold and the noise are flagged, noise is not."""
from __future__ import annotations

import fakestore as fs
import pytest

from mlbench.compare import compare
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
