"""The one spawner: every worker process mlbench starts (a cell, the gate, a ceiling) starts here.

Owns the worker's environment (one builder: device, threads, the framework's own variables),
the request and command files, reading the JSON-line protocol (parsed by mlbench.run.protocol), the
wall-clock timeout that kills the worker's whole process group, Ctrl-C/SIGTERM (`Stop`),
host-memory and GPU sampling, the stderr log, and the attempt record with its status: ok,
skipped, failed, oom, timeout, crashed, interrupted. `launch` runs any `Job`; `run_cell` is a
sweep cell's job plus the cell's identity in the record. A broken worker is data, never an
exception. Must not import any ML framework.
"""
from __future__ import annotations

import json
import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psutil

from ..config import catalog, guards
from . import contention, protocol
from ..analysis import energy
from ..host import gpu, gpu_sampling, sysinfo
from .matrix import Cell

MAX_LINE = 64 * 1024 * 1024  # a protocol line beyond this is garbage, not a result
SAMPLE_EVERY_S = 0.5
STDERR_TAIL = 4000
EXIT_GRACE_S = 30.0
EXIT_WAIT_S = 2.0  # after EOF on the protocol stream, before the process group is killed
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS")


@dataclass
class Stop:
    """Set by the runner's signal handler: stop the running worker, record it as interrupted."""
    requested: bool = False
    signal_name: str = ""


JAX_MEM_FRACTION = "0.95"  # JAX's cap on GPU memory (default 0.75): the others may use it all
# OpenMP threads that sleep at a barrier instead of spinning: on 2 cores busy with other work,
# a PyTorch MLP step took a median of 2-357 ms with the default (spinning) policy and 1-7 ms
# passive (benchmarks/reproducibility.py --parts wait-policy); set for every framework alike
# (an exported OMP_WAIT_POLICY is kept), and recorded in each cell's settings.
OMP_WAIT_POLICY = "passive"


@dataclass(frozen=True)
class Job:
    """One worker process to start: a cell, one gate process, one ceiling measurement.

    `script`: the worker file; `request`: the request file's content (mlbench.run.protocol);
    `framework`: the base framework (its extra environment, and the reasons given);
    `assigned_gpu`: the GPU index a scheduler (Ray) gave it, seen instead of `device`'s."""
    script: Path
    python: str
    request: dict
    framework: str
    device: str
    threads: int
    timeout_s: float
    seed: int = 0
    log_tag: str = "r0"  # the stderr log: stderr-<log_tag>-<timestamp>.log
    assigned_gpu: str | None = None

    @property
    def sampled_device(self) -> str:
        """The device as this process sees it (a Ray-assigned GPU, else `device`)."""
        if self.assigned_gpu is not None and self.device.startswith("cuda"):
            return f"cuda:{self.assigned_gpu}"
        return self.device


# The one spawner's signature: launch itself, or an executor's (Executor.launch), which the gate
# and the ceilings are handed so that their workers start where the executor starts workers.
Launch = Callable[[Job, Path, Stop], dict]


def device_env(device: str, threads: int, seed: int) -> dict[str, str]:
    """The environment of every worker process (cells, gate, ceilings) on `device`.

    A GPU process sees exactly its one device: the entry of an inherited CUDA_VISIBLE_DEVICES
    that `cuda:N` names (gpu.cuda_visible_value), so it never lands on another job's GPU. JAX is
    told to use CUDA only (JAX_PLATFORMS=cuda: a broken CUDA plugin is a failure, never a
    silent CPU run) and may grow to the same share of memory as the others."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_VISIBLE", "JAX_PLAT"))}
    cuda = device.startswith("cuda")
    env.update({
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # indices mean the same to NVML and every framework
        "CUDA_VISIBLE_DEVICES": gpu.cuda_visible_value(device) if cuda else "",
        "JAX_PLATFORMS": "cuda" if cuda else "cpu",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "PYTHONHASHSEED": str(seed),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_NUM_INTEROP_THREADS": "1",
        **{var: str(threads) for var in THREAD_VARS},
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY),
    })
    if cuda:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = os.environ.get(
            "XLA_PYTHON_CLIENT_MEM_FRACTION", JAX_MEM_FRACTION)
        env.update(gpu.cuda_cache_env())  # PTX JIT'd once, kept across cells
    return env


def job_env(job: Job) -> dict[str, str]:
    """The one environment builder: the device's variables, the framework's own
    (catalog.Framework.env, e.g. KERAS_BACKEND), and a scheduler's GPU assignment."""
    env = device_env(job.device, job.threads, job.seed)
    env.update(catalog.framework_env(job.framework))
    if job.assigned_gpu is not None and job.device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = job.assigned_gpu
    return env


