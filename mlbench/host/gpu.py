"""NVIDIA GPUs through nvidia-ml-py (NVML): which are present, which the user gave mlbench, and
what a worker process uses.

Owns every NVML call of the parent: device listing for `mlbench list` and run.json, the mapping
of `cuda:N` to a physical device (honouring an inherited CUDA_VISIBLE_DEVICES of indices or
GPU-/MIG- UUIDs, as Slurm and Kubernetes set it) and of a scheduler's assignment (Ray: the
physical GPU, `assigned`), the value a cell's CUDA_VISIBLE_DEVICES gets and its CUDA JIT cache,
and the guarded NVML calls (_call, _try) that mlbench.host.gpu_sampling builds on: the per-cell
sampler, the device state before and after a cell, the energy counter (import them from there:
this module sits below it).

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


def assigned(token: str) -> Visible | None:
    """The GPU a scheduler (Ray) assigned by its CUDA_VISIBLE_DEVICES entry: a physical index
    (PCI bus order) or a GPU-/MIG- UUID, read WITHOUT the inherited variable, which in a Ray
    task is that same assignment (the task's `cuda:2` is its only device, not the third)."""
    handles = _pci_order_handles()
    token = str(token).strip()
    hit: tuple[Any, bool] | None = None
    if token.isdigit():
        hit = (handles[int(token)], False) if int(token) < len(handles) else None
    elif token.startswith(("GPU-", "MIG-")) and handles:
        hit = _resolve_uuid(token, handles)
    return None if hit is None else Visible(0, token, hit[0], _uuid(hit[0]), hit[1])


# The driver's JIT cache: a kernel compiled from PTX (TensorFlow on compute capability 9.x, any
# framework on a GPU newer than its wheel) is kept across processes. The default (~/.nv, 256 MiB
# to 1 GiB by driver) is too small for a sweep's kernels and would JIT them again in each cell,
# inflating first-step times; 4 GiB is the largest size the driver accepts.
CUDA_CACHE_MAXSIZE = str(4 << 30)


def cuda_cache_env(environ: dict | None = None) -> dict[str, str]:
    """CUDA_CACHE_PATH / CUDA_CACHE_MAXSIZE for a GPU worker: the user's own where set, else a
    persistent cache under ~/.cache/mlbench."""
    environ = os.environ if environ is None else environ
    path = environ.get("CUDA_CACHE_PATH") or os.path.join(
        os.path.expanduser("~"), ".cache", "mlbench", "cuda-jit-cache")
    return {"CUDA_CACHE_PATH": path,
            "CUDA_CACHE_MAXSIZE": environ.get("CUDA_CACHE_MAXSIZE") or CUDA_CACHE_MAXSIZE,
            "CUDA_CACHE_DISABLE": "0"}


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


def uuid(index: int) -> str | None:
    """The UUID NVML reports for the GPU at `index` (PCI order), or None when NVML cannot tell."""
    handles = _pci_order_handles()
    if not 0 <= index < len(handles):
        return None
    return _try(lambda h: _str(pynvml.nvmlDeviceGetUUID(h)), handles[index])
