"""The JAX/Flax worker: every model learns at tiny size, counts match the specs to the unit,
the train step compiles once, mixed precision runs or skips with a reason, bad cells are refused."""
import statistics
import sys

import numpy as np
import pytest

from workerutil import WORKERS, result_of, run_worker

sys.path.insert(0, str(WORKERS))
import jax_worker  # noqa: E402
import specs  # noqa: E402

# Sizes chosen so each model learns well above chance in a few seconds on one CPU thread.
LEARN = {
    "mlp": ({"train_samples": 1024, "epochs": 2, "batch_size": 32}, 0.3),          # 10 classes
    "cnn": ({"train_samples": 2048, "epochs": 3, "batch_size": 16}, 0.3),          # 10 classes
    "transformer": ({"train_samples": 1024, "epochs": 2, "batch_size": 32}, 3 / 64),  # vocab 64
    "lstm": ({"train_samples": 1024, "epochs": 5, "batch_size": 32}, 0.4),         # 4 classes
    "vit": ({"train_samples": 512, "epochs": 2, "batch_size": 16}, 0.25),          # 10 classes
}


@pytest.fixture(scope="module")
def jax_in_process():
    jax_worker.import_framework({"device": "cpu", "threads": 0, "tf32": False})
    return jax_worker


@pytest.mark.parametrize("model", list(LEARN))
def test_tiny_model_trains_evaluates_serves_and_compiles_once(tmp_path, model):
    sizes, min_acc = LEARN[model]
    r = result_of(run_worker(tmp_path, "jax", model, eval_samples=256, **sizes))
    spec = specs.model_spec(model, {"preset": "tiny"})
    assert r["params"] == specs.count_params(spec)
    assert r["eval"]["accuracy"] > min_acc, r["eval"]
    assert r["eval"]["samples"] == 256
    train = r["train"]
    steps = sizes["train_samples"] // sizes["batch_size"]
    total = steps * sizes["epochs"]  # first step and warm-up steps kept apart
    assert len(train["warmup_step_times_s"]) == min(10, total // 10)
    assert train["steady_steps"] == total - 1 - min(10, total // 10)
    assert len(train["step_times_s"]) == len(train["steady_blocks"]) >= 1
    # One compiled train step serves every batch; the first step pays for it.
    assert r["settings"]["train_step_compilations"] == 1
    assert train["first_step_s"] > 5 * statistics.median(train["step_times_s"])
    assert len(r["inference"]["latencies_s"]) == 5
    assert r["settings"]["compute_dtype"] == "float32" and r["settings"]["donate_state"]
    assert r["settings"]["threads"] == 1 and r["settings"]["thread_mechanism"] == "cpu affinity"
    assert r["memory"]["peak_device_bytes"] is None  # the CPU client keeps no allocator stats


@pytest.mark.parametrize("model,precision", [("mlp", "bf16"), ("transformer", "fp16")])
def test_mixed_precision_on_cpu_runs_or_skips_with_reason(tmp_path, model, precision):
    msgs = run_worker(tmp_path, "jax", model, precision=precision, **LEARN[model][0])
    if msgs[-1]["type"] == "skip":
        assert precision in msgs[-1]["reason"]
        return
    r = result_of(msgs)
    s = r["settings"]
    assert s["precision"] == precision and s["param_dtype"] == "float32"
    assert s["compute_dtype"] == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert (s["loss_scaling"] is not None) == (precision == "fp16")
    assert r["eval"]["accuracy"] > LEARN[model][1]


@pytest.mark.parametrize("model,preset", sorted(specs.PUBLISHED_PARAMS))
def test_mode_count_reproduces_published_sizes(tmp_path, model, preset):
    r = result_of(run_worker(tmp_path, "jax", model, mode="count",
                             model_options={"preset": preset}))
    assert r["params"]["trainable"] == specs.PUBLISHED_PARAMS[(model, preset)]
    assert r["params"] == specs.count_params(specs.model_spec(model, {"preset": preset}))


def test_abstract_counts_equal_specs_for_every_preset(jax_in_process):
    backend = jax_in_process.JaxBackend({"device": "cpu", "precision": "fp32", "options": {},
                                         "seed": 0})
    for model, presets in specs.PRESETS.items():
        for preset in presets:
            spec = specs.model_spec(model, {"preset": preset})
            assert backend.count_parameters_abstract(spec) == specs.count_params(spec), preset


def test_explicit_attention_equals_fused(jax_in_process):
    jax, jnp = jax_in_process.jax, jax_in_process.jnp
    q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 5, 3, 4)) for i in range(3))
    fused = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(jax_in_process._explicit_attention(q, k, v), fused,
                               rtol=1e-5, atol=1e-5)
    assert jnp.isfinite(fused).all()


def test_fp16_overflow_skips_the_step_and_halves_the_scale(jax_in_process):
    jnp = jax_in_process.jnp
    req = {"device": "cpu", "precision": "fp16", "options": {}, "seed": 0, "batch_size": 8}
    backend = jax_in_process.JaxBackend(req)
    spec = specs.model_spec("mlp", {"preset": "tiny", "hidden": [4]})
    backend.build_model(spec)
    backend.load_data(specs.make_dataset(spec, {"seed": 0, "train_samples": 16,
                                                "eval_samples": 8}))
    before = np.asarray(backend.state["params"]["Dense_0"]["kernel"]).copy()
    backend.state["scale"] = jnp.float32(1e38)  # the scaled loss overflows: grads not finite
    backend.sync(backend.train_step(0))
    assert int(backend.state["skipped"]) == 1
    assert float(backend.state["scale"]) == float(np.float32(1e38)) / 2
    np.testing.assert_array_equal(backend.state["params"]["Dense_0"]["kernel"], before)
    backend.state["scale"] = jnp.float32(2.0 ** 16)  # a sane scale steps again
    backend.sync(backend.train_step(1))
    assert int(backend.state["skipped"]) == 1
    assert not np.array_equal(backend.state["params"]["Dense_0"]["kernel"], before)


def test_unknown_option_is_an_error_naming_it_and_the_allowed_ones(tmp_path):
    with pytest.raises(AssertionError, match=r"unknown jax option 'bogus'; allowed: donate"):
        run_worker(tmp_path, "jax", "mlp", options={"bogus": 1})


def test_no_donation_option_still_trains(tmp_path):
    r = result_of(run_worker(tmp_path, "jax", "mlp", options={"donate": False}))
    assert r["settings"]["donate_state"] is False


def test_cuda_cell_without_gpu_is_skipped_naming_the_device(tmp_path):
    msgs = run_worker(tmp_path, "jax", "mlp", device="cuda:0")
    assert msgs[-1]["type"] == "skip" and "cuda:0" in msgs[-1]["reason"]
