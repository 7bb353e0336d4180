"""GPU paths. Without a GPU: NVML faked at its seam (mlbench.host.gpu's `pynvml`): errors, MIG, no
PID match, inherited CUDA_VISIBLE_DEVICES of indices and UUIDs, the GPU cell's environment, and a
framework that cannot use a GPU that NVML sees (a real worker, on this CPU-only machine) recorded
as `failed`, not `skipped`. With a GPU (marker `gpu`): a real CUDA cell."""
import sys
from types import SimpleNamespace

import pytest

from cliutil import by_cell, run_subprocess, write_config
from mlbench.analysis import ceiling
from mlbench.host import gpu, gpu_sampling
from mlbench.run import launcher, protocol
from mlbench.config.schema import ModelEntry
from mlbench.run.matrix import Cell, fingerprint
from workerutil import BASE_REQUEST, WORKERS

sys.path.insert(0, str(WORKERS))
import harness  # noqa: E402


class NVMLError(Exception):
    pass


class FakeNvml:
    """pynvml's calls as mlbench.host.gpu uses them. `gpus`: [(pci bus id, uuid, name)], given in
    NVML's own (non-PCI) order; `mig`: {parent uuid: [mig uuids]}; `procs`: [(pid, bytes)];
    `fail`: names of calls that raise."""
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, gpus, mig=None, procs=(), fail=()):
        self.gpus = [SimpleNamespace(bus=b, uuid=u, name=n, mig=False) for b, u, n in gpus]
        self.migs = {u: [SimpleNamespace(bus=None, uuid=m, name="MIG 1g", mig=True)
                         for m in ms] for u, ms in (mig or {}).items()}
        self.procs, self.fail = list(procs), set(fail)

    def __getattribute__(self, name):
        if name.startswith("nvml") and name in object.__getattribute__(self, "fail"):
            def boom(*a):
                raise NVMLError(f"{name}: NVML_ERROR_UNKNOWN")
            return boom
        return object.__getattribute__(self, name)

    def nvmlInit(self): pass
    def nvmlSystemGetDriverVersion(self): return b"580.65"
    def nvmlDeviceGetCount(self): return len(self.gpus)
    def nvmlDeviceGetHandleByIndex(self, i): return self.gpus[i]
    def nvmlDeviceGetPciInfo(self, h): return SimpleNamespace(busId=h.bus.encode())
    def nvmlDeviceGetUUID(self, h): return h.uuid
    def nvmlDeviceGetName(self, h): return h.name
    def nvmlDeviceGetMemoryInfo(self, h): return SimpleNamespace(total=80 << 30, used=1 << 30)
    def nvmlDeviceGetMigMode(self, h): return (int(h.uuid in self.migs), 0)
    def nvmlDeviceGetMaxMigDeviceCount(self, h): return len(self.migs.get(h.uuid, []))
    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, i): return self.migs[h.uuid][i]

    def nvmlDeviceGetHandleByUUID(self, u):
        raise NVMLError("NVML_ERROR_NOT_FOUND")  # forces mlbench's own prefix matching

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in self.procs]

    def nvmlDeviceGetUtilizationRates(self, h): return SimpleNamespace(gpu=50, memory=20)
    def nvmlDeviceGetPowerUsage(self, h): return 300_000
    def nvmlDeviceGetClockInfo(self, h, kind): return 1980
    def nvmlDeviceGetMaxClockInfo(self, h, kind): return 1980
    def nvmlDeviceGetTemperature(self, h, kind): return 40


TWO = [("0000:41:00.0", "GPU-bbbb2222", "H200"), ("0000:01:00.0", "GPU-aaaa1111", "H200")]


