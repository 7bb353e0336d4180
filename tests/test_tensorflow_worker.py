"""The TensorFlow worker: every model learns on the CPU, counts match the specs to the unit,
precisions and XLA run (or skip with a reason), the step function traces once."""
import json
import subprocess
import sys

import pytest

from workerutil import WORKERS, result_of, run_worker, worker_env

sys.path.insert(0, str(WORKERS))
import jax_worker  # noqa: E402  (its loss-scale constants only: jax is not imported)
import specs  # noqa: E402

pytestmark = pytest.mark.framework  # every test here starts a real ML framework

# Sizes chosen so one run takes a few seconds on a CPU and accuracy lands clearly above chance.
LEARNS = {
    "mlp": (dict(train_samples=2048, eval_samples=256, batch_size=32), 0.3),        # chance 0.1
    "cnn": (dict(train_samples=2048, eval_samples=256, batch_size=32, epochs=3), 0.3),  # 0.1
    "lstm": (dict(train_samples=1024, eval_samples=256, batch_size=32, epochs=2), 0.4),  # 0.25
    "transformer": (dict(train_samples=512, eval_samples=128, batch_size=32, epochs=2),
                    3 / 64),  # next-token chance 1/64
    "vit": (dict(train_samples=512, eval_samples=128, batch_size=16, epochs=2), 0.25),  # 0.1
}


def _steady_state_is_not_tracing(train: dict) -> None:
    steps = sorted(train["step_times_s"])
    median = steps[len(steps) // 2]
    assert median < train["first_step_s"] / 3, (median, train["first_step_s"])


@pytest.mark.parametrize("model", list(LEARNS))
def test_tiny_model_trains_evaluates_and_serves(tmp_path, model):
    overrides, floor = LEARNS[model]
    r = result_of(run_worker(tmp_path, "tensorflow", model, **overrides))
    spec = specs.model_spec(model, {"preset": "tiny"})
    assert r["params"] == specs.count_params(spec)
    assert r["eval"]["accuracy"] > floor, r["eval"]
    assert r["eval"]["samples"] == overrides["eval_samples"]
    train = r["train"]
    steps = overrides["train_samples"] // overrides["batch_size"]
    assert train["steps_per_epoch"] == steps
    total = steps * overrides.get("epochs", 1)
    assert train["steady_steps"] == total - 1 - min(10, total // 10)
    assert len(train["step_times_s"]) == len(train["steady_blocks"]) >= 1
    assert len(r["inference"]["latencies_s"]) == 5
    assert r["memory"]["peak_device_bytes"] is None  # CPU
    s = r["settings"]
    assert s["tf_function_traces"] == {"train_step": 1, "predict": 1, "evaluate": 1}
    assert s["threads"] == {"intra_op": 1, "inter_op": 1}
    assert s["tf32"] is False and s["jit_compile"] is False
    assert s["precision_policy"] == "float32" and s["loss_scaling"] is None
    _steady_state_is_not_tracing(train)


_COUNT_ALL = """
import json, sys
sys.path.insert(0, sys.argv[1])
import specs, tensorflow_worker as w
w.import_framework()
req = {"precision": "fp32", "device": "cpu", "threads": 1, "tf32": False, "options": {}}
out = {}
for model, presets in specs.PRESETS.items():
    for preset in presets:
        spec = specs.model_spec(model, {"preset": preset})
        out[f"{model}/{preset}"] = w.TensorFlowBackend(req).count_parameters_abstract(spec)
print(json.dumps(out))
"""


def test_parameter_counts_equal_the_specs_for_every_preset():
    proc = subprocess.run([sys.executable, "-c", _COUNT_ALL, str(WORKERS)], capture_output=True,
                          text=True, timeout=120, env=worker_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    for model, presets in specs.PRESETS.items():
        for preset in presets:
            spec = specs.model_spec(model, {"preset": preset})
            assert counts[f"{model}/{preset}"] == specs.count_params(spec), (model, preset)


@pytest.mark.parametrize("model,preset", sorted(specs.PUBLISHED_PARAMS))
def test_count_mode_reproduces_published_counts(tmp_path, model, preset):
    r = result_of(run_worker(tmp_path, "tensorflow", model, mode="count",
                             model_options={"preset": preset}))
    spec = specs.model_spec(model, {"preset": preset})
    assert r["params"] == specs.count_params(spec)
    assert r["params"]["trainable"] == specs.PUBLISHED_PARAMS[(model, preset)]


@pytest.mark.parametrize("model,precision,policy", [("transformer", "bf16", "mixed_bfloat16"),
                                                    ("lstm", "fp16", "mixed_float16"),
                                                    ("cnn", "fp16", "mixed_float16")])
def test_reduced_precision_runs_or_skips_with_a_reason(tmp_path, model, precision, policy):
    msgs = run_worker(tmp_path, "tensorflow", model, precision=precision)
    if msgs[-1]["type"] == "skip":
        assert precision in msgs[-1]["reason"] or "cpu" in msgs[-1]["reason"].lower()
        return
    r = result_of(msgs)
    s = r["settings"]
    assert s["precision_policy"] == policy  # never silently another precision
    assert s["loss_scaling"] == ("dynamic" if precision == "fp16" else None)
    # fp16 starts from the loss scale torch's GradScaler and the jax worker start from (Keras'
    # own 2^15 skips other steps than theirs: the gate saw the vit drift after two steps)
    assert s["loss_scale_init"] == (jax_worker.SCALE_INIT if precision == "fp16" else None)
    assert r["eval"]["loss"] == r["eval"]["loss"]  # finite, float32 loss
    assert r["params"] == specs.count_params(specs.model_spec(model, {"preset": "tiny"}))


def test_xla_jit_compile_runs_and_compiles_once(tmp_path):
    r = result_of(run_worker(tmp_path, "tensorflow", "mlp", options={"jit_compile": True}))
    assert r["settings"]["jit_compile"] is True and r["settings"]["compile"] == "xla"
    assert r["settings"]["tf_function_traces"]["train_step"] == 1
    # a batch index baked into the XLA program would recompile every step
    _steady_state_is_not_tracing(r["train"])
    assert max(r["inference"]["latencies_s"]) < r["train"]["first_step_s"] / 3


def test_unknown_option_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(AssertionError, match="bogus_knob") as info:
        run_worker(tmp_path, "tensorflow", "mlp", options={"bogus_knob": 1})
    assert "jit_compile" in str(info.value)  # the allowed keys are listed


def test_cuda_cell_without_a_gpu_is_skipped(tmp_path):
    msgs = run_worker(tmp_path, "tensorflow", "mlp", device="cuda:0")
    assert msgs[0]["type"] == "hello" and msgs[0]["framework_version"]
    assert msgs[-1]["type"] == "skip" and "cuda:0" in msgs[-1]["reason"]
