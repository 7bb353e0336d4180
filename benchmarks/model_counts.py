"""Trainable parameters of every preset of a model as each framework builds it, next to the
analytic count of its module (workers/models/<model>.py) and the published figure where there is
one. Each framework runs in its own fresh worker process in count mode (shapes only: ViT-B/16 and
GPT-2 are never allocated or trained).

    PYTHONPATH=$PWD python benchmarks/model_counts.py [model] [pytorch tensorflow jax ...]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mlbench.config import catalog
from mlbench.run import launcher, protocol

specs = catalog.specs()  # workers/specs.py, as mlbench reads it (stdlib only at import)


def count(framework: str, model: str, preset: str, tmp: Path) -> dict:
    """One worker in count mode, started like every worker (mlbench.run.launcher, the one spawner:
    its environment, timeout and process-group kill) with a request built by
    mlbench.run.protocol."""
    cell_id = f"count-{framework}-{model}-{preset}"
    request = protocol.BenchRequest(
        cell_id=cell_id, framework=framework, model=model, model_options={"preset": preset},
        device="cpu", batch_size=1, precision="fp32", epochs=1, seed=0, train_samples=1,
        eval_samples=1, warmup_iterations=0, timed_iterations=1, threads=1, tf32=False,
        options={}, init="canonical", data_path=None, memory_limit_mb=None, kind="count")
    job = launcher.Job(catalog.worker_script(framework), sys.executable, request.to_wire(),
                       framework, "cpu", 1, 600)
    job_dir = tmp / cell_id
    job_dir.mkdir(parents=True, exist_ok=True)
    rec = launcher.launch(job, job_dir, launcher.Stop())
    if rec["status"] != "ok":
        return {"error": f"{rec['status']}: {rec['reason']}"}
    return rec["metrics"]["params"]


def main(model: str, frameworks: list[str]) -> None:
    print(f"{'model':<6} {'preset':<10} {'spec':>12} {'published':>12} "
          + " ".join(f"{fw:>12}" for fw in frameworks))
    with tempfile.TemporaryDirectory() as tmp:
        for preset in specs.PRESETS[model]:
            want = specs.count_params(specs.model_spec(model, {"preset": preset}))["trainable"]
            published = specs.PUBLISHED_PARAMS.get((model, preset))
            got = [count(fw, model, preset, Path(tmp)) for fw in frameworks]
            cells = [f"{g['trainable']:>12,}" if "trainable" in g else f"{'error':>12}"
                     for g in got]
            print(f"{model:<6} {preset:<10} {want:>12,} "
                  f"{(f'{published:,}' if published else '-'):>12} " + " ".join(cells))
            for fw, g in zip(frameworks, got):
                if "error" in g:
                    print(f"  {fw}: {g['error']}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "vit", args[1:] or ["pytorch", "tensorflow", "jax"])
