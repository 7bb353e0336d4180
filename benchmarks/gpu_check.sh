#!/usr/bin/env bash
# The prepared GPU check: the CUDA cells of configs/gpu_check.yaml (pytorch and jax; the GPU
# image has no TensorFlow), with the equivalence gate and the ceilings, run in a scratch folder.
# At most 8 small files come back to OUT: summary.txt, environment.txt, run.log, results.json,
# verify.json, ceilings.json. Sized for ~10 minutes of one H200: the run itself is stopped
# (SIGINT: measured cells kept, the rest recorded as interrupted) after GPU_CHECK_LIMIT_S.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [OUT]     (default: $OUT if set, else gpu_check/)
#
# Environments: each framework runs in .venv-gpu-<group>/bin/python when `bash .ci/setup --gpu`
# made one, else in $PYTHON (default python3); the summary says which. --dry-run prints the
# environments and the command and writes environment.txt, without running anything on a GPU.
#
# mlbench's own parent-side dependencies that such an image may lack (pydantic, polars, plotly)
# can be carried as Python 3.12 wheels in .whl/ (downloaded on a machine with PyPI access):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic pydantic-core annotated-types typing-inspection polars polars-runtime-32 plotly narwhals
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR="$(mkdir -p "${1:-${OUT:-gpu_check}}" && cd "${1:-${OUT:-gpu_check}}" && pwd)"
PY="${PYTHON:-python3}"
LIMIT_S="${GPU_CHECK_LIMIT_S:-540}"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/mlbench-gpu-check.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

if ! "$PY" -c "import pydantic, polars, plotly, yaml" 2>/dev/null; then
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SCRATCH/site" .whl/*.whl
    export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
  elif [ "$DRY" = 0 ]; then
    echo "error: pydantic/polars/plotly missing and no .whl/ folder to install them from" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Which interpreter runs each framework: a venv of `.ci/setup --gpu`, else $PY.
pyfor() {
  case "$1" in pytorch|jax) v=.venv-gpu-torch-jax ;; tensorflow) v=.venv-gpu-tensorflow ;; esac
  if [ -x "$v/bin/python" ]; then echo "$PWD/$v/bin/python"; else command -v "$PY"; fi
}
CONFIG="$SCRATCH/gpu_check.yaml"
{ cat configs/gpu_check.yaml
  echo "framework_settings:"
  for fw in pytorch jax; do echo "  $fw: {python: \"$(pyfor $fw)\"}"; done
} > "$CONFIG"

{ echo "== environments"
  echo "mlbench parent: $(command -v "$PY") ($("$PY" -V 2>&1))"
  echo "pytorch: $(pyfor pytorch)"
  "$(pyfor pytorch)" -c "import torch; print('  torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tail -n 1
  echo "jax: $(pyfor jax)"
  JAX_PLATFORMS=cuda "$(pyfor jax)" -c "
import jax
try:
    print('  jax', jax.__version__, jax.devices('gpu'))
except Exception as exc:
    print('  jax', jax.__version__, 'no GPU:', type(exc).__name__, str(exc)[:200])" 2>&1 | tail -n 1
  echo "== GPU"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}"
  echo "== command"
  echo "timeout -s INT $LIMIT_S $PY -m mlbench.cli run --config $CONFIG --output $SCRATCH/results --no-report"
} > "$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"
if [ "$DRY" = 1 ]; then
  echo "dry run: nothing run; $OUT_DIR holds environment.txt"
  exit 0
fi

t0=$(date +%s)
(cd "$SCRATCH" && timeout -s INT -k 30 "$LIMIT_S" "$PY" -m mlbench.cli run --config "$CONFIG" \
  --output "$SCRATCH/results" --no-report) > "$OUT_DIR/run.log" 2>&1
rc=$?
secs=$(( $(date +%s) - t0 ))
tail -n 40 "$OUT_DIR/run.log"

for f in results.json verify.json ceilings.json; do
  [ -f "$SCRATCH/results/$f" ] && cp "$SCRATCH/results/$f" "$OUT_DIR/$f"
done

"$PY" - "$SCRATCH/results/results.json" "$secs" "$rc" <<'PY' | tee "$OUT_DIR/summary.txt"
import collections, json, statistics, sys
path, secs, rc = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    cells = json.load(open(path))["cells"]
except (OSError, ValueError, KeyError) as exc:
    print(f"no results.json ({exc}); mlbench exit code {rc}, {secs} s")
    sys.exit(0)
print(f"{'cell':48s} {'status':8s} {'train samples/s':>15s} {'first step s':>12s} "
      f"{'p50 ms':>8s} {'peak dev MB':>11s} {'acc':>6s} attention")
count = collections.Counter()
for c in cells:
    m = c.get("metrics") or {}
    tr = m.get("train") or {}
    st = tr.get("step_times_s") or []
    lat = (m.get("inference") or {}).get("latencies_s") or []
    mem = (m.get("memory") or {}).get("peak_device_bytes")
    sps = c["batch_size"] / statistics.median(st) if st else float("nan")
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    acc = (m.get("eval") or {}).get("accuracy")
    att = (m.get("settings") or {}).get("attention") or "-"
    count[(c["framework"], c["status"])] += 1
    print(f"{c['cell_id']:48s} {c['status']:8s} {sps:15.0f} {tr.get('first_step_s') or 0:12.2f} "
          f"{p50:8.2f} {(mem or 0) / 2**20:11.0f} {acc if acc is not None else float('nan'):6.3f} "
          f"{att}" + ("" if c["status"] == "ok" else f"  {str(c.get('reason'))[:100]}"))
per = collections.defaultdict(dict)
for (fw, status), n in sorted(count.items()):
    per[fw][status] = n
print("per framework: " + "; ".join(f"{fw}: " + ", ".join(f"{n} {s}" for s, n in st.items())
                                    for fw, st in per.items()))
print(f"mlbench exit code {rc}; {secs} s wall")
PY
ls -la "$OUT_DIR"
exit "$rc"
