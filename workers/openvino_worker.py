"""Worker: OpenVINO (CPU plugin) serving a model exported from PyTorch.

An inference-only competitor (`{framework: openvino, options: {source: pytorch}}`):
workers/exported.py builds the PyTorch model with the canonical weights and exports it to ONNX;
this file reads that file with OpenVINO and compiles it for the CPU at f32 inference precision
(OpenVINO's CPU default is bf16 where the CPU has it: not the fp32 the cell asks for), with the
cell's thread count.
"""
from __future__ import annotations

import driver
import harness
from exported import ExportedBackend

OPTIONS = {"source": "pytorch"}
ov = None  # openvino, imported by import_framework (timed)


class OpenVinoBackend(ExportedBackend):
    name = "openvino"

    def _load(self, path: str) -> None:
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        threads = int(self.request.get("threads") or 0)
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(path, "CPU", config)
        self.infer = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)

    def _run(self, x):
        # one synchronous inference; the copy keeps the result once the request is reused
        return self.infer.infer([x])[self.output].copy()

    def runtime_info(self) -> dict:
        return {"framework_version": ov.__version__, "provider": "CPU plugin, f32",
                "source_version": self.pt.torch.__version__}


def import_framework() -> dict:
    global ov
    import onnxscript  # noqa: F401  (torch.onnx's exporter needs it: an ImportError skips)
    import openvino as _ov
    ov = _ov
    return {"framework_version": ov.__version__, "device_name": harness.cpu_name()}


if __name__ == "__main__":
    harness.main(OpenVinoBackend, "openvino", import_framework, driver.run_cell)
