"""Run one worker script directly (no orchestrator) and return its protocol messages.

Used by the per-framework worker tests; the orchestrator tests go through `mlbench run`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ROOT / "workers"
sys.path.insert(0, str(WORKERS))
import wire  # noqa: E402  (the protocol definition both sides read; stdlib only)

BASE_REQUEST = {
    "protocol": wire.PROTOCOL, "mode": "benchmark", "model_options": {"preset": "tiny"},
    "device": "cpu",
    "batch_size": 16, "precision": "fp32", "epochs": 1, "seed": 0, "train_samples": 256,
    "eval_samples": 64, "warmup_iterations": 2, "timed_iterations": 5, "threads": 1,
    "tf32": False, "options": {}, "data_path": None, "memory_limit_mb": None, "repeat": 0,
}


def worker_env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(threads), PYTHONHASHSEED="0",
               TF_CPP_MIN_LOG_LEVEL="2", XLA_PYTHON_CLIENT_PREALLOCATE="false",
               TF_FORCE_GPU_ALLOW_GROWTH="true", JAX_PLATFORMS="cpu")
    return env


def run_worker(tmp_path: Path, framework: str, model: str, timeout: float = 300,
               **overrides) -> list[dict]:
    request = {**BASE_REQUEST, "framework": framework, "model": model,
               "cell_id": f"{framework}-{model}", **overrides}
    req = tmp_path / f"{framework}-{model}-request.json"
    req.write_text(json.dumps(request))
    proc = subprocess.run([sys.executable, "-u", str(WORKERS / f"{framework}_worker.py"),
                           "--request", str(req)], capture_output=True, text=True,
                          timeout=timeout, env=worker_env(request["threads"]))
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert messages, f"no protocol messages; rc={proc.returncode}\n{proc.stderr[-3000:]}"
    assert messages[-1]["type"] in ("result", "skip", "error"), proc.stderr[-3000:]
    if messages[-1]["type"] == "error":
        raise AssertionError(messages[-1].get("traceback") or messages[-1])
    return messages


def result_of(messages: list[dict]) -> dict:
    assert messages[-1]["type"] == "result", messages[-1]
    return messages[-1]["metrics"]
