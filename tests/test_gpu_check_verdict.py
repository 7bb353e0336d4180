"""The GPU smoke check's verdict (benchmarks/gpu_check_verdict.py) on recorded results: it must
fail on any skipped or failed cell, a missing cell, a cell without NVML figures or UUID, a
missing ceiling, a failed gate, a wrong UUID, a GPU NVML does not see; pass only on a clean run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check_verdict.py"
UUID = "GPU-aaaa1111-2222-3333-4444-555566667777"


def _cell(cid, status="ok", uuid=UUID, gpu=True, steps=(0.0102, 0.0098, 0.0131, 0.0101)):
    c = {"cell_id": cid, "status": status, "device": "cuda:0", "batch_size": 16,
         "reason": None if status == "ok" else "device cuda:0 not present on this machine",
         "placement": {"gpu_uuid": uuid}, "gpu": {"power_w_mean": 312.5} if gpu else None,
         "energy": {"train_j_per_step": 2.75}}
    if status == "ok":
        c["metrics"] = {"train": {"step_times_s": list(steps)},
                        "inference": {"latencies_s": [0.0021, 0.0019, 0.0044]},
                        "memory": {"peak_device_bytes": 3 << 30}}
    return c


def _write(path: Path, cells) -> str:
    path.write_text(json.dumps({"schema": 1, "run": {}, "cells": cells}))
    return str(path)


def _verdict(*args):
    p = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout


@pytest.fixture
def clean(tmp_path):
    res = _write(tmp_path / "r.json", [_cell("a"), _cell("b")])
    uuid = _write(tmp_path / "u.json", [_cell("u")])
    ceil = tmp_path / "c.json"
    ceil.write_text(json.dumps({"entries": {"pytorch|cuda:0": {"status": "ok", "ceilings": {
        "fp32": {"best_flops": 5.1e13}, "bf16": {"best_flops": 6.6e14}}}}}))
    ver = tmp_path / "v.json"
    ver.write_text(json.dumps({"passed": True, "rows": []}))
    return tmp_path, ["--results", f"{res}:2", "--uuid-cell", f"{uuid}:{UUID}",
                      "--ceilings", ceil, "--precisions", "fp32", "bf16", "--verify", ver,
                      "--smi-count", 1, "--nvml-count", 1]


def test_a_clean_run_passes_and_prints_each_cell(clean):
    _, args = clean
    rc, out = _verdict(*args)
    assert rc == 0 and "gpu check: PASS" in out, out
    # samples/s from the median step time, computed here independently
    import statistics
    sps = 16 / statistics.median([0.0102, 0.0098, 0.0131, 0.0101])
    assert f"{sps:10.0f}" in out and "2.750" in out


@pytest.mark.parametrize("change,says", [
    ("skipped", "b: skipped (device cuda:0 not present"),
    ("missing", "1 cell(s) recorded, the config expands to 2"),
    ("no_nvml", "b: no NVML samples"),
    ("no_uuid", "b: no GPU UUID"),
    ("wrong_uuid", "recorded GPU 'GPU-bbbb'"),
    ("gate", "equivalence gate did not pass"),
    ("ceiling", "no framework measured a fp16 ceiling"),
    ("nvml_count", "nvidia-smi sees 1 GPU(s), NVML 0"),
    ("empty", "no results to judge"),
])
def test_any_gap_fails_the_check(clean, change, says):
    tmp, args = clean
    res = tmp / "r.json"
    if change == "skipped":
        _write(res, [_cell("a"), _cell("b", status="skipped")])
    elif change == "missing":
        _write(res, [_cell("a")])
    elif change == "no_nvml":
        _write(res, [_cell("a"), _cell("b", gpu=False)])
    elif change == "no_uuid":
        _write(res, [_cell("a"), _cell("b", uuid=None)])
    elif change == "wrong_uuid":
        _write(tmp / "u.json", [_cell("u", uuid="GPU-bbbb")])
    elif change == "gate":
        (tmp / "v.json").write_text(json.dumps({"passed": False, "rows": [{"passed": False}]}))
    elif change == "ceiling":
        args = args + ["--precisions", "fp32", "bf16", "fp16"]
    elif change == "nvml_count":
        args = args[:-1] + [0]
    elif change == "empty":
        args = []
    rc, out = _verdict(*args)
    assert rc == 1 and "gpu check: FAIL" in out and says in out, out


def test_a_probe_problem_fails_the_check(clean):
    tmp, args = clean
    probe = tmp / "p.json"
    probe.write_text(json.dumps({"problems": ["torch matmul with TF32 off is off by 2.1e-03"]}))
    rc, out = _verdict(*args, "--probe", probe)
    assert rc == 1 and "probe: torch matmul with TF32 off" in out


def _probe_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_probe", ROOT / "benchmarks" / "gpu_probe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_probe_flags_fp32_that_is_not_fp32_and_tf32_that_did_nothing():
    probe = _probe_module()
    good = {"capability": [9, 0], "matmul_rel_err_tf32_off": 3.1e-7, "matmul_rel_err_tf32_on":
            4.4e-4, "conv_rel_err_tf32_off": 2.2e-7, "conv_rel_err_tf32_on": 3.9e-4}
    assert probe.problems({"torch": good, "jax": {"matmul_rel_err_tf32_off": 2.9e-7,
                                                  "matmul_rel_err_tf32_on": 5.0e-4}}) == []
    bad = probe.problems({"torch": {**good, "conv_rel_err_tf32_off": 6.1e-4,
                                    "matmul_rel_err_tf32_on": 3.0e-7},
                          "jax": {"error": "RuntimeError: no CUDA"}})
    assert len(bad) == 3
    assert any("conv with TF32 off" in p for p in bad)
    assert any("TF32 setting did not take effect" in p for p in bad)
    assert any(p.startswith("jax could not run") for p in bad)
    # a pre-Ampere GPU has no TF32: an unchanged error there is no problem
    assert probe.problems({"torch": {**good, "capability": [7, 0],
                                     "matmul_rel_err_tf32_on": 3.0e-7}}) == []
