"""Each real backend's timed region contains the device work (issue 26, pattern 6).

The real worker's backend (workers/<framework>_worker.py) runs a real cell through
driver.run_cell, with every train step and every prediction extended by a deliberately slow
operation dispatched the framework's asynchronous way (a chain of matmuls whose result is folded
into the loss / the output, so waiting for the loss waits for it). Its cost W is measured alone
(the fastest of ten synced runs, before and after the cell: noise only adds). Every steady
block's time per step, warm-up step and inference sample must be at least W/2 (the load of a
shared machine moves W by more than 20% between measurements; a step whose sync does not wait
times the dispatch only, far below W/2).
With `sync`/`sync_losses` made no-ops (MLBENCH_SYNC_MUTANT=1, a check run by hand) the steady
blocks time the dispatch only and the test fails: proof that it can. JAX dispatches
asynchronously on the CPU; TensorFlow is run in its asynchronous eager mode
(tf.config.experimental.set_synchronous_execution(False)) so that its sync matters on the CPU
too. PyTorch on the CPU executes each op before returning: there only the inclusion is checked
(a no-op sync cannot be seen on the CPU; on CUDA it can).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workerutil import BASE_REQUEST, WORKERS, worker_env

pytestmark = pytest.mark.framework  # every test here starts a real ML framework

# MLBENCH_SYNC_MUTANT=1: the by-hand mutant check (sync and sync_losses made no-ops): the test
# must then fail for jax and tensorflow (not for pytorch on the CPU, see above)
MUTANT = os.environ.get("MLBENCH_SYNC_MUTANT") == "1"

SCRIPT = r'''
import importlib, json, sys, time
fw, workers, request, noop = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
sys.path.insert(0, workers)
import harness, driver
harness.pin_cpu_threads(request)                 # one CPU, as harness.main pins a worker
harness.progress = lambda *a, **k: None          # no protocol stream here
driver.progress = lambda *a, **k: None
mod = importlib.import_module(f"{fw}_worker")
mod.import_framework(request) if fw == "jax" else mod.import_framework()
N, R = 192, 120                                   # W: R chained N x N matmuls, ~20 ms
Backend = {"jax": "JaxBackend", "tensorflow": "TensorFlowBackend", "pytorch": "TorchBackend"}[fw]
Backend = getattr(mod, Backend)
ws, H = [], {}


def setup():
    """The slow operation, made after the backend's own runtime set-up (TF: threads)."""
    if fw == "jax":
        import jax, jax.numpy as jnp
        m = jnp.eye(N) * 0.5 + 0.001
        f = jax.jit(lambda m: jax.lax.fori_loop(0, R, lambda i, a: jnp.tanh(a @ m), m).sum())
        H["heavy"], H["wait"] = (lambda: f(m)), (lambda v: v.block_until_ready())
    elif fw == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.set_synchronous_execution(False)
        m = tf.eye(N) * 0.5 + 0.001

        @tf.function
        def f(m):
            a = m
            for _ in range(R):
                a = tf.tanh(a @ m)
            return tf.reduce_sum(a)
        H["heavy"], H["wait"] = (lambda: f(m)), (lambda v: v.numpy())
    else:
        import torch
        m = torch.eye(N) * 0.5 + 0.001

        def f():
            a = m
            for _ in range(R):
                a = torch.tanh(a @ m)
            return a.sum()
        H["heavy"], H["wait"] = f, float
    for _ in range(3):
        H["wait"](H["heavy"]())                   # compile, warm caches
    measure_w()


def measure_w():
    for _ in range(5):
        t0 = time.perf_counter()
        H["wait"](H["heavy"]())
        ws.append(time.perf_counter() - t0)


def heavy():
    return H["heavy"]()


class Slow(Backend):
    def __init__(self, request):
        super().__init__(request)
        setup()

    def train_step(self, i):
        return super().train_step(i) + 0.0 * heavy()

    def predict(self, i):
        out = super().predict(i)
        if isinstance(out, tuple):                # tensorflow: (logits, scalar probe)
            return out[0], out[1] + 0.0 * heavy()
        return out + 0.0 * heavy()

    if noop:
        def sync(self, value):
            return value

        def sync_losses(self, losses):
            return list(losses)


metrics = driver.run_cell(request, Slow, 0.0)
measure_w()                                        # W: the fastest of 10 runs, before and after
print(json.dumps({"w_min": min(ws), "train": metrics["train"],
                  "latencies": metrics["inference"]["latencies_s"]}, default=float))
'''


def _run(tmp_path, framework, noop=MUTANT):
    request = {**BASE_REQUEST, "framework": framework, "model": "mlp",
               "cell_id": f"{framework}-sync", "train_samples": 384, "eval_samples": 64,
               "batch_size": 16, "warmup_iterations": 2, "timed_iterations": 4}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, framework, str(WORKERS),
                           json.dumps(request), "1" if noop else "0"], capture_output=True,
                          text=True, timeout=180, env=worker_env(1), cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_the_timed_region_contains_the_device_work(tmp_path, framework):
    r = _run(tmp_path, framework)
    w, t = r["w_min"], r["train"]
    assert len(t["steady_blocks"]) >= 2
    # every steady block's time per step, every warm-up step, every inference sample: >= W
    assert min(t["step_times_s"]) >= 0.5 * w, (w, t["step_times_s"])
    assert min(t["warmup_step_times_s"]) >= 0.5 * w
    assert t["first_step_s"] >= 0.5 * w
    assert min(r["latencies"]) >= 0.5 * w, (w, r["latencies"])
