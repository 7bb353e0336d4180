"""The serving part of the prepared GPU check (benchmarks/gpu_check.sh), on a CPU: the script
runs configs/gpu_check_serving.yaml, its dry run expands it (the TensorRT provider's cells left
out where the check's Python has no TensorRT, as here), GPU_CHECK_SERVING_S=0 leaves it out,
and the verdict judges the serving cells' gate beside the main sweep's."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlbench.run import matrix
from mlbench.config.schema import load_config

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
CONFIG = ROOT / "configs" / "gpu_check_serving.yaml"


def _dry(tmp_path, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), **env}
    e.pop("GPU_CHECK_PYTHON", None)
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", str(tmp_path / "dry")],
                          capture_output=True, text=True, timeout=300, env=e)


def test_the_script_runs_the_serving_config_with_its_own_gate():
    text = SCRIPT.read_text()
    assert "configs/gpu_check_serving.yaml" in text
    assert '--config "$SERVING"' in text and '--verify "$SCRATCH/serving/verify.json"' in text
    assert '--results "$SCRATCH/serving/results.json:$n_serv"' in text


@pytest.mark.slow
def test_dry_run_expands_the_serving_cells_without_tensorrt_here(tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("this Python has TensorRT: the check keeps the ort-tensorrt cells")
    cells = matrix.expand(load_config(CONFIG))
    kept = [c for c in cells if c.label != "ort-tensorrt"]
    assert 0 < len(kept) < len(cells)  # the config has TensorRT cells to leave out
    proc = _dry(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (f"== serving cells: {len(kept)} (configs/gpu_check_serving.yaml, without TensorRT"
            in proc.stdout)
    assert f"+ the {len(kept)} serving cells of configs/gpu_check_serving.yaml" in proc.stdout
    off = _dry(tmp_path, GPU_CHECK_SERVING_S="0")
    assert off.returncode == 0 and "serving" not in off.stdout


def test_the_serving_config_asks_the_gpu_providers_on_a_gpu():
    conf = load_config(CONFIG)
    cells = matrix.expand(conf)
    providers = {c.request["options"].get("provider") for c in cells
                 if c.request["framework"] == "onnxruntime"}
    assert providers == {"cuda", "tensorrt"}
    assert {c.request["device"] for c in cells} == {"cuda:0"}
    assert all(c.request["serving"]["server"]["latency_bound_ms"] == 5 for c in cells)


def _verdict(tmp_path, rows_main, rows_serving) -> subprocess.CompletedProcess:
    paths = []
    for name, rows in (("main", rows_main), ("serving", rows_serving)):
        p = tmp_path / f"{name}-verify.json"
        p.write_text(json.dumps({"passed": all(r["passed"] for r in rows), "rows": rows}))
        paths.append(p)
    res = tmp_path / "results.json"
    res.write_text(json.dumps({"cells": []}))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check_verdict.py"),
                           "--results", f"{res}:0", "--verify", str(paths[0]),
                           "--verify", str(paths[1])], capture_output=True, text=True)


def test_the_verdict_fails_on_the_serving_gate_alone(tmp_path):
    ok = [{"framework": "pytorch", "passed": True}]
    bad = [{"framework": "ort-tensorrt", "passed": False}, {"framework": "ort-cuda",
                                                             "passed": True}]
    good = _verdict(tmp_path, ok, ok)
    assert good.returncode == 0 and "PASS" in good.stdout
    proc = _verdict(tmp_path, ok, bad)
    assert proc.returncode == 1
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("FAIL: equivalence gate")]
    assert "1 row(s) failed" in line and "serving-verify.json" in line
