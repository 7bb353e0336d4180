"""Test-only worker with fault knobs: exercises the real subprocess path in milliseconds.

Options (request["options"]): `fault` one of none, raise, exit, segfault, hang, hang_grandchild,
stdout_noise, c_noise, bad_json, huge_line, silence, memory_error, oom (real allocation under the
cell's memory limit), import_error, nan_result (a result holding NaN/Infinity), inf_hello (a
hello holding -Infinity), binary (raw bytes on the stream); `phase` (build, train, evaluate,
inference) where the fault strikes; `foreign_protocol` (well-formed messages of protocol 99, a
worker of another mlbench version); `sleep_s` simulated work per phase; `fault_repeats` and
`fault_batch_sizes` (the repeats and batch sizes the fault applies to; default all); `fault_plan`, a list of
"<batch_size>:<fault>:<phase>" strings, gives each batch size its own fault and phase, so one
sweep covers many faults (it overrides `fault` and `phase` for the batch sizes it names).
`sigkill` is a further fault (the worker SIGKILLs itself, as the kernel's OOM killer would).
`echo: true` adds what the worker actually got to `settings`: its CPU set (after the harness's
pinning, as every real worker does), the thread variables of its environment, its argv.
`child_mb` (with `child_s`, default 1.5): in the train phase, a child process holds that many
MB for that long; the worker's own ru_maxrss never sees it, only the parent's sampling does.
Measurement knobs (benchmarks/reproducibility.py, tests/test_contention.py): the train and
inference phases each end in a steady phase ("train_steady", "inference_steady", as the
harness marks them) where the `sleep_s` is spent; `busy_s` spends that long computing there
instead (a CPU-bound cell); `step_s` (default 1 ms) the synthetic step time, `shift` a planted
relative slowdown of it, `noise` the spread (lognormal sigma) of each sample and of each process
(then the process's own randomness, not the seed: process-to-process variation as on a real
machine); `contend_once: <path>` makes the steady state ten times the warm-up (the in-cell
contention signal) in the first process only (it creates <path>), for the retry path.
`detached_child` (a file name): in the train phase, a process in a session of its own (it writes
its pid there and sleeps an hour: `time.sleep(3599)`, apart from the hang faults' 3600 that
other tests look for), waited on for `child_s`; the cell's end must kill it.
`service_s` (default 0.001): the fixed service time of one inference call when the request asks
for serving scenarios (workers/loadgen.py): a spin on the clock, so the server scenario is an
M/D/1 queue (tests/test_loadgen.py checks it against queueing theory).
In `mode: verify` (the equivalence gate) the dummy answers `skip`: it has no model to compare.
Its hello reports the CUDA_VISIBLE_DEVICES it was given (`visible_devices`).
Needs only the standard library, so it starts as fast as Python does.
"""
from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import sys
import time

import harness
import loadgen
import wire

PHASES = ("build", "train", "evaluate", "inference")


def fault(kind: str) -> None:
    if kind == "raise":
        raise RuntimeError("injected failure")
    if kind == "exit":
        os._exit(3)
    if kind == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(3600)
    if kind == "hang_grandchild":
        # A grandchild that would outlive us unless the whole process group is killed.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        time.sleep(3600)
    if kind == "stdout_noise":
        print("noise from python print")  # fd 1 points at stderr: harmless
    if kind == "c_noise":
        libc = ctypes.CDLL(None)
        libc.printf(b"noise from C printf\n")
        libc.fflush(None)
        os.write(1, b"noise written to fd 1\n")
    if kind == "bad_json":
        harness._OUT.write("{this is not json\n")
        harness._OUT.flush()
    if kind == "huge_line":
        harness._OUT.write("x" * (80 * 1024 * 1024) + "\n")
        harness._OUT.flush()
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "silence":
        os._exit(0)
    if kind == "memory_error":
        raise MemoryError("injected MemoryError")
    if kind in ("nan_result", "inf_hello", "binary"):
        # what a buggy worker could write: NaN/Infinity (not JSON) or raw bytes on the stream
        v = wire.PROTOCOL
        line = {"nan_result": f'{{"protocol": {v}, "type": "result", "metrics": {{"eval": '
                              '{"loss": NaN, "accuracy": Infinity}}}',
                "inf_hello": f'{{"protocol": {v}, "type": "hello", "import_s": -Infinity}}',
                "binary": f"\udcff\x00\x1b[2J{{\"protocol\": {v}, \"type\": "}[kind]
        harness._OUT.buffer.write(line.encode("utf-8", "surrogateescape") + b"\n")
        harness._OUT.flush()
        if kind == "nan_result":
            os._exit(0)
    if kind == "foreign_protocol":
        # a worker of another mlbench version: well-formed messages of protocol 99
        for msg in ({"type": "hello", "pid": os.getpid()}, {"type": "result", "metrics": {}}):
            harness._OUT.write(wire.encode({**msg, "protocol": 99}) + "\n")
        harness._OUT.flush()
        os._exit(0)
    if kind == "oom":
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))


