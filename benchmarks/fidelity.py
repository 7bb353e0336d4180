"""Harness fidelity: does mlbench report the training speed a minimal hand-written loop gets?

For each framework (pytorch, tensorflow, jax) x model (mlp small, cnn tiny by default) x batch
size x thread count, on the CPU at fp32, two kinds of fresh subprocess are run side by side:

  A. the real worker script (workers/<framework>_worker.py) with the request.json and the
     environment `mlbench run` would give it (mlbench.run.matrix + mlbench.run.launcher.cell_env, so
     the same thread variables and CPU pinning); samples/s = batch_size / median(step_times_s), one
     sample per steady block.
  B. a minimal hand-written training loop of the same framework and model (embedded below):
     same architecture, data (specs.make_dataset), batch size, optimizer (Adam lr 1e-3,
     eps 1e-8), thread count and CPU pinning (sched_setaffinity to the first N CPUs, as the
     worker does), written the idiomatic fast way: torch model(x) / loss.backward() /
     opt.step() on tensors; TF a tf.function train step; JAX a jitted step with donation.
     After 10 warm-up steps it times the steady state as the harness does: block-synced (K steps
     per block, K so that a block lasts >= 50 ms, one fetch of the block's losses at its end).

Rounds interleave A and B (A,B then B,A, ...) so that a noisy shared machine hits both alike;
the ratio A / B is taken per round and its median over rounds is reported. Goal: ratio >= 0.97
everywhere.

    .venv/bin/python benchmarks/fidelity.py [--rounds 3] [--threads 1 [2]]
        [--batch-sizes 64 [32]] [--models mlp cnn] [--cnn-preset tiny] [--steps 200]
        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlbench.config import schema as cfg
from mlbench.run import launcher, matrix  # noqa: E402

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
GOAL = 0.97

# ---------------------------------------------------------------------------------------------
# The minimal loops. One script, argv[1] = JSON args; prints one JSON line on the real stdout.

MINIMAL = textwrap.dedent(r'''
import json, os, sys, time
args = json.loads(sys.argv[1])
sys.path.insert(0, args["workers"])
threads = int(args["threads"])
allowed = sorted(os.sched_getaffinity(0))
if 0 < threads < len(allowed):
    os.sched_setaffinity(0, allowed[:threads])  # as harness.pin_cpu_threads, before the import
import numpy as np
import specs

fw, bs, steps, warmup = args["framework"], int(args["batch_size"]), int(args["steps"]), int(args["warmup"])
spec = specs.model_spec(args["model"], args["model_options"])
data = specs.make_dataset(spec, {"train_samples": bs * args["n_batches"], "eval_samples": bs,
                                 "seed": 0})
xs, ys = data["x_train"], data["y_train"]
nb = args["n_batches"]
clock = time.perf_counter


def measure(step, sync_all):
    """Timed the way the harness times the steady state (block-synced): `warmup` steps synced
    one by one, whose median sets K so that a block lasts >= 50 ms; then blocks of K steps
    dispatched back to back, each ending with one fetch of all its losses inside the timed
    region. The figure is the median over blocks of the block's time per step."""
    warm = []
    for i in range(warmup):
        t0 = clock()
        sync_all([step(i % nb)])
        warm.append(clock() - t0)
    k = max(1, int(np.ceil(0.05 / max(float(np.median(warm)), 1e-9))))
    per_step = []
    i = warmup
    for _ in range(max(2, steps // k)):
        t0 = clock()
        losses = [step((i + j) % nb) for j in range(k)]
        sync_all(losses)
        per_step.append((clock() - t0) / k)
        i += k
    # the same steps as a typical hand-written loop times them: each step's loss fetched before
    # the next step (a loop that logs its loss), total time / steps (a mean: slow steps count)
    n = len(per_step) * k
    t0 = clock()
    for j in range(n):
        sync_all([step((i + j) % nb)])
    typical = (clock() - t0) / n
    return {"block_median_step_s": float(np.median(per_step)), "blocks": len(per_step),
            "steps_per_block": k, "typical_step_s": typical}


if fw == "pytorch":
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    if spec["model"] == "mlp":
        dims = [spec["input_dim"], *spec["hidden"], spec["num_classes"]]
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
    else:
        class Block(nn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(cout)
                self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(cout)
                self.sc = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else nn.Identity())

            def forward(self, x):
                return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.sc(x))
        w = spec["widths"]
        layers = [nn.Conv2d(spec["channels"], w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]),
                  nn.ReLU()]
        c = w[0]
        for stage, (width, n) in enumerate(zip(w, spec["blocks"])):
            for b in range(n):
                layers.append(Block(c, width, 2 if stage > 0 and b == 0 else 1))
                c = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, spec["num_classes"])]
        model = nn.Sequential(*layers)
        xs = np.ascontiguousarray(xs.transpose(0, 3, 1, 2))  # NCHW
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)  # torch's default (foreach)
    X, Y = torch.from_numpy(xs), torch.from_numpy(ys).long()

    def step(i):
        x, y = X[i * bs:(i + 1) * bs], Y[i * bs:(i + 1) * bs]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    result = measure(step, lambda losses: torch.stack(losses).tolist())

