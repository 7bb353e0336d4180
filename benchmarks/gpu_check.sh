#!/usr/bin/env bash
# The GPU smoke check: proves the most of mlbench's GPU path in one short lease of one H100 or
# H200 (whole run, installs included, ~8 minutes), and cannot pass without touching the GPU.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT]      (default: $OUT if set, else gpu_check/)
#
# 1. a GPU must be there (nvidia-smi lists one): else ONE line and exit 1;
# 2. install the torch+JAX CUDA venv (.venv-gpu-torch-jax) with mlbench itself in it
#    (.ci/gpu_setup.py --only torch-jax --with-mlbench; reused when it already imports mlbench;
#    GPU_CHECK_PYTHON=/path/python skips the install: a prepared image);
# 3. that interpreter must import nvidia-ml-py (else every cell would be "skipped" and the check
#    would pass empty), and NVML must see every GPU nvidia-smi sees;
# 4. a probe (benchmarks/gpu_probe.py): driver, CUDA, cuDNN, power limit, clocks, MIG; an fp32
#    matmul and a conv against float64 with TF32 off and on;
# 5. the sweep of configs/gpu_check.yaml (one ceiling round per precision, the gate, 15 cells),
#    the pytorch-compile cell (configs/gpu_check_extra.yaml), one cell under a GPU-UUID
#    CUDA_VISIBLE_DEVICES (its recorded UUID must be that GPU's), the HTML report; then the
#    serving cells of configs/gpu_check_serving.yaml (PyTorch against ONNX Runtime's CUDA and,
#    where the venv has TensorRT, TensorRT providers; gate included; onnxruntime-gpu is
#    installed into the venv when missing): GPU_CHECK_SERVING_S seconds (default 150, added to
#    the budget; 0 leaves serving out);
# 6. the verdict (benchmarks/gpu_check_verdict.py): exit 1 on any skipped or failed cell, a
#    missing ceiling, a failed gate, a cell without NVML figures or UUID, a probe problem.
# Six small files come back to OUT: summary.txt (the verdict), environment.txt (versions, the
# probe), run.log, results.json, extra.json (the compile, UUID and serving cells), ceilings.json.
# --dry-run runs every step a CPU can (the parent's imports, the setup plan, the NVML part of
# the probe, the configs' expansion, the verdict's reading) and no GPU work. TensorFlow has its
# own check: benchmarks/gpu_check_tf.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR="$(mkdir -p "${1:-${OUT:-gpu_check}}" && cd "${1:-${OUT:-gpu_check}}" && pwd)"
BOOT="${PYTHON:-python3}"
VENV=".venv-gpu-torch-jax"
SERV_S="${GPU_CHECK_SERVING_S:-150}"   # the serving cells (0: none)
BUDGET_S="${GPU_CHECK_BUDGET_S:-$(( 480 + SERV_S ))}"   # the whole check, installs included
# the exporter's packages for the serving cells, pinned as in .ci/constraints.txt; onnxruntime-gpu
# itself is the build for the torch environment's CUDA major (.ci/gpu_setup.py ORT_GPU, step 3b)
SERVING_PINS=(onnx==1.23.2 onnxscript==0.7.2 onnx-ir==1.1.0)
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
fail() { echo "$1" | tee "$OUT_DIR/summary.txt" >&2; exit 1; }

# 1. a GPU, or one line
if [ "$DRY" = 0 ]; then
  command -v nvidia-smi >/dev/null 2>&1 \
    || fail "error: no NVIDIA GPU here (nvidia-smi is not installed); bash benchmarks/gpu_check.sh --dry-run OUT runs what a CPU can"
  smi="$(nvidia-smi -L 2>&1)"; smi_rc=$?
  smi_count=$(printf '%s\n' "$smi" | grep -c '^GPU [0-9]')
  if [ "$smi_rc" != 0 ] || [ "$smi_count" = 0 ]; then
    fail "error: no NVIDIA GPU here (nvidia-smi: $(printf '%s' "$smi" | head -n 1 | cut -c1-160)); bash benchmarks/gpu_check.sh --dry-run OUT runs what a CPU can"
  fi
fi

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/mlbench-gpu-check.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
ENVTXT="$OUT_DIR/environment.txt"

# 2. the torch+JAX venv with mlbench in it
t_install=$(date +%s)
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
  PY="$GPU_CHECK_PYTHON"
  echo "== setup: GPU_CHECK_PYTHON=$PY (no install)" > "$ENVTXT"
elif [ "$DRY" = 1 ]; then
  PY="$BOOT"
  { echo "== setup (dry run): the parent runs in $PY"
    "$BOOT" .ci/gpu_setup.py --dry-run --only torch-jax; } > "$ENVTXT" 2>&1 \
    || fail "error: the GPU setup plan failed ($(tail -n 1 "$ENVTXT"))"
