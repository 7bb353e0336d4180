"""Issue 22's worker-side fixes, at seams a CPU reaches: the per-phase device memory of the
harness (reset after warm-up, training and inference apart), the ceiling worker's products per
sync, TensorFlow's "PTX JIT" fact from faked build info, JAX's matmul precision only for fp32
cells and its compiled-memory figure, torch's precision facts. Each fails on 0.2's code."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from workerutil import BASE_REQUEST, WORKERS, result_of, run_worker

sys.path.insert(0, str(WORKERS))
import ceiling_worker  # noqa: E402
import harness  # noqa: E402
import tensorflow_worker  # noqa: E402


class Allocator(harness.FrameworkInterface):
    """A backend whose 'device' allocates: warm-up steps hold an autotuning scratch, steady
    steps the activations, inference less; the allocator's peak resets like torch's."""
    MEMORY_FIGURE = "planted"
    SCRATCH, STEADY, INFER = 900 << 20, 310 << 20, 120 << 20

    def __init__(self):
        super().__init__({})
        self.in_use, self.peak, self.steps = 50 << 20, 50 << 20, 0
        self.t = 0.0
        self.clock = self._tick

    def _tick(self):
        self.t += 0.01
        return self.t

    def _hold(self, n):
        self.peak = max(self.peak, self.in_use + n)

    def reset_peak_memory(self):
        self.peak = self.in_use
        return True

    def peak_memory(self):
        return self.peak

    def train_step(self, i):
        self.steps += 1
        self._hold(self.SCRATCH if self.steps <= 3 else self.STEADY)  # autotuning first
        return 1.0 / self.steps

    def sync(self, v):
        return v

    def predict(self, i):
        self._hold(self.INFER)
        return 0.0


def test_device_peaks_are_reset_after_warm_up_and_split_by_phase():
    b = Allocator()
    rec = harness.TrainRecord(warmup_steps=3)
    b.train_epoch(0, 40, rec)
    b.train_epoch(1, 40, rec)
    b.benchmark_inference(4, 2, 5)
    m = b.phase_memory()
    base = 50 << 20
    assert m["peak_device_warmup_bytes"] == base + Allocator.SCRATCH
    assert m["peak_device_train_bytes"] == base + Allocator.STEADY  # no autotuning scratch
    assert m["peak_device_infer_bytes"] == base + Allocator.INFER
    assert m["peak_device_reset_after_warmup"] is True and m["peak_device_figure"] == "planted"


def test_a_framework_that_cannot_reset_gives_no_phase_figures():
    class NoReset(Allocator):
        def reset_peak_memory(self):
            return False
    b = NoReset()
    b.train_epoch(0, 30, harness.TrainRecord(warmup_steps=3))
    b.benchmark_inference(4, 2, 5)
    m = b.phase_memory()
    assert m["peak_device_train_bytes"] is None and m["peak_device_infer_bytes"] is None
    assert m["peak_device_reset_after_warmup"] is False


def test_ceiling_times_ten_products_per_sync_on_a_gpu():
    calls = []

    def run(k=1):
        calls.append(k)
    out = ceiling_worker.measure(run, 64, 4, 10.0, per_sync=ceiling_worker.GPU_PRODUCTS_PER_SYNC)
    timed = calls[-out["iterations"]:]
    assert ceiling_worker.GPU_PRODUCTS_PER_SYNC >= 10 and set(timed) == {10}
    assert out["products_per_sync"] == 10
    # per-product time: the FLOP/s is 2 n^3 over a tenth of the sample's time
    assert out["best_flops"] == pytest.approx(2 * 64 ** 3 / out["best_s"])


def test_ceiling_worker_measures_with_the_per_sync_rule_on_cpu(tmp_path):
    # CPU products are synchronous: one per sample; the record says so
    req = {"protocol": BASE_REQUEST["protocol"], "mode": "ceiling", "framework": "numpy",
           "backend": "numpy", "device": "cpu", "precisions": ["fp32"], "size": 32,
           "iterations": 3, "threads": 1}
    path = tmp_path / "req.json"
    path.write_text(json.dumps(req))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(WORKERS / "ceiling_worker.py"), "--request",
                           str(path)], capture_output=True, text=True, env=env, timeout=120)
    final = [json.loads(x) for x in proc.stdout.splitlines() if '"result"' in x]
    assert final and final[-1]["ceilings"]["fp32"]["products_per_sync"] == 1


def _fake_tf(cc, archs):
    gpu = object()
    return SimpleNamespace(
        sysconfig=SimpleNamespace(get_build_info=lambda: {
            "cudnn_version": "9", "cuda_version": "12.5.1", "cuda_compute_capabilities": archs}),
        config=SimpleNamespace(list_physical_devices=lambda kind: [gpu],
                               experimental=SimpleNamespace(
                                   get_device_details=lambda d: {"compute_capability": cc})))


@pytest.mark.parametrize("cc,says", [((9, 0), "PTX JIT"), ((8, 9), "SASS"), ((8, 0), "SASS")])
def test_tensorflow_records_ptx_jit_on_a_gpu_above_its_sass(monkeypatch, cc, says):
    archs = ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]  # TF 2.21's wheel
    monkeypatch.setattr(tensorflow_worker, "tf", _fake_tf(cc, archs))
    monkeypatch.setenv("CUDA_CACHE_PATH", "/cache/cuda")
    facts = tensorflow_worker._gpu_build_facts("/GPU:0")
    assert facts["kernels"].startswith(says) and facts["cudnn_version"] == "9"
    assert facts["cuda_cache_path"] == "/cache/cuda"
    assert tensorflow_worker._gpu_build_facts("/CPU:0") == {}


def test_gpu_cells_get_a_persistent_cuda_jit_cache(monkeypatch, tmp_path):
    from mlbench.host import gpu
    from mlbench.run import launcher
    monkeypatch.delenv("CUDA_CACHE_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    env = launcher.device_env("cuda:0", 1, 0)
    assert env["CUDA_CACHE_PATH"] == str(tmp_path / ".cache" / "mlbench" / "cuda-jit-cache")
    assert int(env["CUDA_CACHE_MAXSIZE"]) == 4 << 30
    monkeypatch.setenv("CUDA_CACHE_PATH", "/mine")
    assert gpu.cuda_cache_env()["CUDA_CACHE_PATH"] == "/mine"
    monkeypatch.delenv("CUDA_CACHE_PATH")
    assert "CUDA_CACHE_PATH" not in launcher.device_env("cpu", 1, 0)  # CPU cells: untouched


JAX_PROBE = """
import json, sys
sys.path.insert(0, {workers!r})
import jax_worker
out = {{}}
for prec in ("fp32", "bf16", "fp16"):
    import jax
    jax.config.update("jax_default_matmul_precision", None)
    jax_worker.import_framework({{"device": "cuda:0", "precision": prec, "tf32": False}})
    out[prec] = jax.config.jax_default_matmul_precision
import jax.numpy as jnp
f = jax.jit(lambda a, b: a @ b)
a = jnp.ones((64, 64), jnp.float32)
out["bytes"] = jax_worker.compiled_bytes(f, a, a)
print(json.dumps(out))
"""


@pytest.mark.framework
def test_jax_highest_precision_only_for_fp32_cells_and_compiled_memory():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", JAX_PROBE.format(workers=str(WORKERS))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["fp32"] == "highest" and out["bf16"] is None and out["fp16"] is None
    assert out["bytes"] >= 3 * 64 * 64 * 4  # two arguments and the output, at least


@pytest.mark.framework
def test_torch_records_activation_dtype_and_reduction_flags(tmp_path):
    settings = result_of(run_worker(tmp_path, "pytorch", "mlp", precision="fp32"))["settings"]
    assert settings["activation_dtype"] == "float32"
    assert settings["inference_output_dtype"] == "float32"
    assert isinstance(settings["bf16_reduced_precision_reduction"], bool)
    assert isinstance(settings["fp16_reduced_precision_reduction"], bool)
    assert "cudnn_version" in settings
