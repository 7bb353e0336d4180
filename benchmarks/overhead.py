"""Orchestration overhead per cell, and the parent's CPU use while a cell runs.

1. A sweep of N dummy cells through `mlbench run` against the very same worker commands (same
   request files, same environment) run back to back by a plain loop, interleaved over rounds in
   one run. Overhead per cell = (mlbench time - loop time) / N, measured both for the whole
   command (Python start-up and imports included) and from the first cell's start to the last
   cell's end (the steady per-cell cost). Goal: under 20 ms.
2. The parent's own CPU time while long cells run (dummy workers that sleep): goal under 1% of
   one core (no busy polling).

    .venv/bin/python benchmarks/overhead.py [--cells 60] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import yaml

from mlbench.config import schema as cfg
from mlbench.run import launcher, matrix


def write_config(path: Path, cells: int, sleep_s: float = 0.0) -> Path:
    path.write_text(yaml.safe_dump({
        "frameworks": ["dummy"], "models": ["mlp"], "devices": ["cpu"],
        "batch_sizes": list(range(1, cells + 1)), "timeout_s": 60,
        "framework_settings": {"dummy": {"options": {"sleep_s": sleep_s}}}}))
    return path


def run_mlbench(conf: Path, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlbench.cli", "run", "--config", str(conf),
                    "--output", str(out), "--no-report"], check=True, capture_output=True)
    total = time.perf_counter() - t0
    cells = json.loads((out / "results.json").read_text())["cells"]
    first = min(datetime.fromisoformat(c["started_at"]) for c in cells)
    last = max(datetime.fromisoformat(c["ended_at"]) for c in cells)
    return total, (last - first).total_seconds()


def run_loop(conf: Path, out: Path) -> float:
    """The same worker commands, request files and environment, run back to back."""
    cells = matrix.expand(cfg.load_config(conf))
    jobs = []
    for cell in cells:
        d = out / "cells" / cell.cell_id
        job = launcher.cell_job(cell)
        jobs.append((launcher.command(job, d.resolve() / "request.json"), launcher.job_env(job)))
    t0 = time.perf_counter()
    for argv, env in jobs:
        subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       check=True)
    return time.perf_counter() - t0


def overhead(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = write_config(tmp / "c.yaml", n)
        totals, spans, loops = [], [], []
        for r in range(rounds):
            out = tmp / f"r{r}"
            total, span = run_mlbench(conf, out)
            loops.append(run_loop(conf, out))
            totals.append(total)
            spans.append(span)
        loop = statistics.median(loops)
        print(f"orchestration overhead, {n} dummy cells, {rounds} interleaved rounds")
        print(f"  plain loop of the same worker commands : {loop:7.3f} s "
              f"({loop / n * 1000:6.2f} ms/cell)")
        print(f"  mlbench run, whole command             : {statistics.median(totals):7.3f} s "
              f"-> overhead {(statistics.median(totals) - loop) / n * 1000:6.2f} ms/cell "
              "(start-up and imports included)")
        print(f"  mlbench run, first start to last end   : {statistics.median(spans):7.3f} s "
              f"-> overhead {(statistics.median(spans) - loop) / n * 1000:6.2f} ms/cell "
              "(goal < 20 ms)")


def parent_cpu(cells: int, sleep_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = write_config(tmp / "c.yaml", cells, sleep_s)
        proc = psutil.Popen([sys.executable, "-m", "mlbench.cli", "run", "--config", str(conf),
                             "--output", str(tmp / "out"), "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # past start-up and imports: measure the steady state
        c0, t0 = proc.cpu_times(), time.perf_counter()
        time.sleep(cells * 4 * sleep_s - 2.5)
        c1, t1 = proc.cpu_times(), time.perf_counter()
        proc.wait()
        used = (c1.user + c1.system) - (c0.user + c0.system)
        print(f"parent CPU while cells run: {used:.3f} s CPU over {t1 - t0:.1f} s wall = "
              f"{used / (t1 - t0) * 100:.2f}% of one core (goal < 1%)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    overhead(args.cells, args.rounds)
    parent_cpu(cells=3, sleep_s=1.0)
