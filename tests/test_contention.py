"""Contention caught while a cell runs: the parent's per-phase accounting of other processes'
CPU time (on planted psutil figures, and for real beside a CPU hog), the `contended: ...`
warnings that void verdicts, and `on_contention: retry`."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import namedtuple

import numpy as np
import psutil
import pytest

from cliutil import dummy_config, run_inproc, write_config

from mlbench.results import aggregate
from mlbench.run import contention, launcher
from mlbench.results.store import read_jsonl

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest "
                                  "guest_nice")
ProcTimes = namedtuple("ProcTimes", "user system children_user children_system iowait")


def test_busy_time_is_every_busy_field_and_nothing_else(monkeypatch):
    t = CpuTimes(1234.56, 7.8, 432.1, 99999.0, 321.0, 3.3, 11.7, 5.25, 400.0, 1.5)
    monkeypatch.setattr(psutil, "cpu_times", lambda: t)
    # idle and iowait are not busy; guest time is already inside user
    assert contention.busy_cpu_s() == pytest.approx(1234.56 + 7.8 + 432.1 + 3.3 + 11.7 + 5.25)


class FakeProc:
    def __init__(self, pid, times, kids=()):
        self.pid, self.times, self.kids, self.gone = pid, times, list(kids), False

    def cpu_times(self):
        if self.gone:
            raise psutil.NoSuchProcess(self.pid)
        return ProcTimes(*self.times, 0.0)

    def children(self, recursive=False):
        return [k for k in self.kids if not k.gone]


def test_tree_time_keeps_a_child_that_exited_between_samples(monkeypatch):
    child = FakeProc(11, (3.25, 0.5, 0.0, 0.0))
    root = FakeProc(10, (10.0, 2.0, 0.75, 0.25), [child])
    monkeypatch.setattr(psutil, "Process", lambda pid: root)
    tree = contention.TreeCpu(10)
    assert tree.total() == pytest.approx(10 + 2 + 0.75 + 0.25 + 3.25 + 0.5)
    child.times = (4.5, 0.625, 0.0, 0.0)
    root.times = (12.5, 2.0, 0.75, 0.25)
    child.gone = True  # exited (not yet reaped): its last reading still counts
    assert tree.total() == pytest.approx(12.5 + 2 + 0.75 + 0.25 + 3.25 + 0.5)


def test_other_cores_per_phase_on_planted_irregular_figures():
    """A worker's run planted tick by tick: irregular wall times, tree and own CPU use, and
    other processes' use; the meter's figures must be the planted other CPU over each phase's
    wall time, a phase entered twice accumulating."""
    rng = np.random.default_rng(7)
    phases = ["data", "build", "train", "train_steady", "evaluate", "train_steady",
              "inference", "inference_steady"]
    state = {"t": 100.0, "busy": 5000.0, "tree": 0.0, "own": 40.0}
    meter = contention.PhaseMeter(1, clock=lambda: state["t"], busy=lambda: state["busy"],
                                  own=lambda: state["own"], tree=lambda: state["tree"], cores=4)
    planted: dict[str, list[float]] = {}
    for name in phases:
        meter.see({"type": "progress", "phase": name})
        for _ in range(int(rng.integers(2, 9))):
            dt = float(rng.lognormal(-2.0, 0.8))            # skewed tick lengths
            other = float(rng.uniform(0, 3.5)) * dt          # other processes
            if rng.random() < 0.1:
                other = 0.0                                  # quiet stretches
            tree = float(rng.uniform(0.2, 2.0)) * dt
            own = 0.02 * dt
            state["t"] += dt
            state["tree"] += tree
            state["own"] += own
            state["busy"] += other + tree + own
            w, o = planted.setdefault(name, [0.0, 0.0])
            planted[name] = [w + dt, o + other]
            meter.sample()
    meter.see({"type": "result"})
    got = meter.summary(cell_cores=2)
    assert set(got) == set(phases) | {"startup"}
    for name, (wall, other) in planted.items():
        assert got[name]["wall_s"] == pytest.approx(wall)
        assert got[name]["other_cpu_s"] == pytest.approx(other)
        assert got[name]["other_cores"] == pytest.approx(other / wall)
        assert got[name]["cores_available"] == 4 and got[name]["cell_cores"] == 2


def _record(phases: dict, cores=2, cell=2, warm=(0.0021, 0.0019, 0.0020, 0.0023),
            steady=(0.0020, 0.0024, 0.0019), repeat=1, status="ok", gpu=None) -> dict:
    return {"cell_id": "x", "repeat": repeat, "status": status, "device": "cpu",
            "contention": {n: {"wall_s": w, "other_cpu_s": o * w, "other_cores": o,
                               "cores_available": cores, "cell_cores": cell}
                           for n, (w, o) in phases.items()},
            "metrics": {"train": {"warmup_step_times_s": list(warm),
                                  "step_times_s": list(steady)}},
            "gpu": gpu}


def test_contended_sentences_give_the_figure_and_the_phase():
    over = contention.CONTENDED_CORES + 0.05
    rec = _record({"train_steady": (1.4, 1.7), "inference_steady": (1.1, over),
                   "build": (2.0, 1.9)})  # build is not judged: not a timed phase
    assert contention.warnings(rec) == [
        "contended: other processes used 1.7 of 2 cores during the steady state of training, "
        f"{over:.1f} during the timed inference (repeat 1)"]
    under = contention.CONTENDED_CORES - 0.05
    assert contention.warnings(_record({"train_steady": (1.4, under)})) == []
    assert contention.warnings(_record({"train_steady": (1.4, under),
                                        "inference_steady": (0.7, 1.31)})) == [
        "contended: other processes used 1.3 of 2 cores during the timed inference (repeat 1)"]
    # too short a phase to judge by clock ticks; a failed attempt is not judged at all
    assert contention.warnings(_record({"train_steady": (0.05, 1.9)})) == []
    assert contention.warnings(_record({"train_steady": (1.4, 1.9)}, status="failed")) == []


def test_spare_cores_are_not_contention():
    # pinned to 2 of 8: other use up to the 6 spare cores leaves the cell's own alone
    assert contention.warnings(_record({"train_steady": (2.0, 6.1)}, cores=8, cell=2)) == []
    got = contention.warnings(_record({"train_steady": (2.0, 6.3)}, cores=8, cell=2))
    assert got == ["contended: other processes used 6.3 of 8 cores during the steady state of "
                   "training (the cell was pinned to 2) (repeat 1)"]


def test_a_steady_state_far_slower_than_the_warmup_is_contended():
    warm = (0.00047, 0.00041, 0.00050, 0.00044, 0.00102)  # skewed, one outlier
    steady = (0.0235, 0.0011, 0.0198, 0.0240)
    w, s = np.median(warm), np.median(steady)
    got = contention.warnings(_record({}, warm=warm, steady=steady, repeat=0))
    assert got == [f"contended: steady-state steps took {s / w:.1f}x the warm-up steps' "
                   f"median ({s * 1e3:.3g} ms vs {w * 1e3:.3g} ms) (repeat 0)"]
    # below the factor, and with too few warm-up steps to judge: nothing
    near = tuple(v * (contention.SLOWDOWN_FACTOR * 0.9) * w / s for v in steady)
    assert contention.warnings(_record({}, warm=warm, steady=near)) == []
    assert contention.warnings(_record({}, warm=warm[:2], steady=steady)) == []


def test_other_compute_processes_on_the_gpu_are_contention():
    rec = {**_record({}), "device": "cuda:0", "gpu": {"other_processes": [4242, 977]}}
    assert contention.warnings(rec) == [
        "contended: 2 other compute process(es) on cuda:0 while the cell ran (repeat 1)"]
    unknown = {**rec, "gpu": {"other_processes": None}}  # NVML never saw the worker's pid
    assert contention.warnings(unknown) == []


def test_the_cells_warnings_carry_each_contended_repeat():
    a = {**_record({"train_steady": (1.2, 1.8)}, repeat=0), "cell_id": "dummy-mlp-cpu-bs1-fp32",
         "framework": "dummy", "model": "mlp", "batch_size": 1, "precision": "fp32"}
    b = {**_record({"train_steady": (1.2, 0.01)}, repeat=1), "cell_id": a["cell_id"],
         "framework": "dummy", "model": "mlp", "batch_size": 1, "precision": "fp32"}
    got = aggregate.warnings_by_cell([a, b])[a["cell_id"]]
    contended = [w for w in got if w.startswith("contended: ")]
    assert contended == ["contended: other processes used 1.8 of 2 cores during the steady "
                         "state of training (repeat 0)"]


# --- for real: a CPU hog beside a dummy-worker cell ------------------------------------------

def _hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _other_cores_now(window: float = 0.6) -> float:
    b0, o0, t0 = contention.busy_cpu_s(), contention.own_cpu_s(), time.monotonic()
    time.sleep(window)
    return ((contention.busy_cpu_s() - b0) - (contention.own_cpu_s() - o0)) / \
        (time.monotonic() - t0)


def _run(tmp_path, name: str, **options) -> dict:
    conf = write_config(tmp_path / f"{name}.yaml", batch_sizes=[1], verify=False,
                        ceiling=False, threads=psutil.cpu_count(),
                        framework_settings={"dummy": {"options": options}},
                        output_dir=str(tmp_path / name))
    rc, _, _ = run_inproc(["run", "-c", str(conf), "--no-report"])
    assert rc == 0
    return json.loads((tmp_path / name / "results.json").read_text())


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_a_cell_beside_cpu_hogs_is_marked_contended(tmp_path):
    hogs = _hogs(psutil.cpu_count())
    try:
        time.sleep(0.3)
        doc = _run(tmp_path, "hog", sleep_s=0.8)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    cell = doc["cells"][0]
    steady = cell["contention"]["train_steady"]
    assert steady["wall_s"] == pytest.approx(0.8, abs=0.3)
    # the hogs hold every core while the cell sleeps
    assert steady["other_cores"] >= 0.6 * psutil.cpu_count()
    warned = doc["cell_warnings"][cell["cell_id"]]
    assert any(w.startswith("contended: other processes used") and "steady state of training"
               in w for w in warned), warned


def _witness(me: int) -> float:
    """Other CPU seconds so far, counted another way than the meter: every process's own and
    reaped children's CPU time, summed process by process (this test's process excluded, with
    its children: the cell's worker is one), plus the CPU time no process owns (interrupts, a
    hypervisor's steal)."""
    total = 0.0
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    sys_t = psutil.cpu_times()
    return total + sum(getattr(sys_t, f, 0.0) for f in ("irq", "softirq", "steal"))


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_the_cells_own_work_never_reads_as_another_process(tmp_path):
    """Load-independent (CI's other pytest worker shares the machine): the meter's other CPU
    over the whole cell is at most what an independent witness counted for the other processes
    over a window that holds it, so the cell's own busy second (on every core it may use) is
    never counted as another's; and when the witness saw a quiet machine, nothing is marked."""
    me = psutil.Process().pid
    t0, w0 = time.monotonic(), _witness(me)
    doc = _run(tmp_path, "witness", busy_s=2.0)
    witness, wall = _witness(me) - w0, time.monotonic() - t0
    cell = doc["cells"][0]
    meter = sum(p["other_cpu_s"] for p in cell["contention"].values())
    steady = cell["contention"]["train_steady"]
    assert steady["wall_s"] >= 1.8
    # tolerance: clock ticks (10 ms per process reading) and processes reaped by one that exited
    assert meter <= witness + 0.05 * wall + 0.1, (meter, witness, wall)
    marked = [w for w in doc["cell_warnings"][cell["cell_id"]] if w.startswith("contended")]
    if witness / wall < contention.CONTENDED_CORES / 2:
        assert steady["other_cores"] < contention.CONTENDED_CORES and not marked
    print(f"meter {meter:.2f} s, witness {witness:.2f} s over {wall:.2f} s; marked {marked}")


