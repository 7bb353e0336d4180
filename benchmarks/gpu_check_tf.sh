#!/usr/bin/env bash
# TensorFlow's GPU smoke check: its own venv (.venv-gpu-tensorflow, CUDA 12, with mlbench in
# it), a probe (TF version, CUDA/cuDNN it was built with, SASS or PTX JIT on this GPU, an fp32
# matmul against float64 with TF32 off and on), the cells of configs/gpu_check_tf.yaml with one
# ceiling round, and the verdict of benchmarks/gpu_check_verdict.py (exit 1 on any skipped or
# failed cell). Setup refuses TensorFlow, in one line, where the driver cannot JIT its PTX.
#
#   bash benchmarks/gpu_check_tf.sh [--dry-run] [OUT]     (default: $OUT if set, else gpu_check_tf/)
#
# Five small files come back: summary.txt, environment.txt, run.log, results.json,
# ceilings.json. GPU_CHECK_PYTHON=/path/python skips the install.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR="$(mkdir -p "${1:-${OUT:-gpu_check_tf}}" && cd "${1:-${OUT:-gpu_check_tf}}" && pwd)"
BOOT="${PYTHON:-python3}"
fail() { echo "$1" | tee "$OUT_DIR/summary.txt" >&2; exit 1; }

if [ "$DRY" = 0 ]; then
  command -v nvidia-smi >/dev/null 2>&1 \
    || fail "error: no NVIDIA GPU here (nvidia-smi is not installed)"
  smi_count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU [0-9]')
  [ "$smi_count" -gt 0 ] || fail "error: no NVIDIA GPU here (nvidia-smi lists none)"
fi
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/mlbench-gpu-check-tf.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
ENVTXT="$OUT_DIR/environment.txt"

if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
  PY="$GPU_CHECK_PYTHON"; echo "== setup: GPU_CHECK_PYTHON=$PY" > "$ENVTXT"
elif [ "$DRY" = 1 ]; then
  PY="$BOOT"
  "$BOOT" .ci/gpu_setup.py --dry-run --only tensorflow > "$ENVTXT" 2>&1 \
    || fail "error: the TensorFlow setup plan failed ($(tail -n 1 "$ENVTXT"))"
else
  PY="$PWD/.venv-gpu-tensorflow/bin/python"
  if ! "$PY" -c "import mlbench, tensorflow" >/dev/null 2>&1; then
    "$BOOT" .ci/gpu_setup.py --only tensorflow --with-mlbench > "$SCRATCH/setup.log" 2>&1 \
      || fail "$(grep -h '^error: ' "$SCRATCH/setup.log" | tail -n 1 || tail -n 1 "$SCRATCH/setup.log")"
  fi
  echo "== setup: .venv-gpu-tensorflow" > "$ENVTXT"
fi
"$PY" -c "import pynvml" 2>/dev/null \
  || fail "error: nvidia-ml-py (pynvml) is not importable in $PY: every GPU cell would be skipped"

CONFIG="$SCRATCH/gpu_check_tf.yaml"
{ cat configs/gpu_check_tf.yaml; echo "framework_settings:"
  echo "  tensorflow: {python: \"$PY\"}"; } > "$CONFIG"
n_cells=$("$PY" -c "import sys; from mlbench.config import schema as config; from mlbench.run import matrix; print(len(matrix.expand(config.load_config(sys.argv[1]))))" "$CONFIG") \
  || fail "error: configs/gpu_check_tf.yaml does not expand"
if [ "$DRY" = 1 ]; then
  echo "== cells: $n_cells" >> "$ENVTXT"; cat "$ENVTXT"
  echo "dry run: no GPU work"; exit 0
fi
"$PY" - "$SCRATCH/probe.json" <<'PY' >> "$ENVTXT" 2>&1
import json, sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, "workers")
import tensorflow_worker
tensorflow_worker.tf = tf
out = {"version": tf.__version__, **tensorflow_worker._gpu_build_facts("/GPU:0")}
rng = np.random.default_rng(0)
a, b = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
ref, problems = a @ b, []
for on in (False, True):
    tf.config.experimental.enable_tensor_float_32_execution(on)
    with tf.device("/GPU:0"):
        got = tf.matmul(tf.constant(a, tf.float32), tf.constant(b, tf.float32)).numpy()
    out[f"matmul_rel_err_tf32_{'on' if on else 'off'}"] = float(
        np.abs(got - ref).max() / np.abs(ref).max())
if out["matmul_rel_err_tf32_off"] > 1e-4:
    problems.append(f"TF fp32 matmul with TF32 off is off by {out['matmul_rel_err_tf32_off']:.1e}")
out["problems"] = problems
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out, indent=1))
PY
[ -f "$SCRATCH/probe.json" ] || echo '{"problems": ["TensorFlow could not run its probe (environment.txt)"]}' > "$SCRATCH/probe.json"
(cd "$SCRATCH" && MLBENCH_CEILING_ROUNDS=1 timeout -s INT -k 20 330 "$PY" -m mlbench.cli run \
  --config "$CONFIG" --output "$SCRATCH/results" --no-report) > "$OUT_DIR/run.log" 2>&1
cp "$SCRATCH/results/results.json" "$SCRATCH/results/ceilings.json" "$OUT_DIR/" 2>/dev/null
"$PY" benchmarks/gpu_check_verdict.py --probe "$SCRATCH/probe.json" \
  --results "$SCRATCH/results/results.json:$n_cells" --ceilings "$SCRATCH/results/ceilings.json" \
  --precisions fp32 bf16 --verify "$SCRATCH/results/verify.json" > "$OUT_DIR/summary.txt" 2>&1
rc=$?
cat "$OUT_DIR/summary.txt"
exit "$rc"
