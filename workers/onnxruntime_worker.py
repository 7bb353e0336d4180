"""Worker: ONNX Runtime (CPU execution provider) serving a model exported from PyTorch.

An inference-only competitor (`{framework: onnxruntime, label: ort-from-torch, options:
{source: pytorch}}`): workers/exported.py builds the PyTorch model with the canonical weights and
exports it; this file loads the ONNX file into an InferenceSession and runs it. Threads: the
cell's count for intra-op parallelism, one inter-op thread, as every framework gets.
Option `provider`: auto (the CPU provider on the CPU, CUDA on a GPU), cpu, cuda, tensorrt. A GPU
provider this onnxruntime build lacks (the CPU wheel has none: onnxruntime-gpu has CUDA and
TensorRT) is a `device` skip naming what is available, and so is one the build lists but whose
libraries do not load (ONNX Runtime would otherwise fall back to the CPU silently); ONNX Runtime
places an operator its provider cannot run on the CPU provider, and the settings record the
providers the session got.
"""
from __future__ import annotations

import driver
import harness
from exported import ExportedBackend
from harness import DeviceUnusable, SkipCell

OPTIONS = {"source": "pytorch", "provider": "auto"}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
ort = None  # onnxruntime, imported by import_framework (timed)


class OrtBackend(ExportedBackend):
    name = "onnxruntime"
    OPTIONS = OPTIONS

    def check_device(self, device: str) -> None:
        p = self.options["provider"]
        if p not in ("auto", *PROVIDERS):
            raise ValueError(f"option 'provider' must be auto, {', '.join(PROVIDERS)}; got {p!r}")
        self.provider = ("cpu" if device == "cpu" else "cuda") if p == "auto" else p
        if (device == "cpu") != (self.provider == "cpu"):
            raise SkipCell(f"provider {self.provider} does not run on device {device}")
        have = ort.get_available_providers()
        if PROVIDERS[self.provider] not in have:
            raise DeviceUnusable(f"onnxruntime {ort.__version__} has no "
                                 f"{PROVIDERS[self.provider]} (available: {', '.join(have)}); "
                                 "install onnxruntime-gpu for CUDA and TensorRT")

    def _load(self, path: str) -> None:
        so = ort.SessionOptions()
        threads = int(self.request.get("threads") or 0)
        if threads > 0:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        chosen = PROVIDERS[getattr(self, "provider", "cpu")]
        if chosen != PROVIDERS["cpu"] and hasattr(ort, "preload_dlls"):
            # ONNX Runtime's documented way (1.21+) to find CUDA and cuDNN: torch's, already
            # loaded by the export in this process, else the nvidia-* packages of this venv
            ort.preload_dlls()
        providers = [chosen] + (["CPUExecutionProvider"] if chosen != PROVIDERS["cpu"] else [])
        self.session = ort.InferenceSession(path, so, providers=providers)
        got = self.session.get_providers()
        if chosen not in got:
            # listed as available, but its libraries did not load (a CUDA or TensorRT runtime
            # of another major version): ONNX Runtime falls back to the CPU with a log line;
            # measured, that would be a CPU figure under a GPU label
            raise DeviceUnusable(f"onnxruntime {ort.__version__} could not start {chosen} "
                                 f"(the session got {', '.join(got) or 'none'}); its CUDA, "
                                 "cuDNN or TensorRT libraries did not load")
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, x):
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def runtime_info(self) -> dict:
        session = getattr(self, "session", None)
        return {"framework_version": ort.__version__,
                "provider": PROVIDERS[getattr(self, "provider", "cpu")],
                "session_providers": session.get_providers() if session else None,
                "source_version": self.pt.torch.__version__}


def import_framework() -> dict:
    global ort
    import onnxruntime as _ort
    import onnxscript  # noqa: F401  (torch.onnx's exporter needs it: an ImportError skips)
    ort = _ort
    return {"framework_version": ort.__version__, "device_name": harness.cpu_name()}


if __name__ == "__main__":
    harness.main(OrtBackend, "onnxruntime", import_framework, driver.run_cell)
