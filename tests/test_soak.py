"""Nothing is lost under faults: every worker fault at every phase in one sweep, the orchestrator
SIGKILLed at random moments twenty times in a row, and a disk that fills up mid-run."""
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest

from cliutil import by_cell, run_inproc, run_subprocess, write_config
from mlbench.config import guards
from mlbench.results import store

pytestmark = pytest.mark.slow  # minutes: soak loops, a real Ray cluster or a real browser

PHASES = ("build", "train", "evaluate", "inference")
# fault -> (status, words in the reason); each runs once in every phase
PER_PHASE = {
    "raise": ("failed", "RuntimeError: injected failure"),
    "exit": ("crashed", "exit code 3"),
    "segfault": ("crashed", "SIGSEGV"),
    "memory_error": ("oom", "MemoryError"),
    "oom": ("oom", None),  # a real allocation under memory_limit_mb
    "hang": ("timeout", "{limit} s limit"),
    "bad_json": ("ok", None),
}
ONCE = {  # (fault, phase) -> (status, reason)
    ("hang_grandchild", "build"): ("timeout", "process group killed"),
    ("huge_line", "inference"): ("ok", None),
    ("import_error", "build"): ("skipped", "not installed"),
    ("silence", "evaluate"): ("crashed", "without a final protocol message"),
}


def _cell(bs):
    return f"dummy-mlp-cpu-bs{bs}-fp32"


def _cell_timeout(tmp_path, capsys) -> float:
    """A wall limit that kills the hanging cells soon but that every other cell meets on this
    machine now: a busy machine starts a worker slower, and a cell that should end `ok` or
    `failed` must not be recorded `timeout` for that (1.5 s when quiet; 4x a measured cell)."""
    (tmp_path / "cal").mkdir()
    conf = write_config(tmp_path / "cal" / "c.yaml", batch_sizes=[1])
    t0 = time.monotonic()
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    return max(1.5, round(4 * (time.monotonic() - t0), 1))


def test_every_fault_at_every_phase_in_one_sweep(tmp_path, capsys):
    limit = _cell_timeout(tmp_path, capsys)
    plan, expect = [], {}
    cases = [((f, ph), want) for f, want in PER_PHASE.items() for ph in PHASES] + \
        list(ONCE.items())
    for bs, ((fault, phase), want) in enumerate(cases, 1):
        plan.append(f"{bs}:{fault}:{phase}")
        expect[_cell(bs)] = (fault, phase, *want)
    clean = [len(cases) + 1, len(cases) + 2]  # after all of that, the sweep still works
    conf = write_config(tmp_path / "c.yaml", batch_sizes=list(range(1, len(cases) + 3)),
                        timeout_s=limit, memory_limit_mb=300,
                        framework_settings={"dummy": {"options": {"fault_plan": plan}}})
    before = {p.pid for p in psutil.process_iter()}
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    assert rc == 1, err
    cells = by_cell(tmp_path / "results")
    wrong = {}
    for cid, (fault, phase, status, reason) in expect.items():
        got = cells[cid]
        reason = reason and reason.format(limit=f"{limit:g}")
        if got["status"] != status or (reason and reason not in (got["reason"] or "")):
            wrong[f"{fault}@{phase}"] = (got["status"], got["reason"])
        if status not in ("ok", "skipped"):
            assert got["reason"], got  # a useful reason, always
    assert not wrong, wrong
    # the phase a crash happened in is visible in the stderr tail or the progress messages
    for bs in clean:
        assert cells[_cell(bs)]["status"] == "ok"
    noisy = next(c for c, e in expect.items() if e[0] == "bad_json")
    assert "not json" in cells[noisy]["protocol_noise"][0]
    time.sleep(0.2)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
                 and "time.sleep(3600)" in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------

def _attempt_ids(jsonl):
    if not jsonl.exists():
        return set(), []
    attempts, warnings = store.read_jsonl(jsonl)
    return {(a["cell_id"], a["started_at"]) for a in attempts}, warnings


