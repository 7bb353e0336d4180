"""GPU paths (marker `gpu`): run only where NVML sees a GPU; on CI they are skipped, and the
evidence comes from benchmarks/gpu_check.sh on a GPU machine instead."""
import pytest

from cliutil import by_cell, run_subprocess, write_config
from mlbench import gpu

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not gpu.list_gpus(), reason="no NVIDIA GPU on this machine")]


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
        assert cell["gpu"]["nvml_peak_process_bytes"]
        assert cell["metrics"]["eval"]["accuracy"] > 0.3
