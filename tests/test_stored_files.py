"""Stored files read defensively: a damaged record is skipped with a warning naming the file and
the line, a damaged run.json / ceilings.json is exit 2 with one line, a tampered run directory is
refused before anything is touched, and nothing already stored is ever lost or rewritten.
Also the writability checks around a sweep and the protocol reader's survival of any worker
output (issue 14)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import fakestore
from cliutil import ROOT, by_cell, dummy_config, run_inproc, write_config


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def _store(tmp_path: Path) -> Path:
    atts = [fakestore.attempt("pytorch", batch_size=bs) for bs in (8, 16)] + \
        [fakestore.attempt("jax", batch_size=bs) for bs in (8, 16)]
    return fakestore.write_store(tmp_path / "r", atts,
                                 fakestore.run_doc(frameworks=("pytorch", "jax")))


# (field path, value) put into the second attempt record: every one must be skipped with a
# warning naming results.jsonl:2, and `report` / `compare` must still work on the rest.
BAD_FIELDS = [
    ("order", "x"), ("order", None), ("cell_id", [1, 2]), ("cell_id", {"a": 1}),
    ("cell_id", ""), ("cell_id", 5), ("repeat", -1), ("repeat", "0"), ("repeat", True),
    ("repeat", 1.5), ("status", "great"), ("status", None), ("status", 1),
    ("metrics", "x"), ("metrics", [1]), ("metrics.train", 5), ("metrics.train.step_times_s",
                                                                "fast"),
    ("metrics.train.step_times_s", [1, "x"]), ("metrics.train.epoch_losses", {"a": 1}),
    ("metrics.inference.latencies_s", [[1]]), ("metrics.eval.accuracy", "high"),
    ("metrics.memory.peak_device_bytes", 1.5), ("metrics.params.trainable", "many"),
    ("wall_s", "x"), ("hello", [1]), ("batch_size", "8"), ("batch_size", True),
    ("framework", 3), ("device", ["cpu"]), ("precision", {}), ("reason", 1),
    ("exit_code", "1"), ("host_peak_rss_bytes", -0.5), ("fingerprint", 7),
]


def _set(rec: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = rec
    for p in parents:
        node = node.setdefault(p, {}) if isinstance(node.get(p), dict) else \
            node.__setitem__(p, {}) or node[p]
    node[last] = value
    return rec


@pytest.mark.parametrize("path,value", BAD_FIELDS, ids=[f"{p}={v!r}" for p, v in BAD_FIELDS])
def test_a_wrongly_typed_record_is_skipped_with_file_and_line(tmp_path, capsys, path, value):
    run = _store(tmp_path)
    jsonl = run / "results.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[1] = json.dumps(_set(json.loads(lines[1]), path, value))
    jsonl.write_text("\n".join(lines) + "\n")
    before = jsonl.read_bytes()
    rc, out, err = run_inproc(["report", "--results", str(run), "--output",
                               str(tmp_path / "rep")], capsys)
    assert rc == 0, err
    assert f"{jsonl}:2: skipped" in err and path.split(".")[0] in err, err
    assert "Traceback" not in out + err
    assert (tmp_path / "rep" / "index.html").exists()
    rc, out, err = run_inproc(["compare", str(run), str(run)], capsys)
    assert rc == 0 and f"{jsonl}:2" in err and "Traceback" not in out + err
    assert jsonl.read_bytes() == before  # reading never rewrites the store


@pytest.mark.parametrize("line", [b"[" * 100_000 + b"]" * 100_000, b'{"cell_id": "a", "s' +
                                  b"x" * 10, b'{"cell_id": NaN, "status": "ok"}', b"\xff\xfe",
                                  b"null", b'"text"', b"[]", b"1e999"],
                         ids=["100k deep", "torn", "NaN", "binary", "null", "string", "list",
                              "huge number"])
def test_a_garbage_line_is_skipped(tmp_path, capsys, line):
    run = _store(tmp_path)
    jsonl = run / "results.jsonl"
    with open(jsonl, "ab") as fh:
        fh.write(line + b"\n")
    rc, out, err = run_inproc(["report", "--results", str(run), "--output",
                               str(tmp_path / "rep")], capsys)
    assert rc == 0 and f"{jsonl}:5: skipped" in err and "Traceback" not in out + err, err


def test_a_bad_record_does_not_stop_resume_and_is_kept(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    jsonl = out / "results.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[0] = lines[0].replace('"repeat": 0,', '"repeat": 0, "order": "x", "wall_s": [1],', 1)
    lines[0] = lines[0].replace('"order": 1', '"order_": 1')
    jsonl.write_text("\n".join(lines) + "\n")
    damaged = lines[0]
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--no-report"], capsys)
    assert rc == 0, err
    assert f"{jsonl}:1: skipped" in err and "Traceback" not in err
    # the skipped cell ran again; the damaged line is still there, untouched
    assert damaged in jsonl.read_text().splitlines()
    assert all(c["status"] == "ok" for c in by_cell(out).values())


def test_every_record_bad_is_exit_2_after_the_warnings(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.jsonl").write_text(
        '{"cell_id": {"a": 1}, "status": "ok"}\n{"cell_id": "a", "status": "fine"}\n')
    rc, out, err = run_inproc(["report", "--results", str(tmp_path / "r"), "--output",
                               str(tmp_path / "rep")], capsys)
    lines = _lines(err)
    assert rc == 2 and "Traceback" not in out + err
    assert lines[0].startswith("warning: ") and ":1: skipped" in lines[0] and "cell_id" in lines[0]
    assert ":2: skipped" in lines[1] and "status" in lines[1]
    assert lines[-1].startswith("error: not mlbench output")


@pytest.mark.parametrize("doc,words", [
    ('{"entries": [1]}', ["entries"]),
    ('{"entries": {"pytorch|cpu": {"status": "ok", "ceilings": {"fp32": {"median_flops": "x"}}}}}',
     ["median_flops"]),
    ('{"entries": {"a": 5}}', ["entries.a"]),
    ('[1, 2]', ["not a JSON object"]),
    ('{"entries": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested deeper"]),
    ('{"entries": {}, "host": NaN}', ["NaN"]),
])
def test_a_bad_ceilings_json_is_exit_2_for_report(tmp_path, capsys, doc, words):
    run = _store(tmp_path)
    (run / "ceilings.json").write_text(doc)
    rc, out, err = run_inproc(["report", "--results", str(run), "--output",
                               str(tmp_path / "rep")], capsys)
    line = _lines(err)[-1]
    assert rc == 2 and line.startswith("error: ceilings.json") and str(run) in line, err
    assert all(w in line for w in words) and "Traceback" not in out + err


def test_a_sweep_remeasures_over_a_bad_ceilings_cache(tmp_path):
    from mlbench.analysis import ceiling
    (tmp_path / "ceilings.json").write_text('{"entries": [1]}')
    assert ceiling.load(tmp_path, cache=True) is None
    with pytest.raises(Exception, match="entries"):
        ceiling.load(tmp_path)


@pytest.mark.parametrize("doc,word", [
    ('{"config": [1, 2]}', "config"), ('{"config": {}, "sessions": "x"}', "sessions"),
    ('{"config": {}, "sessions": [1]}', "sessions"), ('{"run_id": 5}', "run_id"),
    ('"run"', "not a JSON object"), ("", "not valid JSON"), ('{"config": {}, "x": Infinity}',
                                                              "Infinity"),
])
@pytest.mark.parametrize("command", ["report", "compare", "resume"])
def test_a_bad_run_json_is_exit_2(tmp_path, capsys, doc, word, command):
    run = _store(tmp_path)
    (run / "run.json").write_text(doc)
    before = (run / "results.jsonl").read_bytes()
    args = {"report": ["report", "--results", str(run), "--output", str(tmp_path / "rep")],
            "compare": ["compare", str(run), str(run)],
            "resume": ["run", "--resume", "--output", str(run), "--no-report"]}[command]
    rc, out, err = run_inproc(args, capsys)
    lines = _lines(err)
    assert rc == 2 and len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith("error: run.json is not mlbench output") and word in lines[0]
    assert f"{run}/run.json" in lines[0]
    assert (run / "results.jsonl").read_bytes() == before


# --- a tampered run directory: refused before any cell, with one line, nothing lost
def _tamper(out: Path, how: str) -> None:
    cell = next((out / "cells").iterdir())
    if how == "cell is a file":
        os.rename(cell, out / "moved")
        cell.write_text("x")
    elif how == "cell is a link":
        os.rename(cell, out / "moved")
        cell.symlink_to(out / "moved")
    elif how == "cells is a link":
        os.rename(out / "cells", out / "elsewhere")
        (out / "cells").symlink_to(out / "elsewhere")
    elif how == "cells is a file":
        os.rename(out / "cells", out / "elsewhere")
        (out / "cells").write_text("x")
    elif how == "results.jsonl is a directory":
        os.rename(out / "results.jsonl", out / "kept.jsonl")
        (out / "results.jsonl").mkdir()
    elif how == "run.json is a directory":
        os.rename(out / "run.json", out / "kept.json")
        (out / "run.json").mkdir()
    elif how == "archive is a file":
        (out / "archive").write_text("x")
    elif how == "results.json is a directory":
        os.rename(out / "results.json", out / "kept2.json")
        (out / "results.json").mkdir()


TAMPER = [("cell is a file", "cells/"), ("cell is a link", "cells/"),
          ("cells is a link", "symbolic link"), ("cells is a file", "cells must be"),
          ("results.jsonl is a directory", "results.jsonl must be a file"),
          ("run.json is a directory", "run.json must be a file"),
          ("archive is a file", "archive must be a directory"),
          ("results.json is a directory", "results.json must be a file")]


@pytest.mark.parametrize("how,words", TAMPER, ids=[t[0] for t in TAMPER])
@pytest.mark.parametrize("mode", ["--resume", "--archive", "--failed"])
def test_a_tampered_run_directory_is_refused(tmp_path, capsys, how, words, mode):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    _tamper(out, how)
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.is_symlink()}
    args = ["run", "--output", str(out), "--no-report", mode] + (
        ["--config", str(conf)] if mode == "--archive" else [])
    rc, o, err = run_inproc(args, capsys)
    lines = _lines(err)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert words in lines[0] and str(out) in lines[0] and "Traceback" not in o + err
    assert {p: p.read_bytes() for p in snapshot} == snapshot  # nothing moved or rewritten


# --- writability, checked before any cell
def test_an_unwritable_report_dir_stops_the_run_before_any_cell(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    rc, _, err = run_inproc(["run", "--config", str(conf), "--report-dir",
                             "/proc/mlbench-report"], capsys)
    assert rc == 2 and "report directory is not writable" in err
    assert not (tmp_path / "results").exists()  # no cell ran, nothing was created


def test_a_report_failure_after_the_sweep_keeps_the_results(tmp_path, capsys, monkeypatch):
    import mlbench.report as report

    def broken(*a, **k):
        raise OSError(30, "Read-only file system", "reports/x")

    monkeypatch.setattr(report, "build_report", broken)
    conf = dummy_config(tmp_path)
    rep = tmp_path / "rep"
    rc, _, err = run_inproc(["run", "--config", str(conf), "--report-dir", str(rep)], capsys)
    assert rc == 0, err  # the sweep's own outcome
    warning = next(line for line in _lines(err) if line.startswith("warning: report"))
    assert "Read-only file system" in warning
    assert f"mlbench report --results {tmp_path / 'results'} --output {rep}" in warning
    assert len(by_cell(tmp_path / "results")) == 2 and "Traceback" not in err


# --- special files
def _fifo(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    os.mkfifo(p)
    return p


@pytest.mark.parametrize("args", [["run", "--config", "{fifo}", "--no-report"],
                                  ["report", "--results", "{fifo}", "--output", "{tmp}/rep"],
                                  ["compare", "{fifo}", "{fifo}"]])
@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_a_fifo_is_refused_not_waited_on(tmp_path, args):
    fifo = _fifo(tmp_path, "x.json")
    args = [a.replace("{fifo}", str(fifo)).replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "mlbench.cli", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "FIFO" in proc.stderr and str(fifo) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_fifo_as_run_json_is_refused(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    _fifo(tmp_path / "r", "run.json")
    done = []
    t = threading.Thread(target=lambda: done.append(run_inproc(
        ["run", "--resume", "--output", str(tmp_path / "r"), "--no-report"])), daemon=True)
    t.start()
    t.join(30)
    assert done and done[0][0] == 2


# --- resume with another config
def test_resume_with_a_config_of_other_cells_is_refused(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    other = write_config(tmp_path / "other.yaml", batch_sizes=[4, 8])
    before = (out / "results.jsonl").read_bytes()
    rc, _, err = run_inproc(["run", "--resume", "--config", str(other), "--output", str(out),
                             "--no-report"], capsys)
    assert rc == 2 and "cells differ" in err and "batch_sizes" in err and str(other) in err
    assert "2 new, 2 gone" in err
    assert (out / "results.jsonl").read_bytes() == before


def test_resume_with_the_same_config_is_fine(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    rc, _, err = run_inproc(["run", "--resume", "--config", str(conf), "--output", str(out),
                             "--no-report"], capsys)
    assert rc == 0 and "0 to run" in err and "differs" not in err


# --- YAML merge keys, as yaml.safe_load reads them
def test_yaml_merge_keys_are_accepted(tmp_path):
    from mlbench.config import schema as config
    p = tmp_path / "m.yaml"
    p.write_text("frameworks: [dummy]\nbatch_sizes: [2]\nmodels:\n  - &d {name: mlp, preset: tiny}"
                 "\n  - {<<: *d, label: m2}\n  - {<<: *d, preset: small}\n")
    conf = config.load_config(p)
    assert [(m.name, m.preset, m.label) for m in conf.models] == [
        ("mlp", "tiny", None), ("mlp", "tiny", "m2"), ("mlp", "small", None)]


def test_a_real_duplicate_key_beside_a_merge_is_still_refused(tmp_path):
    from mlbench.config import schema as config
    from mlbench.errors import UserError
    p = tmp_path / "m.yaml"
    p.write_text("frameworks: [dummy]\nbatch_sizes: [2]\nd: &d {name: mlp}\n"
                 "models: [{<<: *d, label: a, label: b}]\n")
    with pytest.raises(UserError, match="duplicate key 'label'"):
        config.load_config(p)


# --- the protocol reader: anything a worker writes, the sweep goes on
def test_nan_infinity_and_bytes_from_a_worker_never_stop_the_sweep(tmp_path, capsys):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2, 4, 8], framework_settings={
        "dummy": {"options": {"fault_plan": ["1:nan_result:train", "2:inf_hello:train",
                                             "4:binary:build"]}}})
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    assert rc == 1 and "Traceback" not in err
    cells = by_cell(tmp_path / "results")
    nan = cells["dummy-mlp-cpu-bs1-fp32"]
    assert nan["status"] == "failed" and "NaN" in nan["reason"]
    assert cells["dummy-mlp-cpu-bs2-fp32"]["status"] == "ok"  # a bad hello is only noise
    assert cells["dummy-mlp-cpu-bs4-fp32"]["status"] == "ok"
    assert cells["dummy-mlp-cpu-bs8-fp32"]["status"] == "ok"
    from mlbench.results import store
    assert len(store.read_jsonl(tmp_path / "results" / "results.jsonl")[0]) == 4


@pytest.mark.parametrize("line", [
    b'{"protocol": 1, "type": "result", "metrics": "fast"}',
    b'{"protocol": 1, "type": "result", "metrics": {"train": {"step_times_s": "x"}}}',
    b'{"protocol": 1, "type": "result", "metrics": {"eval": {"loss": Infinity}}}',
    b'{"protocol": 1, "type": "skip", "reason": {"a": [1]}}',
    b'{"protocol": 1, "type": "error", "message": [1, 2], "kind": 5}',
    b'{"protocol": 1, "type": "progress", "phase": "train", "epoch": "x"}',
    b"[" * 200_000, b"\xff" * 100, b'{"protocol": 1, "type": "result", "metrics": ' +
    b"[" * 100_000 + b"]" * 100_000 + b"}",
])
def test_the_protocol_reader_survives_any_line(line):
    from mlbench.run import launcher
    from mlbench.results import records
    watch = launcher._Watch()
    seen = []
    launcher._handle_line(line, watch, seen.append)
    for msg in seen:
        assert records.is_finite_json(msg)
        json.dumps(msg, allow_nan=False)
    if watch.final is not None:
        assert watch.final["type"] in ("skip", "error") or isinstance(
            watch.final.get("metrics"), dict)
        for k in ("reason", "message", "kind"):
            assert not isinstance(watch.final.get(k), (list, dict, int))


# --- the user's data: a dtype other than the model's is cast, and the user is told
def test_float64_data_is_cast_and_said(tmp_path, capsys):
    import numpy as np
    x = np.random.default_rng(0).standard_normal((16, 4))  # float64
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(16) % 10, x_eval=x[:4],
             y_eval=np.arange(4) % 10)
    conf = write_config(tmp_path / "c.yaml", models=[{"name": "mlp", "preset": "tiny",
                                                      "options": {"input_dim": 4},
                                                      "data": "d.npz"}])
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    assert rc == 0, err
    assert "cast x_train float64 -> float32" in err and "y_train int64 -> int32" in err
    sys.path.insert(0, str(ROOT / "workers"))
    try:
        import specs
        spec = specs.model_spec("mlp", {"preset": "tiny", "input_dim": 4})
        data = specs.make_dataset(spec, {"data_path": str(tmp_path / "d.npz")})
    finally:
        sys.path.remove(str(ROOT / "workers"))
    assert data["x_train"].dtype == np.float32 and data["y_eval"].dtype == np.int32


def test_a_default_report_folder_in_the_way_stops_the_run_before_any_cell(tmp_path, capsys,
                                                                           monkeypatch):
    """From a working directory where ./reports cannot be made (a file is there), `run` with a
    writable --output is refused up front: no cell runs only to die at the report."""
    conf = dummy_config(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "reports").write_text("not a folder")
    monkeypatch.chdir(work)
    rc, _, err = run_inproc(["run", "--config", str(conf), "--output", str(tmp_path / "out")],
                            capsys)
    assert rc == 2 and "report directory" in err and "reports" in err
    assert not (tmp_path / "out").exists()
