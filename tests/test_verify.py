"""The equivalence gate: every framework runs the same model (same canonical weights, batches,
outputs, losses and counts) for every model on the CPU, and a deliberately altered model fails.

Real worker processes (one per framework, all models in it), tiny presets. The passing gate is
the one the session's real sweep ran (conftest.py `real_sweep`)."""
import json
import math
import sys

import pytest

from mlbench.run import gate
from mlbench.analysis import gate_verdicts
from mlbench.config.schema import Config
from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import gate as worker_gate  # noqa: E402  (workers/gate.py: the worker side)
import specs  # noqa: E402
import weights  # noqa: E402

pytestmark = pytest.mark.framework  # every test here starts a real ML framework

FRAMEWORKS = ["pytorch", "tensorflow", "jax"]
TINY = [{"name": m, "preset": "tiny"} for m in ("mlp", "cnn", "transformer", "lstm", "vit")]


def _config(models=TINY, precisions=("fp32",)) -> Config:
    return Config(frameworks=FRAMEWORKS, models=models, batch_sizes=[16],
                  precisions=list(precisions), threads=2, timeout_s=300)


@pytest.fixture(scope="module")
def passing(real_sweep):
    """The gate that the session's real sweep ran (conftest.py: every model and framework,
    through `mlbench run`), as it returned it and as it stored it."""
    assert real_sweep.gate is not None, real_sweep.out[-3000:]
    return real_sweep.results, real_sweep.gate, real_sweep.models


def test_gate_passes_for_every_model_in_every_framework(passing):
    out, report, models = passing
    rows = {(r.model, r.framework): r for r in report.rows}
    assert set(rows) == {(m, f) for m in models for f in FRAMEWORKS}, report.render_text()
    for r in report.rows:
        assert r.passed is True, report.render_text()
        assert r.params_equal and r.data_hash_equal
        assert r.max_abs_err is not None and r.max_abs_err < 1e-4
    assert report.passed and not report.failed_cells()
    assert {r.reference for r in report.rows if r.model == "mlp"} == {"numpy"}
    # measured against another implementation: a framework compared with itself gives exactly 0
    assert any(r.max_abs_err > 0 for r in report.rows if r.model == "mlp"), report.render_text()
    # every pair of frameworks is compared, and the stored file says the same
    assert len(report.pairs) == len(models) * 3 and all(p["agree"] for p in report.pairs)
    stored = json.loads((out / "verify.json").read_text())
    assert stored["passed"] is True and stored["tolerances"]["fp32"]["rtol"] == 5e-4
    assert gate_verdicts.load(out / "verify.json").rows == report.rows
    text = report.render_text()
    assert "equivalence gate: passed" in text and "rtol 0.0005" in text


def test_vit_passes_the_gate_in_pytorch_tensorflow_and_jax_at_fp32(passing):
    # the model added as one module + one builder per framework: the same outputs, losses and
    # counts in all three (judged pairwise: the numpy reference is the mlp's only)
    _, report, models = passing
    if "vit" not in models:
        pytest.skip("MLBENCH_TEST_SWEEP narrowed the shared sweep to the mlp")
    rows = {r.framework: r for r in report.rows if r.model == "vit"}
    assert set(rows) == set(FRAMEWORKS), report.render_text()
    for fw, r in rows.items():
        assert r.passed is True and r.reference.startswith("pairwise"), report.render_text()
        assert r.params == specs.count_params(specs.model_spec("vit", {"preset": "tiny"}))
        assert 0 < r.max_abs_err < 1e-4 and r.steps_loss_err < 1e-4, report.render_text()
    vit_pairs = [p for p in report.pairs if p["model"] == "vit"]
    assert {(p["a"], p["b"]) for p in vit_pairs} == {("jax", "pytorch"), ("jax", "tensorflow"),
                                                     ("pytorch", "tensorflow")}


