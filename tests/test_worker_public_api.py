"""The PyTorch worker's facts asked of torch's public API (test_no_private_api.py keeps the private
ones out): which attention kernel F.scaled_dot_product_attention runs (read from torch's profiler)
and whether Adam is fused (a fused step probed on a throwaway parameter). The kernel is forced
with torch.nn.attention.sdpa_kernel, so the expected answer is the test's own input."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from cliutil import ROOT

pytestmark = pytest.mark.framework
torch = pytest.importorskip("torch")
sys.path.insert(0, str(ROOT / "workers"))
import pytorch_worker  # noqa: E402
import specs  # noqa: E402

pytorch_worker.import_framework()
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402


def _kernel(dtype=None) -> str | None:
    backend = SimpleNamespace(spec=specs.model_spec("transformer", {"preset": "tiny"}),
                              device=torch.device("cpu"), amp_dtype=dtype)
    return pytorch_worker.TorchBackend._attention_kernel(backend)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("forced, name", [(SDPBackend.MATH, "sdpa-math"),
                                          (SDPBackend.FLASH_ATTENTION, "sdpa-flash")])
def test_the_attention_kernel_is_the_one_that_ran(forced, name, dtype):
    with sdpa_kernel(forced):
        assert _kernel(dtype) == name


def test_no_usable_attention_kernel_reads_as_plain_sdpa():
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):  # no CPU kernel: the call itself fails
        assert _kernel() == "sdpa"


def test_a_model_without_attention_has_no_attention_kernel():
    backend = SimpleNamespace(spec=specs.model_spec("mlp", {"preset": "tiny"}),
                              device=torch.device("cpu"), amp_dtype=None)
    assert pytorch_worker.TorchBackend._attention_kernel(backend) is None


def test_adam_is_fused_where_torch_can_step_it_fused_else_the_default():
    spec = {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.99, "adam_eps": 1e-7}
    here = [torch.nn.Parameter(torch.ones(4))]
    opt, fused = pytorch_worker._adam(here, spec)
    assert fused is True and opt.defaults["fused"] is True
    assert opt.defaults["lr"] == 0.01 and opt.defaults["betas"] == (0.9, 0.99)
    assert opt.defaults["eps"] == 1e-7 and not opt.state  # the probe left this optimizer alone
    nowhere = [torch.nn.Parameter(torch.ones(4, device="meta"))]  # no fused kernel on meta
    opt, fused = pytorch_worker._adam(nowhere, spec)
    assert fused is False and not opt.defaults["fused"]


def _gpus() -> list:
    from mlbench import gpu
    return gpu.list_gpus()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpus(), reason="no NVIDIA GPU on this machine")
def test_on_a_gpu_jax_names_its_loaded_cudnn_and_torch_a_fused_attention_kernel(tmp_path):
    from cliutil import by_cell, run_subprocess, write_config
    conf = write_config(tmp_path / "c.yaml", frameworks=["pytorch", "jax"],
                        models=[{"name": "transformer", "preset": "tiny"}], devices=["cuda:0"],
                        batch_sizes=[16], precisions=["bf16"], timeout_s=300, verify=False,
                        ceiling=False)
    proc = run_subprocess(["run", "--config", str(conf), "--no-report"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    settings = {cell_id.split("-")[0]: cell["metrics"]["settings"]
                for cell_id, cell in by_cell(tmp_path / "results").items()}
    cudnn = settings["jax"]["cudnn_version"]  # cuDNN 8.x and 9.x encode as 8xxx, 9xxxx
    assert isinstance(cudnn, int) and cudnn >= 8000, cudnn
    assert settings["pytorch"]["attention"] in {"sdpa-flash", "sdpa-efficient", "sdpa-cudnn"}
    assert settings["pytorch"]["adam"] == "fused"
