"""The one spawner (mlbench.run.launcher.launch) with fake workers: tiny scripts written here, or
the stdlib dummy worker. Timeout kills the whole process group (a grandchild included), Ctrl-C and
SIGTERM stop a worker at once, the stderr log is kept, a worker of another protocol version gets
its reason, and the gate and the ceilings start their workers through the same function."""
from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from workerutil import WORKERS

from mlbench.config import catalog
from mlbench.analysis import ceiling, gate_verdicts
from mlbench.run import gate, launcher, runner
from mlbench.config.schema import Config


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake_worker.py"
    path.write_text(f"import sys, os, time, subprocess\nsys.path.insert(0, {str(WORKERS)!r})\n"
                    "import wire\n"
                    "def say(t, **f):\n"
                    "    print(wire.encode(wire.message(t, **f)), flush=True)\n"
                    + textwrap.dedent(body))
    return path


def _job(script: Path, timeout_s: float = 30.0, **kw) -> launcher.Job:
    return launcher.Job(script, sys.executable, {"protocol": 1, "mode": "benchmark"}, "dummy",
                        "cpu", 1, timeout_s, **kw)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_well_behaved_worker_is_ok(tmp_path):
    script = _script(tmp_path, """
        say("hello", pid=os.getpid())
        say("progress", phase="train")
        say("result", metrics={"eval": {"accuracy": 0.5}})
    """)
    seen = []
    rec = launcher.launch(_job(script), tmp_path, launcher.Stop(), seen.append)
    assert rec["status"] == "ok" and rec["metrics"] == {"eval": {"accuracy": 0.5}}
    assert [m["type"] for m in seen] == ["hello", "progress", "result"]
    assert (tmp_path / "request.json").exists() and "fake_worker.py" in (
        tmp_path / "command.txt").read_text()


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_timeout_kills_the_whole_process_group_grandchild_included(tmp_path):
    script = _script(tmp_path, f"""
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(tmp_path / 'grandchild.pid')!r}, "w").write(str(child.pid))
        say("hello", pid=os.getpid())
        time.sleep(600)
    """)
    t0 = time.monotonic()
    rec = launcher.launch(_job(script, timeout_s=2.0), tmp_path, launcher.Stop())
    assert rec["status"] == "timeout" and "process group killed" in rec["reason"]
    assert time.monotonic() - t0 < 15
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert _wait_gone(grandchild), "the grandchild outlived the timeout"
    # the group kill took it, not the leftover sweep (the backstop for processes that left the
    # group): a kill of the worker's pid alone would leave it to the sweep, which says so here
    assert "leftover_processes" not in rec, rec.get("leftover_processes")


def test_timeout_kill_goes_on_to_sigkill_while_the_group_holds_a_straggler(tmp_path):
    """The worker dies of SIGTERM, its grandchild ignores it: the group kill must not stop when
    the worker is gone but SIGKILL the group, so no straggler is left to the leftover sweep."""
    script = _script(tmp_path, f"""
        child = subprocess.Popen([sys.executable, "-c",
                                  "import signal, time; signal.signal(signal.SIGTERM, "
                                  "signal.SIG_IGN); open({str(tmp_path / 'ready')!r}, 'w'); "
                                  "time.sleep(600)"])
        open({str(tmp_path / 'grandchild.pid')!r}, "w").write(str(child.pid))
        while not os.path.exists({str(tmp_path / 'ready')!r}):
            time.sleep(0.01)
        say("hello", pid=os.getpid())
        time.sleep(600)
    """)
    rec = launcher.launch(_job(script, timeout_s=2.0), tmp_path, launcher.Stop())
    assert rec["status"] == "timeout" and "process group killed" in rec["reason"]
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert _wait_gone(grandchild), "the straggler outlived the timeout"
    assert "leftover_processes" not in rec, rec.get("leftover_processes")


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_stop_the_running_worker(tmp_path, signame):
    script = _script(tmp_path, """
        say("hello", pid=os.getpid())
        time.sleep(600)
    """)
    stop = launcher.Stop()
    old = runner._install_signals(stop)  # what the sweep installs
    seen = []
    try:
        threading.Timer(0.5, os.kill, (os.getpid(), getattr(signal, signame))).start()
        t0 = time.monotonic()
        rec = launcher.launch(_job(script, timeout_s=120), tmp_path, stop, seen.append)
    finally:
        runner._restore_signals(old)
    assert rec["status"] == "interrupted" and rec["reason"] == f"stopped by {signame}"
    assert time.monotonic() - t0 < 10
    assert _wait_gone(seen[0]["pid"])
    again = launcher.launch(_job(script), tmp_path, stop)  # stopped: nothing more starts
    assert again["status"] == "interrupted" and again["stderr_log"] is None


def test_the_stderr_log_is_kept_and_a_crash_is_classified(tmp_path):
    script = _script(tmp_path, """
        print("boom: the worker's last words", file=sys.stderr, flush=True)
        print("not a protocol line", flush=True)
        sys.exit(3)
    """)
    rec = launcher.launch(_job(script, log_tag="r7"), tmp_path, launcher.Stop())
    assert rec["status"] == "crashed"
    assert rec["reason"] == "exit code 3 without a final protocol message"
    assert "boom" in rec["stderr_tail"] and rec["protocol_noise"] == ["not a protocol line"]
    log = Path(rec["stderr_log"])
    assert log.name.startswith("stderr-r7-") and "boom" in log.read_text()


