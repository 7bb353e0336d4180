#!/usr/bin/env bash
# The prepared GPU check: run the CUDA cells of pytorch and jax (configs/gpu_check.yaml) on a GPU
# machine where only those two frameworks are installed, and write the results and the report
# into one folder. Prints the environment, the per-cell summary and where the report is.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default: $OUT if set, else gpu_check/)
#
# mlbench's own parent-side dependencies that such an image may lack (pydantic, polars, plotly)
# can be carried as Python 3.12 wheels in .whl/ (downloaded on a machine with PyPI access):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic pydantic-core annotated-types typing-inspection polars polars-runtime-32 plotly narwhals
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_check}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"

if ! "$PY" -c "import pydantic, polars, plotly" 2>/dev/null; then
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlbench-site .whl/*.whl
    export PYTHONPATH="/tmp/mlbench-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: pydantic/polars/plotly missing and no .whl/ folder to install them from" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" || true
  "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" || true
} 2>&1 | tee "$OUT_DIR/environment.txt"

"$PY" -m mlbench.cli run --config configs/gpu_check.yaml --output "$OUT_DIR/results" \
  --report-dir "$OUT_DIR/report" --archive 2>&1 | tee "$OUT_DIR/run.log"
rc=${PIPESTATUS[0]}

"$PY" - "$OUT_DIR/results/results.json" <<'PY' | tee "$OUT_DIR/summary.txt"
import json, statistics, sys
cells = json.load(open(sys.argv[1]))["cells"]
print(f"{'cell':48s} {'status':8s} {'train samples/s':>15s} {'first step s':>12s} "
      f"{'p50 ms':>8s} {'peak dev MB':>11s} {'acc':>6s}")
for c in cells:
    m = c.get("metrics") or {}
    tr = m.get("train") or {}
    st = tr.get("step_times_s") or []
    lat = (m.get("inference") or {}).get("latencies_s") or []
    mem = (m.get("memory") or {}).get("peak_device_bytes")
    sps = c["batch_size"] / statistics.median(st) if st else float("nan")
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    acc = (m.get("eval") or {}).get("accuracy")
    print(f"{c['cell_id']:48s} {c['status']:8s} {sps:15.0f} {tr.get('first_step_s') or 0:12.2f} "
          f"{p50:8.2f} {(mem or 0) / 2**20:11.0f} {acc if acc is not None else float('nan'):6.3f}"
          + ("" if c["status"] == "ok" else f"  {str(c.get('reason'))[:100]}"))
PY
echo "results: $OUT_DIR/results  report: $OUT_DIR/report/index.html  (mlbench exit code $rc)"
exit "$rc"
