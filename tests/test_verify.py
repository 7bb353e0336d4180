"""The equivalence gate: every framework runs the same model (same canonical weights, batches,
outputs, losses and counts) for every model on the CPU, and a deliberately altered model fails.

Real worker processes (one per framework, all models in it), tiny presets, two threads."""
import json
import math
import sys

import pytest

from mlbench import verify
from mlbench.config import Config
from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import specs  # noqa: E402
import weights  # noqa: E402

FRAMEWORKS = ["pytorch", "tensorflow", "jax"]
TINY = [{"name": m, "preset": "tiny"} for m in ("mlp", "cnn", "transformer", "lstm")]


def _config(models=TINY, precisions=("fp32",)) -> Config:
    return Config(frameworks=FRAMEWORKS, models=models, batch_sizes=[16],
                  precisions=list(precisions), threads=2, timeout_s=300)


@pytest.fixture(scope="module")
def passing(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify")
    return out, verify.verify_models(_config(), out)


def test_gate_passes_for_every_model_in_every_framework(passing):
    out, report = passing
    rows = {(r.model, r.framework): r for r in report.rows}
    assert set(rows) == {(m["name"], f) for m in TINY for f in FRAMEWORKS}, report.render_text()
    for r in report.rows:
        assert r.passed is True, report.render_text()
        assert r.params_equal and r.data_hash_equal
        assert r.max_abs_err is not None and r.max_abs_err < 1e-4
    assert report.passed and not report.failed_cells()
    assert {r.reference for r in report.rows if r.model == "mlp"} == {"numpy"}
    # every pair of frameworks is compared, and the stored file says the same
    assert len(report.pairs) == 4 * 3 and all(p["agree"] for p in report.pairs)
    stored = json.loads((out / "verify.json").read_text())
    assert stored["passed"] is True and stored["tolerances"]["fp32"]["rtol"] == 5e-4
    assert verify.load(out / "verify.json").rows == report.rows
    text = report.render_text()
    assert "equivalence gate: passed" in text and "rtol 0.0005" in text


def test_gate_fails_when_one_framework_builds_another_model(tmp_path):
    # test-only knob: tensorflow's BN epsilon becomes Keras' default 1e-3, jax's LN epsilon
    # Flax's default 1e-6 (the framework defaults the specs override)
    models = [{"name": "cnn", "preset": "tiny"}, {"name": "transformer", "preset": "tiny"}]
    report = verify.verify_models(_config(models), tmp_path,
                                  perturb={"tensorflow": "bn_eps", "jax": "ln_eps"})
    verdict = {(r.model, r.framework): r for r in report.rows}
    assert verdict[("cnn", "tensorflow")].passed is False, report.render_text()
    assert "disagrees with jax, pytorch" in verdict[("cnn", "tensorflow")].reason
    assert verdict[("transformer", "jax")].passed is False, report.render_text()
    for key in [("cnn", "pytorch"), ("cnn", "jax"), ("transformer", "pytorch"),
                ("transformer", "tensorflow")]:
        assert verdict[key].passed is True, report.render_text()
    assert not report.passed
    assert report.failed_cells() == {("tensorflow", "cnn.tiny", "cpu", "fp32"),
                                     ("jax", "transformer.tiny", "cpu", "fp32")}
    assert not report.comparable("jax", "transformer.tiny", "cpu", "fp32")
    assert report.comparable("pytorch", "transformer.tiny", "cpu", "fp32")
    assert "FAILED for 2 cell(s)" in report.render_text()


@pytest.mark.parametrize("model", specs.MODELS)
def test_canonical_layout_covers_every_parameter_of_every_preset(model):
    # counted from the shapes alone: gpt2-small's 124M weights are never drawn here
    for preset in specs.PRESETS[model]:
        spec = specs.model_spec(model, {"preset": preset})
        total = sum(math.prod(shape) for _, shape, _ in weights.param_shapes(spec))
        counts = specs.count_params(spec)
        assert total == counts["trainable"] + counts["non_trainable"], (model, preset)


def test_canonical_weights_are_deterministic_and_seeded():
    spec = specs.model_spec("cnn", {"preset": "tiny"})
    a, b = weights.canonical_params(spec, 0), weights.canonical_params(spec, 0)
    assert weights.params_hash(a) == weights.params_hash(b)
    assert weights.params_hash(a) != weights.params_hash(weights.canonical_params(spec, 1))
    assert all(v.dtype.name == "float32" for v in a.values())
    assert (a["bn0.var"] == 1).all()  # plain init: identity norms
    assert not (weights.canonical_params(spec, 0, exercise=True)["bn0.var"] == 1).all()


def test_benchmark_mode_can_start_every_framework_from_the_canonical_weights(tmp_path):
    # request `init: canonical`: the same starting point, so the same training trajectory
    from workerutil import result_of, run_worker
    losses = [result_of(run_worker(tmp_path, fw, "mlp", init="canonical",
                                   train_samples=64, eval_samples=32))["train"]["epoch_loss_means"][0]
              for fw in ("numpy", "pytorch")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
