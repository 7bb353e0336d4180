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

from mlbench.config.schema import load_config

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
    rows = [f"{f},sha256={name}:{f},1" for f in files] + [f"{name}.dist-info/RECORD,,"]
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


def _check(tmp_path, *args, smi=None, python=None, timeout=300):
    """benchmarks/gpu_check.sh with an optional fake nvidia-smi (shell body) on PATH and a
    GPU_CHECK_PYTHON; PATH otherwise holds no nvidia-smi (this machine has none)."""
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("GPU_CHECK_PYTHON", None)
    if smi is not None:
        bindir = tmp_path / "smi"
        bindir.mkdir(exist_ok=True)
        (bindir / "nvidia-smi").write_text("#!/bin/sh\n" + smi + "\n")
        (bindir / "nvidia-smi").chmod(0o755)
        env["PATH"] = f"{bindir}:{env['PATH']}"
    if python is not None:
        env["GPU_CHECK_PYTHON"] = str(python)
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


ONE_H100 = "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa1111-2222-3333-4444-555566667777)'"


@pytest.mark.parametrize("smi", [None, "echo 'NVIDIA-SMI has failed' >&2; exit 9",
                                 "echo 'No devices were found'"])
def test_gpu_check_without_a_gpu_exits_nonzero_with_one_line(tmp_path, smi):
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")]).returncode == 0
    if smi is None and shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    proc = _check(tmp_path, str(tmp_path / "out"), smi=smi)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("error: no NVIDIA GPU here")
    assert not list(tmp_path.glob("mlbench-gpu-check.*"))  # nothing left behind


def test_gpu_check_fails_when_the_parent_cannot_import_nvml(tmp_path):
    bare = tmp_path / "bare-python"  # an interpreter without site-packages: no pynvml
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    proc = _check(tmp_path, str(tmp_path / "out"), smi=ONE_H100, python=bare)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "nvidia-ml-py" in lines[0], lines


def test_gpu_check_fails_when_nvidia_smi_sees_a_gpu_nvml_does_not(tmp_path):
    # pynvml is importable here, but there is no driver: NVML sees 0 GPUs, nvidia-smi 1
    proc = _check(tmp_path, str(tmp_path / "out"), smi=ONE_H100, python=sys.executable)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert "nvidia-smi sees 1 GPU(s)" in lines[0] and "sees 0" in lines[0]


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_gpu_check_dry_run_runs_what_a_cpu_can(tmp_path):
    from mlbench.run import matrix
    proc = _check(tmp_path, "--dry-run", str(tmp_path / "dry"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "dry").iterdir())
    assert files == ["environment.txt"]
    n = len(matrix.expand(load_config(ROOT / "configs" / "gpu_check.yaml")))
    assert f"== cells: {n} + 1 compile + 1 under a UUID" in proc.stdout
    assert "torch-jax" in proc.stdout and "MLBENCH_CEILING_ROUNDS=1" in proc.stdout
    assert ".venv-gpu-tensorflow" not in proc.stdout  # only the torch+JAX venv is installed


def test_gpu_check_config_fits_an_80_gb_h100():
    conf = load_config(ROOT / "configs" / "gpu_check.yaml")
    from mlbench.run import matrix
    cells = matrix.expand(conf)
    gpt2 = [c for c in cells if c.model.id_label == "transformer.gpt2-small"]
    assert gpt2 and {c.precision for c in gpt2} == {"bf16"}
    # the largest tensor of the check: the logits, batch x 1024 tokens x 50257, kept in fp32 by
    # a framework several times over; at batch 64 fp32 they were 13 GB each (0.2's check)
    for c in gpt2:
        assert c.batch_size * 1024 * 50257 * 4 < 4e9
    assert {c.precision for c in cells} == {"fp32", "bf16", "fp16"}
    assert sum(c.precision == "fp16" for c in cells) == 1
    assert {c.framework for c in cells} == {"pytorch", "jax"}


# --- issue 22: setup defects -----------------------------------------------------------------

def test_pip_keeps_the_mirror_and_certificates_but_nothing_that_could_bring_a_cpu_build():
    environ = {"PATH": "/bin", "PIP_INDEX_URL": "https://mirror.example/simple",
               "PIP_CERT": "/etc/ssl/corp.pem", "PIP_TRUSTED_HOST": "mirror.example",
               "PIP_CLIENT_CERT": "/etc/ssl/me.pem", "PIP_FIND_LINKS": "/wheels/cpu",
               "PIP_CONSTRAINT": "/etc/pip/cpu.txt", "PIP_NO_INDEX": "1"}
    config = ["global.extra-index-url='https://mirror.example/extra'",
              "global.index-url='https://from-config.example/simple'",
              "global.find-links='/opt/wheels'", "global.constraint='/opt/c.txt'",
              ":env:.cert='/etc/ssl/corp.pem'"]
    env = gpu_setup._pip_env(environ, config)
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"  # the variable wins
    assert env["PIP_EXTRA_INDEX_URL"] == "https://mirror.example/extra"  # from the config
    assert env["PIP_CERT"] == "/etc/ssl/corp.pem" and env["PIP_TRUSTED_HOST"] == "mirror.example"
    assert env["PIP_CLIENT_CERT"] == "/etc/ssl/me.pem"
    for gone in ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        assert gone not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["PATH"] == "/bin"