elif fw == "tensorflow":
    import tensorflow as tf
    import keras
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    L = keras.layers
    if spec["model"] == "mlp":
        model = keras.Sequential([keras.Input((spec["input_dim"],))]
                                 + [L.Dense(h, activation="relu") for h in spec["hidden"]]
                                 + [L.Dense(spec["num_classes"])])
    else:
        def conv_bn(x, f, k, s):
            if s != 1 and k > 1:  # symmetric padding at stride 2 ('same' pads asymmetrically)
                x = L.Conv2D(f, k, s, padding="valid", use_bias=False)(L.ZeroPadding2D(k // 2)(x))
            else:
                x = L.Conv2D(f, k, s, padding="same", use_bias=False)(x)
            return L.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)
        s = spec["image_size"]
        inp = keras.Input((s, s, spec["channels"]))
        w = spec["widths"]
        x = L.ReLU()(conv_bn(inp, w[0], 3, 1))
        c = w[0]
        for stage, (width, n) in enumerate(zip(w, spec["blocks"])):
            for b in range(n):
                st = 2 if stage > 0 and b == 0 else 1
                y = conv_bn(L.ReLU()(conv_bn(x, width, 3, st)), width, 3, 1)
                sc = conv_bn(x, width, 1, st) if st != 1 or c != width else x
                x = L.ReLU()(L.Add()([y, sc]))
                c = width
        model = keras.Model(inp, L.Dense(spec["num_classes"])(L.GlobalAveragePooling2D()(x)))
    opt = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8)
    batches = [(tf.constant(xs[i * bs:(i + 1) * bs]), tf.constant(ys[i * bs:(i + 1) * bs]))
               for i in range(nb)]

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    result = measure(lambda i: train_step(*batches[i]),
                     lambda losses: tf.stack(losses).numpy().tolist())

