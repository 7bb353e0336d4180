"""The attempt record's format (mlbench.results.attempt): a run directory written by mlbench 0.2
still loads, reports and resumes; records of older formats are upgraded as they are read (a pure
function, never written back), a record of a newer mlbench is one line and exit 2 naming the file;
new records carry `format`.

tests/fixtures/run_v02 is a real 0.2 run directory, written by the code of commit 05969d3 (the
0.2 release: `git archive 05969d3 | tar -x -C /tmp/v02`, then from there
`python -m mlbench.cli run -c c.yaml --no-report` with frameworks [dummy, numpy], model mlp,
batch sizes 8 and 16, 2 repeats, 2 epochs of 512 samples, 10 timed iterations, and the dummy's
fault_plan ["16:raise:train"]): 6 ok and 2 failed attempts, ceilings.json, results.json/csv.
"""
import copy
import hashlib
import os
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import fakestore as fs
from cliutil import run_inproc
from mlbench.results import aggregate, attempt, records, store, summary

V02 = Path(__file__).parent / "fixtures" / "run_v02"


def _raw_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _digest(run: Path) -> dict[str, str]:
    """Every file of a run directory but the run's lock (taken by a run that then refuses)."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".mlbench.lock"}


@pytest.fixture
def v02(tmp_path) -> Path:
    run = tmp_path / "v02"
    shutil.copytree(V02, run)
    return run


# --- a 0.2 run directory -------------------------------------------------------------------------

def test_a_02_run_directory_loads_upgraded_with_everything_it_measured():
    before = _digest(V02)
    raw = _raw_lines(V02)
    assert all("format" not in r and r["schema"] == 1 for r in raw)   # 0.2's shape
    loaded = store.load(V02)
    assert loaded.warnings == [] and len(loaded.attempts) == len(raw) == 8
    for old, new in zip(raw, loaded.attempts):
        assert new["format"] == attempt.FORMAT and "schema" not in new
        # every key 0.2 stored is kept with its value; the step only adds
        assert {k: v for k, v in new.items() if k in old} == \
            {k: v for k, v in old.items() if k != "schema"}
        attempt.Attempt.model_validate(new)
    assert [a["status"] for a in loaded.latest].count("failed") == 2
    # the results.json 0.2 wrote loads the same way, cell for cell
    doc = store.load(V02 / "results.json")
    assert [a["cell_id"] for a in doc.attempts] == [a["cell_id"] for a in loaded.latest]
    assert all(a["format"] == attempt.FORMAT for a in doc.attempts)
    assert _digest(V02) == before   # reading never rewrites


def test_a_02_run_directory_reports_its_own_figures(v02, capsys, tmp_path):
    raw = _raw_lines(v02)
    rc, out, err = run_inproc(["report", "--results", str(v02), "--output",
                               str(tmp_path / "rep")], capsys)
    assert rc == 0 and "Traceback" not in out + err and "skipped" not in err, err
    page = (tmp_path / "rep" / "index.html").read_text()
    assert all(r["cell_id"] in page for r in raw)
    # the summaries of results.json, from the 0.2 records, against numpy on the raw samples
    loaded = store.load(v02)
    by_id = {s["cell_id"]: s for s in summary.annotate(loaded.latest, v02)["summaries"]}
    for cid in ("numpy-mlp-cpu-bs8-fp32", "numpy-mlp-cpu-bs16-fp32"):
        reps = [r for r in raw if r["cell_id"] == cid]
        steps = np.concatenate([r["metrics"]["train"]["step_times_s"] for r in reps])
        lat = np.concatenate([r["metrics"]["inference"]["latencies_s"] for r in reps])
        bs = reps[0]["metrics"]["train"]["samples_per_step"]
        s = by_id[cid]
        assert s["ok_repeats"] == 2
        assert s["train_samples_per_s"]["median"] == pytest.approx(bs / np.median(steps))
        assert s["latency_s"]["p50"] == pytest.approx(np.median(lat))
        assert s["eval_accuracy"] == pytest.approx(
            np.median([r["metrics"]["eval"]["accuracy"] for r in reps]))
    assert by_id["dummy-mlp-cpu-bs16-fp32"]["ok_repeats"] == 0


def test_a_02_run_directory_resumes_appending_current_records(v02, capsys):
    jsonl = v02 / "results.jsonl"
    old = jsonl.read_bytes()
    raw = _raw_lines(v02)
    # the dummy cells run again (0.3's request differs from 0.2's: another fingerprint); the
    # numpy cells are out of the narrowed sweep and stay as 0.2 measured them
    rc, out, err = run_inproc(["run", "--resume", "--output", str(v02), "--frameworks", "dummy",
                               "--no-report", "--no-gate", "--no-ceiling"], capsys)
    assert rc == 1 and "Traceback" not in out + err, err   # 1: the planted failures again
    data = jsonl.read_bytes()
    assert data.startswith(old)   # the 0.2 lines are never rewritten
    new = [json.loads(line) for line in data[len(old):].decode().splitlines()]
    assert {(r["cell_id"], r["repeat"]) for r in new} == {
        (f"dummy-mlp-cpu-bs{bs}-fp32", rep) for bs in (8, 16) for rep in (0, 1)}
    assert all(r["format"] == attempt.FORMAT and "schema" not in r for r in new)
    assert {r["status"] for r in new if "bs16" in r["cell_id"]} == {"failed"}
    cells = json.loads((v02 / "results.json").read_text())["cells"]
    by_key = {(c["cell_id"], c["repeat"]): c for c in cells}
    for r in raw:   # the numpy attempts results.json holds are 0.2's, upgraded
        if r["framework"] == "numpy":
            assert by_key[(r["cell_id"], r["repeat"])]["started_at"] == r["started_at"]
            assert by_key[(r["cell_id"], r["repeat"])]["format"] == attempt.FORMAT
    rc, out, err = run_inproc(["report", "--results", str(v02), "--output",
                               str(v02.parent / "rep")], capsys)
    assert rc == 0 and "skipped" not in err, err


# --- the upgrade step on planted records ---------------------------------------------------------

def _v01(**changes) -> dict:
    """A record as an early 0.1 worker and launcher wrote it: no variant or mode, the per-epoch
    mean losses as epoch_losses, warm-up steps without their sum, one call per latency sample,
    TF32 only in the worker's settings (JAX's name)."""
    rec = fs.attempt("jax", epoch_times=[0.41, 0.37, 0.52],
                     step_times=[0.0121, 0.0096, 0.0313, 0.0101, 0.0099, 0.0187])
    rec["metrics"]["settings"] = {"threads": 4, "tf32_requested": True}
    rec["metrics"]["train"]["epoch_losses"] = [2.31, 1.07, 0.64]
    for k, v in changes.items():
        rec[k] = v
    return rec


def test_the_upgrade_fills_what_older_formats_left_implicit_and_changes_nothing_else():
    rec = _v01()
    kept = copy.deepcopy(rec)
    new = attempt.upgrade(rec)
    assert rec == kept   # pure: the record read is never changed
    train = new["metrics"]["train"]
    assert new["format"] == 3 and "schema" not in new
    assert new["base_framework"] == "jax" and new["mode"] == "default"
    assert new["tf32"] is True
    assert train["epoch_loss_means"] == [2.31, 1.07, 0.64] == train["epoch_losses"]
    assert train["warmup_s"] == pytest.approx(sum(rec["metrics"]["train"]["warmup_step_times_s"]))
    assert new["metrics"]["inference"]["loops"] == 1
    assert attempt.upgrade(new) is new   # current: as it is
    # what the record said itself wins over the defaults
    said = _v01(base_framework="jax", mode="xla", tf32=False)
    said["metrics"]["train"]["epoch_loss_means"] = [2.2, 1.0, 0.6]
    said["metrics"]["train"]["warmup_s"] = 0.25
    said["metrics"]["inference"]["loops"] = 7
    up = attempt.upgrade(said)
    assert (up["mode"], up["tf32"], up["metrics"]["inference"]["loops"]) == ("xla", False, 7)
    assert up["metrics"]["train"]["epoch_loss_means"] == [2.2, 1.0, 0.6]
    assert up["metrics"]["train"]["warmup_s"] == 0.25


def test_the_first_tf32_flag_that_is_a_boolean_counts():
    for settings, want in (({"tf32": False, "tf32_requested": True}, False),
                           ({"tf32": "yes", "tf32_requested": True}, True),
                           ({"tf32": 1}, None), ({}, None)):
        rec = _v01()
        rec["metrics"]["settings"] = settings
        assert attempt.upgrade(rec)["tf32"] is want, settings


def test_flatten_reads_a_legacy_record_as_its_upgrade():
    rec = _v01()
    old_row, new_row = aggregate.flatten(0, rec), aggregate.flatten(0, attempt.upgrade(rec))
    for row in (old_row, new_row):
        assert row["train_loss_mean_last_epoch"] == 0.64
        assert row["tf32_requested"] is True and row["inference_loops"] == 1
        assert row["warmup_s"] == pytest.approx(sum(fs.WARMUP_STEPS))
    assert {k: v for k, v in old_row.items() if not isinstance(v, np.ndarray)} == \
        {k: v for k, v in new_row.items() if not isinstance(v, np.ndarray)}


def test_a_typed_view_leaves_out_exactly_what_does_not_validate():
    rec = _v01()
    blocks = [{"steps": 10, "seconds": 0.121}, {"steps": 10}, {"steps": 10, "seconds": -1.0},
              {"steps": 10, "seconds": 0.096}, {"steps": 0, "seconds": 0.5},
              {"steps": 10, "seconds": 0.313}]
    rec["metrics"]["train"]["steady_blocks"] = blocks
    rec["metrics"]["eval"]["accuracy"] = 1.7    # no accuracy above 1
    rec["wall_s"] = "12 s"
    kept = copy.deepcopy(rec)
    v = attempt.view(rec)
    assert rec == kept
    assert [(b.steps, b.seconds) for b in v.metrics.train.steady_blocks] == [
        (10, 0.121), (10, 0.096), (0, 0.5), (10, 0.313)]
    assert v.metrics.eval is not None and v.metrics.eval.accuracy is None and v.wall_s is None
    assert v.metrics.eval.loss == 0.3   # the rest of the same part is kept
    row = aggregate.flatten(0, rec)
    assert row["block_median_s"] == pytest.approx(np.median([0.121, 0.096, 0.313]))
    assert row["accuracy"] is None and row["wall_s"] is None


@pytest.mark.parametrize("bad", ["3", True, 1, 0, -2, None, 2.0, [3]],
                         ids=lambda v: repr(v))
def test_a_format_no_mlbench_writes_is_a_skipped_line(tmp_path, bad):
    good = fs.attempt("pytorch")
    run = fs.write_store(tmp_path / "r", [good, {**fs.attempt("jax"), "format": bad}])
    with pytest.raises(ValueError, match="format"):
        records.check_attempt({**fs.attempt("jax"), "format": bad})
    loaded = store.load(run)
    assert [a["framework"] for a in loaded.attempts] == ["pytorch"]
    assert len(loaded.warnings) == 1 and f"{run / 'results.jsonl'}:2: skipped" in \
        loaded.warnings[0] and "format" in loaded.warnings[0]


# --- a record of a newer mlbench -----------------------------------------------------------------

def _newer_store(tmp_path) -> Path:
    """The 0.2 run directory, to which a newer mlbench appended an attempt (format 4)."""
    run = tmp_path / "r"
    shutil.copytree(V02, run)
    rec = {**_raw_lines(run)[0], "format": 4, "metrics": {"renamed": {}}, "order": 9}
    rec.pop("schema")
    with open(run / "results.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    return run


@pytest.mark.parametrize("command", ["report", "compare", "resume"])
def test_a_record_of_a_newer_mlbench_is_one_line_and_exit_2(tmp_path, capsys, command):
    run = _newer_store(tmp_path)
    before = _digest(run)
    args = {"report": ["report", "--results", str(run), "--output", str(tmp_path / "rep")],
            "compare": ["compare", str(run), str(run)],
            "resume": ["run", "--resume", "--output", str(run), "--no-report"]}[command]
    rc, out, err = run_inproc(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in out + err
    assert lines == [f"error: a record of format 4, written by a newer mlbench (this one reads "
                     f"formats 2 to 3): read it with that mlbench or a newer one "
                     f"({run / 'results.jsonl'}:9: format)"], err
    assert _digest(run) == before   # nothing written, nothing rewritten
    assert not (tmp_path / "rep").exists()


def test_a_results_json_cell_of_a_newer_mlbench_is_exit_2_naming_it(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 1, "run": {}, "cells": [
        fs.attempt("pytorch"), {**fs.attempt("jax"), "format": 7}]}))
    rc, _, err = run_inproc(["report", "--results", str(path), "--output",
                             str(tmp_path / "rep")], capsys)
    assert rc == 2 and err.strip().splitlines()[-1].endswith(f"({path}: cells[1].format)")
    assert "format 7" in err and "Traceback" not in err


# --- the writer ----------------------------------------------------------------------------------

def test_the_store_writes_the_current_format_into_every_record(tmp_path, capsys):
    s = store.Store(tmp_path)
    handed = [{k: v for k, v in fs.attempt(fw).items() if k not in ("schema", "order")}
              for fw in ("pytorch", "jax")]
    s.append(handed[0])
    s.append({**handed[1], "wall_s": "slow"})   # does not validate: stored anyway
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["format"] for r in lines] == [attempt.FORMAT] * 2
    assert all("schema" not in r for r in lines)
    assert lines[1]["wall_s"] == "slow"    # nothing measured is lost...
    assert err.count("warning: ") == 1 and "cell jax-mlp-cpu-bs32-fp32" in err and \
        "wall_s" in err                   # ...and the user is told readers skip it
    attempts, warnings = store.read_jsonl(tmp_path / "results.jsonl")
    assert [a["framework"] for a in attempts] == ["pytorch"] and len(warnings) == 1


def test_every_older_format_has_its_step_and_the_model_is_the_current_one():
    assert sorted(attempt.STEPS) == list(range(attempt.LEGACY_FORMAT, attempt.FORMAT))
    assert attempt.Attempt.model_fields["format"].default == attempt.FORMAT
    attempt.Attempt.model_validate({"cell_id": "a", "status": "ok", "format": attempt.FORMAT})


def test_a_write_the_disk_takes_nothing_of_is_disk_full_and_takes_nothing_back(tmp_path,
                                                                               monkeypatch):
    from mlbench.errors import UserError
    s = store.Store(tmp_path)
    s.append({k: v for k, v in fs.attempt("pytorch").items() if k != "schema"})
    before = (tmp_path / "results.jsonl").read_bytes()
    written = []

    def accepts_half_then_nothing(fd, data):
        n = len(data) // 2 if not written else 0
        written.append(n)
        return os.pwrite(fd, bytes(data[:n]), os.fstat(fd).st_size) if n else 0
    monkeypatch.setattr(store.os, "write", accepts_half_then_nothing)
    with pytest.raises(UserError, match="disk full: could not store the attempt of cell jax"):
        s.append({k: v for k, v in fs.attempt("jax").items() if k != "schema"})
    assert written[0] > 0 and written[1] == 0   # a partial write, then a full disk
    assert (tmp_path / "results.jsonl").read_bytes() == before   # the half line taken back
