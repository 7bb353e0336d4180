"""What separates mlbench's steady-state training figure from a typical hand-written loop's.

    taskset -c 1 .venv/bin/python benchmarks/fidelity_factors.py [--frameworks jax tensorflow
        pytorch] [--model mlp] [--preset small] [--batch-size 64] [--rounds 5]

benchmarks/fidelity.py compares the worker with a minimal loop timed the harness's way. A loop as
people write it differs in ways that are not the framework's speed; this script measures each of
them inside ONE process per framework, on the real worker's backend (workers/<fw>_worker.py:
same model, data on the device, compiled step), alternating the variants block by block so that the
machine's load hits all alike:

  harness     K steps dispatched back to back, one fetch of the block's losses (sync_losses):
              samples/s = batch / median over blocks of the time per step (what mlbench reports)
  mean        the same blocks, batch / mean time per step (a mean keeps the slow blocks)
  step-sync   every step's loss fetched to the host before the next step (float(loss) per step,
              a loop that logs every step): no overlap of dispatch and compute (median)
  host-fed    block-synced, plus the batch converted from host numpy to a framework tensor every
              step inside the timed region (a loop fed from numpy / an input pipeline; the
              worker holds the whole dataset on the device and slices it inside the step)
  typical     host-fed and step-sync together, and the mean: a loop as usually hand-written

Prints samples/s per variant and each one's ratio to `harness` (median over rounds of the
per-round ratio; a round is 20 blocks of each).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import importlib, json, sys, time
import numpy as np
fw, args = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, args["workers"])
import harness, specs
request = {"framework": fw, "model": args["model"], "model_options": {"preset": args["preset"]},
           "device": "cpu", "batch_size": args["bs"], "precision": "fp32", "seed": 0,
           "train_samples": args["bs"] * 64, "eval_samples": args["bs"], "threads": 1,
           "tf32": False, "options": {}, "epochs": 1}
mod = importlib.import_module(f"{fw}_worker")
mod.import_framework(request) if fw == "jax" else mod.import_framework()
Backend = getattr(mod, {"jax": "JaxBackend", "tensorflow": "TensorFlowBackend",
                        "pytorch": "TorchBackend"}[fw])
b = Backend(request)
spec = specs.request_spec(request)
data = specs.make_dataset(spec, request)
b.build_model(spec)
b.load_data(data)
nb, bs = 64, args["bs"]
xs = data["x_train"]
if fw == "jax":
    import jax
    convert = jax.device_put
elif fw == "tensorflow":
    import tensorflow as tf
    convert = lambda a: tf.constant(a)
else:
    import torch
    convert = lambda a: torch.from_numpy(a).to(b.device)
clock = time.perf_counter
for i in range(20):
    b.sync(b.train_step(i % nb))
t0 = clock(); [b.sync(b.train_step(i % nb)) for i in range(10)]
k = max(1, int(np.ceil(0.05 / ((clock() - t0) / 10))))
def block(variant):
    """One block of K steps in `variant`; its time per step."""
    t0 = clock()
    pend = []
    for j in range(k):
        i = j % nb
        if variant in ("host-fed", "typical"):
            convert(np.ascontiguousarray(xs[i * bs:(i + 1) * bs]))
        if variant in ("step-sync", "typical"):
            float(b.sync(b.train_step(i)))
        else:
            pend.append(b.train_step(i))
    if pend:
        b.sync_losses(pend)
    return (clock() - t0) / k
# the variants alternate block by block, so the machine's load hits all of them alike
times = {v: [] for v in ("harness", "step-sync", "host-fed", "typical")}
out = []
for r in range(args["rounds"]):
    cur = {v: [] for v in times}
    for _ in range(20):
        for v in cur:
            cur[v].append(block(v))
    h = cur["harness"]
    out.append({"harness": bs / float(np.median(h)), "mean": bs / float(np.mean(h)),
                "step-sync": bs / float(np.median(cur["step-sync"])),
                "host-fed": bs / float(np.median(cur["host-fed"])),
                "typical": bs / float(np.mean(cur["typical"]))})
print(json.dumps({"k": k, "rounds": out}))
'''

VARIANTS = ("harness", "mean", "step-sync", "host-fed", "typical")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frameworks", nargs="+", default=["pytorch", "tensorflow", "jax"])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    env_args = {"workers": str(ROOT / "workers"), "model": args.model, "preset": args.preset,
                "bs": args.batch_size, "rounds": args.rounds}
    print(f"{args.model}.{args.preset} bs{args.batch_size}, 1 thread, fp32, CPU; samples/s "
          "(ratio to harness: median over rounds)")
    print(f"{'framework':<11} {'K':>3} " + " ".join(f"{v:>18}" for v in VARIANTS))
    for fw in args.frameworks:
        proc = subprocess.run([sys.executable, "-c", CHILD, fw, json.dumps(env_args)],
                              capture_output=True, text=True, timeout=900,
                              env={"TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu",
                                   "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
                                   "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
                                   "PATH": "/usr/bin:/bin"})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            print(f"{fw}: failed\n{proc.stderr[-2000:]}")
            continue
        res = json.loads(lines[-1])
        cells = []
        for v in VARIANTS:
            sps = statistics.median(r[v] for r in res["rounds"])
            ratio = statistics.median(r[v] / r["harness"] for r in res["rounds"])
            cells.append(f"{sps:9.0f} ({ratio:5.3f})")
        print(f"{fw:<11} {res['k']:>3} " + " ".join(f"{c:>18}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
