"""What a GPU is doing while mlbench measures on it, read through NVML (mlbench.host.gpu's guarded
calls and its `pynvml`, read at call time so a test's fake NVML is the one used).

Owns the per-cell sampler (the worker's own memory per NVML, device utilisation, power with
its timestamps for the energy fallback, throttle reasons), the device state read just before
and after a cell (processes, utilisation, clocks, temperature, memory, power, power limit,
throttle reasons, persistence, ECC, MIG mode, the energy counter), NVML's throttle-reason bits,
the total-energy counter and the driver/CUDA versions. Every call is guarded: a failure becomes
None or a reason, never an exception. Must not import any ML framework.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from . import gpu


# --- per-cell sampling --------------------------------------------------------------------------

def _is_mig(v: "gpu.Visible") -> bool:
    if v.mig:
        return True
    mode = gpu._try(_nv("nvmlDeviceGetMigMode"), v.handle)
    return bool(mode and mode[0])


class ProcessSampler:
    """Samples a worker's GPU memory (NVML's per-process figure), utilisation and power.

    When the worker's memory cannot be attributed, `summary()` says why in
    `process_memory_note`: a MIG device, no process with the worker's PID (a container without
    the host PID namespace), no memory figure, or an NVML error."""

    def __init__(self, pid: int, device: str, token: str | None = None):
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
        self.throttle_seen = 0  # OR of the throttle-reason bitmasks seen while the worker ran
        self.power_at: list[tuple[float, float]] = []  # (monotonic s, W): energy's fallback
        # `token`: a scheduler's assignment (Ray), resolved physically; else the user's cuda:N
        v = (gpu.assigned(token) if token is not None else gpu.visible(device)) \
            if device.startswith("cuda") else None
        if v is not None:
            self.handle = v.handle
            self.mig = _is_mig(v)

    def _note(self, err: str | None) -> None:
        if err and len(self.errors) < 3 and err not in self.errors:
            self.errors.append(err)

    def sample(self) -> None:
        if self.handle is None:
            return
        procs, err = gpu._call(_nv("nvmlDeviceGetComputeRunningProcesses"), self.handle)
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
        util, err = gpu._call(_nv("nvmlDeviceGetUtilizationRates"), self.handle)
        self._note(err)
        if util is not None:
            self.util.append(int(util.gpu))
        power, err = gpu._call(_nv("nvmlDeviceGetPowerUsage"), self.handle)
        self._note(err)
        if power is not None:
            self.power.append(power / 1000.0)
            self.power_at.append((time.monotonic(), power / 1000.0))
        reasons = gpu._try(_throttle_fn(), self.handle)
        if isinstance(reasons, int):
            self.throttle_seen |= reasons

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
            "throttle_reasons": throttle_names(self.throttle_seen),
            # other compute processes seen on the device while the worker ran (contention);
            # unknown (None) when NVML never listed the worker itself under its pid
            "other_processes": sorted(self.other_pids) if self.pid_seen else None,
        }


def device_state(device: str, exclude_pids: tuple[int, ...] = (),
                 token: str | None = None) -> dict | None:
    """What is already happening on a GPU, read just before a cell starts: the compute processes
    on it (pid, used memory), utilisation, SM and memory clocks, temperature, memory in use.
    None for the CPU or when NVML cannot see the device. Every field may be None (not supported
    on this GPU, or no permission); mlbench.analysis.stats.busy_warnings turns this into warnings.
    Also the power limit, throttle reasons, persistence, ECC and MIG mode (limits_state).
    `token`: a scheduler's assignment, resolved as `assigned` does."""
    v = (gpu.assigned(token) if token is not None else gpu.visible(device)) \
        if device.startswith("cuda") else None
    if v is None:
        return None
    h = v.handle
    procs = []
    for p in (gpu._try(_nv("nvmlDeviceGetComputeRunningProcesses"), h) or []):
        pid = getattr(p, "pid", None)
        if pid is None or pid in exclude_pids:
            continue
        used = getattr(p, "usedGpuMemory", None)
        procs.append({"pid": int(pid), "used_memory_bytes": int(used) if used else None})
    util = gpu._try(_nv("nvmlDeviceGetUtilizationRates"), h)
    mem = gpu._try(_nv("nvmlDeviceGetMemoryInfo"), h)
    clocks = {name: gpu._try(_nv("nvmlDeviceGetClockInfo"), h, getattr(gpu.pynvml, kind, 0))
              for name, kind in (("sm_clock_mhz", "NVML_CLOCK_SM"),
                                 ("memory_clock_mhz", "NVML_CLOCK_MEM"))}
    max_sm = gpu._try(_nv("nvmlDeviceGetMaxClockInfo"), h, getattr(gpu.pynvml, "NVML_CLOCK_SM", 0))
    power = gpu._try(_nv("nvmlDeviceGetPowerUsage"), h)
    return {
        "processes": procs,
        "utilization_gpu_pct": None if util is None else int(util.gpu),
        "utilization_memory_pct": None if util is None else int(util.memory),
        **clocks, "sm_clock_max_mhz": max_sm,
        "temperature_c": gpu._try(_nv("nvmlDeviceGetTemperature"), h,
                              getattr(gpu.pynvml, "NVML_TEMPERATURE_GPU", 0)),
        "memory_used_bytes": None if mem is None else int(mem.used),
        "power_w": None if power is None else power / 1000.0,
        **limits_state(h),
    }


