"""`bash .ci/setup --gpu`: one CUDA environment per framework group, from checked-in pins.

Owns: reading the driver version (nvidia-smi), choosing the CUDA set (CUDA 13 builds at driver
>= 580, else CUDA 12), the plan (which virtualenvs, which frameworks, which pins from .ci/gpu/),
creating and filling those virtualenvs (never with a CPU build: pip's config, find-links and
constraints of this machine are ignored, so a CPU torch on disk cannot be taken), the check that
no two installed packages own the same file (cu12 and cu13 wheels write the same paths), the
check that every framework sees the GPU, and configs/gpu.yaml: the full sweep of
configs/benchmark_config.yaml with each framework's `python`.

TensorFlow always gets an environment of its own: tensorflow[and-cuda] 2.21 is CUDA 12 only,
torch >= 2.11 on PyPI is CUDA 13, and in one venv their cuDNN/NCCL wheels overwrite each other's
files silently. torch and JAX share one environment of the chosen CUDA set. Every environment
pins the same numpy (the equivalence gate compares data hashes).

Standard library only: it runs before any virtualenv exists.

    python3 .ci/gpu_setup.py [--dry-run] [--driver VERSION]
    python3 .ci/gpu_setup.py conflicts SITE_PACKAGES_DIR
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUDA13_MIN_DRIVER = 580  # CUDA 13.0 needs an R580 driver
CUDA12_MIN_DRIVER = 525  # CUDA 12.x wheels run on R525+ (minor-version compatibility)
# onnxruntime-gpu for the serving cells, by the CUDA major of the torch environment that exports
# to it: the `cuda` extra of its wheel's METADATA asks nvidia-cuda-runtime 13 from 1.27 on, and
# -cu12 up to 1.26.0 (tests/data/onnxruntime_gpu-*.METADATA, read by .ci/gpu/lock.py's range
# reader). A CUDA 13 build in a CUDA 12 environment lists CUDAExecutionProvider but cannot load it.
ORT_GPU = {"13": "1.31.1", "12": "1.26.0"}
GROUPS = {  # CUDA set -> [(environment, frameworks, constraint file)]
    "13": [("torch-jax", ["pytorch", "jax"], "cuda13-torch-jax.txt"),
           ("tensorflow", ["tensorflow"], "cuda12-tensorflow.txt")],
    "12": [("torch-jax", ["pytorch", "jax"], "cuda12-torch-jax.txt"),
           ("tensorflow", ["tensorflow"], "cuda12-tensorflow.txt")],
}
CHECKS = {  # framework -> (code that runs a real op and a matmul on the GPU, what is asked)
    "pytorch": ("import sys, torch; ok = torch.cuda.is_available() and bool(torch.version.cuda)\n"
                "if not ok: print('torch.cuda.is_available() is False'); sys.exit(1)\n"
                "x = torch.arange(65536, dtype=torch.float32, device='cuda').reshape(256, 256)\n"
                "y = torch.sin(x) @ torch.cos(x).T; torch.cuda.synchronize()\n"
                "print(torch.__version__, 'cuda', torch.version.cuda, 'cudnn',"
                " torch.backends.cudnn.version(), 'matmul sum', float(y.sum()))",
                "a sin/cos and a 256x256 matmul on torch's CUDA device"),
    "jax": ("import jax, jax.numpy as jnp\n"
            "g = jax.devices('gpu')\n"
            "x = jax.device_put(jnp.arange(65536, dtype=jnp.float32).reshape(256, 256), g[0])\n"
            "y = (jnp.sin(x) @ jnp.cos(x).T).block_until_ready()\n"
            "print(jax.__version__, g, 'matmul sum', float(y.sum()))",
            "a sin/cos and a 256x256 matmul on jax.devices('gpu')[0]"),
    "tensorflow": ("import sys, tensorflow as tf\n"
                   "g = tf.config.list_physical_devices('GPU')\n"
                   "if not g: print('no GPU in tf.config.list_physical_devices'); sys.exit(1)\n"
                   "with tf.device('/GPU:0'):\n"
                   "    x = tf.reshape(tf.range(65536, dtype=tf.float32), (256, 256))\n"
                   "    y = tf.matmul(tf.sin(x), tf.cos(x), transpose_b=True)\n"
                   "print(tf.__version__, g, 'matmul sum', float(tf.reduce_sum(y)))",
                   "a sin/cos and a 256x256 matmul on TensorFlow's /GPU:0"),
}
# TensorFlow 2.21's wheel carries SASS up to sm_89 and compute_90 PTX only: on compute
# capability 9.x (H100, H200, GH200) every kernel is JIT-compiled from that PTX by the driver,
# which needs a driver of the CUDA release that built the PTX (R555, CUDA 12.5); older drivers
# fail the first kernel with CUDA_ERROR_UNSUPPORTED_PTX_VERSION.
TF_SASS_MAX = (8, 9)
TF_PTX_MIN_DRIVER = 555
CPU_BUILDS = ("tensorflow-cpu", "tensorflow-intel", "jax-cpu")


class SetupError(Exception):
    """One line for the user; exit code 1."""


def read_driver() -> str:
    """The NVIDIA driver version nvidia-smi reports, or SetupError saying why there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"no NVIDIA GPU here: nvidia-smi cannot run ({exc}); "
                         "`bash .ci/setup --gpu --dry-run` shows the plan without one")
    lines = [x.strip() for x in out.stdout.splitlines() if x.strip()]
    if out.returncode != 0 or not lines:
        raise SetupError(f"no NVIDIA GPU here: nvidia-smi exited {out.returncode} "
                         f"({(out.stderr or out.stdout).strip()[:200]}); "
                         "`bash .ci/setup --gpu --dry-run` shows the plan without one")
    return lines[0]


