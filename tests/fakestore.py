"""Synthetic mlbench stores in the exact on-disk format of mlbench/results/store.py, for tests and
benchmarks.

`attempt(...)` builds one attempt record; `write_store(dir, attempts, run)` writes run.json and
results.jsonl the way the Store does; `sweep(...)` generates a realistic grid (frameworks x models
x devices x batch sizes x precisions x repeats) with raw step times and latencies.
Never imports an ML framework.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

RUN_ID = "20250101-000000-fake"

# The default samples are irregular on purpose, so that a test cannot pass with the wrong
# statistic: right-skewed steady step times (a slow drift, two outliers: median < mean < p90 < p99,
# and the first sample is none of them), heavy-tailed latencies, and warm-up steps that decay
# towards the steady state (the first warm-up step is the slowest). No two of mean, median, p90,
# p99, min, max and the first sample coincide. Scaled by `scale` so cells can differ.
STEP_TIMES = (0.0103, 0.0097, 0.0101, 0.0099, 0.0106, 0.0098, 0.0104, 0.0100, 0.0127, 0.0096,
              0.0102, 0.0172)
LATENCIES = (0.00212, 0.00195, 0.00201, 0.00198, 0.00240, 0.00193, 0.00205, 0.00199, 0.00203,
             0.00311)
WARMUP_STEPS = (0.031, 0.019, 0.0142, 0.0117)


def irregular(base, scale: float = 1.0) -> list[float]:
    """`base` (one of the tuples above) times `scale`."""
    return [v * scale for v in base]


def run_doc(frameworks=("pytorch", "tensorflow", "jax"), **config) -> dict:
    return {
        "schema": 1, "run_id": RUN_ID, "mlbench_version": "0.1.0",
        "started_at": "2025-01-01T00:00:00+00:00", "ended_at": "2025-01-01T01:00:00+00:00",
        "config": {"frameworks": list(frameworks), "repeats": 1, **config},
        "host": {"cpu_model": "Fake CPU 9000", "cores_logical": 16, "cores_physical": 8,
                 "memory_bytes": 64 << 30, "os": "Linux-6.1-x86_64", "python": "3.11.9",
                 "gpus": [{"index": 0, "name": "Fake GPU", "memory_bytes": 80 << 30,
                           "driver_version": "550.00"}]},
        "frameworks": {fw: {"python": f"/opt/{fw}/bin/python", "version": "1.0.0"}
                       for fw in frameworks},
    }


def cell_id(framework, model, device, batch_size, precision) -> str:
    return f"{framework}-{model}-{device.replace(':', '')}-bs{batch_size}-{precision}"


def attempt(framework="pytorch", model="mlp", device="cpu", batch_size=32, precision="fp32",
            repeat=0, status="ok", step_times=None, latencies=None, epoch_times=None,
            accuracy=0.9, peak_device=None, host_rss=500_000_000, first_step=0.5,
            reason=None, stderr_tail=None, order=0, cid=None, params=10_000) -> dict:
    cid = cid or cell_id(framework, model, device, batch_size, precision)
    rec = {
        "schema": 1, "order": order, "run_id": RUN_ID, "cell_id": cid, "repeat": repeat,
        "fingerprint": f"fp-{cid}",
        "framework": framework, "model": model, "model_options": {"preset": "small"},
        "device": device, "batch_size": batch_size, "precision": precision,
        "status": status, "reason": reason, "exit_code": None if status == "ok" else 1,
        "signal": None, "stderr_tail": stderr_tail,
        "command": ["python", "-m", "workers.run", cid],
        "rerun": f"mlbench run --output results --only {cid}",
        "started_at": "2025-01-01T00:00:00+00:00", "ended_at": "2025-01-01T00:00:10+00:00",
        "wall_s": 10.0, "host_peak_rss_bytes": host_rss,
        "gpu": None if device == "cpu" else {"nvml_peak_process_bytes": peak_device or 0,
                                             "utilization_pct_mean": 80.0, "power_w_mean": 300.0},
        "hello": {"pid": 1234, "python": "3.11.9", "framework": framework,
                  "framework_version": "1.0.0", "device_name": device, "import_s": 1.0},
        "metrics": None,
    }
    if status != "ok":
        return rec
    step_times = list(step_times if step_times is not None else STEP_TIMES)
    latencies = list(latencies if latencies is not None else LATENCIES)
    epoch_times = list(epoch_times if epoch_times is not None else [sum(step_times)])
    rec["metrics"] = {
        "params": {"trainable": params, "non_trainable": 0},
        "flops_per_sample": {"forward": 1000, "train_step": 3000},
        "model_spec": {"name": model}, "data_hash": "abc", "data_gen_s": 0.1, "build_s": 0.2,
        "load_data_s": 0.05, "import_s": 1.0,
        "train": {"steps_per_epoch": max(1, len(step_times) // max(1, len(epoch_times))),
                  "samples_per_step": batch_size, "first_step_s": first_step,
                  "step_times_s": step_times, "epoch_times_s": epoch_times,
                  "warmup_step_times_s": [w * first_step / 0.5 for w in WARMUP_STEPS],
                  "epoch_losses": [1.0 / (i + 1) for i in range(len(epoch_times))]},
        "eval": {"loss": 0.3, "accuracy": accuracy, "time_s": 0.5, "samples": 1000},
        "inference": {"warmup_iterations": 3, "warmup_s": 0.1, "latencies_s": latencies,
                      "batch_size": batch_size},
        "memory": {"peak_device_bytes": peak_device, "host_peak_rss_bytes": host_rss},
        "settings": {"threads": 8},
    }
    return rec


def write_store(directory: str | Path, attempts: list[dict], run: dict | None = None) -> Path:
    """Write run.json + results.jsonl like mlbench.results.store.Store; returns the run
    directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps(run if run is not None else run_doc(), indent=2))
    with open(d / "results.jsonl", "w", encoding="utf-8") as fh:
        for i, a in enumerate(attempts, 1):
            fh.write(json.dumps({**a, "order": i}, allow_nan=False) + "\n")
    return d


