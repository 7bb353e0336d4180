"""What separates mlbench's steady-state training figure from a typical hand-written loop's.

    taskset -c 1 .venv/bin/python benchmarks/fidelity_factors.py [--frameworks jax tensorflow
        pytorch] [--model mlp] [--preset small] [--batch-size 64] [--rounds 5]

benchmarks/fidelity.py compares the worker with a minimal loop timed the harness's way. A loop as
people write it differs in ways that are not the framework's speed; this script measures each of
them inside ONE process per framework, on the real worker's backend (workers/<fw>_worker.py:
same model, data on the device, compiled step), interleaving the variants round by round so that
the machine's load hits all alike:

  harness     K steps dispatched back to back, one fetch of the block's losses (sync_losses):
              samples/s = batch / median over blocks of the time per step (what mlbench reports)
  mean        the same blocks, total time / total steps (a mean keeps the slow blocks)
  step-sync   every step's loss fetched to the host before the next step (float(loss) per step,
              a loop that logs every step): no overlap of dispatch and compute
  host-fed    block-synced, plus the batch converted from host numpy to a framework tensor every
              step inside the timed region (a loop fed from numpy / an input pipeline; the
              worker holds the whole dataset on the device and slices it inside the step)

Prints samples/s per variant and each one's ratio to `harness` (median over rounds of the
per-round ratio).
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
    convert = lambda a: jax.block_until_ready(jax.device_put(a))
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
def blocks(n, feed=False):
    per, total, steps = [], 0.0, 0
    for blk in range(n):
        t0 = clock()
        pend = []
        for j in range(k):
            i = (blk * k + j) % nb
            if feed:
                convert(np.ascontiguousarray(xs[i * bs:(i + 1) * bs]))
            pend.append(b.train_step(i))
        b.sync_losses(pend)
        dt = clock() - t0
        per.append(dt / k); total += dt; steps += k
    return per, total, steps
def synced(n):
    t0 = clock()
    for i in range(n):
        float(b.sync(b.train_step(i % nb)))
    return (clock() - t0) / n
out = []
for r in range(args["rounds"]):
    per, total, steps = blocks(20)
    step_sync = synced(20 * k)
    fed, _, _ = blocks(20, feed=True)
    out.append({"harness": bs / float(np.median(per)), "mean": bs * steps / total,
                "step-sync": bs / step_sync, "host-fed": bs / float(np.median(fed))})
print(json.dumps({"k": k, "rounds": out}))
'''

VARIANTS = ("harness", "mean", "step-sync", "host-fed")


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
