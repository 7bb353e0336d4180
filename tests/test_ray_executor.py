"""The Ray executor on a REAL multi-node Ray cluster (several raylets on this machine, logical GPUs
declared with num_gpus) with the dummy worker: cells spread over nodes, a GPU cell sees exactly
the GPU Ray gave it, a CPU cell holds its node alone, a node without the framework environment
fails its cells only, a lost node gives `crashed`/"node lost" and the rest completes, Ctrl-C and
kill -9 then --resume, files from a node without the run directory, the same results schema as a
local run. One cluster per module (starting raylets costs seconds)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from cliutil import ROOT, run_inproc, run_subprocess, write_config
from mlbench.results import store

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.slow  # minutes: soak loops, a real Ray cluster or a real browser

STORE = 100 * 1024 * 1024
NODE = {"num_cpus": 4, "object_store_memory": STORE, "resources": {"mlbench_node": 1}}


@pytest.fixture(scope="module")
def cluster():
    """Head (runs no cells: no mlbench_node) + node A (2 logical GPUs) + node B (2 logical GPUs,
    told it does not share the run directory, so it ships its files back)."""
    before = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), *before])
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": STORE})
    c.add_node(num_gpus=2, **NODE)
    c.add_node(num_gpus=2, env_vars={"MLBENCH_NODE_SHARED_FS": "0"}, **NODE)
    ray.init(address=c.address, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _conf(tmp_path: Path, name: str = "c.yaml", **fields) -> Path:
    opts = fields.pop("options", {"sleep_s": 0.1})
    return write_config(tmp_path / name, framework_settings={"dummy": {"options": opts}},
                        **fields)


def _run(cluster, conf: Path, *extra: str, capsys=None) -> int:
    return run_inproc(["run", "--config", str(conf), "--no-report", "--executor", "ray",
                       "--ray-address", cluster.address, *extra], capsys)[0]


def _cells(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["cells"]


def _span(a: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(a["ended_at"])


def _overlap(a: dict, b: dict) -> bool:
    (s1, e1), (s2, e2) = _span(a), _span(b)
    return s1 < e2 and s2 < e1


def _cell_nodes() -> list[str]:
    return [n["NodeID"] for n in ray.nodes()
            if n["Alive"] and n["Resources"].get("mlbench_node")]


def test_without_ray_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    monkeypatch.delitem(sys.modules, "mlbench.run.ray_executor", raising=False)
    conf = _conf(tmp_path)
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report", "--executor", "ray"],
                            capsys)
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: the ray executor needs Ray, which is not installed; install it with pip "
        "install 'mlbench[ray]' (executor.kind)"]
    assert not (tmp_path / "results").exists()  # refused before anything was written


@pytest.mark.parametrize("args, fields, where", [
    (["--executor", "slurm"], {}, "--executor"),
    (["--executor", "local", "--ray-address", "auto"], {}, "--ray-address"),
    ([], {"executor": {"kind": "slurm"}}, "executor.kind"),
    ([], {"executor": {"kind": "ray", "cells_per_node": {"cpu": 0}}},
     "executor.cells_per_node.cpu"),
])
def test_bad_executor_input_is_one_line_exit_2(tmp_path, capsys, args, fields, where):
    conf = write_config(tmp_path / "c.yaml", **fields)
    rc, _, err = run_inproc(["run", "--config", str(conf), "--no-report", *args], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and where in err
    assert not (tmp_path / "results").exists()


def test_resources_a_gpu_cell_one_gpu_a_cpu_cell_the_whole_node(tmp_path):
    from mlbench.config import schema as cfg
    from mlbench.run import matrix
    from mlbench.run.ray_executor import RayExecutor
    conf = cfg.load_config(write_config(tmp_path / "c.yaml", devices=["cpu", "cuda:0"],
                                        batch_sizes=[1]))
    cpu, gpu = matrix.expand(conf)
    for per_node, fits in ((cfg.CellsPerNode(), None), (cfg.CellsPerNode(gpu=3), 3),
                           (cfg.CellsPerNode(gpu=7), 7), (cfg.CellsPerNode(gpu=64), 64)):
        ex = RayExecutor(cfg.ExecutorSettings(kind="ray", cells_per_node=per_node))
        o_cpu, o_gpu = ex.options(cpu), ex.options(gpu)
        assert o_cpu["resources"]["mlbench_node"] == 1 and o_cpu["num_gpus"] == 0
        assert o_gpu["num_gpus"] == 1 and o_gpu["resources"]["mlbench_node"] > 0
        share = o_gpu["resources"]["mlbench_node"]
        if fits:  # exactly `fits` GPU cells fit on a node's one mlbench_node
            assert fits * share <= 1 < (fits + 1) * share
        for o in (o_cpu, o_gpu):  # never retried silently, no CPU accounting of Ray's
            assert o["max_retries"] == 0 and o["retry_exceptions"] is False
            assert o["num_cpus"] == 0


def test_files_shipped_from_a_node_never_land_outside_the_run_directory(tmp_path):
    from mlbench.config.schema import ExecutorSettings
    from mlbench.run.ray_executor import RayExecutor
    root = tmp_path / "run"
    root.mkdir()
    RayExecutor(ExecutorSettings(kind="ray"))._write_files(root, {
        "cells/c1/stderr-r0-x.log": "log text", "../escaped.txt": "no",
        "cells/../../escaped2.txt": "no", str(tmp_path / "abs.txt"): "no"})
    assert (root / "cells" / "c1" / "stderr-r0-x.log").read_text() == "log text"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["stderr-r0-x.log"]


def test_gpu_cells_run_concurrently_each_on_its_own_gpu(cluster, tmp_path, capsys):
    conf = _conf(tmp_path, devices=["cuda:0"], batch_sizes=[1, 2, 3, 4],
                 options={"sleep_s": 0.5})
    assert _run(cluster, conf, capsys=capsys) == 0
    out = tmp_path / "results"
    cells = _cells(out)
    assert [c["status"] for c in cells] == ["ok"] * 4
    assert len({c["placement"]["node_id"] for c in cells}) == 2  # spread over both nodes
    for c in cells:
        # the worker saw exactly the one GPU Ray assigned, nothing else
        assert len(c["placement"]["gpu_ids"]) == 1
        assert c["hello"]["visible_devices"] == c["placement"]["gpu_ids"][0]
        assert (out / c["stderr_log"]).is_file()  # in place, or shipped back from node B
        assert (out / "cells" / c["cell_id"] / "command.txt").is_file()
    pairs = [(a, b) for i, a in enumerate(cells) for b in cells[i + 1:]
             if a["placement"]["node_id"] == b["placement"]["node_id"] and _overlap(a, b)]
    assert pairs, "no two GPU cells ran at the same time on one node"
    for a, b in pairs:
        assert a["placement"]["gpu_ids"] != b["placement"]["gpu_ids"]
    run = json.loads((out / "run.json").read_text())
    nodes = run["executor"]["nodes"]
    assert run["executor"]["kind"] == "ray" and len(nodes) == 2
    assert {n["node_id"] for n in nodes} == set(_cell_nodes())
    assert all(n["gpus"] == 2 and n["info"]["hostname"] and "dummy" in n["info"]["frameworks"]
               for n in nodes)


def test_a_cpu_cell_never_shares_its_node(cluster, tmp_path, capsys):
    conf = _conf(tmp_path, devices=["cpu", "cuda:0"], batch_sizes=[1, 2, 3, 4],
                 options={"sleep_s": 0.4})
    assert _run(cluster, conf, capsys=capsys) == 0
    cells = _cells(tmp_path / "results")
    assert [c["status"] for c in cells] == ["ok"] * 8
    gpu = [c for c in cells if c["device"] != "cpu"]
    assert any(a["placement"]["node_id"] == b["placement"]["node_id"] and _overlap(a, b)
               for i, a in enumerate(gpu) for b in gpu[i + 1:]), "nodes ran nothing at once"
    for cpu in (c for c in cells if c["device"] == "cpu"):
        for other in cells:
            if other is not cpu and other["placement"]["node_id"] == \
                    cpu["placement"]["node_id"]:
                assert not _overlap(cpu, other), (cpu["cell_id"], other["cell_id"])


def test_results_have_the_schema_of_a_local_run(cluster, tmp_path, capsys):
    conf = _conf(tmp_path)
    assert _run(cluster, conf, "--output", str(tmp_path / "ray"), capsys=capsys) == 0
    assert run_inproc(["run", "--config", str(conf), "--no-report", "--output",
                       str(tmp_path / "local")], capsys)[0] == 0
    ray_cells, local_cells = _cells(tmp_path / "ray"), _cells(tmp_path / "local")
    assert [sorted(c) for c in ray_cells] == [sorted(c) for c in local_cells]
    assert set(local_cells[0]["placement"]) <= set(ray_cells[0]["placement"])
    header = (tmp_path / "ray" / "results.csv").read_text().splitlines()[0]
    assert header == (tmp_path / "local" / "results.csv").read_text().splitlines()[0]
    loaded = store.load(tmp_path / "ray" / "results.json")
    assert {a["status"] for a in loaded.latest} == {"ok"}


def test_a_node_without_the_framework_environment_fails_only_its_cells(cluster, tmp_path,
                                                                         capsys):
    broken = cluster.add_node(env_vars={"MLBENCH_PYTHON_DUMMY": "/nonexistent/bin/python"},
                              **NODE)
    try:
        bad_id = broken.node_id
        conf = _conf(tmp_path, batch_sizes=[1, 2, 3, 4, 5, 6], options={"sleep_s": 0.2})
        assert _run(cluster, conf, capsys=capsys) == 1
        cells = _cells(tmp_path / "results")
        on_bad = [c for c in cells if c["placement"]["node_id"] == bad_id]
        assert on_bad, "no cell was placed on the broken node"
        for c in on_bad:
            assert c["status"] == "failed"
            assert c["reason"].startswith("framework environment missing on node")
            assert "/nonexistent/bin/python" in c["reason"]
        assert all(c["status"] == "ok" for c in cells if c not in on_bad)
    finally:
        cluster.remove_node(broken)


def test_a_node_lost_mid_cell_is_crashed_and_the_sweep_goes_on(cluster, tmp_path):
    victim = cluster.add_node(**NODE)
    from mlbench.config import schema as cfg
    from mlbench.run import runner

    class Hooks(runner.Hooks):
        started = 0

        def cell_start(self, cell, index, total):
            Hooks.started += 1
            if Hooks.started == 3:  # every node holds a CPU cell now: one of them is lost
                cluster.remove_node(victim, allow_graceful=False)

    conf = cfg.load_config(_conf(tmp_path, batch_sizes=[1, 2, 3, 4, 5],
                                 options={"sleep_s": 0.6},
                                 executor={"kind": "ray", "address": cluster.address}))
    outcome = runner.run_sweep(conf, tmp_path / "results", runner.Plan("new"), Hooks())
    assert outcome.exit_code == 1
    cells = _cells(tmp_path / "results")
    lost = [c for c in cells if c["status"] != "ok"]
    assert len(lost) == 1 and lost[0]["status"] == "crashed"
    assert lost[0]["reason"] == "node lost"
    assert lost[0]["placement"]["node_id"] == victim.node_id
    assert len(cells) == 5 and all(c["placement"]["node_id"] != victim.node_id
                                   for c in cells if c["status"] == "ok")
    attempts, _ = store.read_jsonl(tmp_path / "results" / "results.jsonl")
    assert len(attempts) == 5  # never retried silently


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlbench.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def _wait(pred, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.05)


def test_ctrl_c_interrupts_in_flight_cells_and_kills_their_workers(cluster, tmp_path):
    conf = _conf(tmp_path, batch_sizes=[1, 2, 3, 4],
                 options={"sleep_s": 3, "fault": "hang_grandchild", "phase": "build"})
    out = tmp_path / "results"
    proc = _start(["run", "--config", str(conf), "--no-report", "--executor", "ray",
                   "--ray-address", cluster.address], tmp_path)
    # node A writes its stderr log in place when its cell starts
    _wait(lambda: any((out / "cells").glob("*/stderr-*.log")))
    time.sleep(4)  # past the build phase: the worker has its grandchild
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    cells = _cells(out)
    assert cells and all(c["status"] == "interrupted" for c in cells)
    assert all(c["reason"] == "stopped by SIGINT" for c in cells)
    pids = [c["hello"]["pid"] for c in cells]
    groups = lambda: [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) in pids]  # noqa
    _wait(lambda: not groups(), timeout=10)  # workers and grandchildren gone


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_kill_9_of_the_driver_then_resume_loses_and_duplicates_nothing(cluster, tmp_path):
    conf = _conf(tmp_path, batch_sizes=[1, 2, 3, 4, 5, 6], options={"sleep_s": 0.3})
    out = tmp_path / "results"
    args = ["run", "--config", str(conf), "--no-report", "--executor", "ray",
            "--ray-address", cluster.address]
    proc = _start(args, tmp_path)
    jsonl = out / "results.jsonl"
    _wait(lambda: jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept, _ = store.read_jsonl(jsonl)
    assert 2 <= len(kept) < 6
    res = run_subprocess([*args, "--resume"], tmp_path)
    assert res.returncode == 0, res.stderr
    attempts, _ = store.read_jsonl(jsonl)
    ids = [a["cell_id"] for a in attempts]
    assert len(ids) == len(set(ids)) == 6  # every cell once: none lost, none measured twice
    assert all(a["status"] == "ok" for a in attempts)
    assert attempts[:len(kept)] == kept


def _held() -> dict:
    return ray.get_runtime_context().get_assigned_resources()


def test_on_each_kind_runs_once_per_node_kind_holding_the_node(cluster):
    from mlbench.config.schema import ExecutorSettings
    from mlbench.run.ray_executor import RayExecutor
    ex = RayExecutor(ExecutorSettings(kind="ray", address=cluster.address),
                     {"dummy": sys.executable})
    desc = ex.describe()
    kinds = {ex._kinds[n["node_id"]] for n in desc["nodes"]}
    out = ex.on_each_kind(_held)
    assert set(out) == kinds  # A and B are the same hardware here: measured once, not twice
    for entry in out.values():
        assert entry["node_id"] in _cell_nodes()
        # nothing else can run there meanwhile: the whole node resource and every GPU
        assert entry["result"]["mlbench_node"] == 1 and entry["result"]["GPU"] == 2


def test_ceilings_are_measured_on_each_node_kind_and_come_back(cluster, tmp_path):
    from mlbench.config import schema as cfg
    from mlbench.run.preflight import ceilings_here
    from mlbench.run.ray_executor import RayExecutor
    conf = cfg.load_config(write_config(tmp_path / "c.yaml", frameworks=["numpy"],
                                        batch_sizes=[8]))
    ex = RayExecutor(cfg.ExecutorSettings(kind="ray", address=cluster.address),
                     {"numpy": sys.executable})
    # as if the driver were another machine: the node measures instead of deferring to it
    out = ex.on_each_kind(ceilings_here, conf, "driver-elsewhere")
    assert out and all("error" not in e for e in out.values())
    for entry in out.values():
        assert entry["result"]["ceilings"]["numpy"]["cpu"]["fp32"] > 0
        assert entry["result"]["doc"]["entries"]["numpy|cpu"]["status"] == "ok"
    same = ex.on_each_kind(ceilings_here, conf, __import__("platform").node())
    assert all(e["result"] == {"same_as_driver": True, "hostname": e["hostname"]}
               for e in same.values())