def test_gate_fails_when_one_framework_builds_another_model(tmp_path):
    # test-only knob: tensorflow's BN epsilon becomes Keras' default 1e-3, jax's LN epsilon
    # Flax's default 1e-6 (the framework defaults the specs override)
    models = [{"name": "cnn", "preset": "tiny"}, {"name": "transformer", "preset": "tiny"}]
    report = gate.run(_config(models), tmp_path,
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


def test_gate_artefact_of_a_gpt2_vocabulary_is_bounded(tmp_path):
    # 16 x 16 x 50,257 logits (51 MB per array in fp32; the whole-array artefact was 103 MB):
    # the worker keeps a seeded sample of 65,536 values plus whole-tensor statistics
    model = {"name": "transformer", "preset": "tiny", "options": {"vocab_size": 50257}}
    config = Config(frameworks=["pytorch"], models=[model], batch_sizes=[16],
                    precisions=["fp32"], threads=2, timeout_s=300)
    report = gate.run(config, tmp_path, frameworks=["pytorch", "jax"])
    assert all(r.passed for r in report.rows), report.render_text()
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 2
    import numpy as np
    for f in files:
        assert f.stat().st_size < 2 * 1024 * 1024, (f, f.stat().st_size)
        with np.load(f) as npz:
            assert npz["out_before"].size == worker_gate.VERIFY_SAMPLE
            idx = npz["index"]
            assert idx.max() > 16 * 16 * 50257 // 2  # drawn from the whole tensor, not a prefix
    a, b = (np.load(f)["index"] for f in files)
    assert np.array_equal(a, b)  # the same elements in every framework


def _fake_result(tmp_path, name, before, after, stats=None):
    import numpy as np
    path = tmp_path / f"{name}.npz"
    np.savez(path, index=np.arange(before.size, dtype=np.uint32), out_before=before,
             out_after=after)
    return {"outputs": str(path), "output_shape": [before.size], "loss_before": 1.0,
            "train_losses": [1.0], "loss_after": 1.0,
            "output_stats": stats or {"before": worker_gate.summary_stats(before),
                                      "after": worker_gate.summary_stats(after)}}


def test_whole_tensor_statistics_catch_what_the_sample_misses(tmp_path):
    import numpy as np
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    tol = gate.TOLERANCES["fp32"]
    ref = _fake_result(tmp_path, "ref", x, x)
    same = _fake_result(tmp_path, "same", x, x)
    assert gate._compare(same, ref, tol)["agree"]
    # identical sample, but the unsampled rest of the tensor differs (a larger norm)
    off = np.concatenate([x, np.full(100_000, 0.01, np.float32)])
    wide = _fake_result(tmp_path, "wide", x, x, {"before": worker_gate.summary_stats(off),
                                                 "after": worker_gate.summary_stats(off)})
    ref["output_stats"] = {"before": worker_gate.summary_stats(np.concatenate(
        [x, np.zeros(100_000, np.float32)])), "after": worker_gate.summary_stats(
        np.concatenate([x, np.zeros(100_000, np.float32)]))}
    c = gate._compare(wide, ref, tol)
    assert not c["agree"] and "statistics" in c["why"]
    # a non-finite value anywhere in the tensor fails, even outside the sample
    nan = np.concatenate([x, [np.nan]]).astype(np.float32)
    bad = _fake_result(tmp_path, "bad", x, x, {"before": worker_gate.summary_stats(nan),
                                               "after": worker_gate.summary_stats(x)})
    assert not gate._compare(bad, _fake_result(tmp_path, "r2", x, x), tol)["agree"]


def test_sample_indices_are_seeded_distinct_and_cover_small_outputs():
    import numpy as np
    assert np.array_equal(worker_gate.sample_indices(1000, 0), np.arange(1000))
    a, b = worker_gate.sample_indices(10**7, 0), worker_gate.sample_indices(10**7, 0)
    assert np.array_equal(a, b) and len(np.unique(a)) == worker_gate.VERIFY_SAMPLE
    assert not np.array_equal(a, worker_gate.sample_indices(10**7, 1))
