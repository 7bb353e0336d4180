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


@pytest.fixture(scope="module")
def pw():
    """The PyTorch worker with torch imported (at first use: collecting this file stays fast)."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "workers"))
    import pytorch_worker
    pytorch_worker.import_framework()
    return pytorch_worker


def _kernel(pw, model="transformer", dtype=None) -> str | None:
    import specs
    backend = SimpleNamespace(spec=specs.model_spec(model, {"preset": "tiny"}),
                              device=pw.torch.device("cpu"),
                              amp_dtype=getattr(pw.torch, dtype) if dtype else None)
    return pw.TorchBackend._attention_kernel(backend)


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
@pytest.mark.parametrize("forced, name", [("MATH", "sdpa-math"),
                                          ("FLASH_ATTENTION", "sdpa-flash")])
def test_the_attention_kernel_is_the_one_that_ran(pw, forced, name, dtype):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(getattr(SDPBackend, forced)):
        assert _kernel(pw, dtype=dtype) == name


def test_no_usable_attention_kernel_reads_as_plain_sdpa(pw):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):  # no CPU kernel: the call itself fails
        assert _kernel(pw) == "sdpa"


def test_a_model_without_attention_has_no_attention_kernel(pw):
    assert _kernel(pw, model="mlp") is None


def test_adam_is_fused_where_torch_can_step_it_fused_else_the_default(pw):
    torch = pw.torch
    spec = {"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.99, "adam_eps": 1e-7}
    here = [torch.nn.Parameter(torch.ones(4))]
    opt, fused = pw._adam(here, spec)
    assert fused is True and opt.defaults["fused"] is True
    assert opt.defaults["lr"] == 0.01 and opt.defaults["betas"] == (0.9, 0.99)
    assert opt.defaults["eps"] == 1e-7 and not opt.state  # the probe left this optimizer alone
    nowhere = [torch.nn.Parameter(torch.ones(4, device="meta"))]  # no fused kernel on meta
    opt, fused = pw._adam(nowhere, spec)
    assert fused is False and not opt.defaults["fused"]


def _gpus() -> list:
    from mlbench.host import gpu
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