def cell_job(cell: Cell, assigned_gpu: str | None = None) -> Job:
    return Job(catalog.worker_script(cell.framework), cell.python, cell.request, cell.framework,
               cell.device, int(cell.request["threads"]), cell.timeout_s,
               int(cell.request["seed"]), f"r{cell.repeat}", assigned_gpu)


def cell_env(cell: Cell) -> dict[str, str]:
    return job_env(cell_job(cell))


def command(job: Job, request_path: Path) -> list[str]:
    return [job.python, "-u", str(job.script), "--request", str(request_path)]


def prepare(job: Job, job_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Write request.json and command.txt: any worker can be rerun by hand from these."""
    req_path = job_dir.resolve() / "request.json"
    guards.write_text(req_path, json.dumps(job.request, indent=1))  # never through a link
    argv = command(job, req_path)
    env = job_env(job)
    shown = {k: env[k] for k in sorted(env) if k in (
        "CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE",
        "TF_FORCE_GPU_ALLOW_GROWTH", "PYTHONHASHSEED", "JAX_PLATFORMS", "TF_NUM_INTEROP_THREADS",
        "XLA_PYTHON_CLIENT_MEM_FRACTION", "CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE",
        "OMP_WAIT_POLICY", *THREAD_VARS, *catalog.framework_env(job.framework))}
    line = " ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items()) + " " + shlex.join(argv)
    guards.write_text(job_dir / "command.txt", line + "\n")
    return argv, env


@dataclass
class _Watch:
    hello: dict | None = None
    final: dict | None = None
    noise: list[str] = field(default_factory=list)
    peak_rss: int = 0
    foreign: int | None = None  # the protocol version of a worker that speaks another one
    # every descendant the sampler saw, {pid: (create_time, command)}: one started in a session
    # of its own escapes the group kill and is killed by pid at the cell's end (_kill_leftovers)
    seen: dict = field(default_factory=dict)


def run_cell(cell: Cell, cell_dir: Path, stop: Stop,
             on_message: Callable[[dict], None] = lambda m: None,
             assigned_gpu: str | None = None) -> dict:
    """Run one attempt of `cell`; return its attempt record (never raises for worker faults).

    `assigned_gpu`: the GPU index (PCI order) a scheduler (Ray) assigned to a GPU cell. The
    worker then sees that GPU, it is the one sampled, and its presence is the scheduler's word
    (Ray only assigns GPUs its node declares), not NVML's check of the cell's own index."""
    head = {
        "run_id": None, "cell_id": cell.cell_id, "repeat": cell.repeat,
        "fingerprint": cell.fingerprint, "framework": cell.competitor,
        # the variant (framework label) above; what it runs on and in which mode here
        "base_framework": cell.framework, "mode": cell.mode, "mode_settings": cell.mode_settings,
        "model": cell.model.name,
        "model_label": cell.model.id_label, "model_options": cell.model.model_options,
        "device": cell.device, "batch_size": cell.batch_size, "precision": cell.precision,
        "tf32": bool(cell.request.get("tf32")),  # the request's flag: the datasheet's TF32 peak
    }
    record = launch(cell_job(cell, assigned_gpu), cell_dir, stop, on_message)
    log = record.get("stderr_log")
    if log is not None:
        record["stderr_log"] = str(Path(log).relative_to(cell_dir.parent.parent))
    record.pop("final", None)
    return {**head, **record}


def launch(job: Job, job_dir: Path, stop: Stop,
           on_message: Callable[[dict], None] = lambda m: None) -> dict:
    """Start `job`'s worker in a fresh process group, read its protocol stream, enforce the
    timeout and the stop request, kill the whole group, classify. Returns the attempt record
    (status, reason, hello, metrics, stderr log, ...; `final`: the final message itself)."""
    argv, env = prepare(job, job_dir)
    assigned = job.assigned_gpu is not None and job.device.startswith("cuda")
    device = job.sampled_device
    started = datetime.now(timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%S%f")
    stderr_path = job_dir / f"stderr-{job.log_tag}-{stamp}.log"
    record = {
        "command": argv, "stderr_log": str(stderr_path),
        "started_at": started.isoformat(),
        "machine_before": sysinfo.load_now(),
        "device_before": gpu_sampling.device_state(device, token=job.assigned_gpu if assigned else None),
    }
    watch = _Watch()
    t0 = time.monotonic()
    if not assigned and not gpu.device_present(job.device):
        # No NVIDIA driver or fewer GPUs than the index: no framework could run this job.
        record["stderr_log"] = None
        return _finish(record, t0, "skipped", f"device {job.device} not present on this "
                       f"machine ({gpu.describe()})", None, None, stderr_path, watch)
    if stop.requested:  # stopped before it started: nothing to kill
        record["stderr_log"] = None
        return _finish(record, t0, "interrupted", f"stopped by {stop.signal_name or 'the user'}",
                       None, None, stderr_path, watch)
    try:
        with os.fdopen(guards.open_for_write(stderr_path, "the stderr log", os.O_WRONLY
                                             | os.O_CREAT | os.O_TRUNC), "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, env=env, start_new_session=True,
                                    close_fds=True)
    except OSError as exc:
        return _finish(record, t0, "crashed", f"could not start worker: {exc}", None, None,
                       stderr_path, watch)
    token = job.assigned_gpu if assigned else None  # Ray: the GPU itself, not `cuda:N`
    sampler = gpu_sampling.ProcessSampler(proc.pid, device, token)
    meter = energy.Meter(sampler)  # NVML energy at the worker's phase boundaries
    phases = contention.PhaseMeter(proc.pid)  # other processes' CPU use, phase by phase
    energy_seen = meter.wrap(on_message)

    def seen(msg: dict) -> None:
        phases.see(msg)  # first: a phase boundary is read before anything else runs
        energy_seen(msg)

    timed_out = False
    try:
        timed_out = _pump(proc, job.timeout_s, stop, watch, sampler, seen, phases)
        if not timed_out and not stop.requested and watch.foreign is None:
            # EOF: the worker is exiting. Let it finish on its own (so an ok cell is not
            # recorded as killed by our SIGTERM), then clear the group of any leftovers.
            _wait_exit(proc, EXIT_WAIT_S)
    finally:
        _tree_rss(_ps(proc.pid), watch.seen)  # the last look at the tree before the kill
        _kill_group(proc)
        rc = proc.wait()
        proc.stdout.close()
        left = _kill_leftovers(watch.seen)
    if left:
        record["leftover_processes"] = (f"killed {len(left)} leftover process"
                                        f"{'es' if len(left) > 1 else ''}: {'; '.join(left)}")
    record["gpu"] = sampler.summary()
    record["energy"] = meter.summary()
    record["device_after"] = gpu_sampling.device_state(device, token=token)
    record["contention"] = phases.summary(contention.cell_cores(watch.hello, job.threads,
                                                                phases.cores))
    return _classify(record, t0, rc, timed_out, stop, job, stderr_path, watch)


def _pump(proc: subprocess.Popen, timeout_s: float, stop: Stop, watch: _Watch,
          sampler: "gpu_sampling.ProcessSampler", on_message: Callable[[dict], None],
          meter: "contention.PhaseMeter | None" = None) -> bool:
    """Read protocol lines until EOF; sample memory; enforce the timeout. True if timed out."""
    deadline = time.monotonic() + timeout_s
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    fd = proc.stdout.fileno()
    pending: list[bytes] = []  # the unfinished line, in pieces (no quadratic re-joining)
    size, dropping = 0, False
    ps = _ps(proc.pid)
    next_sample = 0.0
    grace_set = False
    try:
        while True:
            now = time.monotonic()
            if watch.final is not None and not grace_set:
                # The answer is in; a worker that then hangs while exiting must not hold us.
                deadline, grace_set = min(deadline, now + EXIT_GRACE_S), True
            if now >= deadline:
                return True
            if stop.requested or watch.foreign is not None:
                # a worker of another protocol version: nothing it sends can be read, so its
                # run (the whole cell, the whole gate) is not waited for; the group is killed
                return False
            if now >= next_sample:
                watch.peak_rss = max(watch.peak_rss, _tree_rss(ps, watch.seen))
                sampler.sample()
                if meter is not None:
                    meter.sample()
                next_sample = now + SAMPLE_EVERY_S
            if not sel.select(timeout=min(SAMPLE_EVERY_S, deadline - now)):
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                if pending and not dropping:
                    _handle_line(b"".join(pending), watch, on_message)
                return False
            *complete, rest = chunk.split(b"\n")
            for piece in complete:
                if not dropping:
                    _handle_line(b"".join(pending) + piece, watch, on_message)
                pending, size, dropping = [], 0, False
            if rest:
                size += len(rest)
                if not dropping:
                    pending.append(rest)
                if size > MAX_LINE and not dropping:
                    watch.noise.append(f"<protocol line over {MAX_LINE} bytes dropped>")
                    pending, dropping = [], True
    finally:
        sel.close()


def _handle_line(line: bytes, watch: _Watch, on_message: Callable[[dict], None]) -> None:
    """One protocol line (mlbench.run.protocol.parse_line). Noise is kept (a little) for the
    record; a final message the store could not hold (NaN, ill-typed metrics) arrives as a
    protocol error, so the attempt is recorded `failed` with the reason and the sweep goes on;
    a message of another protocol version is remembered for the reason."""
    got = protocol.parse_line(line)
    if got.foreign is not None and watch.foreign is None:
        watch.foreign = got.foreign
    if got.noise is not None and len(watch.noise) < 20:
        watch.noise.append(got.noise)
    msg = got.message
    if msg is None:
        return
    if msg["type"] == "hello":
        watch.hello = {k: v for k, v in msg.items() if k not in ("protocol", "type")}
    elif msg["type"] in protocol.FINAL and watch.final is None:
        watch.final = msg
    try:
        on_message(msg)
    except (TypeError, ValueError, KeyError, AttributeError):
        pass  # the progress display choked on an odd field: the measurement goes on


def _ps(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _tree_rss(ps, seen: dict | None = None) -> int:
    """The resident memory of the worker and its descendants; each descendant is remembered in
    `seen` (pid -> (create_time, command)), for _kill_leftovers."""
    if ps is None:
        return 0
    total = 0
    try:
        total = ps.memory_info().rss
        for child in ps.children(recursive=True):
            try:
                if seen is not None and child.pid not in seen:
                    seen[child.pid] = (child.create_time(), _command_of(child))
                total += child.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def _command_of(ps) -> str:
    try:
        return " ".join(ps.cmdline())[:120] or ps.name()
    except psutil.Error:
        return "?"


def _kill_leftovers(seen: dict) -> list[str]:
    """Kill every descendant seen during the cell that outlived the group kill (one that left
    the worker's process group: setsid, start_new_session, a daemon), with its own children;
    a pid reused by an unrelated process (another create time) is left alone. Returns
    "<pid> (<command>)" of each process killed."""
    alive: dict[int, tuple[psutil.Process, str]] = {}
    for pid, (created, cmd) in seen.items():
        try:
            ps = psutil.Process(pid)
            if ps.create_time() != created or ps.status() == psutil.STATUS_ZOMBIE:
                continue
            alive[pid] = (ps, cmd)
            for child in ps.children(recursive=True):
                alive.setdefault(child.pid, (child, _command_of(child)))
        except psutil.Error:
            continue
    if not alive:
        return []
    # one the group's SIGKILL has hit may still be tearing down: not a leftover if it is gone
    # (or a zombie) within a moment
    _, procs = psutil.wait_procs([ps for ps, _ in alive.values()], timeout=LEFTOVER_GRACE_S)
    procs = [ps for ps in procs if _running(ps)]
    alive = {ps.pid: alive[ps.pid] for ps in procs}
    if not alive:
        return []
    for ps in procs:
        try:
            ps.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(procs, timeout=2.0)
    for ps in still:
        try:
            ps.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(still, timeout=5.0)
    return [f"{pid} ({cmd})" for pid, (_, cmd) in alive.items()]


LEFTOVER_GRACE_S = 0.5


def _running(ps: psutil.Process) -> bool:
    try:
        return ps.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the worker's whole process group (grandchildren included), politely first."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid  # already reaped: its group may still hold grandchildren
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if proc.poll() is None and not _wait_exit(proc, wait):
            continue
        if not _group_alive(pgid):
            return


def _wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` for the worker to exit; True if it did. Sleeps in the kernel on a
    pidfd (Popen.wait(timeout) polls with sleeps, which cost milliseconds per cell)."""
    if proc.poll() is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
    finally:
        os.close(fd)
    return bool(ready) and proc.poll() is not None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signal_name(rc: int) -> str | None:
    """The name of the signal that ended a child (a negative returncode), or None: a number no
    signal of this platform has (a real-time signal, e.g. SIGRTMIN+3) is left unnamed."""
    if rc >= 0:
        return None
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return None


def _classify(record: dict, t0: float, rc: int, timed_out: bool, stop: Stop, job: Job,
              stderr_path: Path, watch: _Watch) -> dict:
    final = watch.final
    sig = signal_name(rc)
    exit_code = rc if rc >= 0 else None
    if final is not None and final["type"] == "result":
        status, reason = "ok", None
        record["metrics"] = final.get("metrics")
    elif timed_out:
        status, reason = "timeout", f"exceeded the {job.timeout_s:g} s limit; process group " \
                                    "killed"
    elif stop.requested:
        status, reason = "interrupted", f"stopped by {stop.signal_name or 'the user'}"
    elif final is not None and final["type"] == "skip" and final.get("kind") == "device" \
            and job.device.startswith("cuda"):
        # NVML saw the GPU (else the cell never started): a framework that cannot use it is
        # broken (plugin missing, driver too old), not a cell to leave out quietly
        status = "failed"
        reason = (f"{job.framework} cannot use {job.device}, which NVML sees: "
                  f"{final.get('reason')}")
    elif final is not None and final["type"] == "skip":
        status, reason = "skipped", final.get("reason")
    elif final is not None and final["type"] == "error":
        kind = final.get("kind")
        oom = kind == "oom" or (kind != "diverged" and is_oom_text(
            f"{final.get('error_type')}: {final.get('message')}"))
        status = "oom" if oom else "failed"
        prefix = "diverged: " if kind == "diverged" else f"{final.get('error_type', 'Error')}: "
        reason = prefix + str(final.get("message", ""))[:1000]
        record["traceback"] = final.get("traceback")
    elif watch.foreign is not None:
        status, reason = "crashed", protocol.version_mismatch(watch.foreign)
    else:
        tail = _tail(stderr_path)
        if sig:
            status, reason = "crashed", f"killed by {sig} before its final protocol message"
            if sig == "SIGKILL":
                reason += " (not by mlbench: possibly the kernel's OOM killer)"
        else:
            status, reason = "crashed", (f"exit code {rc}" if rc else "exited 0") + \
                " without a final protocol message"
        if is_oom_text(tail):
            status = "oom"  # e.g. OpenBLAS giving up under memory_limit_mb, then exit(1)
            reason += " (its stderr reports a failed memory allocation)"
    return _finish(record, t0, status, reason, exit_code, sig, stderr_path, watch)


def is_oom_text(text: str) -> bool:
    """Out of memory in other words (workers/wire.py OOM_MARKERS, the workers' own list)."""
    return protocol.wire().is_oom_text(text)


def _finish(record: dict, t0: float, status: str, reason: str | None, exit_code: int | None,
            sig: str | None, stderr_path: Path, watch: _Watch) -> dict:
    record.update(
        status=status, reason=reason, exit_code=exit_code, signal=sig,
        ended_at=datetime.now(timezone.utc).isoformat(), wall_s=time.monotonic() - t0,
        hello=watch.hello, protocol_noise=watch.noise or None,
        stderr_tail=_tail(stderr_path) if status != "ok" else None,
    )
    worker_peak = ((record.get("metrics") or {}).get("memory") or {}).get("host_peak_rss_bytes")
    peaks = [p for p in (watch.peak_rss, worker_peak) if p]
    record["host_peak_rss_bytes"] = max(peaks) if peaks else None
    record.setdefault("metrics", None)
    record["final"] = watch.final
    return record


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - STDERR_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
