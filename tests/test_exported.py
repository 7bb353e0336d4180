"""The exported runtimes (workers/exported.py: ONNX Runtime, OpenVINO) against PyTorch, their
source, through the workers' own protocol: the gate's verify answer (outputs before and after
the K training steps, compared here with numpy at fp32's tolerance), a benchmark cell (training
skipped, export time apart, the serving scenarios), and what they refuse. Tiny sizes."""
from __future__ import annotations

import numpy as np
import pytest

from workerutil import result_of, run_worker

pytestmark = pytest.mark.framework  # every test here starts a real ML framework

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("onnxscript")

FP32 = {"rtol": 5e-4, "atol": 1e-4}  # mlbench.analysis.gate_verdicts.TOLERANCES["fp32"]
MODELS = [{"key": "mlp", "model": "mlp", "model_options": {"preset": "tiny"}},
          {"key": "cnn", "model": "cnn", "model_options": {"preset": "tiny"}}]


def _verify(tmp_path, framework):
    out = tmp_path / framework
    out.mkdir()
    msgs = run_worker(tmp_path, framework, "mlp", mode="verify", batch_size=8, verify_steps=2,
                      verify_dir=str(out), models=MODELS)
    return result_of(msgs)["models"]


@pytest.fixture(scope="module")
def torch_verify(tmp_path_factory):
    return _verify(tmp_path_factory.mktemp("pt"), "pytorch")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_exported_outputs_match_pytorch_before_and_after_the_steps(tmp_path, runtime,
                                                                   torch_verify):
    got = _verify(tmp_path, runtime)
    for key in ("mlp", "cnn"):
        a, ref = got[key], torch_verify[key]
        assert a["status"] == "ok", a
        assert a["params"] == ref["params"] and a["batches_hash"] == ref["batches_hash"]
        assert a["weights_hash"] == ref["weights_hash"]
        with np.load(a["outputs"]) as x, np.load(ref["outputs"]) as r:
            for k in ("out_before", "out_after"):
                assert np.allclose(x[k], r[k], **FP32), (key, k, np.abs(x[k] - r[k]).max())
            # the steps changed the model: the runtime served the re-exported weights
            assert not np.allclose(x["out_before"], x["out_after"], **FP32)
        assert a["loss_before"] == pytest.approx(ref["loss_before"], rel=5e-4, abs=1e-4)
        assert a["loss_after"] == pytest.approx(ref["loss_after"], rel=5e-4, abs=1e-4)
        assert a["settings"]["training"] == "skipped: inference-only runtime"


def test_benchmark_cell_skips_training_reports_export_and_serves(tmp_path):
    serving = {"scenarios": ["offline", "single_stream", "server"],
               "single_stream": {"queries": 20},
               "server": {"latency_bound_ms": 50, "trial_s": 0.05, "min_queries": 100,
                          "max_trials": 2, "budget_s": 10}}
    m = result_of(run_worker(tmp_path, "onnxruntime", "mlp", batch_size=1, train_samples=16,
                             eval_samples=16, serving=serving,
                             options={"source": "pytorch"}))
    assert m["settings"]["training"] == "skipped: inference-only runtime"
    assert m["train"]["first_step_s"] is None and m["train"]["steady_blocks"] == []
    assert m["inference"]["export_s"] > 0 and m["settings"]["export_s"] > 0
    assert len(m["serving"]["single_stream"]["latencies_s"]) == 20
    assert len(m["serving"]["server"]["trials"]) == 2
    assert 0 <= m["eval"]["accuracy"] <= 1  # the canonical (untrained) weights, served


@pytest.mark.parametrize("overrides, words", [
    ({"precision": "bf16"}, "fp32 export only"),
    ({"options": {"source": "tensorflow"}}, "export from tensorflow is not wired"),
])
def test_what_a_runtime_refuses_is_a_skip_with_the_reason(tmp_path, overrides, words):
    msgs = run_worker(tmp_path, "openvino", "mlp", **overrides)
    assert msgs[-1]["type"] == "skip" and words in msgs[-1]["reason"]


@pytest.mark.parametrize("device, provider, kind, words", [
    ("cuda:0", "tensorrt", "device", "no TensorrtExecutionProvider (available: "),
    ("cuda:0", "auto", "device", "no CUDAExecutionProvider (available: "),
    ("cpu", "cuda", None, "provider cuda does not run on device cpu"),
])
def test_gpu_providers_at_their_seam(tmp_path, device, provider, kind, words):
    """The CPU wheel of onnxruntime has no GPU provider: a GPU cell asking for one is a `device`
    skip naming what the build has (the parent makes it a failure where NVML sees the GPU)."""
    import onnxruntime
    want = {"tensorrt": "TensorrtExecutionProvider", "auto": "CUDAExecutionProvider"}
    if want.get(provider) in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has {want[provider]}: the GPU check runs it")
    msgs = run_worker(tmp_path, "onnxruntime", "mlp", device=device,
                      options={"source": "pytorch", "provider": provider})
    assert msgs[-1]["type"] == "skip" and words in msgs[-1]["reason"], msgs[-1]
    assert msgs[-1].get("kind") == kind


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_a_gpu_provider_whose_libraries_do_not_load_is_refused_not_served_on_the_cpu(
        monkeypatch, provider):
    """onnxruntime-gpu lists its CUDA and TensorRT providers even where their libraries cannot
    load; the session then falls back to the CPU with a log line. The worker refuses such a
    session (a `device` skip: a failure where NVML sees the GPU), and keeps one that got it."""
    import types

    import onnxruntime_worker as w
    chosen = w.PROVIDERS[provider]

    def fake_ort(got: list[str]):
        class Session:
            def __init__(self, path, options, providers):
                assert providers == [chosen, "CPUExecutionProvider"]

            def get_providers(self):
                return got

            def get_inputs(self):
                return [types.SimpleNamespace(name="x")]

            get_outputs = get_inputs
        return types.SimpleNamespace(
            __version__="9.9.9", SessionOptions=types.SimpleNamespace,
            GraphOptimizationLevel=types.SimpleNamespace(ORT_ENABLE_ALL=99),
            InferenceSession=Session)

    backend = object.__new__(w.OrtBackend)
    backend.request, backend.provider = {"threads": 2}, provider
    monkeypatch.setattr(w, "ort", fake_ort(["CPUExecutionProvider"]))
    with pytest.raises(w.DeviceUnusable) as exc:
        backend._load("model.onnx")
    assert f"could not start {chosen} (the session got CPUExecutionProvider)" in str(exc.value)
    assert exc.value.kind == "device"
    monkeypatch.setattr(w, "ort", fake_ort([chosen, "CPUExecutionProvider"]))
    backend._load("model.onnx")  # the provider started: served by it
    assert backend.session.get_providers()[0] == chosen