def test_a_cell_on_a_quiet_machine_is_not_marked(tmp_path):
    if _other_cores_now() > contention.CONTENDED_CORES / 2:
        pytest.skip("the machine is busy with other work: the witness test above covers it")
    doc = _run(tmp_path, "quiet", busy_s=0.8)
    cell = doc["cells"][0]
    assert cell["contention"]["train_steady"]["other_cores"] < contention.CONTENDED_CORES
    assert not [w for w in doc["cell_warnings"][cell["cell_id"]] if w.startswith("contended")]


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_the_meter_sees_the_hog_and_not_the_cells_own_work(tmp_path):
    """The cell computes on one core, a hog on another: the hog is "other", the cell's own
    work is not (its tree is subtracted)."""
    if psutil.cpu_count() < 2:
        pytest.skip("needs two cores")
    base = _other_cores_now()
    hog = _hogs(1)[0]
    try:
        time.sleep(0.2)
        doc = _run(tmp_path, "half", busy_s=1.0)
    finally:
        hog.kill()
        hog.wait()
    steady = doc["cells"][0]["contention"]["train_steady"]
    # one hog's core, plus what else ran here (measured just before), never the cell's own
    assert 0.6 <= steady["other_cores"] <= 1.25 + base


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_retry_reruns_a_contended_cell_and_keeps_both_attempts(tmp_path):
    marker = tmp_path / "contended-once"
    conf = dummy_config(tmp_path, contend_once=str(marker))
    text = conf.read_text() + "verify: false\nceiling: false\nbatch_sizes: [1]\n" \
        "measurement: {on_contention: retry, quiet_wait_s: 0.5}\n"
    conf.write_text(text.replace("batch_sizes:\n- 1\n- 2\n", ""))
    rc, _, _ = run_inproc(["run", "-c", str(conf), "--no-report"])
    assert rc == 0
    out = tmp_path / "results"
    attempts, _ = read_jsonl(out / "results.jsonl")
    assert [a["cell_id"] for a in attempts] == ["dummy-mlp-cpu-bs1-fp32"] * 2
    first, second = attempts
    slow = contention.slowdown_warning(first["metrics"]["train"])
    assert slow and "retry" not in first
    assert second["retry"]["of_attempt_started_at"] == first["started_at"]
    assert second["retry"]["reason"] == [s + " (repeat 0)" for s in slow]
    assert isinstance(second["retry"]["found_quiet"], bool)
    assert second["retry"]["waited_s"] <= 0.5 + 1.5  # bounded: one window past the bound
    doc = json.loads((out / "results.json").read_text())
    assert [c["started_at"] for c in doc["cells"]] == [second["started_at"]]  # latest wins
    assert not contention.slowdown_warning(doc["cells"][0]["metrics"]["train"])


