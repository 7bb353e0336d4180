"""Worker side: an exported model served by an inference-only runtime (ONNX Runtime, OpenVINO).

Owns the part the runtimes share: the source framework's model (PyTorch's builders and
canonical-weight loaders, imported from workers/pytorch_worker.py, never copied) built and given
the canonical weights, exported with torch.onnx (its current, dynamo-based exporter) at the
cell's batch size (static shapes: the server scenario pads to it), the export timed apart
(`export_s`, like compile time), and the runtime's forward pass on the eval batches. Training is
not the runtime's: a benchmark cell skips it (`training: skipped: inference-only runtime` in its
settings); in the equivalence gate the source framework takes the K training steps and the model
is exported again, so that the outputs after them are still the runtime's. A runtime subclass
implements `_load(path)` and `_run(x)`. Standard library at import time (numpy, torch lazily).
"""
from __future__ import annotations

import os
import tempfile
import time

from harness import FrameworkInterface, SkipCell

SOURCES = ("pytorch",)  # exporters wired; tf2onnx / jax2onnx are not (README: Serving)
SKIPPED = "skipped: inference-only runtime"


class ExportedBackend(FrameworkInterface):
    """A runtime serving the PyTorch model exported to ONNX. Subclasses: `_load`, `_run`,
    `runtime_info`, `name`, `OPTIONS` (the worker's options and defaults), and `check_device`
    for a device other than the CPU."""
    OPTIONS: dict = {"source": "pytorch"}

    def __init__(self, request: dict):
        super().__init__(request)
        opts = dict(request.get("options") or {})
        unknown = sorted(set(opts) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f"unknown {self.name} option(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(self.OPTIONS)}")
        self.options = {**self.OPTIONS, **opts}
        self.source = self.options["source"]
        import pytorch_worker
        pytorch_worker.import_framework()  # sets the module's torch globals
        self.pt = pytorch_worker
        # the source model lives on the CPU whatever the runtime's device: it is only built,
        # given the weights and exported (and, in the gate, trained)
        self.src = pytorch_worker.TorchBackend({**request, "options": {}, "device": "cpu"})
        self.export_s: list[float] = []
        self._stale = True
        self._dir = tempfile.mkdtemp(prefix=f"mlbench-{self.name}-")

    # --- what the runtimes implement ------------------------------------------------------
    def _load(self, path: str) -> None:
        raise NotImplementedError

    def _run(self, x):
        raise NotImplementedError

    def runtime_info(self) -> dict:
        raise NotImplementedError

    # --- FrameworkInterface -----------------------------------------------------------------
    def framework_info(self) -> dict:
        import harness
        return {**self.runtime_info(), "device_name": harness.cpu_name()}

    def check_supported(self) -> None:
        if self.source not in SOURCES:
            raise SkipCell(f"export from {self.source} is not wired (only torch.onnx from "
                           "pytorch); no tf2onnx / jax2onnx run here")
        self.check_device(str(self.request.get("device", "cpu")))
        if self.request.get("precision", "fp32") != "fp32":
            raise SkipCell(f"{self.name} serves the fp32 export only")
        if self.request.get("model") == "user":
            raise SkipCell(f"{self.name} exports the built-in models only")

    def check_device(self, device: str) -> None:
        """Raise SkipCell (DeviceUnusable for a GPU the runtime cannot use) unless it runs
        on `device`. The default: the CPU only."""
        if device != "cpu":
            raise SkipCell(f"{self.name} runs on the CPU only here")

    def build_model(self, spec: dict) -> None:
        self.spec = spec
        self.src.build_model(spec)
        self._stale = True

    def count_parameters(self) -> dict:
        return self.src.count_parameters()

    def count_parameters_abstract(self, spec: dict) -> dict:
        return self.src.count_parameters_abstract(spec)

    def load_canonical(self, params: dict) -> None:
        self.src.load_canonical(params)
        self._stale = True

    def load_data(self, data: dict) -> None:
        import numpy as np
        self.src.load_data(data)
        self.bs = int(self.request["batch_size"])
        # the inputs exactly as the torch model takes them (NCHW images, int64 tokens), on the
        # host once: a call feeds a view, no conversion in the timed path
        self.x_eval = np.ascontiguousarray(self.src.x_eval.cpu().numpy())
        self.y_eval = self.src.y_eval.cpu().numpy()
        self.n_batches = max(1, len(self.y_eval) // self.bs)
        self._export()

    def _export(self) -> None:
        """Export the source model as it is now (eval mode) and load it into the runtime."""
        import torch
        path = os.path.join(self._dir, f"model{len(self.export_s)}.onnx")
        model = self.src.model
        model.eval()
        self.src.training_mode = False
        x = torch.from_numpy(self._batch(0))
        t0 = time.perf_counter()
        torch.onnx.export(model, (x,), path, dynamo=True, verbose=False)
        self._load(path)
        self.export_s.append(time.perf_counter() - t0)
        self._stale = False

    def _batch(self, index: int):
        import numpy as np
        x = self.x_eval[index * self.bs:(index + 1) * self.bs]
        if len(x) < self.bs:  # static shape: pad the last rows (dropped from the output)
            pad = np.zeros((self.bs - len(x), *x.shape[1:]), x.dtype)
            x = np.concatenate([x, pad])
        return x

    def predict(self, batch_index: int):
        if self._stale:  # the gate's source framework trained: serve the new weights
            self._export()
        return self._run(self._batches[batch_index % self.n_batches])

    @property
    def _batches(self) -> list:
        b = self.__dict__.get("_cache")
        if b is None:
            b = self.__dict__["_cache"] = [self._batch(i) for i in range(self.n_batches)]
        return b

    def sync(self, value):
        return value  # the runtime's call returns when its outputs are computed

    def to_numpy(self, output):
        import numpy as np
        return np.asarray(output, dtype=np.float32)

    def evaluate(self) -> dict:
        """Loss and accuracy of the runtime's outputs over the eval split (numpy)."""
        import numpy as np
        if self._stale:
            self._export()
        n = len(self.y_eval)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, self.bs):
            y = self.y_eval[start:start + self.bs]
            out = np.asarray(self._run(self._batch(start // self.bs)), np.float64)[:len(y)]
            logits = out.reshape(-1, out.shape[-1])
            z = logits - logits.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            flat = y.reshape(-1)
            loss_sum += float(-logp[np.arange(len(flat)), flat].sum())
            correct += int((logits.argmax(axis=1) == flat).sum())
        count = self.y_eval.size  # samples, or tokens for the transformer
        return {"loss": loss_sum / count, "accuracy": correct / count}

    def train_step(self, batch_index: int):
        """The gate's training steps only: the source framework's (then exported again)."""
        self._stale = True
        return self.src.train_step(batch_index)

    def train_epoch(self, epoch: int, steps: int, rec) -> tuple[float, None]:
        return 0.0, None  # inference-only: no training phase (settings say so)

    def measure_more(self, *args, **kwargs) -> None:
        """No extra training blocks either: there is no training to measure."""

    def received_batch(self, split: str, index: int) -> tuple:
        return self.src.received_batch(split, index)

    def benchmark_inference(self, n_batches: int, warmup: int, iterations: int,
                            *args, **kwargs) -> dict:
        out = super().benchmark_inference(n_batches, warmup, iterations, *args, **kwargs)
        out["export_s"] = self.export_s[0] if self.export_s else None
        return out

    def settings(self) -> dict:
        return {"training": SKIPPED, "source": self.source, "exporter": "torch.onnx (dynamo)",
                "export_s": self.export_s[0] if self.export_s else None,
                "threads": int(self.request.get("threads") or 0), "precision": "fp32",
                **self.runtime_info()}