def _echo() -> dict:
    env = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
           "TF_NUM_INTEROP_THREADS", "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "PYTHONHASHSEED")
    return {"cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "env": {k: os.environ.get(k) for k in env}, "argv": sys.argv[1:]}


class FixedService(harness.FrameworkInterface):
    """An inference call that takes exactly `service_s` on the clock (a spin, not a sleep)."""
    name = "dummy"

    def __init__(self, request: dict, service_s: float):
        super().__init__(request)
        self.service_s = service_s

    def predict(self, batch_index: int) -> int:
        end = self.clock() + self.service_s
        while self.clock() < end:
            pass
        return batch_index

    def sync(self, value):
        return value


def _serving(request: dict, service_s: float) -> dict:
    """The serving scenarios through the real load generator, on a fixed service time."""
    backend = FixedService(request, service_s)
    offline = backend.benchmark_inference(4, 2, 5)
    return {"serving": loadgen.run_scenarios(backend, request, 4, offline)} \
        if request.get("serving") else {}


def _train_metrics(rng, bs: int, step: float, noise: float = 0.0, slow: float = 1.0) -> dict:
    """Synthetic training figures in the harness' shape: one first step, three warm-up steps
    and twenty steady steps in ten blocks of two (`slow`: the steady steps that many times
    slower than the warm-up)."""
    def jitter() -> float:
        return rng.lognormvariate(0.0, noise) if noise else 1 + 0.01 * rng.random()

    blocks = [{"steps": 2, "seconds": 2 * step * slow * jitter()} for _ in range(10)]
    warm = [step * f for f in (1.5, 1.1, 1.05)]
    return {"steps_per_epoch": 24, "samples_per_step": bs, "first_step_s": 0.01,
            "warmup_step_times_s": warm, "warmup_s": sum(warm), "steady_blocks": blocks,
            "step_times_s": [b["seconds"] / b["steps"] for b in blocks],
            "steady_s": sum(b["seconds"] for b in blocks), "steady_steps": 20,
            "steps_per_block": 2, "epoch_times_s": [0.03], "epoch_loss_means": [1.0]}


def _steady(sleep_s: float, busy_s: float) -> None:
    """A steady phase: asleep, or computing (one core) for `busy_s`."""
    if sleep_s:
        time.sleep(sleep_s)
    end = time.perf_counter() + busy_s
    x = 0
    while time.perf_counter() < end:
        x = (x * 31 + 7) % 1000003


def _contend_once(path: str | None) -> bool:
    """True in the first process that gets here (it creates `path`), False after."""
    if not path:
        return False
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def main() -> None:
    harness.claim_stdout()
    harness.die_with_parent()
    request = harness.read_request()
    opts = request.get("options") or {}
    kind = opts.get("fault", "none")
    phase = opts.get("phase", "train")
    sleep_s = float(opts.get("sleep_s", 0.0))
    repeats = opts.get("fault_repeats")
    if repeats is not None and request.get("repeat", 0) not in repeats:
        kind = "none"
    batches = opts.get("fault_batch_sizes")
    if batches is not None and request.get("batch_size") not in batches:
        kind = "none"
    for entry in opts.get("fault_plan") or ():
        bs, plan_kind, plan_phase = str(entry).split(":")
        if int(bs) == request.get("batch_size"):
            kind, phase = plan_kind, plan_phase
    harness.apply_memory_limit(request)
    affinity = harness.pin_cpu_threads(request)
    if request.get("mode") == "verify":
        harness.emit("hello", pid=os.getpid(), python=sys.executable, framework="dummy")
        harness.emit("skip", reason="the dummy worker has no model to verify")
        return
    if kind == "import_error":
        harness.emit("hello", pid=os.getpid(), python=sys.executable, framework="dummy")
        harness.emit("skip", reason="dummy framework is not installed (injected ImportError)")
        return
    harness.emit("hello", pid=os.getpid(), python=sys.executable, framework="dummy",
                 framework_version="0", device_name="dummy", import_s=0.0,
                 cpu_affinity=affinity, visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    busy_s = float(opts.get("busy_s", 0.0))
    try:
        for ph in PHASES:
            harness.progress(ph)
            if ph in ("train", "inference"):  # the steady part, marked as the harness does
                harness.progress(f"{ph}_steady")
                _steady(sleep_s, busy_s)
            elif sleep_s:
                time.sleep(sleep_s)
            if ph == "train" and opts.get("child_mb"):
                subprocess.run([sys.executable, "-c", "import sys, time; b = b'x' * (int("
                                "sys.argv[1]) << 20); time.sleep(float(sys.argv[2]))",
                                str(int(opts["child_mb"])), str(opts.get("child_s", 1.5))],
                               check=True)
            if ph == "train" and opts.get("detached_child"):
                # what a builder's Popen(..., start_new_session=True) leaves: a process outside
                # the worker's group; it writes its pid to the named file, then sleeps
                subprocess.Popen([sys.executable, "-c", "import os, sys, time; open(sys.argv[1], "
                                  "'w').write(str(os.getpid())); time.sleep(3599)",
                                  str(opts["detached_child"])], start_new_session=True)
                time.sleep(float(opts.get("child_s", 1.5)))  # seen by the parent's sampling
            if ph == phase and kind != "none":
                fault(kind)
        noise = float(opts.get("noise", 0.0))
        rng = random.Random() if noise else \
            random.Random(request.get("seed", 0) * 1000 + request.get("repeat", 0))
        bs = int(request["batch_size"])
        step = float(opts.get("step_s", 0.001)) * (1 + float(opts.get("shift", 0.0)))
        step *= rng.lognormvariate(0.0, noise) if noise else 1 + 0.05 * rng.random()
        slow = 10.0 if _contend_once(opts.get("contend_once")) else 1.0
        harness.emit("result", metrics={
            "params": {"trainable": 1000, "non_trainable": 0},
            "flops_per_sample": {"forward": 2000, "train_step": 6000},
            "train": _train_metrics(rng, bs, step, noise, slow),
            "eval": {"loss": 1.0, "accuracy": 0.5, "time_s": 0.001, "samples": 64},
            "inference": {"warmup_iterations": 1, "warmup_s": 0.001, "batch_size": bs,
                          "latencies_s": [step / 2 * (rng.lognormvariate(0.0, noise) if noise
                                                      else 1 + 0.01 * rng.random())
                                          for _ in range(10)],
                          "loops": 4, "min_sample_s": harness.MIN_SAMPLE_S},
            "memory": {"peak_device_bytes": None,
                       "host_baseline_rss_bytes": harness.current_rss_bytes(),
                       "host_peak_rss_bytes": harness.peak_rss_bytes()},
            "settings": {"threads": request.get("threads"),
                         **(_echo() if opts.get("echo") else {})},
            **_serving(request, float(opts.get("service_s", 0.001))),
        })
    except MemoryError as exc:
        harness.emit("error", kind="oom", error_type="MemoryError", message=str(exc))
    except Exception as exc:
        harness.emit("error", kind="error", error_type=type(exc).__name__, message=str(exc))


if __name__ == "__main__":
    main()
