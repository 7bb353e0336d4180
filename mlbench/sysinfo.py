"""The host a run measured: CPU, cores, memory, OS, Python, GPUs, and each framework's version.

Versions are read from package metadata (or asked of another interpreter), never by importing a
framework into the parent. Must not import any ML framework.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys

import psutil

from . import catalog, gpu


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict:
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
        for name in names:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
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