@pytest.fixture
def nvml(monkeypatch):
    """Install a FakeNvml (call with its arguments) as mlbench.host.gpu's pynvml."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(*args, **kwargs):
        fake = FakeNvml(*args, **kwargs)
        monkeypatch.setattr(gpu, "pynvml", fake)
        gpu._init.cache_clear()
        return fake
    yield install
    gpu._init.cache_clear()


def test_devices_are_in_pci_order_and_a_cell_sees_exactly_its_one(nvml):
    nvml(TWO)
    assert [g["uuid"] for g in gpu.list_gpus()] == ["GPU-aaaa1111", "GPU-bbbb2222"]
    assert gpu.device_present("cuda:1") and not gpu.device_present("cuda:2")
    env = launcher.device_env("cuda:1", 4, 0)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_inherited_uuid_list_is_honoured_and_recorded(nvml, monkeypatch):
    nvml(TWO)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb,GPU-aaaa1111")  # a prefix, as CUDA allows
    assert gpu.cuda_visible_value("cuda:0") == "GPU-bbbb"
    assert launcher.device_env("cuda:1", 1, 0)["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa1111"
    assert not gpu.device_present("cuda:2")  # only two were given, though more may exist
    m = gpu.mapping()
    assert m["inherited_cuda_visible_devices"] == "GPU-bbbb,GPU-aaaa1111"
    assert [(d["device"], d["uuid"]) for d in m["devices"]] == [
        ("cuda:0", "GPU-bbbb2222"), ("cuda:1", "GPU-aaaa1111")]


def test_inherited_indices_stop_at_the_first_invalid_entry_as_cuda_does(nvml, monkeypatch):
    nvml(TWO)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")
    assert [v.uuid for v in gpu.visible_devices()] == ["GPU-bbbb2222"]
    assert launcher.device_env("cuda:0", 1, 0)["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # given none: no GPU cell may run
    assert not gpu.device_present("cuda:0") and "gives mlbench 0" in gpu.describe()


def test_mig_uuid_is_handed_on_and_memory_says_why_it_is_unattributed(nvml, monkeypatch):
    nvml(TWO, mig={"GPU-aaaa1111": ["MIG-1234-abcd"]}, procs=[(4242, None)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1234")
    assert launcher.device_env("cuda:0", 1, 0)["CUDA_VISIBLE_DEVICES"] == "MIG-1234"
    assert gpu.mapping()["devices"][0]["mig"] is True
    s = gpu_sampling.ProcessSampler(4242, "cuda:0")
    s.sample()
    summary = s.summary()
    assert summary["nvml_peak_process_bytes"] is None
    assert "MIG" in summary["process_memory_note"]


def test_no_pid_match_in_a_container_is_explained(nvml):
    nvml(TWO, procs=[(17, 5 << 30)])  # the host's PID of our worker, not ours
    s = gpu_sampling.ProcessSampler(4242, "cuda:0")
    s.sample()
    assert "host PID namespace" in s.summary()["process_memory_note"]
    nvml(TWO, procs=[(4242, 5 << 30)])
    s = gpu_sampling.ProcessSampler(4242, "cuda:0")
    s.sample()
    assert s.summary()["nvml_peak_process_bytes"] == 5 << 30
    assert s.summary()["process_memory_note"] is None


def test_nvml_errors_become_reasons_never_exceptions(nvml):
    nvml(TWO, fail={"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetUtilizationRates",
                    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetName",
                    "nvmlDeviceGetTemperature", "nvmlSystemGetDriverVersion"})
    s = gpu_sampling.ProcessSampler(1, "cuda:0")
    s.sample()
    summary = s.summary()
    assert summary["process_memory_note"].startswith("NVML unavailable: NVMLError")
    assert summary["utilization_pct_mean"] is None
    state = gpu_sampling.device_state("cuda:0")
    assert state["processes"] == [] and state["memory_used_bytes"] is None
    assert gpu.list_gpus()[0]["name"] is None and gpu.list_gpus()[0]["uuid"] == "GPU-aaaa1111"
    # a device whose PCI info cannot be read is not offered; a failing init means no GPU
    nvml(TWO, fail={"nvmlDeviceGetPciInfo"})
    assert gpu.list_gpus() == [] and not gpu.device_present("cuda:0")
    nvml(TWO, fail={"nvmlInit"})
    assert gpu.list_gpus() == [] and "NVML_ERROR_UNKNOWN" in gpu.describe()
    assert gpu.mapping()["devices"] == []


def test_gpu_cell_env_forbids_jax_cpu_fallback_and_evens_memory(nvml, monkeypatch):
    nvml(TWO)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu,cuda")
    g = launcher.device_env("cuda:0", 2, 7)
    assert g["JAX_PLATFORMS"] == "cuda" and g["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.95"
    c = launcher.device_env("cpu", 2, 7)
    assert c["JAX_PLATFORMS"] == "cpu" and c["CUDA_VISIBLE_DEVICES"] == ""
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in c
    job = launcher.Job(ceiling.worker_script(), sys.executable, {}, "jax", "cuda:0", 2, 60)
    assert launcher.job_env(job)["JAX_PLATFORMS"] == "cuda"  # ceilings run the same way


def _cell(framework: str, device: str) -> Cell:
    req = {**BASE_REQUEST, "framework": framework, "model": "mlp", "device": device,
           "cell_id": f"{framework}-gpu"}
    return Cell(f"{framework}-gpu", framework, ModelEntry(name="mlp", preset="tiny"), device,
                16, "fp32", 0, req, fingerprint(req), sys.executable, 120)


@pytest.mark.parametrize("framework,says", [("pytorch", "torch.cuda.is_available() is False"),
                                            ("jax", "jax")])
def test_framework_that_cannot_use_a_gpu_nvml_sees_is_failed(nvml, tmp_path, framework, says):
    # The CPU builds here are the broken GPU environment: NVML (faked) sees the GPU, the
    # framework cannot use it. JAX must not fall back to the CPU (JAX_PLATFORMS=cuda).
    nvml(TWO)
    rec = launcher.run_cell(_cell(framework, "cuda:0"), tmp_path, launcher.Stop())
    assert rec["status"] == "failed", (rec["status"], rec["reason"], rec.get("stderr_tail"))
    assert "which NVML sees" in rec["reason"] and says in rec["reason"]


def test_device_nvml_does_not_see_stays_skipped(nvml, tmp_path):
    nvml([])
    rec = launcher.run_cell(_cell("pytorch", "cuda:0"), tmp_path, launcher.Stop())
    assert rec["status"] == "skipped" and "not present" in rec["reason"]


def test_ceiling_worker_that_cannot_use_a_gpu_nvml_sees_is_failed(nvml, tmp_path):
    nvml(TWO)
    req = protocol.wire().request("ceiling", framework="pytorch", device="cuda:0",
                                  precisions=["fp32"], threads=1, size=64, iterations=1)
    out = ceiling.run_worker(sys.executable, req, tmp_path / "job", 120)
    assert out["status"] == "failed" and "torch.cuda.is_available() is False" in out["reason"]


@pytest.mark.parametrize("message", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE: workspace of 2 GiB could not be allocated",
    "Resource exhausted: OOM when allocating tensor with shape[16,1024,50257]",
])
def test_cublas_and_cudnn_allocation_failures_are_oom(message):
    assert harness.is_oom(RuntimeError(message))
    assert launcher.is_oom_text(message)
    assert not harness.is_oom(RuntimeError("CUDNN_STATUS_BAD_PARAM"))
    assert not launcher.is_oom_text("CUBLAS_STATUS_INVALID_VALUE")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.list_gpus(), reason="no NVIDIA GPU on this machine")
@pytest.mark.parametrize("framework", ["pytorch", "jax"])
def test_cuda_cell_runs_and_reports_device_memory(tmp_path, framework):
    conf = write_config(tmp_path / "c.yaml", frameworks=[framework],
                        models=[{"name": "mlp", "preset": "small"}], devices=["cuda:0"],
                        batch_sizes=[64], precisions=["fp32", "bf16"], timeout_s=300)
    proc = run_subprocess(["run", "--config", str(conf), "--no-report"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for cell in by_cell(tmp_path / "results").values():
        assert cell["status"] == "ok", cell.get("reason")
        assert cell["metrics"]["memory"]["peak_device_bytes"] > 0
        assert cell["gpu"]["nvml_peak_process_bytes"] or cell["gpu"]["process_memory_note"]
        assert cell["metrics"]["eval"]["accuracy"] > 0.3


def test_run_json_host_records_the_device_mapping(nvml, monkeypatch):
    from mlbench.host import sysinfo
    nvml(TWO)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    host = sysinfo.host()
    assert host["cuda_devices"]["inherited_cuda_visible_devices"] == "1"
    assert host["cuda_devices"]["devices"] == [
        {"device": "cuda:0", "cuda_visible_devices": "1", "uuid": "GPU-bbbb2222", "mig": False,
         "name": "H200"}]


import jax_worker  # noqa: E402

pytestmark = pytest.mark.framework  # every test here starts a real ML framework


def test_jax_attention_is_cudnn_on_gpu_at_half_precision_else_xla():
    assert jax_worker.attention_kind("bf16", "gpu") == "cudnn"
    assert jax_worker.attention_kind("fp16", "gpu") == "cudnn"
    assert jax_worker.attention_kind("fp32", "gpu") == "xla"
    assert jax_worker.attention_kind("bf16", "cpu") == "xla"
    assert jax_worker.attention_kind("fp16", "cpu") == "explicit"


def test_cudnn_attention_probe_falls_back_with_a_reason_and_compilations_are_counted():
    jax_worker.import_framework({"device": "cpu", "threads": 0, "tf32": False})
    spec = {"model": "transformer", "seq_len": 16, "n_heads": 2, "d_model": 32}
    why = jax_worker.cudnn_attention_error(spec, jax_worker.jnp.bfloat16)
    assert why  # no cuDNN on the CPU: the worker then uses XLA and records this reason
    assert jax_worker._compilations(object()) is None

    def counted_step(x):
        return x * 2

    step = jax_worker.jax.jit(counted_step)
    assert jax_worker._compilations(step) == 0
    for shape in (3, 3, 4, 3, 4):  # one compilation per new argument shape
        step(jax_worker.jnp.ones(shape))
    assert jax_worker._compilations(step) == 2


@pytest.mark.parametrize("framework,kernels", [
    ("pytorch", {"sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math"}),
    ("jax", {"xla"}),
    ("tensorflow", {"explicit"}),
])
def test_every_framework_records_its_attention_kernel(tmp_path, framework, kernels):
    from workerutil import result_of, run_worker
    r = result_of(run_worker(tmp_path, framework, "transformer", train_samples=64,
                             eval_samples=32))
    assert r["settings"]["attention"] in kernels, r["settings"].get("attention")