else
  PY="$PWD/$VENV/bin/python"
  if ! "$PY" -c "import mlbench, torch, jax" >/dev/null 2>&1; then
    "$BOOT" .ci/gpu_setup.py --only torch-jax --with-mlbench > "$SCRATCH/setup.log" 2>&1 \
      || fail "error: GPU setup failed: $(tail -n 1 "$SCRATCH/setup.log")"
  fi
  { echo "== setup: $VENV ($(( $(date +%s) - t_install )) s)"; tail -n 5 "$SCRATCH/setup.log" 2>/dev/null; } > "$ENVTXT"
fi

# 3. the parent can read NVML, and NVML sees what nvidia-smi sees
"$PY" -c "import pynvml" 2>/dev/null \
  || fail "error: nvidia-ml-py (pynvml) is not importable in $PY: without NVML every GPU cell is skipped and nothing is measured"
"$PY" -c "import pydantic, polars, plotly, yaml, mlbench" 2>/dev/null \
  || fail "error: $PY lacks mlbench's own dependencies (pydantic, polars, plotly, pyyaml)"
nvml_count=$("$PY" -c "from mlbench.host import gpu; print(len(gpu.list_gpus()))" 2>/dev/null || echo 0)
if [ "$DRY" = 0 ] && [ "$nvml_count" -lt "$smi_count" ]; then
  fail "error: nvidia-smi sees $smi_count GPU(s), NVML ($PY) sees $nvml_count: $("$PY" -c 'from mlbench.host import gpu; print(gpu.describe())' 2>&1 | tail -n 1)"
fi

# 3b. the serving cells' runtime: onnxruntime-gpu in the same venv (torch exports, ORT serves)
if [ "$SERV_S" != 0 ] && [ "$DRY" = 0 ] && ! "$PY" -c "import onnxruntime, onnxscript" >/dev/null 2>&1; then
  torch_cuda=$("$PY" -c "import torch; print(torch.version.cuda or '')" 2>/dev/null)
  if ort_pin=$("$BOOT" .ci/gpu_setup.py --ort-for-cuda "$torch_cuda" 2>&1); then
    "$PY" -m pip install --quiet --only-binary=:all: "$ort_pin" "${SERVING_PINS[@]}" > "$SCRATCH/serving-setup.log" 2>&1 \
      || echo "== serving: installing $ort_pin ${SERVING_PINS[*]} failed: $(tail -n 1 "$SCRATCH/serving-setup.log")" >> "$ENVTXT"
    echo "== serving: $ort_pin for torch's CUDA $torch_cuda" >> "$ENVTXT"
  else
    echo "== serving: $ort_pin" >> "$ENVTXT"
  fi
fi

# 4. the probe
probe_args=("$SCRATCH/probe.json"); [ "$DRY" = 1 ] && probe_args+=(--dry-run)
{ echo "== probe (NVML sees $nvml_count GPU(s))"; "$PY" benchmarks/gpu_probe.py "${probe_args[@]}" 2>&1; } >> "$ENVTXT"

# 5. the runs
CONFIG="$SCRATCH/gpu_check.yaml"; EXTRA="$SCRATCH/gpu_check_extra.yaml"
for pair in "configs/gpu_check.yaml:$CONFIG" "configs/gpu_check_extra.yaml:$EXTRA"; do
  { cat "${pair%%:*}"; echo "framework_settings:"
    grep -q "pytorch-compile" "${pair%%:*}" && echo "  pytorch: {python: \"$PY\"}" \
      || printf '  pytorch: {python: "%s"}\n  jax: {python: "%s"}\n' "$PY" "$PY"
  } > "${pair##*:}"
