"""Serving figures of a run, one row per competitor and cell: the single-stream p90, the
server's max QPS within the bound (and in how many processes some rate met it), an exported
runtime's export time and its break-even against its source framework in batch-1 queries, and
the equivalence gate's max abs error.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/serving.py --config configs/serving.yaml \
        --output /tmp/serving-run          # runs the sweep first (mlbench run), then prints
    PYTHONPATH=$PWD .venv/bin/python benchmarks/serving.py --output /tmp/serving-run  # prints
    PYTHONPATH=$PWD .venv/bin/python benchmarks/serving.py --config benchmarks/serving_table.yaml \
        --output /tmp/serving-table        # issue 23's table: mlp, cnn, transformer x 7 (~20 min)

Every figure is the parent's (mlbench.results.frames, report.serving.break_even: the page's
numbers). Timings on a shared machine are noisy: say so beside any figure quoted from here.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

from mlbench.results import frames
from mlbench.report.serving import break_even


def _ms(v) -> str:
    return "-" if v is None else f"{v * 1e3:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="run this config first (mlbench run --output OUTPUT)")
    ap.add_argument("--output", required=True, help="the run directory")
    args = ap.parse_args()
    out = Path(args.output)
    if args.config:
        subprocess.run([sys.executable, "-m", "mlbench.cli", "run", "--config", args.config,
                        "--output", str(out), "--no-report"], check=True)
    _, _, _, cells = frames.load_frames(out)
    gate = json.loads((out / "verify.json").read_text()) if (out / "verify.json").exists() \
        else {"rows": []}
    err = {(r.get("framework"), r.get("model_label"), r.get("precision")): r
           for r in gate.get("rows", [])}
    even = {(r["framework"], r["model_label"], r["device"], r["precision"]): r
            for r in break_even(cells).to_dicts()}
    print(f"{'model':<14} {'competitor':<16} {'bs':>3} | {'ss p90 ms':>9} | {'server QPS':>10} "
          f"{'met':>4} {'bound':>5} | {'export s':>8} {'break-even q':>12} | {'gate':>5} "
          f"{'max abs err':>11}")
    for c in cells.filter(pl.col("ok_repeats") > 0).to_dicts():
        key = (c["framework"], c["model_label"], c["device"], c["precision"])
        g = err.get((c["framework"], c.get("gate_label") or c["model"], c["precision"])) or \
            err.get((c["framework"], c["model_label"], c["precision"])) or {}
        be = even.get(key) if c["batch_size"] == 1 else None
        n, met = c.get("server_processes") or 0, c.get("server_met_bound") or 0
        qps, abs_err = c.get("server_max_qps"), g.get("max_abs_err")
        export = c.get("export_s")
        if be is None:
            paid = "-"
        elif be["break_even_queries"] is None:
            paid = "never" if be["gain_s"] is not None else "no source"
        else:
            paid = f"{be['break_even_queries']:,.0f}"
        p90 = _ms(c.get("ss_p90")) if c["batch_size"] == 1 else ""
        print(f"{c['model_label']:<14} {c['framework']:<16} {c['batch_size']:>3} | {p90:>9} | "
              f"{'-' if qps is None else f'{qps:,.0f}':>10} {f'{met}/{n}' if n else '-':>4} "
              f"{c.get('server_bound_ms') or '-':>5} | "
              f"{'-' if export is None else f'{export:.2f}':>8} {paid:>12} | "
              f"{str(g.get('passed', '-')):>5} "
              f"{'-' if abs_err is None else f'{abs_err:.2e}':>11}")


if __name__ == "__main__":
    main()
