"""Worker-side runtime and interface, shared by every worker (frameworks, dummy, ceiling).

Owns: claiming stdout for protocol messages, reading the request, writing messages
(workers/wire.py), the process setup (die with the parent, memory cap, CPU pinning: the one
place a CPU cell is pinned), `FrameworkInterface` (the primitives a framework implements) with
the timing primitives every framework is timed by (training blocks, inference samples, on the
interface's `clock`), and `main`, the entry point. The phases are driver.py's; the equivalence
gate's driver is gate.py.

Must import only the standard library (numpy is imported lazily by callers): a worker may run in
another virtualenv than mlbench, and must never import mlbench, pydantic, polars or plotly.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from typing import Any, Callable

import wire

PROTOCOL = wire.PROTOCOL
_OUT = None  # the protocol stream: a private duplicate of the original fd 1


class SkipCell(Exception):
    """Raised by a worker when the cell cannot run here (device absent, precision unsupported)."""


class DeviceUnusable(SkipCell):
    """The framework cannot use the requested GPU (plugin missing, driver too old, no CUDA
    build). Sent as a skip of kind "device": the parent makes it a failure when NVML sees that
    GPU, and leaves it skipped only for a device NVML does not see."""
    kind = "device"


class Diverged(Exception):
    """The training loss became NaN or infinite: reported as a failure, never as a fast result."""


def claim_stdout() -> None:
    """Keep a private copy of fd 1 for messages and point fd 1 at stderr.

    After this, a print from Python or from C/C++ inside a framework lands in the stderr log and
    cannot corrupt the protocol stream.
    """
    global _OUT
    if _OUT is not None:
        return
    fd = os.dup(1)
    os.dup2(2, 1)
    _OUT = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if mlbench itself dies (even by SIGKILL), so an orphaned
    cell never runs on and overlaps the next `--resume` on the same device."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass  # not Linux: the parent's process-group kill still covers normal exits


def cpu_name() -> str:
    """The CPU model, for a CPU cell's device name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def emit(msg_type: str, **fields: Any) -> None:
    """Write one protocol message (workers/wire.py) on the claimed stdout."""
    line = wire.encode(wire.message(msg_type, **fields))
    out = _OUT if _OUT is not None else sys.__stdout__
    out.write(line + "\n")
    out.flush()


def progress(phase: str, **fields: Any) -> None:
    emit("progress", phase=phase, **fields)


