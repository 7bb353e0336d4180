"""The two sides stay apart: workers import no mlbench/pydantic/polars/plotly, the parent no
ML framework. Checked in real processes."""
import json
import subprocess
import sys

import pytest

from workerutil import BASE_REQUEST, WORKERS, worker_env

# (flax itself imports yaml and rich, so those are not ours to forbid)
FORBIDDEN_IN_WORKERS = ("mlbench", "pydantic", "polars", "plotly", "typer")
ML_FRAMEWORKS = ("torch", "tensorflow", "jax", "flax", "optax", "keras")

PROBE = """
import json, os, runpy, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
sys.argv = [sys.argv[1], "--request", sys.argv[2]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    names = sorted({m.split(".")[0] for m in sys.modules})
    with open(sys.argv[2] + ".modules", "w") as fh:
        json.dump(names, fh)
"""


@pytest.mark.parametrize("framework", ["numpy", "dummy", "pytorch", "tensorflow", "jax"])
def test_worker_imports_nothing_from_the_parent_side(tmp_path, framework):
    req = tmp_path / "request.json"
    req.write_text(json.dumps({**BASE_REQUEST, "framework": framework, "model": "mlp",
                               "cell_id": "x", "mode": "count"}))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(WORKERS / f"{framework}_worker.py"),
                           str(req)], capture_output=True, text=True, timeout=120,
                          env=worker_env())
    modules = json.loads((tmp_path / "request.json.modules").read_text())
    assert not set(modules) & set(FORBIDDEN_IN_WORKERS), proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["type"] == "result", last


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_parent_never_imports_an_ml_framework(tmp_path):
    code = ("import sys\n"
            "import importlib, pkgutil, mlbench\n"
            "for m in pkgutil.walk_packages(mlbench.__path__, 'mlbench.'):\n"
            "    importlib.import_module(m.name)\n"
            "from mlbench import cli\n"
            "cli.main(['list'])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in %r)\n"
            "print('IMPORTED', bad)\n" % (ML_FRAMEWORKS,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "IMPORTED []" in proc.stdout, proc.stdout + proc.stderr
    assert "pytorch" in proc.stdout and "gpt2-small" in proc.stdout  # `mlbench list` output