def test_gpu_setup_installs_mlbench_alone_in_the_parent_venv():
    proc = _setup("--gpu", "--dry-run", "--driver", "580.65.06")
    assert proc.returncode == 0, proc.stderr
    parent = [x for x in proc.stdout.splitlines() if x.startswith("parent .venv")]
    assert parent and parent[0].split(" -e ")[1].split()[0] == "."  # not .[cpu]
    text = (ROOT / ".ci" / "setup").read_text()
    assert '-e "$parent_spec"' in text and 'extras=""' in text


def test_identical_files_are_no_conflict_different_content_is(tmp_path):
    site = tmp_path / "site-packages"
    for name, digest in (("nvidia_cublas-13.1", "sha256=same"), ("nvidia_cudnn_cu13-9.2", "sha256=same"),
                         ("nvidia_nccl_cu13-2.29", "sha256=other")):
        info = site / f"{name}.dist-info"
        info.mkdir(parents=True)
        (info / "RECORD").write_text(f"nvidia/__init__.py,{digest},0\n")
    assert gpu_setup.conflicts(site) == {"nvidia/__init__.py": [
        "nvidia_cublas-13.1", "nvidia_cudnn_cu13-9.2", "nvidia_nccl_cu13-2.29"]}
    (site / "nvidia_nccl_cu13-2.29.dist-info" / "RECORD").write_text(
        "nvidia/__init__.py,sha256=same,0\n")
    assert gpu_setup.conflicts(site) == {}


def _req_dist(path: Path, extra: str) -> list:
    from packaging.requirements import Requirement
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("Requires-Dist:"):
            r = Requirement(line.split(":", 1)[1].strip())
            if r.marker is None or r.marker.evaluate({"extra": extra, "sys_platform": "linux"}):
                out.append(r)
    return out


@pytest.mark.parametrize("pins_file", ["cuda13-torch-jax.txt", "cuda12-torch-jax.txt",
                                       "cuda12-tensorflow.txt"])
def test_cuda_compiler_packages_are_pinned_with_the_runtime(pins_file):
    _, pins = gpu_setup.read_pins(ROOT / ".ci" / "gpu" / pins_file)
    suffix = "-cu12" if "nvidia-cuda-runtime-cu12" in pins else ""
    series = pins[f"nvidia-cuda-runtime{suffix}"].split(".")[:2]
    for name in ("nvidia-cuda-nvcc", "nvidia-nvvm", "nvidia-nvjitlink", "nvidia-cuda-crt"):
        if name + suffix in pins:
            assert pins[name + suffix].split(".")[:2] == series, (name, pins[name + suffix])
    if pins_file == "cuda13-torch-jax.txt":
        # and they still satisfy what jax's CUDA plugin asks (its recorded wheel metadata)
        from packaging.version import Version
        reqs = _req_dist(ROOT / "tests" / "data" / "jax_cuda13_plugin-0.10.2.METADATA",
                         "with-cuda")
        for r in reqs:
            if r.name in pins:
                assert Version(pins[r.name]) in r.specifier, (r.name, pins[r.name])


def test_lock_tool_holds_compilers_to_the_runtime_series():
    spec = importlib.util.spec_from_file_location("gpu_lock", ROOT / ".ci" / "gpu" / "lock.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    roots = lock.runtime_roots({"nvidia-cuda-runtime": "13.0.96", "nvidia-nvjitlink": "13.5.37",
                                "nvidia-cuda-nvcc": "13.0.88", "nvidia-nvvm": "13.5.37"})
    assert sorted(roots) == ["nvidia-nvjitlink==13.0.*", "nvidia-nvvm==13.0.*"]
    assert lock.runtime_roots({"nvidia-cuda-runtime-cu12": "12.8.90",
                               "nvidia-cuda-nvcc-cu12": "12.9.86"}) == \
        ["nvidia-cuda-nvcc-cu12==12.8.*"]


@pytest.mark.parametrize("driver,cap,refused", [("550.54.15", "9.0", True),
                                                ("555.42.02", "9.0", False),
                                                ("550.54.15", "8.9", False),
                                                ("535.104.05", "8.0", False)])
def test_tensorflow_is_refused_where_the_driver_cannot_jit_its_ptx(driver, cap, refused):
    p = gpu_setup.plan(driver, compute_cap=cap)
    names = [e["name"] for e in p["environments"]]
    assert ("tensorflow" not in names) == refused
    if refused:
        assert "R555" in p["refused"][0] and "PTX" in p["refused"][0]
        assert "TensorFlow refused" in gpu_setup.render(p, dry_run=True)
    assert gpu_setup.ptx_jit(cap) == (cap == "9.0")


