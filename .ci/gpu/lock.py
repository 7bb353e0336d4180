"""Maintainer tool: regenerate the GPU constraint files of .ci/gpu/ from PyPI's metadata.

`pip install --dry-run --report` would download every wheel in full to read its metadata (this
index serves no PEP 658 metadata files): several GB of CUDA libraries per set. This reads each
wheel's METADATA with HTTP range requests instead (a few hundred KB per wheel: the zip's central
directory and one member), and resolves the packages that decide the CUDA build (the frameworks,
their CUDA plugins, every nvidia-*/cuda-* library, triton, numpy, ml-dtypes) for Linux x86_64,
CPython 3.11: exact pins where a package pins (torch and TensorFlow pin their CUDA libraries),
else the newest release that satisfies every requirement seen. Pure-Python dependencies float.

    MLBENCH_INDEX_URL=<simple index URL> /path/to/python .ci/gpu/lock.py
                                               (needs `packaging`; writes .ci/gpu/*.txt)

The index is the PEP 503 "simple" index pip installs from: MLBENCH_INDEX_URL, else pip's own
PIP_INDEX_URL; the tool names no host of its own.
"""
from __future__ import annotations

import io
import json
import os
import re
import sys
import urllib.request
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

INDEX = (os.environ.get("MLBENCH_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "").rstrip("/") + "/"
ENV = {**default_environment(), "platform_machine": "x86_64", "sys_platform": "linux",
       "platform_system": "Linux", "python_version": "3.11", "python_full_version": "3.11.7",
       "implementation_name": "cpython"}
TAGS = ("cp311-cp311-manylinux", "py3-none-manylinux", "cp311-abi3-manylinux", "py3-none-any",
        "py2.py3-none-any", "cp311-cp311-linux_x86_64")
PINNED = re.compile(r"^(nvidia-|cuda-|jax|jaxlib|torch$|triton$|tensorflow|numpy$|ml-dtypes$|"
                    r"keras$|flax$|optax$)")
NUMPY = "2.4.6"  # the same numpy in every environment (and the CPU one): the gate compares hashes
SETS = {
    "cuda13-torch-jax.txt": ["torch==2.13.0", "jax[cuda13]==0.10.2", "flax==0.12.8",
                             "optax==0.2.8", f"numpy=={NUMPY}"],
    "cuda12-torch-jax.txt": ["torch==2.10.0", "jax[cuda12]==0.10.2", "flax==0.12.8",
                             "optax==0.2.8", f"numpy=={NUMPY}"],
    "cuda12-tensorflow.txt": ["tensorflow[and-cuda]==2.21.0", f"numpy=={NUMPY}"],
}


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests (blocks of 256 KiB, cached)."""
    BLOCK = 256 * 1024

    def __init__(self, url: str, size: int):
        self.url, self.size, self.pos, self.blocks = url, size, 0, {}

    def seekable(self): return True
    def readable(self): return True
    def tell(self): return self.pos

    def seek(self, off, whence=0):
        self.pos = {0: off, 1: self.pos + off, 2: self.size + off}[whence]
        return self.pos

    def _block(self, i: int) -> bytes:
        if i not in self.blocks:
            lo, hi = i * self.BLOCK, min(self.size, (i + 1) * self.BLOCK) - 1
            req = urllib.request.Request(self.url, headers={"Range": f"bytes={lo}-{hi}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                self.blocks[i] = r.read()
        return self.blocks[i]

    def read(self, n=-1):
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        out = bytearray()
        while self.pos < end:
            b = self._block(self.pos // self.BLOCK)
            start = self.pos % self.BLOCK
            chunk = b[start:start + end - self.pos]
            out += chunk
            self.pos += len(chunk)
        return bytes(out)


def files(name: str) -> list[dict]:
    req = urllib.request.Request(INDEX + canonicalize_name(name) + "/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["files"]


def wheel_for(name: str, spec: SpecifierSet) -> tuple[Version, dict]:
    best = None
    for f in files(name):
        fn = f["filename"]
        if not fn.endswith(".whl") or f.get("yanked") or not any(t in fn for t in TAGS):
            continue
        if "manylinux" in fn and "x86_64" not in fn:
            continue
        v = Version(fn.split("-")[1])
        if v.is_prerelease or v not in spec:
            continue
        if best is None or v > best[0]:
            best = (v, f)
    if best is None:
        raise SystemExit(f"no wheel of {name} {spec} for linux x86_64 cp311")
    return best


def requires(f: dict) -> list[str]:
    with zipfile.ZipFile(RangeFile(f["url"], int(f["size"]))) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def resolve(roots: list[str]) -> dict[str, Version]:
    specs: dict[str, SpecifierSet] = {}
    extras: dict[str, set[str]] = {}
    queue = [Requirement(r) for r in roots]
    pins: dict[str, Version] = {}
    while queue:
        r = queue.pop(0)
        name = canonicalize_name(r.name)
        specs[name] = specs.get(name, SpecifierSet()) & r.specifier
        new_extras = set(r.extras) - extras.get(name, set())
        if name in pins and pins[name] in specs[name] and not new_extras:
            continue
        extras.setdefault(name, set()).update(r.extras)
        version, f = wheel_for(name, specs[name])
        pins[name] = version
        print(f"  {name}=={version}", file=sys.stderr)
        for line in requires(f):
            dep = Requirement(line)
            ok = dep.marker is None or any(dep.marker.evaluate({**ENV, "extra": e})
                                           for e in extras[name] | {""})
            if ok and PINNED.match(canonicalize_name(dep.name)):
                queue.append(dep)
    return pins


# The CUDA compiler packages float to the newest release unless pinned with the runtime: XLA
# then finds a ptxas/nvjitlink newer than the driver supports and disables parallel compilation
# (seen on R580 with nvjitlink 13.5 over runtime 13.0). They follow the runtime's major.minor.
WITH_RUNTIME = ("nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-nvjitlink", "nvidia-cuda-crt")


def runtime_roots(pins: dict) -> list[str]:
    """Extra roots holding each compiler package (cu12 names included) to the CUDA runtime's
    major.minor release series; [] when already there or no runtime is pinned."""
    out = []
    for suffix in ("", "-cu12", "-cu13"):
        runtime = pins.get(f"nvidia-cuda-runtime{suffix}")
        if runtime is None:
            continue
        series = ".".join(str(runtime).split(".")[:2])
        for name in WITH_RUNTIME:
            v = pins.get(name + suffix)
            if v is not None and ".".join(str(v).split(".")[:2]) != series:
                out.append(f"{name}{suffix}=={series}.*")
    return out


def main() -> None:
    if INDEX == "/":
        raise SystemExit("error: set MLBENCH_INDEX_URL (or PIP_INDEX_URL) to the simple index "
                         "to read package metadata from")
    here = Path(__file__).resolve().parent
    for filename, roots in SETS.items():
        print(filename, file=sys.stderr)
        pins = resolve(roots)
        extra = runtime_roots(pins)
        if extra:
            pins = resolve(roots + extra)
        lines = [f"# {filename}: generated by .ci/gpu/lock.py from PyPI metadata for "
                 "Linux x86_64 CPython 3.11", f"# roots: {' '.join(roots)}"]
        lines += [f"{n}=={v}" for n, v in sorted(pins.items())]
        (here / filename).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
