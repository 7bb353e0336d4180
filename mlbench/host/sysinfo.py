"""The host a run measured: CPU, cores, memory, OS, Python, GPUs, and each framework's version.

Versions are read from package metadata (or asked of another interpreter), never by importing a
framework into the parent: this interpreter's in one pass over the dist-info folders on sys.path
(importlib.metadata itself only where that pass cannot answer), so `mlbench list` stays fast.
psutil is imported by what uses it. Must not import any ML framework.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from functools import lru_cache

from ..config import catalog
from . import gpu


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """psutil.cpu_count(logical=False). On Linux the same count psutil makes first (the distinct
    core sibling lists in sysfs), without importing psutil (~10 ms) for `mlbench list`."""
    import glob
    for pattern in ("core_cpus_list", "thread_siblings_list"):  # the newer name, then the old
        cores = set()
        for path in glob.glob(f"/sys/devices/system/cpu/cpu[0-9]*/topology/{pattern}"):
            try:
                with open(path, "rb") as fh:
                    cores.add(fh.read().strip())
            except OSError:
                continue
        if cores:
            return len(cores)
    import psutil
    return psutil.cpu_count(logical=False)


def host() -> dict:
    import psutil
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "gpus": gpu.list_gpus(),
        # what cuda:N meant: an inherited CUDA_VISIBLE_DEVICES and the physical UUID per device
        "cuda_devices": gpu.mapping(),
    }


def framework_version(framework: str, python: str | None = None) -> str | None:
    """Installed version of the framework's main distribution, or None when not installed."""
    entry = catalog.REGISTRY.get(framework)
    names = list(entry.distributions) if entry else []
    if not names:
        return None
    if python in (None, sys.executable):
        found = _installed(tuple(sys.path))
        for name in names:
            version = found.get(_normalise(name)) if found is not None else _metadata(name)
            if version:
                return version
        return None
    code = ("import importlib.metadata as m\n"
            f"for n in {names!r}:\n"
            "    try:\n        print(m.version(n)); break\n"
            "    except m.PackageNotFoundError: pass\n")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def framework_versions(names: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """This interpreter's version of each framework (None: not installed), in the given order."""
    return {fw: framework_version(fw) for fw in names}


def _normalise(name: str) -> str:
    """A distribution's name as importlib.metadata compares it (PEP 503, `_` for `-`)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata(name: str) -> str | None:
    import importlib.metadata
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _installed(path: tuple[str, ...]) -> dict[str, str] | None:
    """{normalised distribution name: version} on `path` (sys.path), as importlib.metadata would
    find them (the first `<name>-*.dist-info` / `.egg-info` folder along the path wins), read in
    one pass; None where that pass cannot stand in for importlib.metadata (a zip on sys.path, a
    folder without a Version), which is then asked name by name."""
    found: dict[str, str] = {}
    for entry in path:
        folder = entry or "."
        if os.path.isfile(folder):
            return None  # a zip or an egg: importlib.metadata knows how to look inside
        try:
            children = os.listdir(folder)  # in importlib.metadata's order
        except OSError:
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            key = _normalise(low.rpartition(".")[0].partition("-")[0])
            if key in found:
                continue
            version = _version_in(os.path.join(folder, child))
            if version is None:
                return None
            found[key] = version
    return found


def _version_in(info: str) -> str | None:
    """The Version header of a dist-info/egg-info folder's METADATA (or PKG-INFO)."""
    for name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info, name), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        break  # the headers end at the first blank line
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            continue
    return None


def frameworks(config_settings: dict, names: list[str]) -> dict:
    out = {}
    for fw in names:
        s = config_settings.get(fw)
        python = (s.python if s is not None and s.python else sys.executable)
        out[fw] = {"python": python, "version": framework_version(fw, python)}
    return out


def load_now() -> dict:
    """Machine load before a cell (free to read): a busy machine measures what it shares."""
    one, five, _ = os.getloadavg()
    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2),
            "cores_logical": os.cpu_count()}