SPEED = {"pytorch": 1.0, "tensorflow": 1.15, "jax": 0.85, "numpy": 3.0}
MODEL_COST = {"mlp": 0.002, "cnn": 0.02, "lstm": 0.015, "transformer": 0.03}


def sweep(n_attempts: int, steps: int = 100, latencies: int = 50, seed: int = 0,
          fail_rate: float = 0.05, repeats: int = 1) -> list[dict]:
    """About n_attempts realistic attempts: a grid over frameworks, models, devices, batch sizes,
    precisions (and model presets when more cells are needed), `repeats` repeats per cell, and a
    few failures with stderr tails."""
    rng = random.Random(seed)
    cells_needed = -(-n_attempts // repeats)
    grid: list[tuple] = []
    preset = 0
    while len(grid) < cells_needed:
        grid += [(fw, m, f"p{preset}", dev, bs, pr)
                 for m in MODEL_COST for dev in ("cpu", "cuda:0") for pr in ("fp32", "bf16")
                 for bs in (16, 32, 64, 128, 256) for fw in ("pytorch", "tensorflow", "jax")]
        preset += 1
    grid = grid[:cells_needed]
    out: list[dict] = []
    for r in range(repeats):
        for fw, m, preset_name, dev, bs, pr in grid:
            if len(out) >= n_attempts:
                return out
            base = MODEL_COST[m] * SPEED[fw] * (bs / 32) ** 0.8 * (0.2 if dev != "cpu" else 1)
            base *= (0.7 if pr == "bf16" else 1.0) * (1 + 0.5 * int(preset_name[1:]))
            noise = rng.uniform(0.97, 1.03)
            cid = f"{cell_id(fw, m, dev, bs, pr)}-{preset_name}"
            if rng.random() < fail_rate:
                status = rng.choice(["failed", "oom", "timeout", "crashed"])
                a = attempt(fw, m, dev, bs, pr, repeat=r, status=status, cid=cid,
                            reason=f"{status}: synthetic failure",
                            stderr_tail="Traceback (most recent call last):\n"
                            + "  File \"x.py\", line 1\n" * 20 + "RuntimeError: boom")
            else:
                # right-skewed, drifting (+3% over the run), and a rare outlier (1 in 40, 1.6x)
                st = [base * noise * rng.lognormvariate(0, 0.05) * (1 + 0.03 * i / steps)
                      * (1.6 if rng.random() < 0.025 else 1.0) for i in range(steps)]
                lat = [base * 0.3 * noise * rng.lognormvariate(0, 0.1)
                       * rng.paretovariate(6)
                       for _ in range(latencies)]
                epochs = 5
                per = max(1, steps // epochs)
                a = attempt(
                    fw, m, dev, bs, pr, repeat=r, step_times=st, latencies=lat, cid=cid,
                    epoch_times=[sum(st[i * per:(i + 1) * per]) * 1.02 for i in range(epochs)],
                    accuracy=rng.uniform(0.85, 0.95),
                    peak_device=None if dev == "cpu" else int(bs * 4e6 * SPEED[fw]),
                    host_rss=int(8e8 * SPEED[fw] + bs * 1e6), first_step=base * 50 * SPEED[fw],
                    params={"mlp": 50_000, "cnn": 120_000, "lstm": 80_000,
                            "transformer": 400_000}[m])
            a["model_options"] = {"preset": preset_name}
            out.append(a)
    return out
