"""Progress on every long phase: while a cell, a gate worker or a ceiling worker runs and the
output is not a terminal (a file, a CI log), a plain line every few seconds says what runs and
for how long; each gate and ceiling worker is said when it starts and when it ends."""
from __future__ import annotations

import io
import re
import threading
import time
import types
from pathlib import Path

import pytest
from rich.console import Console

from mlbench.run import heartbeat, preflight
from mlbench.run.progress import RichHooks


def _collect():
    lines, lock = [], threading.Lock()

    def say(text):
        with lock:
            lines.append(text)
    return lines, say


def test_heartbeat_says_what_runs_with_its_elapsed_time_and_stops():
    lines, say = _collect()
    beat = heartbeat.Heartbeat(say, interval=0.05).start()
    beat.set("cell a: train epoch 1 step 40/64")
    time.sleep(0.4)
    beat.set(None)      # nothing running: silence
    time.sleep(0.15)
    n = len(lines)
    time.sleep(0.2)
    beat.stop()
    assert n >= 3 and len(lines) == n, lines
    assert all(re.fullmatch(r"cell a: train epoch 1 step 40/64, \d+ s", x) for x in lines)


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_a_cell_in_a_log_gets_a_line_every_few_seconds_with_its_phase():
    buf = io.StringIO()
    hooks = RichHooks(Console(file=buf, force_terminal=False, width=200), heartbeat_s=0.05)
    assert not hooks.console.is_terminal
    cell = types.SimpleNamespace(cell_id="pytorch-cnn-cpu-bs64-fp32", repeat=0)
    hooks.start(total=2, skipped_done=0)
    hooks.cell_start(cell, 1, 2)
    time.sleep(0.15)
    hooks.message(cell, {"type": "progress", "epoch": 0, "step": 40, "steps": 64})
    time.sleep(1.2)
    hooks.cell_end(cell, {"status": "ok", "wall_s": 1.4})
    hooks.stop()
    out = buf.getvalue()
    assert "cell pytorch-cnn-cpu-bs64-fp32 (1 of 2): starting, 0 s" in out
    # the elapsed time counts from the cell's start, not from the last message
    assert re.search(r"cell pytorch-cnn-cpu-bs64-fp32 \(1 of 2\): train epoch 1 step 40/64, "
                     r"1 s", out), out
    tail = out.split("pytorch-cnn-cpu-bs64-fp32 (1.4 s)")[-1]
    assert "train epoch" not in tail  # silent once the cell ended


def test_every_gate_and_ceiling_worker_is_said_with_its_time():
    lines, say = _collect()

    def slow_launch(job, job_dir, stop):
        time.sleep(0.3)
        return {"status": "ok"}
    job = types.SimpleNamespace(request={"models": [{"key": "mlp"}, {"key": "cnn.tiny"}]})
    run = heartbeat.watched(slow_launch, say, preflight._gate_step, interval=0.05)
    rec = run(job, Path("verify/tensorflow-cpu-fp32"), None)
    assert rec == {"status": "ok"}
    what = "equivalence gate: tensorflow-cpu-fp32 (mlp, cnn.tiny)"
    assert lines[0] == f"{what} ..." and re.fullmatch(rf"{re.escape(what)}: ok in 0\.\d s",
                                                       lines[-1]), lines
    assert len([x for x in lines[1:-1] if re.fullmatch(rf"{re.escape(what)}, \d+ s", x)]) >= 2
    job = types.SimpleNamespace(request={})
    assert preflight._ceiling_step(job, Path("ceilings/jax-cuda0-r2")) == \
        "device ceilings: round 3, jax-cuda0"


def test_the_steady_phase_markers_read_as_words():
    buf = io.StringIO()
    hooks = RichHooks(Console(file=buf, force_terminal=False, width=200), heartbeat_s=0.05)
    cell = types.SimpleNamespace(cell_id="jax-mlp-cpu-bs64-fp32", repeat=0)
    hooks.start(total=1, skipped_done=0)
    hooks.cell_start(cell, 1, 1)
    seen = []
    for msg in ({"type": "progress", "phase": "inference_steady"},
                {"type": "progress", "phase": "train_steady", "extra": True}):
        hooks.message(cell, msg)
        time.sleep(0.3)
        seen.append(buf.getvalue())
    hooks.cell_end(cell, {"status": "ok", "wall_s": 0.6})
    hooks.stop()
    assert "(1 of 1): inference, timed samples, " in seen[0], seen[0]
    assert "(1 of 1): train: extra steady-state blocks (measurement minimums), " in seen[1]
    assert "_steady" not in buf.getvalue()
