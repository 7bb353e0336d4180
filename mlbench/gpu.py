"""NVIDIA GPUs through nvidia-ml-py (NVML): which are present, and what a worker process uses.

Owns every NVML call of the parent: device listing for `mlbench list` and run.json, and the
per-cell sampler (the worker's own memory per NVML, device utilisation, power). Everything here
degrades to "no GPU" when NVML or a driver is absent. Must not import any ML framework.
"""
from __future__ import annotations

from functools import lru_cache

try:  # nvidia-ml-py installs the module `pynvml`
    import pynvml
except ImportError:  # pragma: no cover - it is a declared dependency
    pynvml = None


@lru_cache(maxsize=1)
def _init() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
        return True
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return False


def _pci_order_handles() -> list:
    """Handles by PCI bus id: the order CUDA_DEVICE_ORDER=PCI_BUS_ID gives every framework."""
    if not _init():
        return []
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    return sorted(handles, key=lambda h: pynvml.nvmlDeviceGetPciInfo(h).busId)


def list_gpus() -> list[dict]:
    out = []
    for i, h in enumerate(_pci_order_handles()):
        try:
            name = pynvml.nvmlDeviceGetName(h)
            out.append({
                "index": i, "name": name.decode() if isinstance(name, bytes) else name,
                "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                "driver_version": _str(pynvml.nvmlSystemGetDriverVersion()),
            })
        except Exception:
            continue
    return out


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def describe() -> str:
    if pynvml is None:
        return "nvidia-ml-py is not installed"
    if not _init():
        return "no NVIDIA driver found by NVML"
    return f"NVML sees {len(_pci_order_handles())} GPU(s)"


def device_present(device: str) -> bool:
    if device == "cpu":
        return True
    return int(device.split(":")[1]) < len(_pci_order_handles())


class ProcessSampler:
    """Samples a worker's GPU memory (NVML's per-process figure), utilisation and power."""

    def __init__(self, pid: int, device: str):
        self.pid = pid
        self.handle = None
        self.peak_process_bytes = 0
        self.util: list[int] = []
        self.power: list[float] = []
        if device.startswith("cuda") and _init():
            handles = _pci_order_handles()
            idx = int(device.split(":")[1])
            if idx < len(handles):
                self.handle = handles[idx]

    def sample(self) -> None:
        if self.handle is None:
            return
        try:
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if p.pid == self.pid and p.usedGpuMemory:
                    self.peak_process_bytes = max(self.peak_process_bytes, int(p.usedGpuMemory))
            self.util.append(int(pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu))
            self.power.append(pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)
        except Exception:
            pass

    def summary(self) -> dict | None:
        if self.handle is None:
            return None
        return {
            "nvml_peak_process_bytes": self.peak_process_bytes or None,
            "utilization_pct_mean": sum(self.util) / len(self.util) if self.util else None,
            "power_w_mean": sum(self.power) / len(self.power) if self.power else None,
            "samples": len(self.util),
        }



def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def device_state(device: str, exclude_pids: tuple[int, ...] = ()) -> dict | None:
    """What is already happening on a GPU, read just before a cell starts: the compute processes
    on it (pid, used memory), utilisation, SM and memory clocks, temperature, memory in use.
    None for the CPU or when NVML cannot see the device. Every field may be None (not supported
    on this GPU, or no permission); mlbench.stats.busy_warnings turns this into warnings."""
    if not device.startswith("cuda") or not _init():
        return None
    handles = _pci_order_handles()
    try:
        idx = int(device.split(":")[1])
    except (IndexError, ValueError):
        return None
    if idx >= len(handles):
        return None
    h = handles[idx]
    procs = []
    for p in (_try(pynvml.nvmlDeviceGetComputeRunningProcesses, h) or []):
        if p.pid in exclude_pids:
            continue
        used = getattr(p, "usedGpuMemory", None)
        procs.append({"pid": int(p.pid), "used_memory_bytes": int(used) if used else None})
    util = _try(pynvml.nvmlDeviceGetUtilizationRates, h)
    mem = _try(pynvml.nvmlDeviceGetMemoryInfo, h)
    clocks = {name: _try(pynvml.nvmlDeviceGetClockInfo, h, kind) for name, kind in (
        ("sm_clock_mhz", pynvml.NVML_CLOCK_SM), ("memory_clock_mhz", pynvml.NVML_CLOCK_MEM))}
    max_sm = _try(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM)
    return {
        "processes": procs,
        "utilization_gpu_pct": None if util is None else int(util.gpu),
        "utilization_memory_pct": None if util is None else int(util.memory),
        **clocks, "sm_clock_max_mhz": max_sm,
        "temperature_c": _try(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
        "memory_used_bytes": None if mem is None else int(mem.used),
        "power_w": (lambda v: None if v is None else v / 1000.0)(
            _try(pynvml.nvmlDeviceGetPowerUsage, h)),
    }


def uuid(index: int) -> str | None:
    """The UUID NVML reports for the GPU at `index` (PCI order), or None when NVML cannot tell."""
    handles = _pci_order_handles()
    if not 0 <= index < len(handles):
        return None
    return _try(lambda h: _str(pynvml.nvmlDeviceGetUUID(h)), handles[index])
