"""Serving figures of a run: per model and competitor, the single-stream p90, the server's max
QPS within the bound, an exported runtime's export time, its break-even against its source
framework in queries, and the equivalence gate's max abs error.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/serving.py --config configs/serving.yaml \
        --output /tmp/serving-run          # runs the sweep first (mlbench run), then prints
    PYTHONPATH=$PWD .venv/bin/python benchmarks/serving.py --output /tmp/serving-run  # prints

Break-even: export_s / (source's single-stream p50 - the runtime's), in batch-1 queries: how many
queries the export must serve before it has paid for itself (none when the runtime is slower).
Timings on a shared machine are noisy: say so beside any figure quoted from here.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


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
    doc = json.loads((out / "results.json").read_text())
    gate = json.loads((out / "verify.json").read_text()) if (out / "verify.json").exists() \
        else {"rows": []}
    err = {(r["framework"], r["model_label"], r["precision"]): r for r in gate["rows"]}
    # an exported runtime's source framework (the only exporter wired: torch.onnx)
    source = {a["framework"]: "pytorch" for a in doc["cells"]
              if a.get("base_framework") in ("onnxruntime", "openvino")}
    rows = sorted(doc["summaries"], key=lambda s: (s["model_label"], s["precision"],
                                                   s["batch_size"] or 0, s["framework"]))
    ss = {(s["framework"], s["model_label"], s["precision"]): s["single_stream"]
          for s in rows if s.get("single_stream")}
    print(f"{'model':<14} {'competitor':<16} {'bs':>3} | {'ss p90 ms':>9} | "
          f"{'server QPS':>10} {'bound':>6} | {'export s':>8} {'break-even q':>12} | "
          f"{'gate':>5} {'max abs err':>11}")
    for s in rows:
        key = (s["framework"], s["model_label"], s["precision"])
        g = err.get(key) or {}
        server = s.get("server") or {}
        one = s["batch_size"] == 1  # single-stream figures live in the batch-size-1 cells
        mine = ss.get(key) if one else None
        src = ss.get((source.get(s["framework"]), *key[1:]))
        export, even = s.get("export_s"), "-"
        if export and mine and src:
            gain = src["latency_s"]["p50"] - mine["latency_s"]["p50"]
            even = f"{export / gain:,.0f}" if gain > 0 else "never"
        qps, abs_err = server.get("max_qps"), g.get("max_abs_err")
        p90 = _ms(mine["latency_s"]["p90"]) if mine else ""
        print(f"{s['model_label']:<14} {s['framework']:<16} {s['batch_size']:>3} | {p90:>9} | "
              f"{'-' if qps is None else f'{qps:,.0f}':>10} "
              f"{server.get('latency_bound_ms') or '-':>6} | "
              f"{'-' if export is None else f'{export:.2f}':>8} {even:>12} | "
              f"{str(g.get('passed', '-')):>5} "
              f"{'-' if abs_err is None else f'{abs_err:.2e}':>11}")

if __name__ == "__main__":
    main()
