"""tests/conftest.py's xdist scheduler: each group (the real-framework files, the serial files,
every other file) runs whole on ONE worker, and a crashed test is reported under its own node id.
Run in a real `pytest -n 2` over a scratch suite whose file names are the suite's own."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conftest

pytest.importorskip("xdist")
pytestmark = pytest.mark.slow  # a real `pytest -n 2` per test: seconds each

CONFTEST = Path(conftest.__file__).resolve()
# the scratch suite loads tests/conftest.py's scheduler hook and nothing else of it
SCRATCH_CONFTEST = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("suite_conftest", {str(CONFTEST)!r})
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)
pytest_xdist_make_scheduler = suite.pytest_xdist_make_scheduler
"""
TEST = """
import os, time, pytest

@pytest.mark.parametrize("i", range({n}))
def test_x(i):
    time.sleep(0.05)
    with open(os.environ["GROUP_LOG"], "a") as fh:
        fh.write(f"{{__name__}} {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
"""
# two framework files, two serial files, four plain files of unequal length
FILES = {"test_end_to_end": 3, "test_exported": 2, "test_faults": 2, "test_resume": 3,
         "test_alpha": 4, "test_beta": 1, "test_gamma": 2, "test_delta": 3}


def _run(tmp_path: Path, files: dict, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(SCRATCH_CONFTEST)
    for name, n in files.items():
        (tmp_path / f"{name}.py").write_text(TEST.format(n=n) if isinstance(n, int) else n)
    env = {**os.environ, "GROUP_LOG": str(tmp_path / "log.txt")}
    return subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", "-p",
                           "no:cacheprovider", *args, "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_every_group_runs_whole_on_one_worker(tmp_path):
    proc = _run(tmp_path, FILES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = collections.defaultdict(list)
    for line in (tmp_path / "log.txt").read_text().splitlines():
        module, worker = line.split()
        ran[conftest.xdist_group(f"{module}.py::test_x")].append(worker)
    assert {g: len(w) for g, w in ran.items()} == {
        "framework": 5, "serial": 5, "test_alpha.py": 4, "test_beta.py": 1, "test_gamma.py": 2,
        "test_delta.py": 3}
    assert all(len(set(workers)) == 1 for workers in ran.values()), dict(ran)
    assert len({w for workers in ran.values() for w in workers}) == 2  # both workers had work


def test_a_crashed_test_is_reported_under_its_own_node_id(tmp_path):
    crash = "import os\n\ndef test_dies():\n    os._exit(3)\n"
    # xdist requeues a crashed worker's unfinished scope, the crashing test too: one restart,
    # and no other work left behind (loadscope then waits for it forever)
    proc = _run(tmp_path, {"test_crash": crash, "test_beta": 1}, "--max-worker-restart", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "crashed while running 'test_crash.py::test_dies'" in proc.stdout, proc.stdout
    assert "test_crash.py::0" not in proc.stdout, proc.stdout  # never the name shown to xdist


def test_the_names_shown_to_the_scheduler_group_by_the_part_before_the_last_separator():
    ids = ["tests/test_faults.py::test_a[x::y]", "tests/test_alpha.py::Cls::test_b[:::]",
           "tests/test_end_to_end.py::test_c"]
    shown = [conftest.FileGroups.shown(i, nodeid) for i, nodeid in enumerate(ids)]
    assert [s.rsplit("::", 1)[0] for s in shown] == ["serial", "tests/test_alpha.py",
                                                     "framework"]
    assert len(set(shown)) == len(shown) and all(s.count("::") == 1 for s in shown)
