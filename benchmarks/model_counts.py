"""Trainable parameters of every preset of a model as each framework builds it, next to the
analytic count of its module (workers/models/<model>.py) and the published figure where there is
one. Each framework runs in its own fresh worker process in count mode (shapes only: ViT-B/16 and
GPT-2 are never allocated or trained).

    PYTHONPATH=$PWD python benchmarks/model_counts.py [model] [pytorch tensorflow jax ...]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKERS = Path(__file__).resolve().parent.parent / "workers"
sys.path.insert(0, str(WORKERS))
import specs  # noqa: E402  (stdlib only at import)


def count(framework: str, model: str, preset: str, tmp: Path) -> dict:
    request = {"protocol": 1, "mode": "count", "cell_id": f"count-{framework}-{model}-{preset}",
               "framework": framework, "model": model, "model_options": {"preset": preset},
               "device": "cpu", "precision": "fp32", "batch_size": 1, "seed": 0, "threads": 1,
               "tf32": False, "options": {}, "data_path": None, "repeat": 0}
    path = tmp / f"{request['cell_id']}.json"
    path.write_text(json.dumps(request))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, str(WORKERS / f"{framework}_worker.py"), "--request",
                          str(path)], capture_output=True, text=True, env=env, timeout=600)
    last = json.loads(out.stdout.strip().splitlines()[-1])
    if last.get("type") != "result":
        return {"error": last.get("reason") or last.get("message") or last.get("type")}
    return last["metrics"]["params"]


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