else:
    import jax
    import jax.numpy as jnp
    import flax.linen as nn
    import optax

    if spec["model"] == "mlp":
        class Model(nn.Module):
            @nn.compact
            def __call__(self, x, train=True):
                for h in spec["hidden"]:
                    x = nn.relu(nn.Dense(h)(x))
                return nn.Dense(spec["num_classes"])(x)
    else:
        class Block(nn.Module):
            width: int
            stride: int

            @nn.compact
            def __call__(self, x, train=True):
                bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                          epsilon=1e-5)
                s, p = (self.stride, self.stride), ((1, 1), (1, 1))
                y = nn.relu(bn()(nn.Conv(self.width, (3, 3), s, padding=p, use_bias=False)(x)))
                y = bn()(nn.Conv(self.width, (3, 3), padding=p, use_bias=False)(y))
                if self.stride != 1 or x.shape[-1] != self.width:
                    x = bn()(nn.Conv(self.width, (1, 1), s, padding="VALID", use_bias=False)(x))
                return nn.relu(y + x)

        class Model(nn.Module):
            @nn.compact
            def __call__(self, x, train=True):
                w = spec["widths"]
                x = nn.Conv(w[0], (3, 3), padding=((1, 1), (1, 1)), use_bias=False)(x)
                x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                         epsilon=1e-5)(x))
                for stage, (width, n) in enumerate(zip(w, spec["blocks"])):
                    for b in range(n):
                        x = Block(width, 2 if stage > 0 and b == 0 else 1)(x, train)
                return nn.Dense(spec["num_classes"])(jnp.mean(x, axis=(1, 2)))

    model = Model()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *xs.shape[1:])))
    params, stats = variables["params"], variables.get("batch_stats", {})
    tx = optax.adam(1e-3, eps=1e-8)
    opt_state = tx.init(params)
    batches = [(jax.device_put(xs[i * bs:(i + 1) * bs]), jax.device_put(ys[i * bs:(i + 1) * bs]))
               for i in range(nb)]

    @jax.jit
    def _step(params, stats, opt_state, x, y):
        def loss_fn(p):
            if stats:
                logits, upd = model.apply({"params": p, "batch_stats": stats}, x,
                                          mutable=["batch_stats"])
                new_stats = upd["batch_stats"]
            else:
                logits, new_stats = model.apply({"params": p}, x), stats
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, new_stats
        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    train = jax.jit(_step, donate_argnums=(0, 1, 2))
    box = [params, stats, opt_state]

    def step(i):
        box[0], box[1], box[2], loss = train(box[0], box[1], box[2], *batches[i])
        return loss

    result = measure(step, lambda losses: [float(v) for v in jax.device_get(losses)])

