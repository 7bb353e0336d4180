"""The synthetic data's difficulty does not depend on the input size: a class template's
amplitude per element scales with 1/sqrt(elements), so a 20-feature, 3-class task of a user's is
as learnable as the built-in 784-feature one and a 4,800-pixel image no easier than a small one.

Checked independently of every framework: a plain numpy softmax regression trained for a few
epochs of minibatch SGD, and the class means' separation measured on the generated samples."""
import itertools
import sys

import numpy as np
import pytest

from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import specs  # noqa: E402


def _data(kind, shape, classes, n, seed=0):
    spec = {"model": "user", "input": {"kind": kind, "shape": list(shape),
                                       "num_classes": classes}}
    x, y = specs._generate(spec, n, np.random.default_rng(seed))
    return x.reshape(n, -1).astype(np.float64), y


def _softmax_regression_accuracy(kind, shape, classes, n_train=2048, n_eval=1024, epochs=3):
    x, y = _data(kind, shape, classes, n_train + n_eval)
    xt, yt, xe, ye = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    w, b = np.zeros((x.shape[1], classes)), np.zeros(classes)
    rng = np.random.default_rng(1)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(n_train), n_train // 32):
            z = xt[idx] @ w + b
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(idx)), yt[idx]] -= 1  # d(cross-entropy)/dz
            w -= 0.1 * xt[idx].T @ p / len(idx)
            b -= 0.1 * p.mean(0)
    return float(((xe @ w + b).argmax(1) == ye).mean())


@pytest.mark.parametrize("kind,shape,classes,least", [
    ("vector", (20,), 3, 0.85),          # the user's model of issue 21: 0.4 with a fixed signal
    ("vector", (4000,), 10, 0.5),        # a large vector
    ("image", (40, 40, 3), 10, 0.6),     # an image bigger than the built-in tiny one
    ("sequence", (8, 3), 4, 0.7),        # a short, narrow sequence
    ("sequence", (64, 32), 4, 0.7),
])
@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_a_default_task_is_learnable_for_any_input_size(kind, shape, classes, least):
    acc = _softmax_regression_accuracy(kind, shape, classes)
    assert acc >= least, (kind, shape, acc, "chance", 1 / classes)


def _separation(kind, shape, classes=4, n=16000):
    """Mean distance between the class means in units of the per-element noise (std 1), the
    sampling noise of the means taken out: what any classifier separates the classes by."""
    x, y = _data(kind, shape, classes, n, seed=3)
    d2 = []
    for a, b in itertools.combinations(range(classes), 2):
        xa, xb = x[y == a], x[y == b]
        bias = x.shape[1] * (1 / len(xa) + 1 / len(xb))  # E|mean noise difference|^2
        d2.append(np.sum((xa.mean(0) - xb.mean(0)) ** 2) - bias)
    return float(np.sqrt(np.mean(d2)))


@pytest.mark.parametrize("kind,small,large", [
    ("vector", (20,), (3000,)),
    ("image", (8, 8, 3), (48, 48, 3)),
    ("sequence", (8, 4), (64, 24)),
])
@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_class_separation_does_not_depend_on_the_input_size(kind, small, large):
    s, big = _separation(kind, small), _separation(kind, large)
    # random templates vary from draw to draw; a fixed per-element signal would make the
    # ratio sqrt(elements) apart (12x for the vectors), so a factor 1.6 is a clear test
    assert 1 / 1.6 < big / s < 1.6, (kind, s, big)


def test_the_quick_configs_models_keep_their_data():
    """Byte-identical data for the built-in models the quick sweep runs (their accuracy baselines
    stay): the per-element amplitude at their sizes is the tuned one."""
    common = specs._M._common
    for kind, shape, amp in (("vector", (784,), 0.15), ("image", (16, 16, 3), 0.4),
                             ("sequence", (16, 8), 0.8)):
        assert common.signal(kind, shape) == amp


TABULAR = '''INPUT = {"kind": "vector", "shape": [20], "num_classes": 3}


def pytorch(width=32):
    import torch.nn as nn
    return nn.Sequential(nn.Linear(20, width), nn.ReLU(), nn.Linear(width, 3))
'''


@pytest.mark.parametrize("framework", ["pytorch"])
def test_a_users_20_feature_model_learns_in_the_quick_epochs(tmp_path, framework):
    """The user's model of issue 21 in a real framework: one epoch of the quick config's sizes
    lands well above chance (1/3); a fixed per-element signal left it at 0.37-0.43."""
    import json

    from cliutil import run_inproc, write_config
    (tmp_path / "tab.py").write_text(TABULAR)
    conf = write_config(tmp_path / "c.yaml", frameworks=[framework],
                        models=[{"name": "tabular", "source": "tab.py"}], batch_sizes=[32],
                        train_samples=4096, eval_samples=512, epochs=1, warmup_iterations=2,
                        timed_iterations=5, threads=1, verify=False, ceiling=False,
                        timeout_s=300, output_dir=str(tmp_path / "r"))
    rc, _, _ = run_inproc(["run", "--config", str(conf), "--no-report"])
    assert rc == 0
    (cell,) = json.loads((tmp_path / "r" / "results.json").read_text())["cells"]
    assert cell["status"] == "ok", cell.get("reason")
    assert cell["metrics"]["eval"]["accuracy"] > 0.8
