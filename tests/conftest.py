import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402

# Tests that start a real ML framework (torch, tensorflow, jax): seconds to minutes each. The
# fast part of the suite is `pytest -m "not framework"`. A whole file when every test in it runs
# a framework; otherwise the tests parametrized with a framework or using a fixture that runs one.
FRAMEWORK_FILES = {"test_pytorch_worker.py", "test_tensorflow_worker.py", "test_jax_worker.py",
                   "test_verify.py", "test_end_to_end.py", "test_promises_frameworks.py",
                   "test_gpu.py"}
FRAMEWORK_FIXTURES = {"measured"}  # test_ceiling.py: real ceiling workers of pytorch and jax
REAL_FRAMEWORKS = {"pytorch", "tensorflow", "jax"}
# No framework, but seconds to minutes each: soak loops, a real Ray cluster, a real browser.
# The part a developer runs after every edit is `pytest -m "not framework and not slow"`.
SLOW_FILES = {"test_soak.py", "test_ray_executor.py", "test_report_browser.py"}


def _runs_a_framework(item) -> bool:
    if item.path.name in FRAMEWORK_FILES:
        return True
    if FRAMEWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return params.get("framework") in REAL_FRAMEWORKS


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _runs_a_framework(item):
            item.add_marker(pytest.mark.framework)
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
