"""Where the wall time of the quick CPU sweep goes.

Runs `mlbench run --config configs/quick_test.yaml --output <tmp>/results --no-report` (timed),
then reads results.json and splits every cell's wall time into: process start + imports
(hello's import_s), data generation, build, load_data, first step (trace/compile), steady-state
training (sum of the step times), evaluation, inference (warm-up + timed passes), and the
remainder (interpreter start/exit, parent orchestration) = wall_s - all of the above. Printed
summed over all cells and per framework, plus the per-cell detail and the command's own wall
time against the issue's goal (the whole quick sweep under 3 minutes on a 2-core machine).

    .venv/bin/python benchmarks/quick_breakdown.py [--config configs/quick_test.yaml]
        [--keep DIR] [--goal-s 180]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("import", "data_gen", "build", "load_data", "first_step", "train_warmup",
         "train_steady", "eval", "inference", "remainder")
LABELS = {"import": "process start + imports", "data_gen": "data generation", "build": "build",
          "load_data": "load_data", "first_step": "first step (trace/compile)",
          "train_warmup": "training warm-up steps",
          "train_steady": "steady-state training", "eval": "evaluation",
          "inference": "inference (warm-up + timed)",
          "remainder": "remainder (start/exit, orchestration)"}


def split_cell(cell: dict) -> dict[str, float]:
    m = cell.get("metrics") or {}
    hello = cell.get("hello") or {}
    train = m.get("train") or {}
    inf = m.get("inference") or {}
    out = {
        "import": float(hello.get("import_s") or m.get("import_s") or 0.0),
        "data_gen": float(m.get("data_gen_s") or 0.0),
        "build": float(m.get("build_s") or 0.0),
        "load_data": float(m.get("load_data_s") or 0.0),
        "first_step": float(train.get("first_step_s") or 0.0),
        "train_warmup": float(train.get("warmup_s") or 0.0),
        "train_steady": float(train.get("steady_s") or 0.0),
        "eval": float((m.get("eval") or {}).get("time_s") or 0.0),
        # a latency sample is the mean of `loops` calls
        "inference": float(inf.get("warmup_s") or 0.0)
        + float(sum(inf.get("latencies_s") or [])) * int(inf.get("loops") or 1),
    }
    wall = float(cell.get("wall_s") or 0.0)
    out["remainder"] = wall - sum(out.values())
    out["wall"] = wall
    # what the epoch loop spent beyond its steps (progress messages, loss checks)
    out["epoch_overhead"] = float(sum(train.get("epoch_times_s") or [])) - out["first_step"] \
        - out["train_warmup"] - out["train_steady"]
    return out


def table(title: str, rows: dict[str, dict[str, float]], columns: list[str]) -> None:
    print(f"\n{title}")
    width = max(len(LABELS[p]) for p in PARTS) + 2
    print(f"{'':<{width}}" + "".join(f"{c:>14}" for c in columns))
    for part in (*PARTS, "wall"):
        label = LABELS.get(part, "cell wall (sum)")
        cells = []
        for c in columns:
            v = rows[c][part]
            total = rows[c]["wall"]
            pct = f"{100 * v / total:5.1f}%" if total else "   -  "
            cells.append(f"{v:7.1f}s {pct}" if part != "wall" else f"{v:7.1f}s       ")
        if part == "wall":
            print("-" * (width + 14 * len(columns)))
        print(f"{label:<{width}}" + "".join(f"{x:>14}" for x in cells))


def epochs_table(cells: list[dict]) -> None:
    """Per cell: the epoch's wall time and its parts (first step, warm-up, steady state), and
    the steady state's block-synced rate (the figure the report ranks on)."""
    print(f"\nepoch time, decomposed (seconds; last column: steady samples/s)\n"
          f"{'cell':<40}{'epoch total':>12}{'first step':>11}{'warm-up':>9}{'steady':>9}"
          f"{'steps':>7}{'blocks':>7}{'K':>5}{'samples/s':>11}")
    for c in sorted(cells, key=lambda c: c["cell_id"]):
        t = (c.get("metrics") or {}).get("train") or {}
        if c.get("status") != "ok" or not t.get("steady_s"):
            print(f"{c['cell_id']:<40} {c.get('status')}")
            continue
        rate = t["samples_per_step"] * t["steady_steps"] / t["steady_s"]
        print(f"{c['cell_id']:<40}{sum(t['epoch_times_s']):12.3f}{t['first_step_s']:11.3f}"
              f"{t['warmup_s']:9.3f}{t['steady_s']:9.3f}{t['steady_steps']:7d}"
              f"{len(t['steady_blocks']):7d}{t.get('steps_per_block') or 0:5d}{rate:11.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quick_test.yaml"))
    ap.add_argument("--keep", help="write the run here instead of a temporary directory")
    ap.add_argument("--goal-s", type=float, default=180.0)
    ap.add_argument("--results", help="read this finished run directory instead of running")
    args = ap.parse_args()
    if args.results:
        epochs_table(json.loads((Path(args.results) / "results.json").read_text())["cells"])
        return 0

    tmp = None
    if args.keep:
        base = Path(args.keep)
        base.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mlbench-quick-")
        base = Path(tmp.name)
    out = base / "results"
    mlbench = Path(sys.executable).with_name("mlbench")
    argv = ([str(mlbench)] if mlbench.exists() else [sys.executable, "-m", "mlbench.cli"]) + [
        "run", "--config", args.config, "--output", str(out), "--no-report"]
    print("$", " ".join(argv), flush=True)
    print(f"host: {os.cpu_count()} CPUs, affinity {sorted(os.sched_getaffinity(0))}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        print(f"mlbench run exited {proc.returncode}")
    res = json.loads((out / "results.json").read_text())
    cells = res["cells"]

    per_fw: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    print(f"\nper cell (seconds){'':<36}" + "".join(f"{p[:10]:>11}" for p in PARTS) + f"{'wall':>9}")
    for cell in sorted(cells, key=lambda c: (c["framework"], c["cell_id"])):
        parts = split_cell(cell)
        fw = cell["framework"]
        counts[fw] += 1
        for k, v in parts.items():
            per_fw[fw][k] += v
            per_fw["all"][k] += v
        status = "" if cell.get("status") == "ok" else f" [{cell.get('status')}]"
        print(f"  {cell['cell_id'] + status:<52}" + "".join(f"{parts[p]:11.2f}" for p in PARTS)
              + f"{parts['wall']:9.2f}")
    counts["all"] = len(cells)

    fws = sorted(k for k in per_fw if k != "all") + ["all"]
    table(f"sum over cells, by framework ({', '.join(f'{f}: {counts[f]} cells' for f in fws)})",
          per_fw, fws)
    cell_sum = per_fw["all"]["wall"]
    print(f"\nepoch loop beyond its steps (progress, loss checks): "
          + ", ".join(f"{f} {per_fw[f]['epoch_overhead']:.3f}s" for f in fws))
    print(f"\nmlbench run wall time: {total:.1f}s; cells' wall_s summed: {cell_sum:.1f}s; "
          f"outside the cells (parent start, config, run.json, host probe, results files): "
          f"{total - cell_sum:.1f}s")
    ok = total < args.goal_s
    print(f"goal: the quick sweep under {args.goal_s:.0f}s on this {os.cpu_count()}-CPU machine: "
          f"{'MET' if ok else 'NOT MET'} ({total:.1f}s)")
    epochs_table(cells)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
