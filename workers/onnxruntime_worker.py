"""Worker: ONNX Runtime (CPU execution provider) serving a model exported from PyTorch.

An inference-only competitor (`{framework: onnxruntime, label: ort-from-torch, options:
{source: pytorch}}`): workers/exported.py builds the PyTorch model with the canonical weights and
exports it; this file loads the ONNX file into an InferenceSession and runs it. Threads: the
cell's count for intra-op parallelism, one inter-op thread, as every framework gets.
"""
from __future__ import annotations

import harness
from exported import ExportedBackend

OPTIONS = {"source": "pytorch"}
ort = None  # onnxruntime, imported by import_framework (timed)


class OrtBackend(ExportedBackend):
    name = "onnxruntime"

    def _load(self, path: str) -> None:
        so = ort.SessionOptions()
        threads = int(self.request.get("threads") or 0)
        if threads > 0:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, x):
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def runtime_info(self) -> dict:
        return {"framework_version": ort.__version__, "provider": "CPUExecutionProvider",
                "source_version": self.pt.torch.__version__}


def import_framework() -> dict:
    global ort
    import onnxruntime as _ort
    import onnxscript  # noqa: F401  (torch.onnx's exporter needs it: an ImportError skips)
    ort = _ort
    return {"framework_version": ort.__version__, "device_name": harness.cpu_name()}


if __name__ == "__main__":
    harness.main(OrtBackend, "onnxruntime", import_framework)
