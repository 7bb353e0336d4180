"""The Ray executor's cost and gain, side by side with the local executor, on this machine.

Prints:
  1. overhead per cell: N dummy CPU cells (no sleep) run one after another by each executor (a
     CPU cell holds the node, so Ray runs them serially too); (ray - local) / N. Goal: < 50 ms.
  2. 16 dummy cells of 2 s each: local executor (serial) vs Ray on a local cluster of 4 logical
     GPUs (GPU cells, one GPU each). Goal: within 10% of 4x faster.
  3. the driver's share at scale: one durable append (write + fsync) of a typical record, the
     record size, and the cluster's one-off cost (joining, describing the nodes).

Usage: PYTHONPATH=. python benchmarks/ray_scale.py [--cells 30] [--rounds 2] [--skip-wall]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlbench.config import schema as cfg
from mlbench.run import runner
from mlbench.results import store  # noqa: E402
from mlbench.run.ray_executor import NODE_RESOURCE, RayExecutor  # noqa: E402


def conf(tmp: Path, name: str, cells: int, device: str, sleep_phase: float,
         kind: str) -> cfg.Config:
    return cfg.validate({
        "frameworks": ["dummy"], "models": ["mlp"], "devices": [device],
        "batch_sizes": list(range(1, cells + 1)), "timeout_s": 120,
        "output_dir": str(tmp / name), "verify": False, "ceiling": False,
        "framework_settings": {"dummy": {"options": {"sleep_s": sleep_phase}}},
        "executor": {"kind": kind}}, name)


def sweep(c: cfg.Config, out: Path) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    outcome = runner.run_sweep(c, out, runner.Plan("new"), runner.Hooks())
    wall = time.perf_counter() - t0
    bad = [a for a in outcome.latest if a["status"] != "ok"]
    if bad:
        raise SystemExit(f"not ok: {bad[0]['cell_id']} {bad[0]['status']} {bad[0]['reason']}")
    return wall, outcome.latest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-wall", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlbench-ray-scale-"))
    t0 = time.perf_counter()
    # 4 logical CPUs: Ray keeps that many idle worker processes warm (a GPU node has more cores)
    ray.init(address="local", num_cpus=4, num_gpus=4, resources={NODE_RESOURCE: 1},
             include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, logging_level="ERROR", log_to_driver=False)
    start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    RayExecutor(cfg.ExecutorSettings(kind="ray"), {"dummy": sys.executable}).describe()
    describe_s = time.perf_counter() - t0
    print(f"local Ray cluster start {start_s:.1f} s; describe (probe every node) "
          f"{describe_s * 1000:.0f} ms")

    # warm both paths once (Ray worker processes, page cache)
    sweep(conf(tmp, "warm-l", 2, "cpu", 0.0, "local"), tmp / "warm-l")
    sweep(conf(tmp, "warm-r", 2, "cpu", 0.0, "ray"), tmp / "warm-r")
    sweep(conf(tmp, "warm-g", 8, "cuda:0", 0.0, "ray"), tmp / "warm-g")  # 4 Ray workers up
    n = args.cells
    runs: dict[str, list] = {"local": [], "ray": []}
    for r in range(args.rounds):  # interleaved; the best of each (the machine is shared)
        for kind in ("local", "ray"):
            runs[kind].append(sweep(conf(tmp, f"ovh-{kind}{r}", n, "cpu", 0.0, kind),
                                    tmp / f"ovh-{kind}{r}"))
    local_s, local_cells = min(runs["local"], key=lambda x: x[0])
    ray_s, ray_cells = min(runs["ray"], key=lambda x: x[0])
    lw = statistics.median(a["wall_s"] for a in local_cells)
    rw = statistics.median(a["wall_s"] for a in ray_cells)
    print(f"overhead: {n} dummy CPU cells, serial: local {local_s:.2f} s "
          f"({local_s / n * 1000:.0f} ms/cell), ray {ray_s:.2f} s ({ray_s / n * 1000:.0f} "
          f"ms/cell); ray - local = {(ray_s - local_s) / n * 1000:+.0f} ms per cell "
          f"(goal < 50 ms); median launcher wall per cell local {lw * 1000:.0f} ms, "
          f"ray {rw * 1000:.0f} ms")

    rec = ray_cells[-1]
    line = (json.dumps(rec) + "\n").encode()
    st = store.Store(tmp / "appends")
    (tmp / "appends").mkdir()
    t0 = time.perf_counter()
    for _ in range(200):
        st.append(rec)
    append_ms = (time.perf_counter() - t0) / 200 * 1000
    print(f"driver: one durable append {append_ms:.2f} ms (write+fsync), record "
          f"{len(line)} bytes")

    @ray.remote(num_cpus=0)
    def stream(n: int):
        for i in range(n):
            yield {"kind": "messages", "msgs": [{"type": "progress", "phase": "train", "i": i}]}

    ray.get(next(stream.remote(1)))
    t0 = time.perf_counter()
    items = 2000
    for ref in stream.remote(items):
        ray.get(ref)
    per_item = (time.perf_counter() - t0) / items * 1000
    print(f"streamed items (one per progress batch): {per_item:.2f} ms each at the driver, "
          f"one stream")

    if not args.skip_wall:
        local_s, _ = sweep(conf(tmp, "wall-l", 16, "cpu", 0.5, "local"), tmp / "wall-l")
        sweep(conf(tmp, "warm-g2", 8, "cuda:0", 0.0, "ray"), tmp / "warm-g2")
        ray_s, cells = sweep(conf(tmp, "wall-r", 16, "cuda:0", 0.5, "ray"), tmp / "wall-r")
        gpus = {tuple(a["placement"]["gpu_ids"]) for a in cells}
        spans = [(datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(a["ended_at"]))
                 for a in cells]
        busy = sum((e - s).total_seconds() for s, e in spans)
        first_to_last = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
        print(f"  ray: sum of cell walls {busy:.1f} s over 4 GPUs = {busy / 4:.1f} s ideal; "
              f"first start to last end {first_to_last:.1f} s")
        print(f"16 dummy cells of 2 s: local {local_s:.1f} s, ray on 4 logical GPUs "
              f"{ray_s:.1f} s (GPUs used: {len(gpus)}); speed-up {local_s / ray_s:.2f}x "
              f"(goal >= 3.6x, i.e. within 10% of 4x)")
    ray.shutdown()


if __name__ == "__main__":
    main()