def test_setup_checks_run_a_real_op_and_a_matmul_in_each_framework():
    for fw, (code, asked) in gpu_setup.CHECKS.items():
        assert "matmul" in asked
        assert any(op in code for op in ("@", "tf.matmul")) and "sin" in code
        compile(code, fw, "exec")  # a check that cannot even parse would fail on every GPU


def test_written_config_leaves_a_refused_framework_out(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "benchmark_config.yaml", tmp_path / "configs")
    path = gpu_setup.write_config({"pytorch": sys.executable, "jax": sys.executable},
                                  root=tmp_path)
    conf = load_config(path)
    assert [str(getattr(f, "framework", f)) for f in conf.frameworks] == ["pytorch", "jax"]


HOPPER_OLD_DRIVER = """case "$1" in
  -L) echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa1111)' ;;
  --query-gpu=driver_version) echo 550.54.15 ;;
  --query-gpu=compute_cap) echo 9.0 ;;
esac"""


def test_tensorflow_check_refuses_in_one_line_on_hopper_with_an_old_driver(tmp_path):
    bindir = tmp_path / "smi"
    bindir.mkdir()
    (bindir / "nvidia-smi").write_text("#!/bin/sh\n" + HOPPER_OLD_DRIVER + "\n")
    (bindir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path),
           "PATH": f"{bindir}:{os.environ['PATH']}"}
    env.pop("GPU_CHECK_PYTHON", None)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check_tf.sh"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env=env)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert "TensorFlow refused" in lines[0] and "R555" in lines[0]
    assert not (ROOT / ".venv-gpu-tensorflow").exists()  # refused before installing anything


def test_tensorflow_check_dry_run_and_no_gpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    script = str(ROOT / "benchmarks" / "gpu_check_tf.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    dry = subprocess.run(["bash", script, "--dry-run", str(tmp_path / "dry")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert dry.returncode == 0 and "== cells: 6" in dry.stdout, dry.stdout + dry.stderr
    if not shutil.which("nvidia-smi"):
        real = subprocess.run(["bash", script, str(tmp_path / "out")], capture_output=True,
                              text=True, timeout=60, env=env)
        lines = (real.stdout + real.stderr).strip().splitlines()
        assert real.returncode != 0 and len(lines) == 1 and "no NVIDIA GPU" in lines[0]


# --- onnxruntime-gpu for the serving cells: the build for the torch environment's CUDA ------

@pytest.mark.parametrize("cuda", sorted(gpu_setup.GROUPS))
def test_each_cuda_set_has_an_onnxruntime_gpu_built_for_its_cuda(cuda):
    """The pinned onnxruntime-gpu's recorded wheel METADATA (its `cuda` extra) asks the CUDA
    runtime of the set's major: 1.27 and later are CUDA 13 builds, 1.26.0 the last CUDA 12 one."""
    version = gpu_setup.ORT_GPU[cuda]
    meta = ROOT / "tests" / "data" / f"onnxruntime_gpu-{version}.METADATA"
    assert f"Version: {version}" in meta.read_text()
    runtime = [r for r in _req_dist(meta, "cuda") if r.name.startswith("nvidia-cuda-runtime")]
    assert len(runtime) == 1
    r = runtime[0]
    assert r.name in ("nvidia-cuda-runtime", f"nvidia-cuda-runtime-cu{cuda}")
    assert any(s.version.split(".")[0] == cuda for s in r.specifier), r
    # and the torch of that set is built for that CUDA major (the runtime it pins)
    env_file = next(f for name, _, f in gpu_setup.GROUPS[cuda] if name == "torch-jax")
    _, pins = gpu_setup.read_pins(ROOT / ".ci" / "gpu" / env_file)
    torch_rt = pins.get("nvidia-cuda-runtime") or pins.get("nvidia-cuda-runtime-cu12")
    assert torch_rt.split(".")[0] == cuda


@pytest.mark.parametrize("cuda,pin", [("13.0", "onnxruntime-gpu==1.31.1"),
                                      ("12.8", "onnxruntime-gpu==1.26.0"),
                                      ("12", "onnxruntime-gpu==1.26.0")])
def test_ort_for_cuda_prints_the_build_for_torchs_cuda(cuda, pin):
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "gpu_setup.py"), "--ort-for-cuda",
                           cuda], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == pin


@pytest.mark.parametrize("cuda", ["", "11.8", "x"])
def test_ort_for_cuda_refuses_a_cuda_it_has_no_build_for_in_one_line(cuda):
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "gpu_setup.py"), "--ort-for-cuda",
                           cuda], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no onnxruntime-gpu build is pinned" in proc.stderr


def test_gpu_check_installs_the_onnxruntime_gpu_of_torchs_cuda():
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert "onnxruntime-gpu==" not in text   # no fixed build: the one for torch.version.cuda
    assert '.ci/gpu_setup.py --ort-for-cuda "$torch_cuda"' in text