def read_request(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--request":
        raise SystemExit("usage: <worker>.py --request <request.json>")
    with open(argv[1], encoding="utf-8") as fh:
        return json.load(fh)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process's own memory since it started this program.

    VmHWM of /proc/self/status (Linux), not ru_maxrss: the kernel carries ru_maxrss across
    execve, so after a fork+exec it starts at the forking parent's RSS (mlbench's own, or a test
    runner's) and would report that as the worker's peak. ru_maxrss (KiB) only where /proc is
    missing.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def current_rss_bytes() -> int | None:
    """Resident set size of this process now (/proc/self/statm, Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def apply_memory_limit(request: dict) -> None:
    """Run the worker under an address-space cap (per-cell `memory_limit_mb`), so an OOM is real.

    CPU cells only: CUDA reserves huge virtual ranges at start-up, so an address-space cap would
    break any GPU cell; there the device allocator's own OOM is the real one.
    """
    limit_mb = request.get("memory_limit_mb")
    if limit_mb and request.get("device", "cpu") == "cpu":
        limit = int(limit_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def pin_cpu_threads(request: dict) -> list[int] | None:
    """Pin a CPU cell to its first `threads` allowed CPUs, before any framework is imported.

    Thread-count knobs are hints that frameworks honour unevenly (XLA:CPU ignores them and sizes
    its pools from the affinity mask), so every framework gets the same OS-enforced CPU set.
    """
    threads = int(request.get("threads") or 0)
    if request.get("device", "cpu") != "cpu" or threads <= 0 or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if threads < len(allowed):
        os.sched_setaffinity(0, allowed[:threads])
    return sorted(os.sched_getaffinity(0))


def is_oom(exc: BaseException) -> bool:
    """Out of memory in any of its spellings: host MemoryError, CUDA/XLA/TF allocator messages,
    and cuBLAS/cuDNN allocation or workspace failures."""
    if isinstance(exc, MemoryError):
        return True
    return wire.is_oom_text(f"{type(exc).__name__}: {exc}")


class FrameworkInterface:
    """The seed's interface. A worker subclasses this and fills in the primitives.

    Timing lives here, not in the workers: `train_epoch` and `benchmark_inference` call the
    primitives and wait for the device through `sync`, so no framework is timed on asynchronous
    dispatch, and all are timed the same way.
    """

    name = "base"
    # The clock every timing of this interface reads (tests inject a fake one).
    clock: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(self, request: dict):
        self.request = request

    # --- primitives every framework implements -------------------------------------------
    def framework_info(self) -> dict:
        """{'framework_version': str, 'device_name': str, ...} — cheap, for the hello message."""
        raise NotImplementedError

    def check_supported(self) -> None:
        """Raise SkipCell if the device or precision cannot run here."""

    def build_model(self, spec: dict) -> None:
        raise NotImplementedError

    def count_parameters(self) -> dict:
        """{'trainable': int, 'non_trainable': int} of the built model."""
        raise NotImplementedError

    def count_parameters_abstract(self, spec: dict) -> dict:
        """Like count_parameters, without allocating the weights (meta device, eval_shape...).

        Used by `mode: count`, so that a preset such as gpt2-small is counted in seconds.
        """
        raise NotImplementedError

    def load_data(self, data: dict) -> None:
        """Move the numpy dataset (x_train, y_train, x_eval, y_eval) to the device once."""
        raise NotImplementedError

    def train_step(self, batch_index: int) -> Any:
        """One optimizer step on training batch `batch_index`; returns the loss (maybe async)."""
        raise NotImplementedError

    def predict(self, batch_index: int) -> Any:
        """One forward pass in inference mode on eval batch `batch_index`; returns the output."""
        raise NotImplementedError

    def sync(self, value: Any) -> Any:
        """Wait until `value` is computed on the device and return it as a host object."""
        raise NotImplementedError

    def evaluate(self) -> dict:
        """{'loss': float, 'accuracy': float} over the whole eval split."""
        raise NotImplementedError

    # --- the equivalence gate (mode: verify; see run_verify) ------------------------------
    def load_canonical(self, params: dict) -> None:
        """Overwrite the built model's weights (and BN running statistics) with `params`, the
        numpy arrays of workers/weights.py in the canonical layout, converted to this
        framework's layout. Must raise weights.WeightMismatch on any name or shape left over."""
        raise NotImplementedError

    def to_numpy(self, output: Any):
        """The output of `predict` as a float32 numpy array on the host (waits for it)."""
        raise NotImplementedError

    def received_batch(self, split: str, index: int) -> tuple:
        """(x, y) of batch `index` of `split` ('train'/'eval') read back from this framework's
        own copy of the data, as numpy in the canonical layout (NHWC images): proof of what the
        model was fed."""
        raise NotImplementedError

    def get_memory_usage(self) -> dict:
        """{'peak_device_bytes': int|None, ...} from the framework's own allocator statistics."""
        return {"peak_device_bytes": None}

    def settings(self) -> dict:
        """Numeric settings that change speed (tf32, matmul precision, compile mode, threads)."""
        return {}

    # --- device memory per phase (issue 22): like for like across frameworks ---------------
    # What the framework's device-memory figure is (torch: tensor bytes; TF and JAX: allocator
    # bytes in use), named in the record so that a reader compares like with like.
    MEMORY_FIGURE: str | None = None

    def reset_peak_memory(self) -> bool:
        """Reset the allocator's peak (a framework that can: torch, TF); True when done."""
        return False

    def peak_memory(self) -> int | None:
        """The allocator's peak since the last reset (or since the start): bytes or None."""
        return None

    def _memory_mark(self, phase: str) -> None:
        """Called at phase boundaries: after the warm-up steps (cuDNN autotuning, XLA
        compilation and its scratch are over: the peak so far is kept as the warm-up's and the
        peak is reset), after each epoch (the steady training peak), before and after the
        inference benchmark."""
        peaks = self.__dict__.setdefault("_phase_peaks", {})
        if phase == "warmup" and "warmup" not in peaks:
            peaks["warmup"] = self.peak_memory()
            peaks["reset"] = self.reset_peak_memory()
        elif phase == "train":
            v = self.peak_memory()
            if v is not None:
                peaks["train"] = max(v, peaks.get("train") or 0)
        elif phase == "inference_start":
            peaks["reset_inference"] = self.reset_peak_memory()
        elif phase == "inference" and peaks.get("reset_inference"):
            peaks["inference"] = self.peak_memory()

    def phase_memory(self) -> dict:
        """The per-phase device peaks for get_memory_usage: warm-up, steady training, inference
        (None where the framework could not reset its peak: then only the whole-process peak
        is known), and which figure the framework gave."""
        peaks = self.__dict__.get("_phase_peaks", {})
        reset = bool(peaks.get("reset"))
        return {"peak_device_warmup_bytes": peaks.get("warmup"),
                "peak_device_train_bytes": peaks.get("train") if reset else None,
                "peak_device_infer_bytes": peaks.get("inference"),
                "peak_device_reset_after_warmup": reset,
                "peak_device_figure": self.MEMORY_FIGURE}

    def sync_losses(self, losses: list) -> list[float]:
        """Wait for a block's losses (device/async values of `train_step`) and return them as
        floats. Frameworks override this to fetch the whole block in one host copy."""
        return [float(self.sync(v)) for v in losses]

    # --- shared drivers (the same for every framework) ------------------------------------
    def train_epoch(self, epoch: int, steps: int, rec: "TrainRecord") -> tuple[float, float]:
        """Run one epoch; record its timing in `rec`; return (epoch_seconds, mean loss).

        The first step of the run (trace/compile) and the warm-up steps are timed one by one,
        each synced. The rest of the epoch is the steady state, timed in blocks: the steps of a
        block are dispatched back to back with no host sync, and the block ends with one sync
        of all its losses *inside* the timed region (`sync_losses`), as a real training loop
        that logs its loss every K steps does. Blocks never straddle epochs.
        """
        clock = self.clock
        losses: list[float] = []
        t_epoch = clock()
        i = 0
        while i < steps and rec.needs_synced_step():
            t0 = clock()
            loss = float(self.sync(self.train_step(i)))
            rec.add_synced_step(clock() - t0)
            _check_losses([loss], epoch, i)
            losses.append(loss)
            i += 1
        if not rec.needs_synced_step():
            self._memory_mark("warmup")  # once: the first steady block starts after it
        next_report = _next_report(i, steps)
        while i < steps:
            if not rec.steady_started:  # the parent's contention meter opens the steady state
                rec.steady_started = True
                progress("train_steady", epoch=epoch, step=i, steps=steps)
            size = rec.next_block(steps - i)
            pending = []
            t0 = clock()
            for j in range(i, i + size):
                pending.append(self.train_step(j))
            values = self.sync_losses(pending)  # the sync belongs to the block's time
            rec.add_block(size, clock() - t0)
            _check_losses(values, epoch, i)
            losses.extend(values)
            i += size
            if i >= next_report:
                progress("train_steady", epoch=epoch, step=i, steps=steps)
                next_report = _next_report(i, steps)
        t_end = clock()
        self._memory_mark("train")
        return t_end - t_epoch, sum(losses) / max(1, len(losses))

    def measure_more(self, steps: int, rec: "TrainRecord", min_time_s: float, min_blocks: int,
                     max_extra_s: float) -> None:
        """More steady blocks after the epochs (and after `evaluate`, so the accuracy is that of
        the configured epochs) until the steady state holds `min_blocks` blocks and `min_time_s`
        seconds, or `max_extra_s` of extra measurement has passed. They are measurement steps,
        not an epoch: training goes on over the training batches from the first, each block of
        K steps; one synced step first (not recorded) returns from evaluation mode."""
        if rec.enough(min_time_s, min_blocks) or rec.k is None:
            return
        clock = self.clock
        progress("train_steady", extra=True)
        t_start = clock()
        self.sync(self.train_step(0))
        j = 1
        while not rec.enough(min_time_s, min_blocks):
            if clock() - t_start >= max_extra_s:
                rec.capped = True
                break
            pending = []
            t0 = clock()
            for n in range(j, j + rec.k):
                pending.append(self.train_step(n % steps))
            values = self.sync_losses(pending)
            rec.add_block(rec.k, clock() - t0, extra=True)
            _check_losses(values, "extra (measurement)", j)
            j += rec.k

    def benchmark_inference(self, n_batches: int, warmup: int, iterations: int,
                            min_time_s: float = 0.0, max_extra_s: float = math.inf) -> dict:
        """Warm-up calls (each synced), then at least `iterations` samples lasting together at
        least `min_time_s` (more samples until then, for at most `max_extra_s` beyond the
        `iterations`). A sample times `loops`
        back-to-back calls and one sync of all their outputs, and records the mean per call:
        `loops` is 1 for calls of LOOP_BELOW_S or more, otherwise the power of two that makes a
        sample last at least MIN_SAMPLE_S (pyperf's calibrated `loops`), so that no sample is too
        short for the clock and the sync to be negligible; calibrated on the warm-up calls, then
        checked on untimed probe samples (`calibration_probes`) as the steady state runs."""
        self._memory_mark("inference_start")
        clock = self.clock
        t0 = clock()
        warm = []
        for i in range(warmup):
            t1 = clock()
            self.sync(self.predict(i % n_batches))
            warm.append(clock() - t1)
        warmup_s = clock() - t0
        if len(warm) < 2:  # calibrate on two synced calls of our own (the first may compile)
            for i in range(2 - len(warm)):
                t1 = clock()
                self.sync(self.predict(i % n_batches))
                warm.append(clock() - t1)
        loops = calibrate_loops(min(warm[1:] or warm))
        k = 0
        # The warm-up calls can be slower than the steady state (dispatch caches still filling:
        # a JAX mlp's batch-1 call took 250 µs warm and 34 µs steady), so a sample at the
        # warm-up's `loops` can come out shorter than LOOP_BELOW_S. Probe samples, not kept,
        # recalibrate from their own per-call time until one is long enough (pyperf calibrates
        # its loops on real samples too); at most PROBES of them.
        probes = 0
        while probes < PROBES:
            t0 = clock()
            outs = [self.predict((k + j) % n_batches) for j in range(loops)]
            for out in outs:
                self.sync(out)
            probe_s = clock() - t0
            k, probes = k + loops, probes + 1
            del outs
            if probe_s >= LOOP_BELOW_S or loops >= 1 << 20:
                break
            loops = max(2 * loops, calibrate_loops(probe_s / loops))
        lat = []
        progress("inference_steady")  # the parent's contention meter: the timed samples
        sampled_s, t_min = 0.0, None
        capped = False
        while len(lat) < iterations or sampled_s < min_time_s:
            if len(lat) >= iterations:
                t_min = clock() if t_min is None else t_min
                if clock() - t_min >= max_extra_s:
                    capped = True
                    break
            outs = []
            t0 = clock()
            for _ in range(loops):
                outs.append(self.predict(k % n_batches))
                k += 1
            for out in outs:
                self.sync(out)
            sample_s = clock() - t0
            sampled_s += sample_s
            lat.append(sample_s / loops)
            del outs
        self._memory_mark("inference")
        return {"warmup_iterations": warmup, "warmup_s": warmup_s, "latencies_s": lat,
                "loops": loops, "calibration_probes": probes, "min_sample_s": MIN_SAMPLE_S,
                "sampled_s": sampled_s,
                "min_time_s": min_time_s, "min_time_reached": sampled_s >= min_time_s,
                "capped": capped}


# Training blocks last at least this long (block-synced steady state); inference calls shorter
# than LOOP_BELOW_S are timed in inner loops lasting at least MIN_SAMPLE_S per sample.
BLOCK_TARGET_S = 0.05
LOOP_BELOW_S = 0.001
MIN_SAMPLE_S = 0.002
PROBES = 4  # untimed calibration samples at most (each at least doubles `loops`)


def calibrate_loops(call_s: float) -> int:
    """pyperf-style: 1 for a call of LOOP_BELOW_S or more, else the smallest power of two of
    calls that lasts MIN_SAMPLE_S."""
    if call_s >= LOOP_BELOW_S:
        return 1
    loops = 1
    while loops * max(call_s, 1e-7) < MIN_SAMPLE_S and loops < 1 << 20:
        loops *= 2
    return loops


def _next_report(done: int, steps: int) -> int:
    quarter = max(1, steps // 4)
    return (done // quarter + 1) * quarter


def _check_losses(values: list[float], epoch: int | str, first_index: int) -> None:
    for n, v in enumerate(values):
        if v != v or v in (float("inf"), float("-inf")):
            raise Diverged(f"loss became {v} at epoch {epoch} step {first_index + n}")


class TrainRecord:
    """The timing of a run's training, across its epochs: the first step, the warm-up steps,
    and the steady-state blocks.

    K, the steps per block, is calibrated from the warm-up steps (the median synced step
    time): the smallest K whose block lasts BLOCK_TARGET_S, at least 1. Without warm-up steps
    the first steady block is a probe of one step and K is calibrated from it. An epoch's
    steady steps are split into floor(n / K) blocks of near-equal size (each >= K steps), or one
    block when fewer than K steps remain, so that no block is a short remainder.
    """

    def __init__(self, warmup_steps: int, target_s: float = BLOCK_TARGET_S):
        self.warmup_steps = warmup_steps
        self.target_s = target_s
        self.first_step_s: float | None = None
        self.warmup: list[float] = []
        self.blocks: list[dict] = []
        self.k: int | None = None
        self.steady_started = False
        self.capped = False  # measure_more stopped at its time bound before the minimums

    @property
    def phase(self) -> str:
        """The progress phase training is in: warm-up ("train") or steady ("train_steady")."""
        return "train_steady" if self.steady_started else "train"

    def enough(self, min_time_s: float, min_blocks: int) -> bool:
        """The steady state holds at least `min_blocks` blocks and `min_time_s` seconds."""
        return (len(self.blocks) >= min_blocks
                and sum(b["seconds"] for b in self.blocks) >= min_time_s)

    def needs_synced_step(self) -> bool:
        return self.first_step_s is None or len(self.warmup) < self.warmup_steps

    def add_synced_step(self, seconds: float) -> None:
        if self.first_step_s is None:
            self.first_step_s = seconds
        else:
            self.warmup.append(seconds)

    def _calibrate(self, step_s: float) -> int:
        return max(1, math.ceil(self.target_s / max(step_s, 1e-9)))

    def next_block(self, remaining: int) -> int:
        """The size of the next block, given the steady steps left in this epoch."""
        if self.k is None and self.warmup:
            self.k = self._calibrate(statistics.median(self.warmup))
        if self.k is None:
            return 1  # no warm-up to calibrate from: a one-step probe block calibrates K
        count = max(1, remaining // self.k)  # near-equal blocks, none a short remainder
        return -(-remaining // count)

    def add_block(self, steps: int, seconds: float, extra: bool = False) -> None:
        """One timed block; `extra`: a measurement block after the epochs (measure_more)."""
        self.blocks.append({"steps": steps, "seconds": seconds, **({"extra": True} if extra
                                                                     else {})})
        if self.k is None:
            self.k = self._calibrate(seconds / steps)

    def metrics(self) -> dict:
        epochs = [b for b in self.blocks if not b.get("extra")]  # steady_s/steps: the epochs'
        steady_s = sum(b["seconds"] for b in epochs)
        return {
            "first_step_s": self.first_step_s,
            "warmup_step_times_s": list(self.warmup),
            "warmup_s": sum(self.warmup),
            "steady_blocks": list(self.blocks),
            "step_times_s": [b["seconds"] / b["steps"] for b in self.blocks],
            "steady_s": steady_s,
            "steady_steps": sum(b["steps"] for b in epochs),
            "steps_per_block": self.k,
            # measurement steps after the epochs (not an epoch: epoch figures exclude them)
            "extra_steady_blocks": sum(1 for b in self.blocks if b.get("extra")),
            "extra_steady_steps": sum(b["steps"] for b in self.blocks if b.get("extra")),
            "measurement_capped": self.capped,
        }


def main(make_backend: Callable[[dict], FrameworkInterface], framework: str,
         import_framework: Callable[[], dict], run_cell: Callable[..., dict]) -> None:
    """Entry point of every worker script.

    `import_framework` imports the framework (timed) and returns its info for `hello`; an
    ImportError there becomes a `skip` (framework not installed), never a crash. `run_cell` is
    driver.run_cell, passed by the worker script: the harness sits below the driver.
    """
    claim_stdout()
    die_with_parent()
    request = read_request()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        mismatch = wire.request_mismatch(request)
        if mismatch is not None:
            emit("error", kind="protocol", error_type="ProtocolError", message=mismatch)
            return
        apply_memory_limit(request)
        affinity = pin_cpu_threads(request)
        t0 = time.perf_counter()
        try:
            info = import_framework()
        except ImportError as exc:
            if is_oom(exc):  # installed, but cannot be loaded under memory_limit_mb
                raise
            emit("hello", pid=os.getpid(), python=sys.executable, framework=framework,
                 python_version=platform.python_version())
            emit("skip", reason=f"{framework} is not installed in {sys.executable}: {exc}")
            return
        import_s = time.perf_counter() - t0
        emit("hello", pid=os.getpid(), python=sys.executable, framework=framework,
             python_version=platform.python_version(), import_s=import_s, cpu_affinity=affinity,
             **info)
        metrics = run_cell(request, make_backend, import_s)
        metrics["import_s"] = import_s
        emit("result", metrics=metrics)
    except SkipCell as exc:
        emit("skip", reason=str(exc), kind=getattr(exc, "kind", None))
    except BaseException as exc:  # every failure is data for the parent
        if isinstance(exc, KeyboardInterrupt):
            raise
        kind = "oom" if is_oom(exc) else ("diverged" if isinstance(exc, Diverged) else "error")
        try:
            emit("error", kind=kind, error_type=type(exc).__name__, message=str(exc)[:2000],
                 traceback=traceback.format_exc()[-8000:])
        except Exception:
            os._exit(70)
