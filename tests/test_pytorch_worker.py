"""The PyTorch worker: every model learns at preset tiny on the CPU, counts match the specs to
the unit, precisions run or skip with a reason, bad options and absent devices are reported."""
import math
import sys

import pytest

from workerutil import WORKERS, result_of, run_worker

sys.path.insert(0, str(WORKERS))
import pytorch_worker  # noqa: E402
import specs  # noqa: E402

pytestmark = pytest.mark.framework  # every test here starts a real ML framework

pytorch_worker.import_framework()  # binds torch in the module, as the harness does

# Samples/epochs each tiny model needs to land clearly above chance (the bar) in a few seconds.
LEARN = {
    "mlp": ({"train_samples": 512, "epochs": 2}, 0.3),  # 10 classes
    "cnn": ({"train_samples": 2048, "epochs": 3}, 0.3),  # 10 classes
    "lstm": ({"train_samples": 1024, "epochs": 2}, 0.4),  # 4 classes
    "transformer": ({"train_samples": 512, "epochs": 2}, 3 / 64),  # next token, vocab 64
    "vit": ({"train_samples": 512, "epochs": 2}, 0.25),  # 10 classes
}


@pytest.mark.parametrize("model", sorted(LEARN))
def test_tiny_model_trains_evaluates_serves_and_learns(tmp_path, model):
    overrides, bar = LEARN[model]
    r = result_of(run_worker(tmp_path, "pytorch", model, eval_samples=128, **overrides))
    spec = specs.model_spec(model, {"preset": "tiny"})
    assert r["params"] == specs.count_params(spec)
    assert r["eval"]["accuracy"] > bar, r["eval"]
    assert math.isfinite(r["eval"]["loss"])
    steps = overrides["train_samples"] // 16
    total = overrides["epochs"] * steps
    assert r["train"]["steady_steps"] == total - 1 - min(10, total // 10)
    assert len(r["train"]["step_times_s"]) == len(r["train"]["steady_blocks"]) >= 1
    assert r["train"]["epoch_loss_means"][-1] < r["train"]["epoch_loss_means"][0]
    assert len(r["inference"]["latencies_s"]) == 5
    assert r["memory"]["peak_device_bytes"] is None  # cpu
    s = r["settings"]
    assert s["precision"] == "fp32" and s["autocast_dtype"] is None and s["threads"] == 1
    assert s["compile"] == "none" and s["matmul_precision"] == "highest"


@pytest.mark.parametrize("model", specs.MODELS)
def test_every_preset_counts_like_the_spec(model):
    for preset in specs.PRESETS[model]:
        spec = specs.model_spec(model, {"preset": preset})
        backend = pytorch_worker.TorchBackend({"device": "cpu", "precision": "fp32",
                                               "options": {}, "threads": 0, "seed": 0})
        assert backend.count_parameters_abstract(spec) == specs.count_params(spec), preset
        if preset in ("tiny", "small"):  # the real (allocated) model counts the same
            real = pytorch_worker.count_module(pytorch_worker.build_model(spec))
            assert real == specs.count_params(spec), preset


@pytest.mark.parametrize("model,preset", sorted(specs.PUBLISHED_PARAMS))
def test_count_mode_reproduces_published_counts(tmp_path, model, preset):
    msgs = run_worker(tmp_path, "pytorch", model, mode="count", model_options={"preset": preset})
    r = result_of(msgs)
    assert r["params"]["trainable"] == specs.PUBLISHED_PARAMS[(model, preset)]
    assert r["params"] == specs.count_params(specs.model_spec(model, {"preset": preset}))
    assert msgs[0]["type"] == "hello" and msgs[0]["framework_version"].startswith("2.")


def test_lstm_keeps_one_bias_per_layer():
    spec = specs.model_spec("lstm", {"preset": "small"})
    model = pytorch_worker.build_model(spec)
    for name, p in model.lstm.named_parameters():
        if name.startswith("bias_hh"):
            assert not p.requires_grad and not p.any()


# conv and attention under bf16; fp16 where CPU kernels exist (mlp) and where they may not (lstm)
@pytest.mark.parametrize("precision,model", [("bf16", "cnn"), ("bf16", "transformer"),
                                             ("fp16", "mlp"), ("fp16", "lstm"), ("bf16", "vit")])
def test_mixed_precision_on_cpu_runs_or_skips_with_a_reason(tmp_path, precision, model):
    msgs = run_worker(tmp_path, "pytorch", model, precision=precision, train_samples=64,
                      eval_samples=32, timed_iterations=2)
    if msgs[-1]["type"] == "skip":
        assert precision in msgs[-1]["reason"] and "cpu" in msgs[-1]["reason"]
        return
    r = result_of(msgs)
    s = r["settings"]
    assert s["precision"] == precision  # never silently another precision
    assert s["autocast_dtype"] == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert s["grad_scaler"] == (precision == "fp16")
    assert all(math.isfinite(x) for x in r["train"]["epoch_loss_means"])


def test_unknown_option_names_the_key_and_the_allowed_ones(tmp_path):
    with pytest.raises(AssertionError) as err:
        run_worker(tmp_path, "pytorch", "mlp", options={"turbo": True})
    text = str(err.value)
    assert "'turbo'" in text and "compile" in text and "channels_last" in text


def test_cuda_cell_without_a_gpu_is_skipped_naming_the_device(tmp_path):
    msgs = run_worker(tmp_path, "pytorch", "mlp", device="cuda:0")
    assert msgs[-1]["type"] == "skip", msgs[-1]
    assert "cuda:0" in msgs[-1]["reason"] and "not present" in msgs[-1]["reason"]


def test_compile_option_runs_the_mlp(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold compile
    r = result_of(run_worker(tmp_path, "pytorch", "mlp", options={"compile": True},
                             train_samples=48, eval_samples=16, warmup_iterations=1,
                             timed_iterations=2))
    assert r["settings"]["compile"] == "default"
    assert r["train"]["first_step_s"] > max(r["train"]["step_times_s"])  # compile kept apart
    assert math.isfinite(r["eval"]["loss"])


def _vit_numpy(spec: dict, w: dict, x):
    """The ViT of workers/models/vit.py written out in numpy (float64) from the canonical
    weights: patches in row-major order, class token first, no causal mask, tanh GELU."""
    import numpy as np
    p, d, h, eps = spec["patch_size"], spec["d_model"], spec["n_heads"], spec["ln_eps"]
    b, s, _, c = x.shape
    g = s // p
    patches = x.reshape(b, g, p, g, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, g * g, -1)
    t = patches @ w["patch.kernel"].reshape(p * p * c, d) + w["patch.bias"]
    t = np.concatenate([np.broadcast_to(w["cls"], (b, 1, d)), t], axis=1) + w["pos"]

    def ln(z, n):
        return ((z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps)
                * w[f"{n}.gamma"] + w[f"{n}.beta"])

    def lin(z, n):
        return z @ w[f"{n}.kernel"] + w[f"{n}.bias"]

    def heads(z):
        return z.reshape(b, -1, h, d // h).transpose(0, 2, 1, 3)

    for i in range(spec["n_layers"]):
        q, k, v = (heads(a) for a in np.split(lin(ln(t, f"block{i}.ln1"), f"block{i}.qkv"), 3, -1))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // h)
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att = (att / att.sum(-1, keepdims=True)) @ v
        t = t + lin(att.transpose(0, 2, 1, 3).reshape(b, -1, d), f"block{i}.proj")
        f = lin(ln(t, f"block{i}.ln2"), f"block{i}.fc")
        f = 0.5 * f * (1 + np.tanh(np.sqrt(2 / np.pi) * (f + 0.044715 * f ** 3)))
        t = t + lin(f, f"block{i}.out")
    return lin(ln(t, "ln_f")[:, 0], "head")


def test_vit_is_the_model_its_module_describes():
    # the gate proves the frameworks agree with each other; this pins what they agree on: the
    # canonical weights in a numpy ViT written from models/vit.py give torch's logits
    import numpy as np
    import weights
    spec = specs.model_spec("vit", {"preset": "tiny", "n_layers": 2})
    w = weights.canonical_params(spec, 0, exercise=True)
    model = pytorch_worker.build_model(spec).eval()
    pytorch_worker.load_canonical(model, spec, w)
    x = np.random.default_rng(0).standard_normal((3, *specs.input_shape(spec)[0]))
    with pytorch_worker.torch.no_grad():
        got = model(pytorch_worker.torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).numpy()
    want = _vit_numpy(spec, {k: v.astype(np.float64) for k, v in w.items()}, x)
    assert got.shape == (3, spec["num_classes"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