def read_compute_cap() -> str | None:
    """The first GPU's compute capability (e.g. "9.0") as nvidia-smi reports it, or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [x.strip() for x in out.stdout.splitlines() if x.strip()]
    return lines[0] if out.returncode == 0 and lines and re.match(r"^\d+\.\d+$", lines[0]) \
        else None


def tf_refusal(driver: str, compute_cap: str | None) -> str | None:
    """Why TensorFlow's CUDA build cannot run here (its kernels would be JIT-compiled from PTX
    the driver is too old for), or None."""
    if not compute_cap:
        return None
    major, minor = (int(x) for x in compute_cap.split("."))
    drv = int(re.match(r"^(\d+)", driver.strip()).group(1))
    if (major, minor) > TF_SASS_MAX and drv < TF_PTX_MIN_DRIVER:
        return (f"TensorFlow refused: its wheel has no SASS for compute capability "
                f"{compute_cap} (up to sm_{TF_SASS_MAX[0]}{TF_SASS_MAX[1]}), so the driver must "
                f"JIT its compute_90 PTX, and driver {driver} (< R{TF_PTX_MIN_DRIVER}) cannot "
                "(CUDA_ERROR_UNSUPPORTED_PTX_VERSION); update the driver to R555 or newer")
    return None


def ptx_jit(compute_cap: str | None) -> bool:
    """Whether TensorFlow's kernels are JIT-compiled from PTX on this GPU (first steps slow)."""
    if not compute_cap:
        return False
    return tuple(int(x) for x in compute_cap.split(".")) > TF_SASS_MAX


def cuda_set(driver: str) -> str:
    m = re.match(r"^(\d+)(\.\d+)*$", driver.strip())
    if not m:
        raise SetupError(f"cannot read driver version {driver!r} (expected e.g. 580.65.06)")
    major = int(m.group(1))
    if major >= CUDA13_MIN_DRIVER:
        return "13"
    if major >= CUDA12_MIN_DRIVER:
        return "12"
    raise SetupError(f"driver {driver} is too old for the CUDA 12 builds (needs >= "
                     f"{CUDA12_MIN_DRIVER}); update the NVIDIA driver")


def read_pins(path: Path) -> tuple[list[str], dict[str, str]]:
    """(the roots to install, {package: version}) of a constraint file of .ci/gpu/."""
    roots, pins = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("# roots:"):
            roots = line.split(":", 1)[1].split()
        elif line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[name] = version
    return roots, pins