done
cells() { "$PY" -c "
import sys
from mlbench.config import schema as config
from mlbench.run import matrix
ov = {k: v.split(',') for k, v in (a.split('=') for a in sys.argv[2:])}
print(len(matrix.expand(config.load_config(sys.argv[1], ov or None))))" "$@"; }
n_main=$(cells "$CONFIG") && n_extra=$(cells "$EXTRA") \
  && n_uuid=$(cells "$CONFIG" frameworks=pytorch models=mlp precisions=fp32) \
  || fail "error: the check's configs do not expand ($(cells "$CONFIG" 2>&1 | tail -n 1))"
echo "== cells: $n_main + $n_extra compile + $n_uuid under a UUID" >> "$ENVTXT"
# serving: PyTorch and ONNX Runtime in this venv; the TensorRT provider only where TensorRT is
SERVING="$SCRATCH/gpu_check_serving.yaml"; n_serv=0; serv_note=""
if [ "$SERV_S" != 0 ]; then
  trt="with TensorRT"
  { if "$PY" -c "import tensorrt" >/dev/null 2>&1; then cat configs/gpu_check_serving.yaml
    else grep -v "label: ort-tensorrt" configs/gpu_check_serving.yaml; fi
    printf 'framework_settings:\n  pytorch: {python: "%s"}\n  onnxruntime: {python: "%s"}\n' "$PY" "$PY"
  } > "$SERVING"
  grep -q "label: ort-tensorrt" "$SERVING" || trt="without TensorRT: no 'import tensorrt' in $PY"
  n_serv=$(cells "$SERVING") \
    || fail "error: configs/gpu_check_serving.yaml does not expand ($(cells "$SERVING" 2>&1 | tail -n 1))"
  echo "== serving cells: $n_serv (configs/gpu_check_serving.yaml, $trt; ${SERV_S} s)" >> "$ENVTXT"
  serv_note=", + the $n_serv serving cells of configs/gpu_check_serving.yaml"
fi
RUN=("$PY" -m mlbench.cli run --no-report)
if [ "$DRY" = 1 ]; then
  cat "$ENVTXT"
  echo "dry run: no GPU work; would run: MLBENCH_CEILING_ROUNDS=1 ${RUN[*]} --config $CONFIG (+ $EXTRA, + one cell under CUDA_VISIBLE_DEVICES=GPU-<uuid>$serv_note)"
  "$PY" benchmarks/gpu_check_verdict.py --probe "$SCRATCH/probe.json" > "$SCRATCH/verdict.txt" 2>&1
  echo "dry run: the verdict reads the probe ($(grep -c '^FAIL: probe' "$SCRATCH/verdict.txt") probe problem(s) on this machine)"
  exit 0
fi
export MLBENCH_CEILING_ROUNDS=1  # one short ceiling round per precision
main_s=$(( $(left) - 100 - SERV_S )); [ "$main_s" -lt 120 ] && main_s=120
(cd "$SCRATCH" && timeout -s INT -k 20 "$main_s" "${RUN[@]}" --config "$CONFIG" \
  --output "$SCRATCH/results") > "$OUT_DIR/run.log" 2>&1
echo "== main run: exit $?, $(( $(date +%s) - T0 )) s since start" >> "$OUT_DIR/run.log"
(cd "$SCRATCH" && timeout -s INT -k 20 90 "${RUN[@]}" --config "$EXTRA" \
  --output "$SCRATCH/extra") >> "$OUT_DIR/run.log" 2>&1
uuid=$("$PY" -c "from mlbench.host import gpu; print(gpu.visible_devices()[0].uuid)" 2>/dev/null)
(cd "$SCRATCH" && CUDA_VISIBLE_DEVICES="$uuid" timeout -s INT -k 20 60 "${RUN[@]}" \
  --config "$CONFIG" --frameworks pytorch --models mlp --precisions fp32 --no-gate \
  --no-ceiling --output "$SCRATCH/uuid") >> "$OUT_DIR/run.log" 2>&1
serving_args=()
if [ "$SERV_S" != 0 ]; then
  (cd "$SCRATCH" && timeout -s INT -k 20 "$SERV_S" "${RUN[@]}" --config "$SERVING" --no-ceiling \
    --output "$SCRATCH/serving") >> "$OUT_DIR/run.log" 2>&1
  echo "== serving run: exit $?, $(( $(date +%s) - T0 )) s since start" >> "$OUT_DIR/run.log"
  serving_args=(--results "$SCRATCH/serving/results.json:$n_serv" --verify "$SCRATCH/serving/verify.json")
fi
"$PY" -m mlbench.cli report --results "$SCRATCH/results" --output "$SCRATCH/report" \
  >> "$OUT_DIR/run.log" 2>&1
report_kb=$(( $(stat -c %s "$SCRATCH/report/index.html" 2>/dev/null || echo 0) / 1024 ))

# 6. the verdict, and what comes back
cp "$SCRATCH/results/results.json" "$SCRATCH/results/ceilings.json" "$OUT_DIR/" 2>/dev/null
"$PY" -c "
import json, sys
doc = {}
for name, path in (('extra', sys.argv[1]), ('uuid', sys.argv[2]), ('serving', sys.argv[4])):
    try:
        doc[name] = json.load(open(path))['cells']
    except (OSError, ValueError, KeyError) as exc:
        doc[name] = str(exc)
json.dump(doc, open(sys.argv[3], 'w'), indent=1)" "$SCRATCH/extra/results.json" \
  "$SCRATCH/uuid/results.json" "$OUT_DIR/extra.json" "$SCRATCH/serving/results.json"
cat "$SCRATCH/probe.json" >> "$ENVTXT" 2>/dev/null
"$PY" benchmarks/gpu_check_verdict.py --probe "$SCRATCH/probe.json" \
  --results "$SCRATCH/results/results.json:$n_main" \
  --results "$SCRATCH/extra/results.json:$n_extra" \
  --uuid-cell "$SCRATCH/uuid/results.json:$uuid" \
  --ceilings "$SCRATCH/results/ceilings.json" --precisions fp32 bf16 fp16 \
  --verify "$SCRATCH/results/verify.json" "${serving_args[@]}" \
  --smi-count "$smi_count" --nvml-count "$nvml_count" > "$OUT_DIR/summary.txt" 2>&1
rc=$?
{ [ "$report_kb" -gt 0 ] && echo "report: index.html, $report_kb KiB" \
    || { echo "FAIL: no HTML report"; rc=1; }
  echo "whole check: $(( $(date +%s) - T0 )) s"; } >> "$OUT_DIR/summary.txt"
cat "$OUT_DIR/summary.txt"
exit "$rc"
