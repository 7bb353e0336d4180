"""Bytes the equivalence gate writes per framework for a transformer with GPT-2's 50,257-token
vocabulary (tiny otherwise, so it runs on a CPU in seconds), and the peak RSS of the parent while
it compares them. Prints one line per artefact file and the totals.

    PYTHONPATH=$PWD python benchmarks/gate_artefact_bytes.py [pytorch jax ...]
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from mlbench.run import gate
from mlbench.config.schema import Config


def main(frameworks: list[str]) -> None:
    model = {"name": "transformer", "preset": "tiny", "options": {"vocab_size": 50257}}
    config = Config(frameworks=frameworks, models=[model], batch_sizes=[16],
                    precisions=["fp32"], threads=2, timeout_s=600)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = gate.run(config, Path(tmp))
        secs = time.perf_counter() - t0
        files = sorted(Path(tmp).rglob("*.npz"))
        for f in files:
            print(f"{f.name:48s} {f.stat().st_size:>14,d} bytes")
        total = sum(f.stat().st_size for f in files)
        print(f"total {total:,d} bytes in {len(files)} file(s); largest "
              f"{max(f.stat().st_size for f in files):,d}; gate {secs:.1f} s; parent peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; verdicts "
              + ", ".join(f"{r.framework}={r.passed}" for r in report.rows))


if __name__ == "__main__":
    main(sys.argv[1:] or ["pytorch", "jax"])
