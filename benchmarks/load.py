"""mlbench under load: the parent's memory over a long sweep, and resume over a big store.

1. A sweep of `--cells` dummy cells (default 2,000), run in-process through runner.run_sweep with
   hooks that record the parent's RSS after every cell: prints the growth from the first to the
   last cell (goal: under 30 MB) and the time per cell.
2. A results.jsonl of `--attempts` realistic attempt records (default 100,000: 1,000 cells x 5
   repeats x 20 attempts each, 50 step times and 30 latencies per record, the format a real
   cell writes), then the time to decide what to run: reading the store + runner.select (goal:
   under 2 s), the full-parse reader for comparison, and a whole `mlbench run --resume` that
   finds everything done.

    .venv/bin/python benchmarks/load.py                      # both, full size
    .venv/bin/python benchmarks/load.py --cells 200 --attempts 20000   # quicker

Prints figures; not a timed test.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlbench.results import attempt as record, store
from mlbench.config import schema as cfg
from mlbench.run import runner  # noqa: E402
from mlbench.run.matrix import expand  # noqa: E402


class RssHooks(runner.Hooks):
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.rss: list[int] = []
        self.times: list[float] = []

    def cell_end(self, cell, record) -> None:
        self.rss.append(self.proc.memory_info().rss)
        self.times.append(time.monotonic())


def _config(batch_sizes: int, repeats: int = 1, **extra) -> cfg.Config:
    return cfg.validate({"frameworks": ["dummy"], "models": ["mlp"], "devices": ["cpu"],
                         "batch_sizes": list(range(1, batch_sizes + 1)), "repeats": repeats,
                         "timeout_s": 60, **extra}, "benchmarks/load.py")


def sweep(n_cells: int, work: Path) -> dict:
    hooks = RssHooks()
    t0 = time.monotonic()
    outcome = runner.run_sweep(_config(n_cells), work / "sweep", runner.Plan("new"), hooks)
    wall = time.monotonic() - t0
    assert outcome.ran == n_cells and all(a["status"] == "ok" for a in outcome.latest)
    mb = [r / 2**20 for r in hooks.rss]
    tenth = max(1, n_cells // 10)
    return {"cells": n_cells, "wall_s": wall, "per_cell_ms": 1000 * wall / n_cells,
            "rss_first_mb": mb[0], "rss_last_mb": mb[-1], "rss_max_mb": max(mb),
            "growth_first_to_last_mb": mb[-1] - mb[0],
            "growth_after_first_tenth_mb": mb[-1] - mb[tenth - 1]}


def _template(work: Path) -> dict:
    """One real attempt record (the exact format and key order), fattened to a real cell's
    size: 50 step times, 30 latencies."""
    runner.run_sweep(_config(1), work / "one", runner.Plan("new"), runner.Hooks())
    rec, _ = store.read_jsonl(work / "one" / store.RESULTS_JSONL)
    rec = rec[0]
    rng = random.Random(0)
    rec["metrics"]["train"]["step_times_s"] = [0.01 * (1 + rng.random()) for _ in range(50)]
    rec["metrics"]["inference"]["latencies_s"] = [0.002 * (1 + rng.random()) for _ in range(30)]
    for k in ("format", "order"):
        rec.pop(k)
    return rec


def synthesize(n_attempts: int, work: Path) -> tuple[Path, Path, int]:
    n_cells, repeats = 1000, 5
    per_key = max(1, n_attempts // (n_cells * repeats))
    conf = _config(n_cells, repeats)
    conf_path = work / "big.yaml"
    conf_path.write_text(yaml.safe_dump(cfg.dump(conf)))
    cells = expand(conf)
    tpl = _template(work)
    out = work / "big"
    out.mkdir()
    order = 0
    with open(out / store.RESULTS_JSONL, "w") as fh:
        for attempt in range(per_key):
            last = attempt == per_key - 1
            for c in cells:
                order += 1
                rec = {**tpl, "cell_id": c.cell_id, "repeat": c.repeat,
                       "fingerprint": c.fingerprint, "batch_size": c.batch_size,
                       "status": "ok" if last or order % 3 else "failed",
                       "format": record.FORMAT, "order": order}
                fh.write(json.dumps(rec, default=str) + "\n")
    return conf_path, out, order


def resume(n_attempts: int, work: Path) -> dict:
    conf_path, out, total = synthesize(n_attempts, work)
    size_mb = (out / store.RESULTS_JSONL).stat().st_size / 2**20
    conf = cfg.load_config(conf_path)
    cells = expand(conf)
    t0 = time.monotonic()
    previous = store.Store(out).existing_attempts()
    todo, kept = runner.select(cells, previous, runner.Plan("resume"))
    decide = time.monotonic() - t0
    assert not todo and kept == len(cells), (len(todo), kept)
    t0 = time.monotonic()
    attempts, _ = store.read_jsonl(out / store.RESULTS_JSONL)
    full = runner.select(cells, attempts, runner.Plan("resume"))
    full_parse = time.monotonic() - t0
    assert not full[0]
    del attempts
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mlbench.cli", "run", "--config",
                           str(conf_path), "--output", str(out), "--resume", "--no-report"],
                          cwd=work, capture_output=True, text=True)
    whole = time.monotonic() - t0
    assert proc.returncode == 0 and "0 to run" in proc.stderr, proc.stderr[-2000:]
    return {"attempts": total, "cells": len(cells), "store_mb": size_mb,
            "decide_s (scan + select)": decide, "full_parse_s (read_jsonl + select)": full_parse,
            "whole_mlbench_run_resume_s": whole}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--attempts", type=int, default=100_000)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-resume", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlbench-load-") as tmp:
        work = Path(tmp)
        # the sweep first: the resume part's full-parse comparison inflates the heap
        if not args.skip_sweep:
            for k, v in sweep(args.cells, work).items():
                print(f"sweep   {k:40s} {v:,.3f}" if isinstance(v, float) else
                      f"sweep   {k:40s} {v:,}", flush=True)
        if not args.skip_resume:
            for k, v in resume(args.attempts, work).items():
                print(f"resume  {k:40s} {v:,.3f}" if isinstance(v, float) else
                      f"resume  {k:40s} {v:,}", flush=True)


if __name__ == "__main__":
    main()
