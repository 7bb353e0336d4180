"""The smallest memory_limit_mb under which a CPU worker can import numpy and multiply two
matrices on this machine (the floor behind mlbench.config.schema.MIN_MEMORY_MB), per thread count.

    python benchmarks/memory_floor.py            # threads 1, 2, all cores
"""
from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("import resource, sys; lim = int(sys.argv[1]) << 20; "
         "resource.setrlimit(resource.RLIMIT_AS, (lim, lim)); "
         "import numpy as np; a = np.ones((256, 256)); float((a @ a).sum())")


def starts(mb: int, threads: int) -> bool:
    env = {**os.environ, **{v: str(threads) for v in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    return subprocess.run([sys.executable, "-c", PROBE, str(mb)], env=env,
                          capture_output=True).returncode == 0


def floor(threads: int, lo: int = 1, hi: int = 4096) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if starts(mid, threads) else (mid + 1, hi)
    return lo


if __name__ == "__main__":
    from mlbench.config.schema import MIN_MEMORY_MB
    for t in sorted({1, 2, os.cpu_count() or 1}):
        print(f"threads={t:<3} floor={floor(t)} MB   (config minimum: {MIN_MEMORY_MB} MB)")
