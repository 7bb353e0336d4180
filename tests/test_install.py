"""mlbench as an installed package: the wheel built from this tree, installed (not editable) into a
scratch virtualenv that cannot see the source tree, gives a working `mlbench` in any directory:
the default config is found, the workers run from inside the package, `list`, a numpy sweep and
`report` work, and the wheel holds the package only (no tests/, reports/, caches).

The editable install `.ci/setup` makes (`pip install -e .`) still runs the checkout's own
workers/ and configs/.

Offline: the wheels are built with the setuptools of this interpreter (the `test` extra brings
one; without it pip builds in isolation, from PyPI); a scratch venv has no pip of its own (this
interpreter's pip installs into it with --python) and sees this interpreter's site-packages, for
the dependencies only, through a .pth file added after the install.
Marked slow: two builds, two installs and a real sweep (about 20 s).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Never part of a build: version control, virtualenvs, build outputs, and (at the top only, as
# .gitignore says: mlbench/results/ is a package) local runs.
SKIP = {".git", ".venv", "build", "dist", ".pytest_cache"}
SKIP_AT_TOP = {"results", "gpu_check"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n in SKIP or n.startswith(".venv") or n.endswith(".egg-info")}
    if Path(folder) == ROOT:
        skipped |= SKIP_AT_TOP & set(names)
    if Path(folder) == ROOT / "reports":  # local reports can be large; the folder itself stays
        skipped |= {n for n in names if n != ".gitkeep"}
    return skipped


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _setuptools_here() -> bool:
    """This interpreter can build mlbench without build isolation (no download)."""
    try:
        from importlib.metadata import version
        return int(version("setuptools").split(".")[0]) >= 68  # pyproject's build requirement
    except Exception:  # noqa: BLE001 - not installed, or an unreadable version
        return False


def _venv(tmp: Path, name: str, env: dict) -> tuple[Path, Path]:
    """A scratch venv without pip: (its python, its site-packages)."""
    _run([sys.executable, "-m", "venv", "--without-pip", tmp / name], tmp, env)
    python = tmp / name / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                tmp, env).stdout.strip()
    return python, Path(site)


def _pip_into(python: Path, args: list, cwd: Path, env: dict) -> None:
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet",
          "--disable-pip-version-check", *args], cwd, env, timeout=300)


def _see_dependencies(site: Path) -> None:
    """The dependencies (pydantic, typer, numpy, ...) from this interpreter, after the venv's own
    site-packages on sys.path: what is installed there (mlbench) wins. Written after the install,
    so pip never sees this interpreter's packages as the venv's."""
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("install")
    # A copy of the tree (tests/, reports/ and __pycache__ folders included): a build in place
    # would leave build/ and *.egg-info in the checkout, and setuptools' build/lib keeps files
    # deleted since the last build.
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MLBENCH_WORKERS_DIR", "PYTHONHOME")}
    work = tmp / "elsewhere"  # any directory but the source tree
    work.mkdir()
    return {"tmp": tmp, "src": src, "env": env, "work": work}


@pytest.fixture(scope="module")
def installed(tree) -> dict:
    tmp, env = tree["tmp"], tree["env"]
    isolation = ["--no-build-isolation"] if _setuptools_here() else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet",
          "--disable-pip-version-check", "-w", tmp / "dist", tree["src"]], tmp, env, timeout=300)
    (wheel,) = (tmp / "dist").glob("mlbench-*.whl")
    python, site = _venv(tmp, "venv", env)
    _pip_into(python, ["--no-index", wheel], tmp, env)
    _see_dependencies(site)
    return {**tree, "wheel": wheel, "python": python, "site": site,
            "mlbench": python.parent / "mlbench"}


def test_the_wheel_holds_the_package_with_its_workers_and_configs_and_nothing_else(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    version = installed["wheel"].name.split("-")[1]
    tops = {n.split("/")[0] for n in names}
    assert tops == {"mlbench", f"mlbench-{version}.dist-info"}, tops  # no workers/, tests/ ...
    junk = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))
            or "/.venv" in n or "/tests/" in n or "/reports/" in n]
    assert not junk, junk
    shipped = {n for n in names if n.startswith(("mlbench/workers/", "mlbench/configs/"))}
    # every file of workers/ and configs/ but caches, hidden files and configs/gpu.yaml (written
    # by `.ci/setup --gpu` for one machine)
    expected = {f"mlbench/{p.relative_to(ROOT).as_posix()}"
                for folder in ("workers", "configs") for p in (ROOT / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
                and p.suffix not in (".pyc", ".pyo") and p.name != "gpu.yaml"}
    assert expected <= shipped, sorted(expected - shipped)
    assert "mlbench/configs/quick_test.yaml" in shipped
    assert "mlbench/report/template.html.j2" in names
    assert version == _run([sys.executable, "-c", "import mlbench; print(mlbench.__version__)"],
                           ROOT, {**installed["env"], "PYTHONPATH": str(ROOT)}).stdout.strip()


def test_mlbench_resolves_to_the_installed_copy_not_the_source_tree(installed):
    code = ("import mlbench, mlbench.config.catalog as c, importlib.util as u\n"
            "print(mlbench.__file__); print(c.workers_dir()); print(c.configs_dir())\n"
            "s = u.find_spec('workers'); print(s.origin if s else None)\n")
    out = _run([installed["python"], "-c", code], installed["work"], installed["env"]).stdout
    package, workers, configs, generic = out.splitlines()
    site = installed["site"].resolve()
    assert Path(package).resolve().is_relative_to(site / "mlbench"), package
    assert Path(workers).resolve() == site / "mlbench" / "workers"
    assert Path(configs).resolve() == site / "mlbench" / "configs"
    assert not Path(package).resolve().is_relative_to(ROOT)
    assert generic == "None" or not Path(generic).resolve().is_relative_to(site), generic


def test_installed_mlbench_lists_runs_a_numpy_sweep_and_reports_from_any_directory(installed):
    work, env, mlbench = installed["work"], installed["env"], installed["mlbench"]
    version = _run([mlbench, "--version"], work, env).stdout
    assert version.strip() == f"mlbench {installed['wheel'].name.split('-')[1]}"
    listed = _run([mlbench, "list"], work, env).stdout
    assert "numpy" in listed and "transformer" in listed  # frameworks and the workers' specs

    # The embedded default config (found inside the package) with a few overrides; its
    # output_dir `results` is relative to the working directory.
    _run([mlbench, "run", "--frameworks", "numpy", "--models", "mlp", "--batch-sizes", "256",
          "--no-verify", "--no-ceiling", "--no-report"], work, env, timeout=300)
    cells = json.loads((work / "results" / "results.json").read_text())["cells"]
    assert cells and {c["framework"] for c in cells} == {"numpy"}
    assert all(c["status"] == "ok" for c in cells), [(c["cell_id"], c["status"]) for c in cells]
    scripts = [s for s in _strings(cells) if s.endswith("numpy_worker.py")]  # the commands run
    site = installed["site"].resolve()
    assert scripts and all(Path(s).resolve().is_relative_to(site / "mlbench" / "workers")
                           for s in scripts), scripts

    _run([mlbench, "report"], work, env, timeout=300)
    page = work / "reports" / "latest" / "index.html"
    assert page.is_file() and "numpy-mlp" in page.read_text(encoding="utf-8")


def test_an_editable_install_runs_the_checkouts_own_workers_and_configs(tree):
    tmp, env, src = tree["tmp"], tree["env"], tree["src"]
    python, site = _venv(tmp, "venv-editable", env)
    if _setuptools_here():  # PEP 660 through this interpreter's setuptools: no download
        code = ("import sys; from setuptools import build_meta as b; "
                "print(b.build_editable(sys.argv[1]))")
        _run([sys.executable, "-c", code, tmp / "dist-editable"], src, env, timeout=300)
        (wheel,) = (tmp / "dist-editable").glob("mlbench-*.whl")
        _pip_into(python, ["--no-index", wheel], tmp, env)
    else:
        _pip_into(python, ["-e", src], tmp, env)
    _see_dependencies(site)
    code = ("import mlbench, mlbench.config.catalog as c, mlbench.config.schema as cfg\n"
            "print(mlbench.__file__); print(c.workers_dir()); print(cfg.DEFAULT_CONFIG)\n")
    package, workers, default = _run([python, "-c", code], tree["work"], env).stdout.split()
    assert Path(package).resolve() == src / "mlbench" / "__init__.py"
    assert Path(workers).resolve() == src / "workers"
    assert Path(default).resolve() == src / "configs" / "quick_test.yaml"
    listed = _run([python.parent / "mlbench", "list"], tree["work"], env).stdout
    assert "transformer" in listed