def test_sigkill_at_random_moments_twenty_times_then_resume(tmp_path):
    rng = random.Random(20240611)
    n = 20
    conf = write_config(tmp_path / "c.yaml", batch_sizes=list(range(1, n + 1)),
                        framework_settings={"dummy": {"options": {"sleep_s": 0.05}}})
    out = tmp_path / "results"
    jsonl = out / "results.jsonl"
    args = [sys.executable, "-m", "mlbench.cli", "run", "--config", str(conf), "--resume",
            "--no-report"]
    torn_at = set(rng.sample(range(2, 18), 2))
    seen: set = set()
    progress = []
    torn = 0  # injected so far (an injection waits for a results.jsonl to tear)
    for i in range(20):
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if i == 0:  # the first kill after the first stored attempt (however slowly a busy
            t0 = time.monotonic()  # machine starts mlbench): the torn lines have a file
            while not jsonl.exists() and time.monotonic() - t0 < 60:
                time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        now, warnings = _attempt_ids(jsonl)
        assert seen <= now, f"kill {i}: measured attempts lost: {seen - now}"
        assert all("skipped" in w for w in warnings), warnings
        seen = now
        progress.append(len(now))
        if (out / "results.json").exists():  # rewritten atomically: whole or the old one
            json.loads((out / "results.json").read_text())
        if torn < sum(k <= i for k in torn_at) and jsonl.exists():  # a writer that died
            with open(jsonl, "ab") as fh:               # mid-line: the next run must skip it
                fh.write(b'{"run_id": "x", "cell_id": "' + _cell(n).encode() +
                         b'", "repeat": 0, "fingerprint": "0')
            torn += 1
    res = run_subprocess(["run", "--config", str(conf), "--resume", "--no-report"], tmp_path)
    assert res.returncode == 0, res.stderr
    print("attempts stored after each kill:", progress)
    final, warnings = _attempt_ids(jsonl)
    assert seen <= final
    cells = json.loads((out / "results.json").read_text())["cells"]
    ids = [c["cell_id"] for c in cells]
    assert sorted(ids) == sorted(_cell(b) for b in range(1, n + 1))  # each cell exactly once
    assert all(c["status"] == "ok" for c in cells)
    attempts, _ = store.read_jsonl(jsonl)
    ok = Counter(a["cell_id"] for a in attempts if a["status"] == "ok")
    assert set(ok.values()) == {1}, ok  # none measured twice
    # the injected torn lines (two may have fused into one), skipped with a warning
    assert torn == len(torn_at) and 1 <= len(warnings) <= torn


# ---------------------------------------------------------------------------------------------

class _FillingDisk:
    """The store's `os`, with a disk that fills up after `room` appends: the next write stores
    half its bytes and fails with ENOSPC, and so does every fsync after it."""

    def __init__(self, room):
        self.room, self.full = room, False

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if self.full or self.room == 0:
            self.full = True
            os.write(fd, bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        return os.write(fd, data)

    def fsync(self, fd):
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.fsync(fd)


def test_disk_full_is_a_clear_error_and_what_was_stored_stays_intact(tmp_path, capsys,
                                                                      monkeypatch):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2])
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    results_before = (out / "results.json").read_bytes()
    lines_before = (out / "results.jsonl").read_bytes()
    disk = _FillingDisk(room=2)  # one disk: the store's appends and every whole-file write
    monkeypatch.setattr(store, "os", disk)
    monkeypatch.setattr(guards, "os", disk)
    rc, out_text, err = run_inproc(["run", "--config", str(conf), "--resume", "--batch-sizes",
                                    "1", "2", "3", "4", "5", "--no-report"], capsys)
    monkeypatch.undo()
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) >= 1
    assert lines[-1].startswith("error: disk full") and _cell(5) in lines[-1], err
    assert str(out / "results.jsonl") in lines[-1] and "Traceback" not in err + out_text
    data = (out / "results.jsonl").read_bytes()
    assert data.startswith(lines_before) and data.endswith(b"\n")
    attempts, warnings = store.read_jsonl(out / "results.jsonl")
    assert not warnings  # the half-written line was taken back
    assert [a["cell_id"] for a in attempts] == [_cell(b) for b in (1, 2, 3, 4)]
    assert (out / "results.json").read_bytes() == results_before  # old file, not a torn one
    json.loads((out / "run.json").read_text())
    assert not list(out.glob(".*.tmp*"))
    # once there is room again, --resume finishes the run
    rc, _, _ = run_inproc(["run", "--config", str(conf), "--resume", "--batch-sizes", "1", "2",
                           "3", "4", "5", "--no-report"], capsys)
    assert rc == 0 and len(by_cell(out)) == 5


def _tmpfs(path, size):
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_ends_the_run_cleanly(tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "64k"):
        pytest.skip("needs root and tmpfs to make a small disk")
    try:
        conf = write_config(tmp_path / "c.yaml", batch_sizes=list(range(1, 41)),
                            output_dir=str(disk / "results"))
        res = run_subprocess(["run", "--config", str(conf), "--no-report"], tmp_path,
                             timeout=120)
        lines = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
        assert res.returncode == 2, res.stderr
        assert len(lines) == 1 and "disk full" in lines[0] and str(disk) in lines[0], lines
        assert "Traceback" not in res.stderr
        attempts, warnings = store.read_jsonl(disk / "results" / "results.jsonl")
        assert attempts and not warnings
        assert all(a["status"] == "ok" for a in attempts)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