def plan(driver: str, root: Path = ROOT, compute_cap: str | None = None,
         only: str | None = None) -> dict:
    """The environments to build for this driver (and GPU): TensorFlow's is left out, with the
    reason in `refused`, where the driver cannot JIT its PTX; `only` keeps one group."""
    cuda = cuda_set(driver)
    envs, refused = [], []
    for name, frameworks, constraints in GROUPS[cuda]:
        if only is not None and name != only:
            continue
        why = tf_refusal(driver, compute_cap) if "tensorflow" in frameworks else None
        if why:
            refused.append(why)
            continue
        path = root / ".ci" / "gpu" / constraints
        roots, pins = read_pins(path)
        envs.append({"name": name, "venv": str(root / f".venv-gpu-{name}"),
                     "frameworks": frameworks, "constraints": str(path.relative_to(root)),
                     "install": roots, "pins": pins,
                     "cuda": sorted({_cuda_of(p) for p in pins if _cuda_of(p)})})
    if not envs:
        raise SetupError("; ".join(refused) or f"no environment named {only!r}")
    numpys = {e["pins"].get("numpy") for e in envs}
    if len(numpys) != 1 or None in numpys:
        raise SetupError(f"the GPU constraint files pin different numpy versions {numpys}: the "
                         "gate needs one numpy in every environment")
    return {"driver": driver, "cuda": cuda, "numpy": numpys.pop(), "environments": envs,
            "compute_cap": compute_cap, "refused": refused}


def _cuda_of(package: str) -> str | None:
    m = re.search(r"-cu(\d+)$", package)
    if m:
        return f"cuda{m.group(1)}"
    m = re.match(r"^(jax-cuda\d+)-plugin$", package)
    return m.group(1).replace("jax-", "") if m else None


def render(p: dict, dry_run: bool) -> str:
    key = ("torch", "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax",
           "tensorflow", "keras", "numpy", "nvidia-cudnn-cu12", "nvidia-cudnn-cu13",
           "nvidia-nccl-cu12", "nvidia-nccl-cu13", "nvidia-cublas", "nvidia-cublas-cu12",
           "nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12")
    lines = [f"GPU setup plan{' (dry run: nothing installed)' if dry_run else ''}: driver "
             f"{p['driver']} -> CUDA {p['cuda']} set; numpy {p['numpy']} everywhere"]
    for e in p["environments"]:
        lines.append(f"  {e['venv']}: {', '.join(e['frameworks'])} from {e['constraints']} "
                     f"({len(e['pins'])} pins; CUDA wheels: {', '.join(e['cuda']) or '-'})")
        lines.append(f"    pip install -c {e['constraints']} {' '.join(e['install'])}")
        shown = [f"{k}=={e['pins'][k]}" for k in key if k in e["pins"]]
        lines.append(f"    pins: {' '.join(shown)}")
    for why in p.get("refused") or []:
        lines.append(f"  {why}")
    asked = "; ".join(c[1] for c in CHECKS.values())
    lines.append(f"  then: every framework must run on the GPU ({asked}), no two packages may "
                 "own one file with different content, and configs/gpu.yaml gets each python")
    return "\n".join(lines)


# --- checks --------------------------------------------------------------------------------

