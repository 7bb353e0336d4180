"""The numpy reference MLP: it learns, and its gradients are right."""
import sys

import numpy as np
import pytest

from workerutil import WORKERS, result_of, run_worker

sys.path.insert(0, str(WORKERS))
import numpy_worker  # noqa: E402
import specs  # noqa: E402

numpy_worker.np = np


def test_reference_mlp_learns_far_above_chance(tmp_path):
    r = result_of(run_worker(tmp_path, "numpy", "mlp", model_options={"preset": "small"},
                             train_samples=2048, eval_samples=512, batch_size=32))
    assert r["eval"]["accuracy"] > 0.6  # chance is 0.1
    assert r["params"] == specs.count_params(specs.model_spec("mlp", {"preset": "small"}))
    # first step and the warm-up steps (a tenth, at most 10) kept apart
    assert len(r["train"]["warmup_step_times_s"]) == 6
    assert r["train"]["steady_steps"] == 2048 // 32 - 1 - 6
    assert len(r["train"]["step_times_s"]) == len(r["train"]["steady_blocks"]) >= 1
    # RSS before the model is built (after imports and data): real, and below the peak
    mem = r["memory"]
    assert 10 * 2**20 < mem["host_baseline_rss_bytes"] < mem["host_peak_rss_bytes"]
    assert len(r["inference"]["latencies_s"]) == 5


def test_reference_gradients_match_finite_differences():
    spec = specs.model_spec("mlp", {"preset": "tiny", "hidden": [7], "input_dim": 5,
                                    "num_classes": 3})
    rng = np.random.default_rng(1)
    model = numpy_worker.MLP(spec, rng)
    model.params = [p.astype(np.float64) for p in model.params]
    x = rng.standard_normal((4, 5))
    y = np.array([0, 2, 1, 2])
    _, grads = model.gradients(x, y)
    eps = 1e-6
    for p, g in zip(model.params, grads):
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = model.loss_and_dlogits(model.forward(x)[0], y)[0]
            p[idx] = old - eps
            down = model.loss_and_dlogits(model.forward(x)[0], y)[0]
            p[idx] = old
            assert abs((up - down) / (2 * eps) - g[idx]) < 1e-6


@pytest.mark.parametrize("model", ["cnn", "vit"])
def test_reference_skips_other_models(tmp_path, model):
    msgs = run_worker(tmp_path, "numpy", model)
    assert msgs[-1]["type"] == "skip" and "only mlp" in msgs[-1]["reason"]
