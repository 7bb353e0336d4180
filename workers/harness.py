"""Worker-side harness: the protocol, and the phase driver shared by every framework worker.

Owns: claiming stdout for protocol messages, reading the request, the JSON-line messages
(hello/progress/result/skip/error), and the order and timing of a cell's phases
(build -> data -> train -> evaluate -> inference), so that every framework is timed by the very
same code. Framework workers only implement the primitives of `FrameworkInterface`.

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

PROTOCOL = 1
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
    msg = {"protocol": PROTOCOL, "type": msg_type, **fields}
    line = json.dumps(msg, allow_nan=False, default=_json_default)
    out = _OUT if _OUT is not None else sys.__stdout__
    out.write(line + "\n")
    out.flush()


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, without importing numpy here
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


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


OOM_MARKERS = ("out of memory", "resource_exhausted", "resourceexhausted", "resource exhausted",
               "failed to allocate", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
               "cudnn_status_not_enough_workspace",
               # a shared library that cannot be mapped under memory_limit_mb
               "failed to map segment", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    """Out of memory in any of its spellings: host MemoryError, CUDA/XLA/TF allocator messages,
    and cuBLAS/cuDNN allocation or workspace failures."""
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in OOM_MARKERS)


class FrameworkInterface:
    """The seed's interface. A worker subclasses this and fills in the primitives.

    Timing lives here, not in the workers: `train_epoch` and `benchmark_inference` call the
    primitives and wait for the device through `sync`, so no framework is timed on asynchronous
    dispatch, and all are timed the same way.
    """

    name = "base"

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
        clock = time.perf_counter
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
        next_report = _next_report(i, steps)
        while i < steps:
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
                progress("train", epoch=epoch, step=i, steps=steps)
                next_report = _next_report(i, steps)
        return clock() - t_epoch, sum(losses) / max(1, len(losses))

    def benchmark_inference(self, n_batches: int, warmup: int, iterations: int) -> dict:
        """Warm-up calls (each synced), then `iterations` samples. A sample times `loops`
        back-to-back calls and one sync of all their outputs, and records the mean per call:
        `loops` is 1 for calls of LOOP_BELOW_S or more, otherwise the power of two that makes a
        sample last at least MIN_SAMPLE_S (pyperf's calibrated `loops`), so that no sample is too
        short for the clock and the sync to be negligible."""
        clock = time.perf_counter
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
        lat = []
        k = 0
        for _ in range(iterations):
            outs = []
            t0 = clock()
            for _ in range(loops):
                outs.append(self.predict(k % n_batches))
                k += 1
            for out in outs:
                self.sync(out)
            lat.append((clock() - t0) / loops)
            del outs
        return {"warmup_iterations": warmup, "warmup_s": warmup_s, "latencies_s": lat,
                "loops": loops, "min_sample_s": MIN_SAMPLE_S}


# Training blocks last at least this long (block-synced steady state); inference calls shorter
# than LOOP_BELOW_S are timed in inner loops lasting at least MIN_SAMPLE_S per sample.
BLOCK_TARGET_S = 0.05
LOOP_BELOW_S = 0.001
MIN_SAMPLE_S = 0.002


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


def _check_losses(values: list[float], epoch: int, first_index: int) -> None:
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

    def add_block(self, steps: int, seconds: float) -> None:
        self.blocks.append({"steps": steps, "seconds": seconds})
        if self.k is None:
            self.k = self._calibrate(seconds / steps)

    def metrics(self) -> dict:
        steady_s = sum(b["seconds"] for b in self.blocks)
        return {
            "first_step_s": self.first_step_s,
            "warmup_step_times_s": list(self.warmup),
            "warmup_s": sum(self.warmup),
            "steady_blocks": list(self.blocks),
            "step_times_s": [b["seconds"] / b["steps"] for b in self.blocks],
            "steady_s": steady_s,
            "steady_steps": sum(b["steps"] for b in self.blocks),
            "steps_per_block": self.k,
        }


def run_cell(request: dict, make_backend: Callable[[dict], FrameworkInterface],
             import_s: float) -> dict:
    """Drive the phases of one cell and return the result metrics."""
    import specs

    if request.get("mode") == "verify":
        return run_verify(request, make_backend)
    backend = make_backend(request)
    spec = specs.request_spec(request)
    user = spec["model"] == "user"  # the user's own model file (workers/usermodel.py)
    if request.get("mode") == "count":
        if user:  # nothing abstract about a user's builder: build it and count
            backend.check_supported()
            backend.build_model(spec)
        return {"params": backend.count_parameters() if user else
                backend.count_parameters_abstract(spec),
                "flops_per_sample": specs.flops_per_sample(spec), "model_spec": spec}
    backend.check_supported()
    clock = time.perf_counter

    progress("data")
    t0 = clock()
    data = specs.make_dataset(spec, request)
    data_gen_s = clock() - t0

    baseline_rss = current_rss_bytes()  # after imports and data: what the model adds is above

    progress("build")
    t0 = clock()
    backend.build_model(spec)
    if request.get("init", "framework") == "canonical":
        # the same starting weights in every framework (workers/weights.py), instead of each
        # framework's default initialisers: same trajectory, comparable accuracy
        load_initial_weights(backend, spec, int(request["seed"]))
    build_s = clock() - t0
    params = backend.count_parameters()

    t0 = clock()
    backend.load_data(data)
    load_s = clock() - t0
    flops = specs.flops_per_sample(spec)
    if user:
        check_user_output(backend, spec, min(int(request["batch_size"]), len(data["y_eval"])))
        flops = user_flops(backend, spec)

    bs = int(request["batch_size"])
    n_train = len(data["y_train"])
    steps = n_train // bs
    if steps < 2:
        raise ValueError(f"train_samples={n_train} gives {steps} step(s) at batch size {bs}; "
                         "need at least 2 (one for compile, one timed)")
    # Steps after the first one still settle (TF's step time falls for ~20 steps): the first
    # tenth of the run, at most 10 steps, is kept apart as warm-up, not in the steady state.
    rec = TrainRecord(warmup_steps=min(10, steps * int(request["epochs"]) // 10))
    epoch_times, epoch_losses = [], []
    for epoch in range(int(request["epochs"])):
        progress("train", epoch=epoch, step=0, steps=steps)
        secs, loss = backend.train_epoch(epoch, steps, rec)
        epoch_times.append(secs)
        epoch_losses.append(loss)

    progress("evaluate")
    t0 = clock()
    ev = backend.evaluate()
    eval_s = clock() - t0

    progress("inference")
    n_eval_batches = max(1, len(data["y_eval"]) // bs)
    inf = backend.benchmark_inference(n_eval_batches, int(request["warmup_iterations"]),
                                      int(request["timed_iterations"]))
    mem = backend.get_memory_usage()
    mem["host_peak_rss_bytes"] = peak_rss_bytes()
    mem["host_baseline_rss_bytes"] = baseline_rss
    return {
        "params": params,
        "flops_per_sample": flops,
        "model_spec": spec,
        "data_hash": data["hash"],
        "data_gen_s": data_gen_s,
        "build_s": build_s,
        "load_data_s": load_s,
        "train": {
            "steps_per_epoch": steps,
            "samples_per_step": bs,
            **rec.metrics(),
            "epoch_times_s": epoch_times,
            "epoch_loss_means": epoch_losses,
        },
        "eval": {**ev, "time_s": eval_s, "samples": len(data["y_eval"])},
        "inference": {**inf, "batch_size": bs},
        "memory": mem,
        "settings": backend.settings(),
    }


# Test-only: `perturb` in a verify request deliberately alters the model this worker builds, so
# the tests can prove that the gate catches a framework whose model differs (a framework-default
# epsilon or momentum slipping in). Never set by a normal run.
PERTURBATIONS = {
    "bn_eps": {"bn_eps": 1e-3},        # Keras' BatchNormalization default
    "ln_eps": {"ln_eps": 1e-6},        # Flax's LayerNorm default
    "bn_momentum": {"bn_momentum": 0.01},  # Keras' momentum 0.99 read as torch's convention
}


def run_verify(request: dict, make_backend: Callable[[dict], FrameworkInterface]) -> dict:
    """`mode: verify`: the equivalence gate's worker side, for several models in one process.

    The request carries `models` ([{key, model, model_options}]), `verify_steps` (K),
    `batch_size`, `seed`, `precision`, `verify_dir` (where the outputs go, one .npz per model)
    and optionally `perturb` (test-only, see PERTURBATIONS). Per model: build, load the
    canonical weights of workers/weights.py, forward (inference mode) on eval batch 0 -> outputs
    and loss; K optimizer steps in training mode on train batches 0..K-1 -> their losses; then
    forward and loss again (the updated weights and running statistics). A model that fails or
    is unsupported is reported as such; the others still run.
    """
    models = {}
    for entry in request["models"]:
        sub = {k: v for k, v in request.items() if k != "models"}
        sub.update(model=entry["model"], model_options=entry.get("model_options") or {},
                   user_model=entry.get("user_model"))
        key = entry.get("key") or entry["model"]
        progress("verify", model=key)
        try:
            models[key] = _verify_one(sub, key, make_backend)
        except SkipCell as exc:
            models[key] = {"status": "skipped", "reason": str(exc),
                           "kind": getattr(exc, "kind", None)}
        except Exception as exc:  # noqa: BLE001 - one model's failure is data, not the end
            models[key] = {"status": "oom" if is_oom(exc) else "error",
                           "reason": f"{type(exc).__name__}: {str(exc)[:1000]}",
                           "traceback": traceback.format_exc()[-4000:]}
    return {"mode": "verify", "models": models}


def _verify_one(request: dict, key: str, make_backend) -> dict:
    import hashlib

    import numpy as np
    import specs

    steps = int(request.get("verify_steps", 3))
    bs = int(request["batch_size"])
    request = {**request, "train_samples": steps * bs, "eval_samples": bs, "data_path": None}
    backend = make_backend(request)
    spec = specs.request_spec(request)
    backend.check_supported()
    perturb = request.get("perturb")
    build_spec = dict(spec, **PERTURBATIONS[perturb]) if perturb else spec
    backend.build_model(build_spec)
    counts = backend.count_parameters()
    weights_hash = load_initial_weights(backend, spec, int(request["seed"]), exercise=True)
    data = specs.make_dataset(spec, request)
    backend.load_data(data)
    if spec["model"] == "user":
        check_user_output(backend, spec, bs)
    digest = hashlib.sha256()
    for split, index in [("train", i) for i in range(steps)] + [("eval", 0)]:
        for a in backend.received_batch(split, index):
            a = np.ascontiguousarray(a)
            digest.update(f"{split}{index}{a.shape}{a.dtype}".encode() + a.tobytes())
    raw_before = backend.predict(0)
    out_before = backend.to_numpy(raw_before)
    loss_before = float(backend.evaluate()["loss"])
    train_losses = [float(backend.sync(backend.train_step(i))) for i in range(steps)]
    out_after = backend.to_numpy(backend.predict(0))
    loss_after = float(backend.evaluate()["loss"])
    path = os.path.join(request["verify_dir"],
                        f"{request['framework']}-{key}-{request['precision']}.npz")
    index = sample_indices(out_before.size, int(request["seed"]))
    np.savez(path, index=index, out_before=out_before.reshape(-1)[index],
             out_after=out_after.reshape(-1)[index])
    return {"status": "ok", "params": counts, "expected_params": specs.count_params(spec),
            "weights_hash": weights_hash, "data_hash": data["hash"],
            "output_dtype": _dtype_name(raw_before),
            "batches_hash": digest.hexdigest(), "loss_before": loss_before,
            "train_losses": train_losses, "loss_after": loss_after,
            "output_shape": list(out_before.shape), "outputs": path, "perturb": perturb,
            "output_stats": {"before": summary_stats(out_before),
                             "after": summary_stats(out_after)},
            "settings": backend.settings()}


def load_initial_weights(backend: FrameworkInterface, spec: dict, seed: int,
                         exercise: bool = False) -> str | None:
    """Give every framework the same starting weights; return their hash (None: none shared).

    Built-in models: the canonical weights of workers/weights.py. A user's model: the file's
    own `canonical_weights()` when it has a loader for this framework (usermodel.load_canonical),
    else the weights a backend can share (`load_shared`: a Keras 3 model on any backend gets the
    same seeded weights); otherwise it keeps its framework's own initialisation (None).
    """
    if spec["model"] == "user":
        import usermodel
        digest = usermodel.load_canonical(backend, spec, seed)
        if digest is not None:
            return digest
        share = getattr(backend, "load_shared", None)
        return share(seed) if share is not None else None
    import weights
    canon = weights.canonical_params(spec, seed, exercise=exercise)
    backend.load_canonical(canon)
    return weights.params_hash(canon)


def check_user_output(backend: FrameworkInterface, spec: dict, rows: int) -> None:
    """A user's builder must map a batch of INPUT to logits of the right shape: one forward
    pass on eval batch 0 before anything is timed, so a wrong model fails with its shape."""
    import usermodel
    out = backend.predict(0)
    usermodel.check_logits(spec, backend.to_numpy(out).shape, rows,
                           getattr(backend, "user_function", backend.name))


def user_flops(backend: FrameworkInterface, spec: dict) -> dict:
    """FLOPs per sample of a user's model: the file's own figure, else the framework's count
    (`count_flops`: torch's FlopCounterMode, XLA's cost analysis), else unknown (MFU n/a)."""
    import usermodel
    fwd, source = usermodel.file_flops(spec), "model file"
    if fwd is None and hasattr(backend, "count_flops"):
        try:
            fwd, source = backend.count_flops(), f"counted by {backend.name}"
        except Exception:  # noqa: BLE001 - a count is a bonus; without it MFU is n/a
            fwd = None
    spec["flops_source"] = source if fwd else "unknown (MFU n/a)"  # reported in model_spec
    if not fwd:
        return {"forward": None, "train_step": None}
    return {"forward": int(fwd), "train_step": 3 * int(fwd)}


def _dtype_name(value) -> str:
    import usermodel
    return usermodel.dtype_name(value)


VERIFY_SAMPLE = 65536  # output values compared per array: gpt2-small's logits are 823M at bs 16


def sample_indices(size: int, seed: int):
    """The flat output indices the gate compares: all of them up to VERIFY_SAMPLE, else
    VERIFY_SAMPLE distinct ones drawn from the seed, sorted: the same in every framework (and
    every worker process), so the parent compares like with like."""
    import numpy as np
    dtype = np.uint32 if size < 2 ** 32 else np.int64
    if size <= VERIFY_SAMPLE:
        return np.arange(size, dtype=dtype)
    rng = np.random.default_rng([seed, 0x6A7E])
    return np.sort(rng.choice(size, VERIFY_SAMPLE, replace=False)).astype(dtype)


def summary_stats(a, chunk: int = 1 << 22) -> dict:
    """Max |x|, mean and L2 norm of the whole output (in float64 chunks: no full-size copy),
    and whether every value is finite: what the sample cannot see."""
    import numpy as np
    flat = a.reshape(-1)
    max_abs, total, sq, finite = 0.0, 0.0, 0.0, True
    for i in range(0, flat.size, chunk):
        c = flat[i:i + chunk].astype(np.float64)
        finite &= bool(np.isfinite(c).all())
        max_abs = max(max_abs, float(np.abs(c).max(initial=0.0)))
        total += float(c.sum())
        sq += float(np.dot(c, c))
    if not finite:  # JSON has no NaN/inf; the flag says it
        return {"max_abs": None, "mean": None, "l2": None, "size": int(flat.size),
                "finite": False}
    return {"max_abs": max_abs, "mean": total / max(1, flat.size), "l2": sq ** 0.5,
            "size": int(flat.size), "finite": True}


def main(make_backend: Callable[[dict], FrameworkInterface], framework: str,
         import_framework: Callable[[], dict]) -> None:
    """Entry point of every worker script.

    `import_framework` imports the framework (timed) and returns its info for `hello`; an
    ImportError there becomes a `skip` (framework not installed), never a crash.
    """
    claim_stdout()
    die_with_parent()
    request = read_request()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
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
