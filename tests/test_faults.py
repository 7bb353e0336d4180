"""Worker faults through the real subprocess path: each is classified, and the next cell runs.

The dummy worker's fault strikes only the batch-size-1 cell; the batch-size-2 cell after it must
come back ok.
"""
import time

import psutil
import pytest

from cliutil import by_cell, dummy_config, run_inproc

OK_CELL = "dummy-mlp-cpu-bs2-fp32"
BAD_CELL = "dummy-mlp-cpu-bs1-fp32"

CASES = [
    ("raise", "failed", "RuntimeError: injected failure"),
    ("exit", "crashed", "exit code 3"),
    ("segfault", "crashed", "SIGSEGV"),
    ("silence", "crashed", "exited 0 without a final protocol message"),
    ("memory_error", "oom", "MemoryError"),
    ("stdout_noise", "ok", None),
    ("c_noise", "ok", None),
    ("bad_json", "ok", None),
    ("huge_line", "ok", None),
    ("import_error", "skipped", "not installed"),
]


@pytest.mark.parametrize("fault,status,reason", CASES, ids=[c[0] for c in CASES])
def test_fault_is_classified_and_sweep_goes_on(tmp_path, capsys, fault, status, reason):
    conf = dummy_config(tmp_path, fault=fault, phase="train", fault_batch_sizes=[1])
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cells = by_cell(tmp_path / "results")
    bad = cells[BAD_CELL]
    assert bad["status"] == status, bad
    if reason:
        assert reason in bad["reason"], bad["reason"]
    if status not in ("ok", "skipped"):
        assert f"--only {BAD_CELL}" in err  # the rerun command is shown
    assert cells[OK_CELL]["status"] == "ok"
    assert rc == (1 if status not in ("ok", "skipped") else 0)


def test_noise_on_stdout_is_kept_out_of_the_protocol(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="c_noise", phase="build")
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cell = by_cell(tmp_path / "results")[BAD_CELL]
    assert cell["status"] == "ok" and cell["protocol_noise"] is None
    log = (tmp_path / "results" / cell["stderr_log"]).read_text()
    assert "noise from C printf" in log and "noise written to fd 1" in log


def test_huge_line_is_dropped_not_buffered_forever(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="huge_line", phase="evaluate")
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cell = by_cell(tmp_path / "results")[BAD_CELL]
    assert cell["status"] == "ok" and "dropped" in cell["protocol_noise"][0]


def test_garbage_line_is_recorded_as_noise(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="bad_json", phase="evaluate")
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cell = by_cell(tmp_path / "results")[BAD_CELL]
    assert cell["protocol_noise"] and "not json" in cell["protocol_noise"][0]


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_hang_past_timeout_kills_the_whole_process_group(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="hang_grandchild", phase="train", fault_batch_sizes=[1])
    text = conf.read_text().replace("timeout_s: 30", "timeout_s: 2")
    conf.write_text(text)
    before = {p.pid for p in psutil.process_iter()}
    t0 = time.monotonic()
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    assert time.monotonic() - t0 < 20
    cells = by_cell(tmp_path / "results")
    assert cells[BAD_CELL]["status"] == "timeout"
    assert "2 s limit" in cells[BAD_CELL]["reason"]
    assert cells[OK_CELL]["status"] == "ok"
    time.sleep(0.2)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
                 and "time.sleep(3600)" in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, leftovers


def test_real_out_of_memory_under_a_memory_limit(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="oom", phase="train", fault_batch_sizes=[1])
    conf.write_text(conf.read_text() + "memory_limit_mb: 300\n")
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cells = by_cell(tmp_path / "results")
    assert cells[BAD_CELL]["status"] == "oom", cells[BAD_CELL]
    assert cells[OK_CELL]["status"] == "ok"


def test_missing_worker_interpreter_is_a_config_error(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    conf.write_text(conf.read_text().replace("framework_settings: {}",
                                             "framework_settings: {dummy: {python: /nope/py}}"))
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    assert rc == 2 and "/nope/py" in err and "framework_settings.dummy.python" in err
