"""Nothing measured is lost: SIGKILL and resume, Ctrl-C, torn lines, locks, reruns."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cliutil import by_cell, dummy_config, run_inproc, run_subprocess, write_config
from mlbench.results import attempt, store


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "mlbench.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_attempts(jsonl, n, timeout=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} attempts after {timeout} s")


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_sigkill_mid_sweep_then_resume_gives_every_cell_once(tmp_path):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=list(range(1, 13)),
                        framework_settings={"dummy": {"options": {"sleep_s": 0.05}}})
    out = tmp_path / "results"
    proc = _start(["run", "--config", str(conf), "--no-report"], tmp_path)
    _wait_for_attempts(out / "results.jsonl", 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept, _ = store.read_jsonl(out / "results.jsonl")
    assert 4 <= len(kept) < 12
    res = run_subprocess(["run", "--config", str(conf), "--resume", "--no-report"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"keeping {len(kept)} cell(s)" in res.stderr
    cells = json.loads((out / "results.json").read_text())["cells"]
    ids = [c["cell_id"] for c in cells]
    assert len(ids) == len(set(ids)) == 12
    assert all(c["status"] == "ok" for c in cells)
    attempts, _ = store.read_jsonl(out / "results.jsonl")
    assert len(attempts) == 12  # none measured twice, none lost
    assert {a["cell_id"] for a in kept} <= set(ids)


def test_resume_without_config_uses_the_stored_one_and_reruns_changed_cells(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--no-report"], capsys)
    assert rc == 0 and "keeping 2 cell(s) already done; 0 to run" in err
    rc, _, err = run_inproc(["run", "--config", str(conf), "--resume", "--epochs", "3",
                             "--no-report"], capsys)
    assert rc == 0 and "0 to run" not in err
    attempts, _ = store.read_jsonl(out / "results.jsonl")
    assert len(attempts) == 4  # the changed request ran again; the old attempts are kept


def test_new_run_never_destroys_an_earlier_one(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    before = (out / "results.jsonl").read_bytes()
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    assert rc == 2 and "--resume" in err and "--archive" in err
    assert (out / "results.jsonl").read_bytes() == before
    rc, _, _ = run_inproc(["run", "--config", str(conf), "--archive", "--no-report"], capsys)
    assert rc == 0
    archived = list((out / "archive").glob("*/results.jsonl"))
    assert len(archived) == 1 and archived[0].read_bytes() == before


def test_only_and_failed_rerun_just_those_cells(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="raise", fault_batch_sizes=[1])
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 1
    rc, _, err = run_inproc(["run", "--output", str(out), "--only", "dummy-mlp-cpu-bs1-fp32",
                             "--no-report"], capsys)
    assert rc == 1
    attempts, _ = store.read_jsonl(out / "results.jsonl")
    assert [a["cell_id"] for a in attempts].count("dummy-mlp-cpu-bs1-fp32") == 2
    assert [a["cell_id"] for a in attempts].count("dummy-mlp-cpu-bs2-fp32") == 1
    # fix the fault in the config, then rerun every failed cell
    conf.write_text(conf.read_text().replace("fault: raise", "fault: none"))
    rc, _, _ = run_inproc(["run", "--config", str(conf), "--output", str(out), "--failed",
                           "--no-report"], capsys)
    assert rc == 0
    assert all(c["status"] == "ok" for c in by_cell(out).values())
    rc, _, err = run_inproc(["run", "--output", str(out), "--only", "dummy-mlp-cpu-bs9-fp32"],
                            capsys)
    assert rc == 2 and "no cell" in err


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_ctrl_c_stops_the_cell_keeps_results_and_exits_130(tmp_path):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2, 3],
                        framework_settings={"dummy": {"options": {"sleep_s": 0.4}}})
    out = tmp_path / "results"
    proc = _start(["run", "--config", str(conf), "--no-report"], tmp_path)
    _wait_for_attempts(out / "results.jsonl", 1)
    # signal while the second cell runs (not in the gap between two cells)
    second = out / "cells" / "dummy-mlp-cpu-bs2-fp32" / "request.json"
    t0 = time.monotonic()
    while not second.exists() and time.monotonic() - t0 < 30:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    cells = by_cell(out)
    assert cells["dummy-mlp-cpu-bs1-fp32"]["status"] == "ok"
    assert cells["dummy-mlp-cpu-bs2-fp32"]["status"] == "interrupted"
    assert "--resume" in err
    res = run_subprocess(["run", "--resume", "--output", str(out), "--no-report"], tmp_path)
    assert res.returncode == 0
    assert all(c["status"] == "ok" for c in by_cell(out).values())


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_sigterm_is_recorded_too(tmp_path):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2],
                        framework_settings={"dummy": {"options": {"sleep_s": 0.5}}})
    proc = _start(["run", "--config", str(conf), "--no-report"], tmp_path)
    # signal once a cell is under way (not while mlbench is still importing: on a loaded
    # machine that can take more than a second, before the handler exists)
    first = tmp_path / "results" / "cells" / "dummy-mlp-cpu-bs1-fp32" / "request.json"
    t0 = time.monotonic()
    while not first.exists() and time.monotonic() - t0 < 60:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    statuses = {c["status"] for c in by_cell(tmp_path / "results").values()}
    assert "interrupted" in statuses


def test_reader_skips_a_torn_last_line(tmp_path):
    p = tmp_path / "results.jsonl"
    good = {"cell_id": "a", "status": "ok", "repeat": 0}
    p.write_text(json.dumps(good) + "\n" + '{"cell_id": "b", "sta')
    attempts, warnings = store.read_jsonl(p)
    # handed on in the current format (a record without one: mlbench 0.2's, upgraded)
    assert attempts == [attempt.upgrade(good)] and "torn last line" in warnings[0]
    # the next append starts on a fresh line, so the torn line never swallows a record
    s = store.Store(tmp_path)
    s.append({"cell_id": "c", "status": "ok", "repeat": 0})
    attempts, _ = store.read_jsonl(p)
    assert [a["cell_id"] for a in attempts] == ["a", "c"]


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_second_run_on_the_same_directory_is_refused(tmp_path):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2],
                        framework_settings={"dummy": {"options": {"sleep_s": 0.3}}})
    first = _start(["run", "--config", str(conf), "--no-report"], tmp_path)
    time.sleep(0.8)
    second = run_subprocess(["run", "--config", str(conf), "--resume", "--no-report"], tmp_path)
    first.communicate(timeout=60)
    assert second.returncode == 2 and "another mlbench run" in second.stderr
    assert first.returncode == 0
    assert len(store.read_jsonl(tmp_path / "results" / "results.jsonl")[0]) == 2


def test_unwritable_output_directory_is_a_clear_error(tmp_path, capsys):
    if os.geteuid() == 0:
        target = "/proc/mlbench-results"  # not writable even for root
    else:
        target = str(tmp_path / "ro" / "x")
        (tmp_path / "ro").mkdir(mode=0o500)
    rc, _, err = run_inproc(["run", "--config", str(dummy_config(tmp_path)), "--output", target,
                             "--no-report"], capsys)
    assert rc == 2 and "not writable" in err and target in err


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_worker_dies_with_a_killed_orchestrator(tmp_path):
    import psutil
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1],
                        framework_settings={"dummy": {"options": {"fault": "hang"}}})
    proc = _start(["run", "--config", str(conf), "--no-report"], tmp_path)
    req = tmp_path / "results" / "cells" / "dummy-mlp-cpu-bs1-fp32" / "request.json"
    t0 = time.monotonic()
    workers = []
    def cmdline(p):
        try:
            return " ".join(p.cmdline())
        except psutil.Error:  # a process that is starting or gone
            return ""

    while not workers and time.monotonic() - t0 < 30:
        workers = [c for c in psutil.Process(proc.pid).children()
                   if "dummy_worker.py" in cmdline(c)]
        time.sleep(0.05)
    assert workers and req.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "an orphaned worker kept running after mlbench was killed"


def test_refused_new_run_leaves_the_stored_config_alone(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    before = (out / "run.json").read_bytes()
    other = write_config(tmp_path / "other.yaml", batch_sizes=[16, 32])
    rc, _, _ = run_inproc(["run", "--config", str(other), "--output", str(out), "--no-report"],
                          capsys)
    assert rc == 2 and (out / "run.json").read_bytes() == before
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--no-report"], capsys)
    assert rc == 0 and "0 to run" in err and set(by_cell(out)) == {
        "dummy-mlp-cpu-bs1-fp32", "dummy-mlp-cpu-bs2-fp32"}


def test_resume_overrides_apply_to_the_stored_config(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--repeats", "2",
                             "--no-report"], capsys)
    assert rc == 0
    attempts, _ = store.read_jsonl(out / "results.jsonl")
    assert {a["cell_id"] for a in attempts} == {"dummy-mlp-cpu-bs1-fp32", "dummy-mlp-cpu-bs2-fp32"}
    assert sorted(a["repeat"] for a in attempts) == [0, 0, 1, 1]


def test_relative_data_path_survives_resume_from_elsewhere(tmp_path, capsys, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    import numpy as np
    rows = np.zeros((8, 784), np.float32)
    np.savez(sub / "my.npz", x_train=rows, y_train=np.arange(8) % 10, x_eval=rows,
             y_eval=np.arange(8) % 10)
    conf = write_config(sub / "c.yaml", models=[{"name": "mlp", "data": "my.npz"}])
    out = sub / "results"
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    req = json.loads((out / "cells" / "dummy-mlp-cpu-bs1-fp32" / "request.json").read_text())
    assert req["data_path"] == str(sub.resolve() / "my.npz")
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--no-report"], capsys)
    assert rc == 0 and "0 to run" in err


def test_archiving_twice_in_a_second_keeps_both(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    out = tmp_path / "results"
    for _ in range(3):
        assert run_inproc(["run", "--config", str(conf), "--archive", "--no-report"],
                          capsys)[0] == 0
    assert len(list((out / "archive").glob("*/results.jsonl"))) == 2
