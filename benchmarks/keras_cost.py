"""What Keras 3 costs on top of each native framework: the same model as pytorch / jax /
tensorflow and as keras-torch / keras-jax / keras-tensorflow, side by side, on the CPU.

Runs `mlbench run` (a fresh worker per cell, the equivalence gate first) on three configs:
the own-model example written natively and in Keras (configs/examples/small_cnn.py, which gives
canonical weights, so all six are compared numerically), the Keras-only MLP-Mixer example
(configs/examples/keras_mixer.py) on its three backends, and the built-in cnn and transformer
(tiny) on all six. Prints per cell: steady-state training samples/s (steady steps x batch /
steady seconds), inference p50, first-step (compile) and build seconds, trainable parameters and
the gate's verdict; then each keras-* figure as a ratio of its native framework's.

    python benchmarks/keras_cost.py [--out DIR] [--batch 64] [--only own,mixer,builtin]
    python benchmarks/keras_cost.py --tables DIR   # print the tables of an earlier --out DIR

Read ratios within one table: on a shared machine absolute figures move by 2x between runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "configs" / "examples"
ALL = ["pytorch", "jax", "tensorflow", "keras-torch", "keras-jax", "keras-tensorflow"]
NATIVE = {"keras-torch": "pytorch", "keras-jax": "jax", "keras-tensorflow": "tensorflow"}
CONFIGS = {
    "own": (ALL, [{"name": "smallcnn", "source": str(EXAMPLES / "small_cnn.py"),
                   "options": {"width": 8}}]),
    "mixer": (list(NATIVE), [{"name": "mixer", "source": str(EXAMPLES / "keras_mixer.py"),
                              "options": {"width": 16}}]),
    "builtin": (ALL, [{"name": "cnn", "preset": "tiny"}, {"name": "transformer",
                                                          "preset": "tiny"}]),
}


def run(name: str, out: Path, batch: int) -> Path:
    frameworks, models = CONFIGS[name]
    run_dir = out / name
    conf = out / f"{name}.yaml"
    conf.write_text(yaml.safe_dump({
        "frameworks": frameworks, "models": models, "devices": ["cpu"], "batch_sizes": [batch],
        "train_samples": 32 * batch, "eval_samples": 4 * batch, "warmup_iterations": 3,
        "timed_iterations": 10, "threads": 1, "ceiling": False, "output_dir": str(run_dir)}))
    subprocess.run([sys.executable, "-m", "mlbench.cli", "run", "--config", str(conf),
                    "--no-report", "--archive"], cwd=ROOT, check=False)
    return run_dir


def table(run_dir: Path) -> None:
    cells = json.loads((run_dir / "results.json").read_text())["cells"]
    gate = json.loads((run_dir / "verify.json").read_text())["rows"]
    print(f"\n### {run_dir.name}\n| model | framework | train samples/s | x native | infer p50 ms"
          " | first step s | build s | params | gate |\n|---|---|---|---|---|---|---|---|---|")
    speed = {}
    rows = []
    for c in sorted(cells, key=lambda c: (c["model"], ALL.index(c["framework"]))):
        if c["status"] != "ok":
            rows.append(f"| {c['model']} | {c['framework']} | {c['status']}: {c.get('reason')} |")
            continue
        m, t = c["metrics"], c["metrics"]["train"]
        sps = t["steady_steps"] * t["samples_per_step"] / t["steady_s"]
        speed[(c["model"], c["framework"])] = sps
        native = speed.get((c["model"], NATIVE.get(c["framework"])))
        g = next((r for r in gate if r["framework"] == c["framework"]
                  and r["model"] in (c["model"], "user")
                  and r["model_label"].split(".")[0] == c["model"]), {})
        verdict = {True: "pass", False: "FAIL", None: "-"}[g.get("passed")]
        if g.get("max_abs_err") is not None:
            verdict += f" (max abs {g['max_abs_err']:.1e})"
        elif g.get("reason"):
            verdict += f" ({g['reason']})"
        rows.append(f"| {c['model']} | {c['framework']} | {sps:,.0f} | "
                    f"{f'{sps / native:.2f}' if native else '-'} | "
                    f"{statistics.median(m['inference']['latencies_s']) * 1e3:.2f} | "
                    f"{t['first_step_s']:.2f} | {m['build_s']:.2f} | "
                    f"{m['params']['trainable']:,} | {verdict} |")
    print("\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/mlbench_keras_cost"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--only", default="own,mixer,builtin")
    ap.add_argument("--tables", type=Path, help="only print the tables of an earlier --out")
    a = ap.parse_args()
    names = a.only.split(",")
    if a.tables:
        for name in names:
            if (a.tables / name / "results.json").exists():
                table(a.tables / name)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    dirs = [run(name, a.out, a.batch) for name in names]
    for d in dirs:
        table(d)


if __name__ == "__main__":
    main()