def test_warn_keeps_the_one_contended_attempt(tmp_path):
    conf = dummy_config(tmp_path, contend_once=str(tmp_path / "m"))
    conf.write_text(conf.read_text() + "verify: false\nceiling: false\n")
    assert run_inproc(["run", "-c", str(conf), "--no-report"])[0] == 0
    attempts, _ = read_jsonl(tmp_path / "results" / "results.jsonl")
    assert len(attempts) == 2 and not any("retry" in a for a in attempts)  # bs1 and bs2
    doc = json.loads((tmp_path / "results" / "results.json").read_text())
    marked = [c for c, ws in doc["cell_warnings"].items()
              if any(w.startswith("contended: steady-state steps took") for w in ws)]
    assert len(marked) == 1


def test_wait_for_quiet_is_bounded():
    hogs = _hogs(psutil.cpu_count())
    try:
        t0 = time.monotonic()
        quiet, waited, other = contention.wait_for_quiet(psutil.cpu_count(), bound_s=0.5,
                                                         window_s=0.25)
        assert time.monotonic() - t0 < 2.0
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert quiet is False and waited >= 0.5 and other >= 0.5 * psutil.cpu_count()


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_the_launcher_records_contention_for_every_worker(tmp_path):
    from workerutil import WORKERS
    job = launcher.Job(WORKERS / "dummy_worker.py", sys.executable,
                       {"protocol": 1, "mode": "benchmark", "batch_size": 2, "seed": 0,
                        "options": {"sleep_s": 0.3}}, "dummy", "cpu", 1, 30.0)
    rec = launcher.launch(job, tmp_path, launcher.Stop())
    assert rec["status"] == "ok"
    got = rec["contention"]
    assert {"build", "train", "train_steady", "evaluate", "inference",
            "inference_steady"} <= set(got)
    for name in ("train_steady", "inference_steady", "build", "evaluate"):
        assert got[name]["wall_s"] == pytest.approx(0.3, abs=0.15)
    assert got["train_steady"]["cell_cores"] == 1


def test_the_gpu_sampler_names_other_compute_processes(monkeypatch):
    from test_gpu import TWO, FakeNvml

    from mlbench.host import gpu, gpu_sampling
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def sampled(procs):
        monkeypatch.setattr(gpu, "pynvml", FakeNvml(TWO, procs=procs))
        gpu._init.cache_clear()
        s = gpu_sampling.ProcessSampler(4242, "cuda:0")
        s.sample()
        return s.summary()

    try:
        got = sampled([(977, 3 << 30), (4242, 5 << 30), (31, 1 << 20)])
        assert got["other_processes"] == [31, 977]
        rec = {"status": "ok", "repeat": 2, "device": "cuda:0", "gpu": got}
        assert contention.warnings(rec) == [
            "contended: 2 other compute process(es) on cuda:0 while the cell ran (repeat 2)"]
        assert sampled([(4242, 5 << 30)])["other_processes"] == []
        # the worker never listed under its pid (a container): others cannot be told apart
        assert sampled([(17, 5 << 30)])["other_processes"] is None
    finally:
        gpu._init.cache_clear()