def test_a_worker_of_another_protocol_version_gets_that_reason(tmp_path):
    request = {"protocol": 1, "mode": "benchmark", "repeat": 0, "batch_size": 4,
               "options": {"fault": "foreign_protocol", "phase": "build"}}
    job = launcher.Job(catalog.worker_script("dummy"), sys.executable, request, "dummy", "cpu",
                       1, 30)
    rec = launcher.launch(job, tmp_path, launcher.Stop())
    assert rec["status"] == "crashed"
    assert rec["reason"] == "worker speaks protocol 99, mlbench speaks 1"


def test_the_framework_table_gives_each_worker_its_environment(tmp_path):
    job = launcher.Job(catalog.worker_script("keras-jax"), sys.executable, {}, "keras-jax",
                       "cpu", 3, 30)
    env = launcher.job_env(job)
    assert env["KERAS_BACKEND"] == "jax" and env["OMP_NUM_THREADS"] == "3"
    assert job.script.name == "keras_worker.py"
    assert "KERAS_BACKEND" not in launcher.job_env(launcher.Job(
        catalog.worker_script("numpy"), sys.executable, {}, "numpy", "cpu", 3, 30))


class Spy:
    """Every job started, then started for real through the one spawner."""

    def __init__(self):
        self.jobs: list[launcher.Job] = []

    def __call__(self, job, job_dir, stop, on_message=lambda m: None):
        self.jobs.append(job)
        return launcher.launch(job, job_dir, stop, on_message)


def test_ceilings_start_through_the_one_spawner_and_stop_on_ctrl_c(tmp_path):
    spy = Spy()
    res = ceiling.measure_ceilings(tmp_path, ["numpy"], ["cpu"], ["fp32"], threads=1, size=32,
                                   iterations=2, rounds=1, max_seconds_per_precision=0.2,
                                   launch=spy)
    assert res["numpy"]["cpu"]["fp32"] > 0
    (job,) = spy.jobs
    assert job.script.name == "ceiling_worker.py"
    assert job.request["mode"] == "ceiling" and job.request["protocol"] == 1
    assert job.request["backend"] == "numpy"
    stopped = launcher.Stop(requested=True, signal_name="SIGINT")
    res = ceiling.measure_ceilings(tmp_path / "b", ["numpy"], ["cpu"], ["fp32"], size=32,
                                   rounds=1, stop=stopped)
    assert res == {}
    doc = ceiling.load(tmp_path / "b")
    assert doc["entries"]["numpy|cpu"]["status"] == "interrupted"  # measured again next time


def test_the_gate_starts_through_the_one_spawner(tmp_path):
    spy = Spy()
    config = Config(frameworks=["numpy"], models=[{"name": "mlp", "preset": "tiny"}],
                    batch_sizes=[16], threads=1)
    report = gate.run(config, tmp_path, frameworks=["numpy"], launch=spy)
    assert {j.request["mode"] for j in spy.jobs} == {"verify"}
    assert {j.script.name for j in spy.jobs} == {"numpy_worker.py"}
    assert report.rows and (tmp_path / gate_verdicts.GATE_JSON).exists()
    stopped = gate.run(config, tmp_path / "b", frameworks=["numpy"],
                       stop=launcher.Stop(requested=True))
    assert {r.status for r in stopped.rows} == {"interrupted"}
    assert not (tmp_path / "b" / gate_verdicts.GATE_JSON).exists()  # a stopped gate is no verdict


class RemoteOnly:
    """An executor whose cells all run on other hosts: anything started here is a failure."""

    spans_nodes = True

    def describe(self):
        return {"kind": "cluster", "nodes": []}

    def kinds_elsewhere(self, host):
        return ["node1"]

    def runs_cells_here(self):
        return False

    def launch(self, job, job_dir, stop, on_message=lambda m: None):
        raise AssertionError(f"{job.script.name} started on the driver")

    def on_each_kind(self, fn, *args):
        assert args[1] is None  # no kind may think the driver measured for it
        doc = ({"gate": {"rows": [], "passed": True, "tolerances": {}, "seconds": 1.0}}
               if fn.__name__ == "gate_here" else
               {"doc": {"schema": 1, "host": {"hostname": "node1"}, "entries": {"numpy|cpu": {
                   "framework": "numpy", "device": "cpu", "status": "ok",
                   "ceilings": {"fp32": {"best_flops": 5e9}}}}}})
        return {"kind-a": {"node_id": "n1", "hostname": "node1", "result": doc}}


def test_a_driver_that_runs_no_cells_measures_neither_gate_nor_ceilings_itself(tmp_path):
    config = Config(frameworks=["numpy"], models=[{"name": "mlp", "preset": "tiny"}],
                    batch_sizes=[16], threads=1)
    run = {"host": {"hostname": "driver"}}
    runner._preflight(config, tmp_path, runner.Plan("new"), runner.Hooks(), RemoteOnly(), run,
                      launcher.Stop())
    assert gate_verdicts.load(tmp_path / gate_verdicts.GATE_JSON).passed
    assert run["ceilings"] == {"numpy": {"cpu": {"fp32": 5e9}}}
    assert ceiling.load(tmp_path)["host"] == {"hostname": "node1"}
    assert not (tmp_path / "verify").exists() and not (tmp_path / "ceilings").exists()
