"""Guards found by the mutation check (benchmarks/mutation_check.py): quiet bugs of the issue-11
code that no other fast test noticed. Framework-free: the model modules and the store are read
directly, the launcher runs tiny stdlib scripts.

* FLOPs: the analytic FLOPs of a model module follow from its canonical weight shapes (a
  multiply-add is 2): an mlp does 2 x (entries of its kernels) per sample; a vit with no
  blocks does its patch embedding once per patch plus its head.
* The store's lines begin with the resume head (cell_id, then repeat), whatever the order of
  the record it is given: resume reads that head only.
* A timeout kills the whole process group, even a grandchild that ignores SIGTERM after the
  worker itself has gone.
"""
from __future__ import annotations

import json
import math
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from workerutil import WORKERS

from mlbench.run import launcher
from mlbench.results.store import Store

sys.path.insert(0, str(WORKERS))
import specs  # noqa: E402
import weights  # noqa: E402

MODELS = specs._M  # the models package, as specs.py loaded it


def _shapes(spec: dict) -> dict[str, tuple]:
    return {name: tuple(shape) for name, shape, *_ in weights.param_shapes(spec)}


def test_mlp_flops_are_two_per_kernel_entry():
    for preset in specs.PRESETS["mlp"]:
        spec = specs.model_spec("mlp", {"preset": preset})
        kernels = [s for n, s in _shapes(spec).items() if n.endswith(".kernel")]
        assert kernels, preset
        want = 2 * sum(math.prod(s) for s in kernels)
        assert MODELS.mlp.flops(spec) == want, preset
        assert specs.flops_per_sample(spec)["forward"] == want, preset


def test_vit_flops_count_the_patch_embedding_once_per_patch():
    spec = specs.model_spec("vit", {"preset": "tiny"})
    shapes = _shapes(spec)
    patches = (spec["image_size"] // spec["patch_size"]) ** 2
    no_blocks = dict(spec, n_layers=0)
    want = 2 * patches * math.prod(shapes["patch.kernel"]) + 2 * math.prod(shapes["head.kernel"])
    assert MODELS.vit.flops(no_blocks) == want
    assert MODELS.vit.flops(spec) > want  # the blocks add to it


def test_every_stored_line_begins_with_the_resume_head(tmp_path):
    store = Store(tmp_path)
    # a record whose keys come in another order than the head's
    store.append({"status": "ok", "framework": "dummy", "repeat": 1, "cell_id": "c-1"})
    store.append({"repeat": 0, "status": "failed", "cell_id": "c-2"})
    lines = store.jsonl.read_text().splitlines()
    assert len(lines) == 2
    for line, (cid, rep) in zip(lines, [("c-1", 1), ("c-2", 0)]):
        assert list(json.loads(line))[:2] == ["cell_id", "repeat"]
        assert line.startswith(f'{{"cell_id": "{cid}", "repeat": {rep}')


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_timeout_kills_a_grandchild_that_ignores_sigterm(tmp_path):
    pidfile, ready = tmp_path / "grandchild.pid", tmp_path / "ready"
    # its own file: a late flush of the grandchild's write must not land in the pid file
    stubborn = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"open({str(ready)!r}, 'w').close(); time.sleep(600)")
    script = tmp_path / "fake_worker.py"
    script.write_text(
        f"import sys, os, time, subprocess\nsys.path.insert(0, {str(WORKERS)!r})\nimport wire\n"
        + textwrap.dedent(f"""
        child = subprocess.Popen([sys.executable, "-c", {stubborn!r}])
        while not os.path.exists({str(ready)!r}):
            time.sleep(0.02)
        open({str(pidfile)!r}, "w").write(str(child.pid))
        print(wire.encode(wire.message("hello", pid=os.getpid())), flush=True)
        time.sleep(600)
        """))
    job = launcher.Job(script, sys.executable, {"protocol": 1, "mode": "benchmark"}, "dummy",
                       "cpu", 1, 3.0)
    rec = launcher.launch(job, tmp_path, launcher.Stop())
    assert rec["status"] == "timeout"
    grandchild = int(Path(pidfile).read_text())
    end = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < end:
        time.sleep(0.05)
    try:
        assert _gone(grandchild), "a grandchild that ignores SIGTERM outlived the timeout"
    finally:
        if not _gone(grandchild):
            psutil.Process(grandchild).kill()
