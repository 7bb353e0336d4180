"""Closing figures for statistics and utilisation: the 95% CI width of training throughput at
`repeats: 3` for each model of the quick config on the CPU, and per-framework MFU against the
ceiling measured in the same run.

    .venv/bin/python benchmarks/stats_figures.py [--reuse RUN_DIR] [--keep]

End to end: runs `mlbench run --config configs/quick_test.yaml --repeats 3 --no-report` into a
temporary directory (about 3 minutes on 2 cores), measures the matmul ceilings there through
mlbench.analysis.ceiling.measure_ceilings, aggregates, and prints one line per framework x model x
batch plus a framework x model summary. Never imports an ML framework (workers do).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from mlbench.analysis import ceiling
from mlbench.results import frames  # noqa: E402
from mlbench.config import schema as cfg  # noqa: E402
from mlbench.run.matrix import resolve_threads  # noqa: E402

CONFIG = ROOT / "configs" / "quick_test.yaml"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reuse", type=Path, help="an existing run directory (skips the sweep)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = ap.parse_args()
    tmp = None
    if args.reuse:
        run_dir = args.reuse
    else:
        tmp = tempfile.mkdtemp(prefix="mlbench-stats-")
        run_dir = Path(tmp) / "results"
        mlbench = Path(sys.executable).with_name("mlbench")
        t0 = time.monotonic()
        proc = subprocess.run([str(mlbench), "run", "--config", str(CONFIG), "--repeats", "3",
                               "--no-report", "--output", str(run_dir)], cwd=tmp,
                              capture_output=True, text=True)
        print(f"sweep: {time.monotonic() - t0:.0f} s, exit {proc.returncode}, {run_dir}")
        if not (run_dir / "results.jsonl").exists():
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 1
    conf = cfg.load_config(CONFIG)
    frameworks = list(conf.frameworks)
    threads = resolve_threads(conf)
    t0 = time.monotonic()
    ceilings = ceiling.measure_ceilings(run_dir, frameworks, ["cpu"], ["fp32"], threads=threads)
    print(f"ceilings ({time.monotonic() - t0:.0f} s, {threads} threads, n={ceiling.CPU_SIZE}):")
    for fw, devs in sorted(ceilings.items()):
        print(f"  {fw:<11} cpu fp32 {devs['cpu']['fp32'] / 1e9:8.1f} GFLOP/s")
    _, _, _, cells = frames.load_frames(run_dir)
    cells = cells.filter(pl.col("ok_repeats") > 0).with_columns(
        ((pl.col("train_sps_ci_hi") - pl.col("train_sps_ci_lo")) / pl.col("train_sps"))
        .alias("ci_width_rel"))
    print("\nper cell (training throughput, 95% CI over the per-process values):")
    print(f"  {'framework':<11}{'model':<27}{'batch':>5}{'ok':>4}{'samples/s':>11}"
          f"{'CI lo':>11}{'CI hi':>11}{'CI width':>9}{'cv':>7}{'GFLOP/s':>9}{'MFU':>7}")
    for r in cells.sort("model_label", "framework", "batch_size").iter_rows(named=True):
        print(f"  {r['framework']:<11}{r['model_label']:<27}{r['batch_size']:>5}"
              f"{r['ok_repeats']:>4}{_g(r['train_sps']):>11}{_g(r['train_sps_ci_lo']):>11}"
              f"{_g(r['train_sps_ci_hi']):>11}{_p(r['ci_width_rel']):>9}"
              f"{_p(r['train_sps_cv']):>7}{_g((r['train_flops_s'] or 0) / 1e9):>9}"
              f"{_p(r['mfu']):>7}")
    summ = (cells.group_by("framework", "model_label")
            .agg(pl.col("ci_width_rel").median(), pl.col("mfu").median(),
                 pl.col("n_warnings").sum()).sort("model_label", "framework"))
    print("\nframework x model (median over batch sizes): CI width / throughput, MFU")
    for r in summ.iter_rows(named=True):
        print(f"  {r['framework']:<11}{r['model_label']:<27} CI width {_p(r['ci_width_rel']):>7}"
              f"   MFU {_p(r['mfu']):>7}   warnings {r['n_warnings']}")
    if tmp and not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _g(v) -> str:
    return "–" if v is None else f"{v:.4g}"


def _p(v) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


if __name__ == "__main__":
    raise SystemExit(main())