# --- power limit, clocks, throttling (before and after each cell; the smoke check's probe) ----

# NVML's clocks-event ("throttle") reason bits (nvml.h, nvmlClocksEventReason*): the names
# mlbench records. GpuIdle and the user's own clock settings are not throttling.
THROTTLE_BITS = {0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal_slowdown",
                 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
                 0x10: "sync_boost"}
NOT_THROTTLING = {0x1: "gpu_idle", 0x2: "applications_clocks_setting",
                  0x100: "display_clock_setting"}


def _nv(name: str) -> Callable:
    """pynvml's call `name`, or one that fails like an NVML error where this nvidia-ml-py (or
    driver) lacks it: gpu._call turns either into a reason, never an exception."""
    fn = getattr(gpu.pynvml, name, None)
    if fn is None:
        def missing(*_: Any) -> Any:
            raise AttributeError(f"this nvidia-ml-py has no {name}")
        return missing
    return fn


def _throttle_fn() -> Callable:
    """NVML's current clocks-event reasons call (renamed from ...ClocksThrottleReasons in
    newer nvidia-ml-py; both are tried)."""
    for name in ("nvmlDeviceGetCurrentClocksEventReasons",
                 "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(gpu.pynvml, name, None)
        if fn is not None:
            return fn
    return lambda h: None


def throttle_names(mask: int | None) -> list[str] | None:
    """The throttling reasons in an NVML reason bitmask (idle and clock settings left out);
    None when NVML gave no mask."""
    if not isinstance(mask, int):
        return None
    return [name for bit, name in sorted(THROTTLE_BITS.items()) if mask & bit]


def _pair0(v: Any) -> Any:
    return v[0] if isinstance(v, (tuple, list)) and v else v


def limits_state(h: Any) -> dict:
    """Power limit, clocks, current throttle reasons, persistence mode, ECC and MIG mode, and
    the total-energy counter of one device (every field None where NVML cannot tell)."""
    limit = gpu._try(_nv("nvmlDeviceGetEnforcedPowerLimit"), h)
    reasons = gpu._try(_throttle_fn(), h)
    mig, ecc = gpu._try(_nv("nvmlDeviceGetMigMode"), h), gpu._try(_nv("nvmlDeviceGetEccMode"), h)
    return {
        "power_limit_w": None if limit is None else limit / 1000.0,
        "throttle_reasons": throttle_names(reasons),
        "persistence_mode": gpu._try(_nv("nvmlDeviceGetPersistenceMode"), h),
        "ecc_mode": _pair0(ecc),
        "mig_mode": _pair0(mig),
        "energy_mj": gpu._try(_nv("nvmlDeviceGetTotalEnergyConsumption"), h),
    }


def energy_mj(h: Any) -> tuple[int | None, str | None]:
    """NVML's total-energy counter (millijoules since the driver loaded; Volta and newer), or
    (None, why not)."""
    if h is None:
        return None, "no NVML handle"
    v, err = gpu._call(_nv("nvmlDeviceGetTotalEnergyConsumption"), h)
    return (int(v), None) if isinstance(v, int) else (None, err or "no energy counter")


def versions() -> dict:
    """Driver and the CUDA version the driver supports (NVML), for the probe and the
    ceilings cache key."""
    if gpu._init() is not None:
        return {"driver": None, "cuda_driver": None}
    drv = gpu._try(_nv("nvmlSystemGetDriverVersion"))
    cuda = gpu._try(_nv("nvmlSystemGetCudaDriverVersion"))
    return {"driver": None if drv is None else gpu._str(drv),
            "cuda_driver": None if not isinstance(cuda, int) else
            f"{cuda // 1000}.{cuda % 1000 // 10}"}
