"""How build_report scales: synthetic stores of 100 and 10,000 attempts (100 step times and 50
latencies each, 3 repeats per cell), timed end to end. Goals: < 5 s and < 15 MB of HTML at 10,000.

    .venv/bin/python benchmarks/report_scale.py [N ...]

Never imports an ML framework.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fakestore  # noqa: E402

from mlbench.report import build_report  # noqa: E402


def main(sizes: list[int]) -> int:
    ok = True
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            attempts = fakestore.sweep(n, steps=100, latencies=50, repeats=3)
            run = fakestore.write_store(Path(tmp) / "run", attempts)
            jsonl_mb = (run / "results.jsonl").stat().st_size / 1e6
            t0 = time.perf_counter()
            index = build_report(run, Path(tmp) / "report")
            wall = time.perf_counter() - t0
            html_mb = index.stat().st_size / 1e6
            cells = len({a["cell_id"] for a in attempts})
            print(f"{n:>6} attempts ({cells} cells, results.jsonl {jsonl_mb:.1f} MB): "
                  f"build_report {wall:.2f} s, index.html {html_mb:.2f} MB")
            if n >= 10_000:
                ok &= wall < 5 and html_mb < 15
    print("goals met" if ok else "GOALS MISSED (10,000 attempts: < 5 s, < 15 MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main([int(a) for a in sys.argv[1:]] or [100, 10_000]))
