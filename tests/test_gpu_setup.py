"""`bash .ci/setup --gpu`: the plan (CUDA set by driver, TensorFlow alone, one numpy, no CPU or
mixed cu12/cu13 builds), its dry run on this GPU-less machine, the refusal without a GPU, the
detector of two packages owning one file, and the config it writes. Nothing is installed."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlbench.config import load_config

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_setup", ROOT / ".ci" / "gpu_setup.py")
gpu_setup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_setup)


def _setup(*args, path_dir=None):
    env = dict(os.environ)
    env.pop("MLBENCH_GPU_DRIVER", None)
    if path_dir is not None:
        env["PATH"] = f"{path_dir}:{env['PATH']}"
    return subprocess.run(["bash", str(ROOT / ".ci" / "setup"), *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


def _fake_smi(tmp_path, script: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + script + "\n")
    smi.chmod(0o755)
    return bindir


@pytest.mark.parametrize("driver,cuda,torch", [("580.65.06", "13", "2.13.0"),
                                               ("550.54.15", "12", "2.10.0")])
def test_dry_run_plans_by_driver_without_a_gpu(driver, cuda, torch):
    proc = _setup("--gpu", "--dry-run", "--driver", driver)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"CUDA {cuda} set" in out and "nothing installed" in out
    assert f"torch=={torch}" in out and f"jax-cuda{cuda}-plugin==0.10.2" in out
    assert "tensorflow[and-cuda]==2.21.0" in out and ".venv-gpu-tensorflow: tensorflow from" in out
    assert not (ROOT / ".venv-gpu-torch-jax").exists()  # a dry run installs nothing


def test_dry_run_without_driver_or_override_still_plans(tmp_path):
    bindir = _fake_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    proc = _setup("--gpu", "--dry-run", path_dir=bindir)
    assert proc.returncode == 0, proc.stderr
    assert "CUDA 13 set" in proc.stdout and "--driver VERSION" in proc.stdout


@pytest.mark.parametrize("script,says", [
    ("echo 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2; exit 9",
     "no NVIDIA GPU here"),
    ("echo 470.57.02", "too old"),
])
def test_real_setup_refuses_in_one_line_without_a_usable_gpu(tmp_path, script, says):
    proc = _setup("--gpu", path_dir=_fake_smi(tmp_path, script))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr


@pytest.mark.parametrize("driver", ["580.65.06", "535.104.05"])
def test_plan_keeps_cuda_sets_apart_and_numpy_equal(driver):
    p = gpu_setup.plan(driver)
    envs = {e["name"]: e for e in p["environments"]}
    assert envs["tensorflow"]["frameworks"] == ["tensorflow"]  # TensorFlow alone, always
    assert sorted(f for e in envs.values() for f in e["frameworks"]) == \
        ["jax", "pytorch", "tensorflow"]
    for e in envs.values():
        pins = e["pins"]
        assert len(e["cuda"]) == 1, (e["name"], e["cuda"])  # never cu12 and cu13 together
        assert pins["numpy"] == p["numpy"]
        assert not any("+cpu" in v for v in pins.values())
        assert not set(pins) & {"tensorflow-cpu", "jax-cpu"}
        assert any(n.startswith("nvidia-cudnn") for n in pins)
        # every root it installs is pinned by the file it is installed with
        for root in e["install"]:
            name = root.split("[")[0].split("==")[0]
            assert name in pins and root.endswith("==" + pins[name])


def _dist(site: Path, name: str, files: list[str]) -> None:
    info = site / f"{name}.dist-info"
    info.mkdir(parents=True)
    rows = [f"{f},sha256=x,1" for f in files] + [f"{name}.dist-info/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def test_two_packages_owning_one_file_are_found(tmp_path):
    site = tmp_path / "site-packages"
    _dist(site, "nvidia_cudnn_cu12-9.28.0.42", ["nvidia/cudnn/lib/libcudnn.so.9",
                                                "nvidia/cudnn/__init__.py"])
    _dist(site, "nvidia_cudnn_cu13-9.20.0.48", ["nvidia/cudnn/lib/libcudnn.so.9",
                                                "nvidia/cudnn/lib/libcudnn_ops.so.9"])
    _dist(site, "numpy-2.4.6", ["numpy/__init__.py"])
    clash = gpu_setup.conflicts(site)
    assert clash == {"nvidia/cudnn/lib/libcudnn.so.9": ["nvidia_cudnn_cu12-9.28.0.42",
                                                        "nvidia_cudnn_cu13-9.20.0.48"]}
    cli = subprocess.run([sys.executable, str(ROOT / ".ci" / "gpu_setup.py"), "conflicts",
                          str(site)], capture_output=True, text=True)
    assert cli.returncode == 1 and "libcudnn.so.9" in cli.stdout
    shutil.rmtree(site / "nvidia_cudnn_cu13-9.20.0.48.dist-info")
    assert gpu_setup.conflicts(site) == {}


def test_cpu_builds_are_detected(tmp_path):
    site = tmp_path / "site-packages"
    _dist(site, "torch-2.13.0+cpu", ["torch/__init__.py"])
    _dist(site, "tensorflow_cpu-2.21.0", ["tensorflow/__init__.py"])
    _dist(site, "jax-0.10.2", ["jax/__init__.py"])
    assert gpu_setup.cpu_builds(site) == ["tensorflow_cpu-2.21.0", "torch-2.13.0+cpu"]


def test_written_config_is_the_benchmark_sweep_with_each_python(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "benchmark_config.yaml", tmp_path / "configs")
    path = gpu_setup.write_config({"pytorch": sys.executable, "jax": sys.executable,
                                   "tensorflow": sys.executable}, root=tmp_path)
    conf = load_config(path)
    base = load_config(ROOT / "configs" / "benchmark_config.yaml")
    assert conf.models == base.models and conf.devices == base.devices
    for fw in ("pytorch", "jax", "tensorflow"):
        assert conf.framework_settings[fw].python == sys.executable
    assert conf.framework_settings["pytorch"].options == {"compile": False}


def test_gpu_check_script_parses_and_brings_back_at_most_eight_small_files(tmp_path):
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    dry = subprocess.run(["bash", str(script), "--dry-run", str(tmp_path / "dry")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert dry.returncode == 0, dry.stderr
    assert [p.name for p in (tmp_path / "dry").iterdir()] == ["environment.txt"]
    assert f"pytorch: {sys.executable}" in dry.stdout  # it says which environment it used
    # the real run on this GPU-less machine: every cell skipped, the files still come back
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(script), str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = list(out.iterdir())
    assert 3 <= len(files) <= 8 and all(f.is_file() for f in files)
    assert all(f.stat().st_size < 1_000_000 for f in files)
    summary = (out / "summary.txt").read_text()
    assert "per framework: jax: 10 skipped; pytorch: 10 skipped" in summary
    assert not list(tmp_path.glob("mlbench-gpu-check.*"))  # the scratch folder is removed