print(json.dumps(result), flush=True)
''')


# ---------------------------------------------------------------------------------------------

def make_cells(tmp: Path, fw: str, model: str, preset: str, bs: int, threads: int,
               train_samples: int):
    """The cell exactly as `mlbench run` would build it (request + environment)."""
    conf = tmp / f"cfg-{fw}-{model}-{bs}-{threads}.yaml"
    conf.write_text(yaml.safe_dump({
        "frameworks": [fw], "models": [{"name": model, "preset": preset}], "devices": ["cpu"],
        "batch_sizes": [bs], "precisions": ["fp32"], "epochs": 1, "seed": 0,
        "train_samples": train_samples, "eval_samples": bs, "warmup_iterations": 1,
        "timed_iterations": 1, "threads": threads, "timeout_s": 600}))
    (cell,) = matrix.expand(cfg.load_config(conf))
    d = tmp / "cells" / cell.cell_id
    d.mkdir(parents=True, exist_ok=True)
    argv, env = launcher.prepare(launcher.cell_job(cell), d)
    return cell, argv, env


def run_worker(argv, env, bs: int) -> dict:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    msgs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if not msgs or msgs[-1]["type"] != "result":
        raise RuntimeError(f"worker failed: {msgs[-1] if msgs else proc.stderr[-2000:]}")
    train = msgs[-1]["metrics"]["train"]
    st = train["step_times_s"]  # one sample per steady block: the block's time per step
    # samples per step from the request's batch size, not from the record under test
    return {"samples_s": bs / statistics.median(st),
            "steps": train["steady_steps"], "blocks": len(st),
            "median_step_ms": 1e3 * statistics.median(st)}


def run_minimal(script: Path, env, fw, model, preset, bs, threads, steps) -> dict:
    args = {"workers": str(ROOT / "workers"), "framework": fw, "model": model,
            "model_options": {"preset": preset}, "batch_size": bs, "threads": threads,
            "steps": steps, "warmup": 10, "n_batches": steps}
    proc = subprocess.run([sys.executable, "-u", str(script), json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"minimal loop failed ({fw} {model}): {proc.stderr[-2000:]}")
    r = json.loads(lines[-1])
    return {"samples_s": bs / r["block_median_step_s"], "blocks": r["blocks"],
            "median_step_ms": 1e3 * r["block_median_step_s"],
            "typical_samples_s": bs / r["typical_step_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS))
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--mlp-preset", default="small")
    ap.add_argument("--cnn-preset", default="tiny")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200, help="steps after the first (both sides)")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()

    presets = {"mlp": args.mlp_preset, "cnn": args.cnn_preset}
    combos = [(fw, m, bs, th) for th in args.threads for bs in args.batch_sizes
              for m in args.models for fw in args.frameworks]
    raw: dict = {c: {"A": [], "B": []} for c in combos}
    t_start = time.perf_counter()
    print(f"host: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {len(combos)} combos x "
          f"{args.rounds} rounds, {args.steps} timed steps each side", flush=True)
    with tempfile.TemporaryDirectory(prefix="mlbench-fidelity-") as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "minimal_loop.py"
        script.write_text(MINIMAL)
        # the worker times n_train // bs - 1 steps (the first is the compile step)
        prepared = {c: make_cells(tmp, c[0], c[1], presets[c[1]], c[2], c[3],
                                  c[2] * (args.steps + 1)) for c in combos}
        for r in range(args.rounds):
            for k, c in enumerate(combos):
                fw, m, bs, th = c
                cell, argv, env = prepared[c]
                order = "AB" if (r + k) % 2 == 0 else "BA"
                for side in order:
                    if side == "A":
                        raw[c]["A"].append(run_worker(argv, env, bs))
                    else:
                        raw[c]["B"].append(run_minimal(script, env, fw, m, presets[m], bs, th,
                                                       args.steps))
                a, b = raw[c]["A"][-1], raw[c]["B"][-1]
                print(f"  round {r + 1} {fw:<10} {m}.{presets[m]:<6} bs{bs:<3} t{th}  "
                      f"mlbench {a['samples_s']:9.0f}/s ({a['blocks']} blocks)  minimal "
                      f"{b['samples_s']:9.0f}/s ({b['blocks']} blocks)  "
                      f"({order}, {time.perf_counter() - t_start:5.0f}s)", flush=True)

    print("\nHarness fidelity: mlbench's steady-state training samples/s over a minimal "
          "hand-written loop's\n(median over rounds of the per-round ratio; goal >= "
          f"{GOAL:.2f}; CPU, fp32)\n")
    hdr = (f"{'framework':<11}{'model':<11}{'bs':>4}{'thr':>4}  {'mlbench/s':>10}"
           f"{'minimal/s':>11}  {'ratio':>7}  {'vs typical':>10}  {'step ms (A/B)':>14}  "
           "verdict")
    print(hdr)
    print("-" * len(hdr))
    summary = []
    for c in combos:
        fw, m, bs, th = c
        A, B = raw[c]["A"], raw[c]["B"]
        ratio = statistics.median(a["samples_s"] / b["samples_s"] for a, b in zip(A, B))
        typical = statistics.median(a["samples_s"] / b["typical_samples_s"] for a, b in zip(A, B))
        med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
        print(f"{fw:<11}{m + '.' + presets[m]:<11}{bs:>4}{th:>4}  {med(A, 'samples_s'):>10.0f}"
              f"{med(B, 'samples_s'):>11.0f}  {ratio:>7.3f}  {typical:>10.3f}  "
              f"{med(A, 'median_step_ms'):>6.2f}/"
              f"{med(B, 'median_step_ms'):<6.2f}  {'ok' if ratio >= GOAL else 'LOW'}")
        summary.append({"framework": fw, "model": m, "preset": presets[m], "batch_size": bs,
                        "threads": th, "ratio": ratio, "ratio_vs_typical": typical,
                        "mlbench": A, "minimal": B})
    print("\nratio: mlbench / minimal loop, both block-synced (blocks of K steps lasting >= 50 ms,"
          "\none fetch of the block's losses at its end). step ms: median over blocks of the"
          "\nblock's time per step, mlbench / minimal. vs typical: mlbench over the same minimal"
          "\nloop timed as hand-written loops usually are (every step's loss fetched, total time /"
          "\nsteps). The minimal torch loop uses torch's default"
          "\nAdam (foreach); the worker uses fused Adam where torch has it.")
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