def conflicts(site_packages: Path) -> dict[str, list[str]]:
    """{file: [distributions]} for every file that two installed distributions claim in their
    RECORD with different content (e.g. nvidia-cudnn-cu12 and -cu13 both writing
    nvidia/cudnn/lib/libcudnn.so.9). Identical content (the same RECORD hash: a shared
    namespace __init__.py) is no conflict; a claim without a hash is treated as different."""
    owners: dict[str, dict[str, str]] = {}
    for record in sorted(Path(site_packages).glob("*.dist-info/RECORD")):
        dist = record.parent.name[:-len(".dist-info")]
        with open(record, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if not row or ".dist-info/" in row[0] or "__pycache__" in row[0]:
                    continue
                path = os.path.normpath(row[0])
                owners.setdefault(path, {}).setdefault(dist, row[1] if len(row) > 1 else "")
    out = {}
    for f, by in owners.items():
        hashes = set(by.values())
        if len(by) > 1 and (len(hashes) > 1 or "" in hashes):
            out[f] = list(by)
    return out


def site_packages(venv: Path) -> Path:
    found = sorted(Path(venv).glob("lib/python3*/site-packages"))
    if not found:
        raise SetupError(f"{venv} has no site-packages")
    return found[0]


def cpu_builds(site: Path) -> list[str]:
    """CPU-only builds found installed (they would shadow or replace the CUDA ones)."""
    bad = []
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        if name.lower().replace("_", "-") in CPU_BUILDS or (name == "torch" and "+cpu" in version):
            bad.append(info.name[:-len(".dist-info")])
    return sorted(bad)


# What a cluster needs to reach its index through a mirror: kept. What could bring a CPU build
# in (find-links, constraints, a local wheel directory, no-index) is dropped with the rest.
PIP_KEPT = ("index-url", "extra-index-url", "cert", "client-cert", "trusted-host", "proxy")


def _pip_env(environ: dict[str, str] | None = None,
             config: list[str] | None = None) -> dict[str, str]:
    """pip for a GPU venv: this machine's index, mirror and certificate settings (PIP_* of
    PIP_KEPT, and the same keys of pip's config files, as PIP_* variables), nothing else of
    its config (PIP_CONFIG_FILE=/dev/null: find-links, constraints and the like are left out).
    `config`: `pip config list` lines (key='value'); read from pip when None."""
    environ = dict(os.environ if environ is None else environ)
    kept_vars = {"PIP_" + k.upper().replace("-", "_") for k in PIP_KEPT}
    env = {k: v for k, v in environ.items() if not k.startswith("PIP_")}
    if config is None:
        config = _pip_config_lines(environ)
    for line in config:
        m = re.match(r"^[\w.-]+?\.([\w-]+)='(.*)'$", line.strip())
        if m and m.group(1) in PIP_KEPT:
            env["PIP_" + m.group(1).upper().replace("-", "_")] = m.group(2)
    env.update({k: v for k, v in environ.items() if k in kept_vars})  # the variables win
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _pip_config_lines(environ: dict[str, str]) -> list[str]:
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=60, env=environ)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def build(e: dict, root: Path, with_mlbench: bool = False) -> Path:
    venv = Path(e["venv"])
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cmd = [str(py), "-m", "pip", "install", "--quiet", "--only-binary=:all:",
           "-c", str(root / e["constraints"]), *e["install"]]
    print(f"[{e['name']}] {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd, env=_pip_env()).returncode != 0:
        raise SetupError(f"pip could not install {e['constraints']} into {venv}")
    site = site_packages(venv)
    bad = cpu_builds(site)
    if bad:
        raise SetupError(f"{venv} holds CPU builds {bad}: remove the venv and rerun")
    clash = conflicts(site)
    if clash:
        f, d = next(iter(sorted(clash.items())))
        raise SetupError(f"{venv}: {len(clash)} file(s) owned by two packages, e.g. {f} by "
                         f"{' and '.join(d)}")
    if with_mlbench:  # the parent too (the smoke check runs mlbench from this venv)
        cmd = [str(py), "-m", "pip", "install", "--quiet", "-c", str(root / e["constraints"]),
               "-e", str(root)]
        print(f"[{e['name']}] {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd, env=_pip_env()).returncode != 0:
            raise SetupError(f"pip could not install mlbench into {venv}")
    return py


def check_gpu(fw: str, py: Path) -> str:
    code, asked = CHECKS[fw]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PLAT")}
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise SetupError(f"{fw} in {py} cannot run on the GPU: {asked} failed ({tail})")
    return out.stdout.strip()


def write_config(pythons: dict[str, str], root: Path = ROOT) -> Path:
    """configs/gpu.yaml: configs/benchmark_config.yaml with each framework's python added to
    its framework_settings line (options kept)."""
    lines = (root / "configs" / "benchmark_config.yaml").read_text().splitlines()
    out, seen, inside = [], set(), False
    for line in lines:
        if line.startswith("framework_settings:"):
            inside = True
        elif inside and re.match(r"^\S", line):
            inside = False
        m = re.match(r"^  (\w+): \{(.*)\}\s*$", line) if inside else None
        if m and m.group(1) in pythons:
            seen.add(m.group(1))
            line = f"  {m.group(1)}: {{python: {json.dumps(pythons[m.group(1)])}, {m.group(2)}}}"
        out.append(line)
    if not any(x.startswith("framework_settings:") for x in out):
        out.append("framework_settings:")
    rest = [f"  {fw}: {{python: {json.dumps(py)}}}" for fw, py in pythons.items()
            if fw not in seen]
    idx = next(i for i, x in enumerate(out) if x.startswith("framework_settings:"))
    out[idx + 1:idx + 1] = rest
    fw_line = next((i for i, x in enumerate(out) if x.startswith("frameworks: [")), None)
    if fw_line is not None:  # a framework refused here (TensorFlow on an old driver) is left out
        listed = [f.strip() for f in out[fw_line][len("frameworks: ["):].rstrip("]").split(",")]
        out[fw_line] = f"frameworks: [{', '.join(f for f in listed if f in pythons)}]"
    head = ("# Written by `bash .ci/setup --gpu`: configs/benchmark_config.yaml with each "
            "framework's CUDA environment.\n")
    path = root / "configs" / "gpu.yaml"
    path.write_text(head + "\n".join(out) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=".ci/setup --gpu")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, install nothing")
    ap.add_argument("--driver", help="plan for this driver version (with --dry-run)")
    ap.add_argument("--check", action="store_true", help="only check for a usable driver")
    ap.add_argument("--compute-cap", help="plan for this compute capability (with --dry-run)")
    ap.add_argument("--only", help="build one environment (e.g. torch-jax)")
    ap.add_argument("--with-mlbench", action="store_true",
                    help="also install mlbench itself into the environment(s)")
    ap.add_argument("--ort-for-cuda", metavar="CUDA_VERSION",
                    help="print the onnxruntime-gpu requirement built for this CUDA version "
                         "(torch.version.cuda of the environment that exports to it)")
    ap.add_argument("args", nargs="*", help="`conflicts SITE_PACKAGES`")
    a = ap.parse_args(argv)
    try:
        if a.ort_for_cuda is not None:
            major = a.ort_for_cuda.split(".")[0].strip()
            if major not in ORT_GPU:
                raise SetupError(f"no onnxruntime-gpu build is pinned for CUDA "
                                 f"{a.ort_for_cuda!r} (pinned: {', '.join(sorted(ORT_GPU))})")
            print(f"onnxruntime-gpu=={ORT_GPU[major]}")
            return 0
        if a.args[:1] == ["conflicts"] and len(a.args) == 2:
            clash = conflicts(Path(a.args[1]))
            for f, d in sorted(clash.items()):
                print(f"{f}: {' '.join(d)}")
            return 1 if clash else 0
        if a.check:
            plan(read_driver())
            return 0
        if a.dry_run:
            driver = a.driver or os.environ.get("MLBENCH_GPU_DRIVER")
            if not driver:
                try:
                    driver = read_driver()
                except SetupError as exc:
                    driver = f"{CUDA13_MIN_DRIVER}.0"
                    print(f"note: {str(exc).split(';')[0]}; planning for driver {driver} "
                          "(--driver VERSION plans for another)")
            cap = a.compute_cap or (None if a.driver else read_compute_cap())
            print(render(plan(driver, compute_cap=cap, only=a.only), dry_run=True))
            return 0
        p = plan(read_driver(), compute_cap=read_compute_cap(), only=a.only)
        print(render(p, dry_run=False), flush=True)
        for why in p["refused"]:
            print(f"warning: {why}", file=sys.stderr)
        pythons: dict[str, str] = {}
        for e in p["environments"]:
            py = build(e, ROOT, a.with_mlbench)
            for fw in e["frameworks"]:
                print(f"[{e['name']}] {fw}: {check_gpu(fw, py)}", flush=True)
                pythons[fw] = str(py)
        print(f"wrote {write_config(pythons)}: run `mlbench run --config configs/gpu.yaml`")
        return 0
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
