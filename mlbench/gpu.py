"""NVIDIA GPUs through nvidia-ml-py (NVML): which are present, which the user gave mlbench, and
what a worker process uses.

Owns every NVML call of the parent: device listing for `mlbench list` and run.json, the mapping
of `cuda:N` to a physical device (honouring an inherited CUDA_VISIBLE_DEVICES of indices or
GPU-/MIG- UUIDs, as Slurm and Kubernetes set it), the value a cell's CUDA_VISIBLE_DEVICES gets,
and the per-cell sampler (the worker's own memory per NVML, device utilisation, power).

Every NVML call is guarded: an NVML error, a missing driver, MIG or a container without the host
PID namespace becomes "unavailable" with the reason, never an exception that stops a sweep.
Must not import any ML framework.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

try:  # nvidia-ml-py installs the module `pynvml`
    import pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    pynvml = None

VISIBLE_VAR = "CUDA_VISIBLE_DEVICES"


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _call(fn: Callable, *args: Any) -> tuple[Any, str | None]:
    """(value, None) or (None, 'NVMLError_...: text'): no NVML failure escapes this module."""
    try:
        return fn(*args), None
    except Exception as exc:  # NVMLError_* (NotSupported, NoPermission, GpuIsLost, ...)
        return None, f"{type(exc).__name__}: {exc}"


def _try(fn: Callable, *args: Any) -> Any:
    return _call(fn, *args)[0]


@lru_cache(maxsize=1)
def _init() -> str | None:
    """None when NVML is usable, else why not."""
    if pynvml is None:
        return "nvidia-ml-py is not installed"
    _, err = _call(pynvml.nvmlInit)
    return None if err is None else f"no NVIDIA driver found by NVML ({err})"


def _pci_order_handles() -> list:
    """Handles by PCI bus id: the order CUDA_DEVICE_ORDER=PCI_BUS_ID gives every framework.
    A device whose handle or PCI info NVML cannot read is left out."""
    if _init() is not None:
        return []
    count = _try(pynvml.nvmlDeviceGetCount) or 0
    found = []
    for i in range(count):
        h = _try(pynvml.nvmlDeviceGetHandleByIndex, i)
        pci = _try(pynvml.nvmlDeviceGetPciInfo, h) if h is not None else None
        if pci is not None:
            found.append((_str(pci.busId), h))
    return [h for _, h in sorted(found, key=lambda t: t[0])]


def _uuid(handle: Any) -> str | None:
    u = _try(pynvml.nvmlDeviceGetUUID, handle)
    return None if u is None else _str(u)


def list_gpus() -> list[dict]:
    out = []
    driver = _try(pynvml.nvmlSystemGetDriverVersion) if _init() is None else None
    for i, h in enumerate(_pci_order_handles()):
        name = _try(pynvml.nvmlDeviceGetName, h)
        mem = _try(pynvml.nvmlDeviceGetMemoryInfo, h)
        out.append({"index": i, "name": None if name is None else _str(name),
                    "memory_bytes": None if mem is None else int(mem.total),
                    "driver_version": None if driver is None else _str(driver),
                    "uuid": _uuid(h)})
    return out


def describe() -> str:
    why = _init()
    if why is not None:
        return why
    visible = visible_devices()
    given = os.environ.get(VISIBLE_VAR)
    text = f"NVML sees {len(_pci_order_handles())} GPU(s)"
    if given is not None:
        text += f"; {VISIBLE_VAR}={given!r} gives mlbench {len(visible)}"
    return text


# --- which devices the user gave mlbench ------------------------------------------------------

@dataclass(frozen=True)
class Visible:
    """`cuda:<index>` as mlbench sees it: the token to hand on in CUDA_VISIBLE_DEVICES (the
    user's own entry when one was inherited, else the PCI-order index) and its NVML handle."""
    index: int
    token: str
    handle: Any
    uuid: str | None
    mig: bool


def _mig_handles(parent: Any) -> list:
    n = _try(pynvml.nvmlDeviceGetMaxMigDeviceCount, parent) or 0
    out = []
    for i in range(n):
        h = _try(pynvml.nvmlDeviceGetMigDeviceHandleByIndex, parent, i)
        if h is not None:
            out.append(h)
    return out


def _resolve_uuid(token: str, handles: list) -> tuple[Any, bool] | None:
    """The handle a GPU-/MIG- UUID (or a unique prefix of one, as CUDA accepts) names."""
    h = _try(pynvml.nvmlDeviceGetHandleByUUID, token.encode())
    if h is None:
        h = _try(pynvml.nvmlDeviceGetHandleByUUID, token)
    if h is not None:
        return h, token.startswith("MIG-")
    candidates = [(p, False) for p in handles]
    if token.startswith("MIG-"):
        candidates = [(m, True) for p in handles for m in _mig_handles(p)]
    hits = [(h, mig) for h, mig in candidates if (_uuid(h) or "").startswith(token)]
    return hits[0] if len(hits) == 1 else None


def visible_devices() -> list[Visible]:
    """The GPUs mlbench may use, in the order `cuda:0, cuda:1, ...`.

    Without an inherited CUDA_VISIBLE_DEVICES: every GPU NVML sees, in PCI bus order. With one,
    its entries in the user's order, read as CUDA reads them: integers are indices (in PCI bus
    order: mlbench sets CUDA_DEVICE_ORDER=PCI_BUS_ID), GPU-/MIG- entries are UUIDs or unique
    prefixes; enumeration stops at the first entry that names no device, as CUDA's does."""
    handles = _pci_order_handles()
    given = os.environ.get(VISIBLE_VAR)
    if given is None:
        return [Visible(i, str(i), h, _uuid(h), False) for i, h in enumerate(handles)]
    out: list[Visible] = []
    for token in (t.strip() for t in given.split(",")):
        hit: tuple[Any, bool] | None = None
        if token.isdigit():
            hit = (handles[int(token)], False) if int(token) < len(handles) else None
        elif token.startswith(("GPU-", "MIG-")) and handles:
            hit = _resolve_uuid(token, handles)
        if hit is None:
            break
        out.append(Visible(len(out), token, hit[0], _uuid(hit[0]), hit[1]))
    return out


def _index(device: str) -> int | None:
    try:
        return int(device.split(":")[1]) if device.startswith("cuda:") else None
    except ValueError:
        return None


def visible(device: str) -> Visible | None:
    idx = _index(device)
    if idx is None:
        return None
    devices = visible_devices()
    return devices[idx] if idx < len(devices) else None


def device_present(device: str) -> bool:
    if device == "cpu":
        return True
    return visible(device) is not None


def cuda_visible_value(device: str) -> str:
    """CUDA_VISIBLE_DEVICES for a cell on `device`: the one device it may see ('' for the CPU).
    The user's own entry when they gave mlbench a list, so `cuda:N` is always the N-th device
    they gave, never another job's GPU."""
    v = visible(device)
    if v is not None:
        return v.token
    idx = _index(device)
    return "" if idx is None else str(idx)


def mapping() -> dict:
    """For run.json: what `cuda:N` meant in this run (the inherited variable, and per device
    the entry handed on and the physical UUID and name NVML gives)."""
    out: dict[str, Any] = {"inherited_cuda_visible_devices": os.environ.get(VISIBLE_VAR),
                           "nvml": _init() or "ok", "devices": []}
    for v in visible_devices():
        name = _try(pynvml.nvmlDeviceGetName, v.handle)
        out["devices"].append({"device": f"cuda:{v.index}", "cuda_visible_devices": v.token,
                               "uuid": v.uuid, "mig": v.mig,
                               "name": None if name is None else _str(name)})
    return out


# --- per-cell sampling --------------------------------------------------------------------------

def _is_mig(v: Visible) -> bool:
    if v.mig:
        return True
    mode = _try(pynvml.nvmlDeviceGetMigMode, v.handle)
    return bool(mode and mode[0])


class ProcessSampler:
    """Samples a worker's GPU memory (NVML's per-process figure), utilisation and power.

    When the worker's memory cannot be attributed, `summary()` says why in
    `process_memory_note`: a MIG device, no process with the worker's PID (a container without
    the host PID namespace), no memory figure, or an NVML error."""

    def __init__(self, pid: int, device: str):
        self.pid = pid
        self.handle = None
        self.peak_process_bytes = 0
        self.util: list[int] = []
        self.power: list[float] = []
        self.mig = False
        self.errors: list[str] = []
        self.pid_seen = False
        self.no_figure = False
        self.other_pids: set[int] = set()
        v = visible(device) if device.startswith("cuda") else None
        if v is not None:
            self.handle = v.handle
            self.mig = _is_mig(v)

    def _note(self, err: str | None) -> None:
        if err and len(self.errors) < 3 and err not in self.errors:
            self.errors.append(err)

    def sample(self) -> None:
        if self.handle is None:
            return
        procs, err = _call(pynvml.nvmlDeviceGetComputeRunningProcesses, self.handle)
        self._note(err)
        for p in procs or []:
            pid = getattr(p, "pid", None)
            if pid != self.pid:
                if pid is not None and len(self.other_pids) < 16:
                    self.other_pids.add(int(pid))
                continue
            self.pid_seen = True
            used = getattr(p, "usedGpuMemory", None)
            if used:
                self.peak_process_bytes = max(self.peak_process_bytes, int(used))
            else:
                self.no_figure = True
        util, err = _call(pynvml.nvmlDeviceGetUtilizationRates, self.handle)
        self._note(err)
        if util is not None:
            self.util.append(int(util.gpu))
        power, err = _call(pynvml.nvmlDeviceGetPowerUsage, self.handle)
        self._note(err)
        if power is not None:
            self.power.append(power / 1000.0)

    def why_unattributed(self) -> str | None:
        if self.peak_process_bytes:
            return None
        if self.mig:
            return "MIG device: NVML gives no per-process memory inside a MIG instance"
        if self.no_figure:
            return (f"NVML lists the worker (pid {self.pid}) without a memory figure "
                    "(insufficient permission or a virtualised GPU)")
        if self.other_pids:
            return (f"no NVML process has the worker's pid {self.pid} (saw "
                    f"{sorted(self.other_pids)}): a container without the host PID namespace")
        if self.errors:
            return f"NVML unavailable: {self.errors[0]}"
        return "NVML listed no compute process on the device while the worker ran"

    def summary(self) -> dict | None:
        if self.handle is None:
            return None
        return {
            "nvml_peak_process_bytes": self.peak_process_bytes or None,
            "process_memory_note": self.why_unattributed(),
            "nvml_errors": self.errors or None,
            "utilization_pct_mean": sum(self.util) / len(self.util) if self.util else None,
            "power_w_mean": sum(self.power) / len(self.power) if self.power else None,
            "samples": len(self.util),
            # other compute processes seen on the device while the worker ran (contention);
            # unknown (None) when NVML never listed the worker itself under its pid
            "other_processes": sorted(self.other_pids) if self.pid_seen else None,
        }


def device_state(device: str, exclude_pids: tuple[int, ...] = ()) -> dict | None:
    """What is already happening on a GPU, read just before a cell starts: the compute processes
    on it (pid, used memory), utilisation, SM and memory clocks, temperature, memory in use.
    None for the CPU or when NVML cannot see the device. Every field may be None (not supported
    on this GPU, or no permission); mlbench.stats.busy_warnings turns this into warnings."""
    v = visible(device) if device.startswith("cuda") else None
    if v is None:
        return None
    h = v.handle
    procs = []
    for p in (_try(pynvml.nvmlDeviceGetComputeRunningProcesses, h) or []):
        pid = getattr(p, "pid", None)
        if pid is None or pid in exclude_pids:
            continue
        used = getattr(p, "usedGpuMemory", None)
        procs.append({"pid": int(pid), "used_memory_bytes": int(used) if used else None})
    util = _try(pynvml.nvmlDeviceGetUtilizationRates, h)
    mem = _try(pynvml.nvmlDeviceGetMemoryInfo, h)
    clocks = {name: _try(pynvml.nvmlDeviceGetClockInfo, h, getattr(pynvml, kind, 0))
              for name, kind in (("sm_clock_mhz", "NVML_CLOCK_SM"),
                                 ("memory_clock_mhz", "NVML_CLOCK_MEM"))}
    max_sm = _try(pynvml.nvmlDeviceGetMaxClockInfo, h, getattr(pynvml, "NVML_CLOCK_SM", 0))
    power = _try(pynvml.nvmlDeviceGetPowerUsage, h)
    return {
        "processes": procs,
        "utilization_gpu_pct": None if util is None else int(util.gpu),
        "utilization_memory_pct": None if util is None else int(util.memory),
        **clocks, "sm_clock_max_mhz": max_sm,
        "temperature_c": _try(pynvml.nvmlDeviceGetTemperature, h,
                              getattr(pynvml, "NVML_TEMPERATURE_GPU", 0)),
        "memory_used_bytes": None if mem is None else int(mem.used),
        "power_w": None if power is None else power / 1000.0,
    }


def uuid(index: int) -> str | None:
    """The UUID NVML reports for the GPU at `index` (PCI order), or None when NVML cannot tell."""
    handles = _pci_order_handles()
    if not 0 <= index < len(handles):
        return None
    return _try(lambda h: _str(pynvml.nvmlDeviceGetUUID(h)), handles[index])
