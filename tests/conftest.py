import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402

# A test file declares its own markers: `pytestmark = pytest.mark.framework` where every test
# starts a real ML framework (torch, tensorflow, jax; seconds to minutes each), `pytest.mark.slow`
# for framework-free tests of seconds to minutes (soak loops, a real Ray cluster, a real browser,
# a real sweep). The fast part of the suite is `pytest -m "not framework and not slow"`. Here only
# what a file cannot say once: a test parametrized with a real framework, or using a fixture
# that runs one, is a framework test too.
FRAMEWORK_FIXTURES = {"measured"}  # test_ceiling.py: real ceiling workers of pytorch and jax
REAL_FRAMEWORKS = {"pytorch", "tensorflow", "jax"}


def _runs_a_framework(item) -> bool:
    if FRAMEWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("framework") in REAL_FRAMEWORKS


# With pytest-xdist (`.ci/run`: -n 2): the files that start a real framework run in ONE worker, in
# order (they share the session's real sweep below and module fixtures, and their cells are pinned
# to the first CPU anyway); these three, whose tests look for leftover `time.sleep(3600)`
# grandchildren of their own hang faults and time signals, one after another; every other file
# whole.
# (tests/test_markers.py checks that every file marked `framework` is among them)
XDIST_FRAMEWORK_FILES = {"test_pytorch_worker.py", "test_tensorflow_worker.py",
                         "test_jax_worker.py", "test_verify.py", "test_end_to_end.py", "test_promises_frameworks.py",
                         "test_gpu.py", "test_sync_proof.py", "test_exported.py",
                         "test_ceiling.py", "test_modes.py", "test_own_model.py",
                         "test_isolation.py", "test_worker_public_api.py"}
XDIST_SERIAL_FILES = {"test_faults.py", "test_soak.py", "test_resume.py"}


def xdist_group(nodeid: str) -> str:
    """The group a test runs in, whole, on one xdist worker: framework, serial or its file."""
    path = nodeid.split("::", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if name in XDIST_FRAMEWORK_FILES:
        return "framework"
    return "serial" if name in XDIST_SERIAL_FILES else path


class FileGroups:
    """xdist's own `--dist loadscope` scheduler (every test of one module goes to one worker,
    together), driven through xdist's public scheduler protocol and shown each test as
    `<group>::<n> <nodeid>` so that its modules are the groups above. xdist's `--dist loadgroup`
    would group by `xdist_group` marks, but under pytest 9 it groups nothing (it renames
    item._nodeid, which pytest 9 no longer reads: pytest-xdist issue 1386). The shown names map
    back to the real node ids wherever one leaves the scheduler (a crashed test's report)."""

    def __init__(self, config, log) -> None:
        from xdist.scheduler import LoadScopeScheduling
        self._scopes = LoadScopeScheduling(config, log)
        self._real: dict[str, str] = {}

    @staticmethod
    def shown(index: int, nodeid: str) -> str:
        # one `::` only, after the group: the scope loadscope reads is the part before the last
        return f"{xdist_group(nodeid)}::{index} {nodeid.replace('::', ' ')}"

    @property
    def nodes(self):
        return self._scopes.nodes

    @property
    def collection_is_completed(self) -> bool:
        return self._scopes.collection_is_completed

    @property
    def tests_finished(self) -> bool:
        return self._scopes.tests_finished

    @property
    def has_pending(self) -> bool:
        return self._scopes.has_pending

    def add_node(self, node) -> None:
        self._scopes.add_node(node)

    def add_node_collection(self, node, collection) -> None:
        shown = [self.shown(i, nodeid) for i, nodeid in enumerate(collection)]
        self._real.update(zip(shown, collection))
        self._scopes.add_node_collection(node, shown)

    def mark_test_complete(self, node, item_index: int, duration: float = 0) -> None:
        self._scopes.mark_test_complete(node, item_index, duration)

    def mark_test_pending(self, item: str) -> None:
        self._scopes.mark_test_pending(next(s for s, r in self._real.items() if r == item))

    def remove_pending_tests_from_node(self, node, indices) -> None:
        self._scopes.remove_pending_tests_from_node(node, indices)

    def remove_node(self, node) -> str | None:
        crashed = self._scopes.remove_node(node)
        return self._real.get(crashed, crashed)

    def schedule(self) -> None:
        self._scopes.schedule()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return FileGroups(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _runs_a_framework(item):
            item.add_marker(pytest.mark.framework)


# --- the one real sweep that several promise tests read ------------------------------------------
# Every real framework and every built-in model at its tiny preset, through `mlbench run` with the
# equivalence gate and the device ceilings, once per session. test_end_to_end (status, learning,
# counts, run directory), test_verify (the gate's verdict for every model and framework) and
# test_promises_frameworks (CPU set and threads, the CSV's throughput, pytorch vs the numpy
# reference) all read it instead of each running its own sweep of the same cells.
#
# MLBENCH_TEST_SWEEP=mlp narrows it to the mlp (benchmarks/mutation_check.py sets it: the tests it
# selects read only the mlp cells and the gate's mlp rows); the default is every model.
SWEEP_FRAMEWORKS = ["pytorch", "tensorflow", "jax", "numpy"]
SWEEP_MODELS = ["mlp", "cnn", "transformer", "lstm", "vit"]
SWEEP = {"batch_sizes": [16], "train_samples": 1024, "eval_samples": 256, "epochs": 2,
         "warmup_iterations": 2, "timed_iterations": 10, "threads": 1, "timeout_s": 300,
         # the evidence minimums exercised, small (the defaults would add ~2 s per cell)
         "measurement": {"min_time_s": 0.2, "min_blocks": 3}}
# The ceilings are measured for real but small (sweeputil.small_ceilings): the tests read their
# structure, not their figures.


@dataclass
class Sweep:
    rc: int
    out: str            # what the run printed (stdout and stderr)
    dir: Path           # the working directory: results/ and report/ are in it
    cells: dict         # cell_id -> record (results.json)
    gate: object        # the GateReport the gate returned in the run (before it was stored)
    models: list

    @property
    def results(self) -> Path:
        return self.dir / "results"


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory) -> Sweep:
    from cliutil import by_cell, run_inproc, write_config
    from mlbench.run import gate
    from sweeputil import small_ceilings

    models = ["mlp"] if os.environ.get("MLBENCH_TEST_SWEEP") == "mlp" else SWEEP_MODELS
    tmp = tmp_path_factory.mktemp("sweep")
    conf = write_config(tmp / "tiny.yaml", frameworks=SWEEP_FRAMEWORKS,
                        models=[{"name": m, "preset": "tiny"} for m in models], **SWEEP)
    gates = []

    def spy(*args, **kwargs):
        report = real_verify(*args, **kwargs)
        gates.append(report)
        return report

    real_verify = gate.run
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, small_ceilings():
        mp.setattr(gate, "run", spy)
        mp.chdir(tmp)
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = run_inproc(["run", "--config", str(conf), "--report-dir", str(tmp / "report")])[0]
    assert len(gates) <= 1
    cells = by_cell(tmp / "results") if (tmp / "results" / "results.json").exists() else {}
    return Sweep(rc, buf.getvalue(), tmp, cells, gates[0] if gates else None, models)
