"""Ceiling worker: the device's achievable matmul FLOP/s in one framework, per precision.

Owns the measurement of C = A @ B (n x n, 2 n^3 FLOPs) the way each framework's fast path runs
it: torch.matmul with a device sync, tf.linalg.matmul under tf.function with a host copy of one
element, a jitted jnp.dot with block_until_ready, np.dot. Reports best and median FLOP/s of the
timed iterations for each precision (fp32; bf16/fp16 as the framework's low-precision dtype), or
the reason a precision was skipped. Same discipline as a cell: protocol on the claimed stdout,
CPU pinning from the request, CUDA_VISIBLE_DEVICES set by the parent, the tf32 setting of the
sweep applied exactly as the framework workers apply it.

Request (JSON file, `--request`; `mode: ceiling` of workers/wire.py): {framework, backend (its
entry in BACKENDS; mlbench's framework table names it), device, precisions, size, iterations,
threads, tf32, max_seconds_per_precision}. Imports the harness, numpy and the one framework only.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import wire  # noqa: E402


def _numpy(req):
    import numpy as np

    def make(prec, n):
        if prec != "fp32":
            return None, "numpy has no fast low-precision matmul (the numpy worker is fp32 only)"
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        def run(k=1):
            for _ in range(k):
                np.dot(a, b, out=c)
        return run, None
    return {"framework_version": np.__version__, "device_name": platform.processor() or "cpu"}, make


def _torch(req):
    import torch
    tf32 = bool(req.get("tf32"))
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    gpu = req["device"] != "cpu"
    if gpu and not torch.cuda.is_available():
        raise harness.DeviceUnusable(
            f"torch.cuda.is_available() is False (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda})")
    dev = torch.device("cuda:0" if gpu else "cpu")
    name = torch.cuda.get_device_name(0) if gpu else platform.processor() or "cpu"
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def make(prec, n):
        dt = dtypes.get(prec)
        if dt is None:
            return None, f"unknown precision {prec}"
        g = torch.Generator(device=dev).manual_seed(0)
        a = torch.randn(n, n, device=dev, dtype=dt, generator=g)
        b = torch.randn(n, n, device=dev, dtype=dt, generator=g)
        # A preallocated product: torch.matmul(a, b) gets a fresh 16 MB output from the OS on
        # every CPU call (~2400 minor page faults); the ceiling times the product alone. (The
        # faults cost ~0.2 ms of ~60 ms here: they were not why torch's ceiling read low.)
        c = torch.empty(n, n, device=dev, dtype=dt)

        def run(k=1):
            for _ in range(k):  # launched back to back; one sync for all k
                torch.matmul(a, b, out=c)
            if gpu:
                torch.cuda.synchronize()
            return c
        return run, None
    return {"framework_version": torch.__version__, "device_name": name}, make


def _jax(req):
    import jax
    import jax.numpy as jnp
    if req["device"] != "cpu":
        try:
            jax.devices("gpu")
        except Exception as exc:  # no CUDA plugin (a bare AssertionError), driver too old...
            raise harness.DeviceUnusable(
                f"jax.devices('gpu') failed: {type(exc).__name__}: {str(exc)[:500]}")
        jax.config.update("jax_default_matmul_precision",
                          "tensorfloat32" if req.get("tf32") else "highest")
    dev = jax.devices()[0]
    dtypes = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
    dot = jax.jit(jnp.dot)

    def make(prec, n):
        dt = dtypes.get(prec)
        if dt is None:
            return None, f"unknown precision {prec}"
        ka, kb = jax.random.split(jax.random.PRNGKey(0))
        a = jax.device_put(jax.random.normal(ka, (n, n), dtype=dt), dev)
        b = jax.device_put(jax.random.normal(kb, (n, n), dtype=dt), dev)
        def run(k=1):
            outs = [dot(a, b) for _ in range(k)]  # async dispatch; one stream, in order
            return outs[-1].block_until_ready()
        return run, None
    return {"framework_version": jax.__version__, "device_name": str(dev.device_kind)}, make


def _tensorflow(req):
    import tensorflow as tf
    tf.config.experimental.enable_tensor_float_32_execution(bool(req.get("tf32")))
    gpu = req["device"] != "cpu"
    if gpu and not tf.config.list_physical_devices("GPU"):
        raise harness.DeviceUnusable(
            f"tf.config.list_physical_devices('GPU') is empty (tensorflow {tf.__version__}, "
            f"built with CUDA: {tf.test.is_built_with_cuda()})")
    where = "/GPU:0" if gpu else "/CPU:0"
    dtypes = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}

    @tf.function
    def mm(a, b):
        c = tf.linalg.matmul(a, b)
        return c[0, 0]  # the host copy of one element waits for the whole product

    def make(prec, n):
        dt = dtypes.get(prec)
        if dt is None:
            return None, f"unknown precision {prec}"
        with tf.device(where):
            g = tf.random.Generator.from_seed(0)
            a = tf.cast(g.normal((n, n)), dt)
            b = tf.cast(g.normal((n, n)), dt)
        def run(k=1):
            outs = [mm(a, b) for _ in range(k)]
            return outs[-1].numpy()  # one stream: the last product's element waits for all
        return run, None
    return {"framework_version": tf.__version__, "device_name": where}, make


BACKENDS = {"numpy": _numpy, "pytorch": _torch, "jax": _jax, "tensorflow": _tensorflow}


WARMUP_CALLS, WARMUP_S = 3, 0.3
# On a GPU one timed sample is this many products launched back to back and ONE sync: a sync
# per product adds the launch gap and the sync's latency to every 8192^3 product (~1 ms on an
# H100 at bf16, where the product itself takes ~1.1 ms).
GPU_PRODUCTS_PER_SYNC = 10


def measure(run, n: int, iterations: int, max_s: float, per_sync: int = 1) -> dict:
    """Warm up (compile, thread pools waking, caches, frequency) for at least WARMUP_CALLS calls
    and WARMUP_S seconds, then time up to `iterations` samples within `max_s`; a sample is
    `per_sync` products and one sync (run(per_sync))."""
    t_warm = time.perf_counter()
    warm = 0
    while warm < WARMUP_CALLS or time.perf_counter() - t_warm < min(WARMUP_S, max_s / 2):
        run(1)  # the first call compiles (and fails here when the precision is unsupported)
        warm += 1
    times = []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t_all = time.perf_counter()
    while len(times) < iterations:
        t0 = time.perf_counter()
        run(per_sync)
        times.append((time.perf_counter() - t0) / per_sync)
        if len(times) >= 2 and time.perf_counter() - t_all > max_s:
            break
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    flops = 2.0 * n ** 3
    return {"size": n, "iterations": len(times), "warmup_calls": warm,
            "best_s": min(times), "median_s": statistics.median(times),
            "best_flops": flops / min(times), "median_flops": flops / statistics.median(times),
            "minor_faults_per_call": faults / len(times) / per_sync,
            "products_per_sync": per_sync}


def main() -> None:
    harness.claim_stdout()
    harness.die_with_parent()
    req = harness.read_request()
    fw = req.get("framework")
    backend = req["backend"] if "backend" in req else fw  # mlbench's framework table says
    try:
        mismatch = wire.request_mismatch(req)
        if mismatch is not None:
            harness.emit("error", kind="protocol", error_type="ProtocolError", message=mismatch)
            return
        affinity = harness.pin_cpu_threads(req)
        if backend not in BACKENDS:
            harness.emit("hello", pid=os.getpid(), python=sys.executable, framework=fw)
            harness.emit("skip", reason=f"no ceiling measurement for framework {fw!r}")
            return
        t0 = time.perf_counter()
        try:
            info, make = BACKENDS[backend](req)
        except ImportError as exc:
            harness.emit("hello", pid=os.getpid(), python=sys.executable, framework=fw)
            harness.emit("skip", reason=f"{fw} is not installed in {sys.executable}: {exc}")
            return
        harness.emit("hello", pid=os.getpid(), python=sys.executable, framework=fw,
                     python_version=platform.python_version(), cpu_affinity=affinity,
                     import_s=time.perf_counter() - t0, **info)
        n = int(req.get("size") or 1024)
        out = {}
        for prec in req.get("precisions") or ["fp32"]:
            try:
                run, why = make(prec, n)
                out[prec] = {"skip": why} if run is None else measure(
                    run, n, int(req.get("iterations") or 10),
                    float(req.get("max_seconds_per_precision") or 10.0),
                    GPU_PRODUCTS_PER_SYNC if req["device"] != "cpu" else 1)
            except Exception as exc:  # an unsupported dtype on this device: a reason, not a crash
                if harness.is_oom(exc):
                    raise
                out[prec] = {"skip": f"{type(exc).__name__}: {str(exc)[:300]}"}
        harness.emit("result", ceilings=out, threads=len(affinity) if affinity else None,
                     **info)
    except harness.SkipCell as exc:
        harness.emit("skip", reason=str(exc), kind=getattr(exc, "kind", None))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        harness.emit("error", kind="oom" if harness.is_oom(exc) else "error",
                     error_type=type(exc).__name__, message=str(exc)[:2000],
                     traceback=traceback.format_exc()[-8000:])


if __name__ == "__main__":
    main()
