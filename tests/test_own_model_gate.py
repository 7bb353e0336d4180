"""The numeric gate for your own model: a file's `canonical_weights()` and its
`load_<framework>()` loaders give every framework the same starting weights, so the gate compares
the numbers (a wrong loader fails it); without them it says "numerics unchecked". A Flax NNX
module from `jax()` (workers/jax_nnx.py) runs through `mlbench run` like a linen one.

Fast: the worker-side loading with a stand-in backend (no framework) and the verdicts of
mlbench/run/gate.py on stored gate results. Real (`framework`): one `mlbench run` of pytorch and
jax on two model files."""
import json
import sys

import numpy as np
import pytest

from cliutil import by_cell, run_inproc, write_config
from mlbench.run import gate
from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import usermodel  # noqa: E402
import weights  # noqa: E402

NNX_BN = '"""A conv + batch norm model: NNX in jax, torch natively, with shared canonical weights."""\nINPUT = {"kind": "image", "shape": [16, 16, 3], "num_classes": 4}\n\n\ndef jax(width=4):\n    from flax import nnx\n\n    class Net(nnx.Module):\n        def __init__(self, rngs):\n            self.conv = nnx.Conv(3, width, (3, 3), use_bias=False, rngs=rngs)\n            self.bn = nnx.BatchNorm(width, momentum=0.9, epsilon=1e-5, rngs=rngs)\n            self.fc = nnx.Linear(width, 4, rngs=rngs)\n\n        def __call__(self, x):  # no `train` argument: NNX\'s train()/eval() switch BN\n            return self.fc(nnx.relu(self.bn(self.conv(x))).mean(axis=(1, 2)))\n\n    return Net(nnx.Rngs(0))\n\n\ndef pytorch(width=4):\n    import torch.nn as nn\n    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),\n                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4))\n\n\ndef canonical_weights(width=4, seed=0):\n    import numpy as np\n    rng = np.random.default_rng(seed)\n    f = lambda *s: rng.uniform(-0.5, 0.5, s).astype(np.float32)  # noqa: E731\n    return {"conv": f(3, 3, 3, width), "gamma": 1 + f(width), "beta": f(width),\n            "mean": f(width), "var": 1 + f(width), "fc.kernel": f(width, 4), "fc.bias": f(4)}\n\n\ndef load_pytorch(model, w):\n    import torch\n    t = lambda a: torch.from_numpy(a)  # noqa: E731\n    with torch.no_grad():\n        model[0].weight.copy_(t(w["conv"].transpose(3, 2, 0, 1)))\n        bn = model[1]\n        bn.weight.copy_(t(w["gamma"]))\n        bn.bias.copy_(t(w["beta"]))\n        bn.running_mean.copy_(t(w["mean"]))\n        bn.running_var.copy_(t(w["var"]))\n        model[5].weight.copy_(t(w["fc.kernel"].T))\n        model[5].bias.copy_(t(w["fc.bias"]))\n\n\ndef load_jax(variables, w):  # an NNX module\'s state by attribute name\n    variables["params"] = {"conv": {"kernel": w["conv"]},\n                           "bn": {"scale": w["gamma"], "bias": w["beta"]},\n                           "fc": {"kernel": w["fc.kernel"], "bias": w["fc.bias"]}}\n    variables["batch_stats"] = {"bn": {"mean": w["mean"], "var": w["var"]}}\n    return variables\n'

# y = relu(x @ W0 + b0) @ W1 + b1 with a square W0: a loader that forgets torch's [out, in]
# transposition fits the shapes and loads another model
WRONG = '''INPUT = {"kind": "vector", "shape": [8], "num_classes": 3}


def pytorch():
    import torch.nn as nn
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def jax():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(8)(x))  # Dense_0 (linen names them as they are made)
            return nn.Dense(3)(h)

    return MLP()


def canonical_weights(seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.uniform(-0.5, 0.5, s).astype(np.float32)  # noqa: E731
    return {"w0": f(8, 8), "b0": f(8), "w1": f(8, 3), "b1": f(3)}


def load_pytorch(model, w):
    import torch
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w["w0"]))  # BUG: [in, out] is not torch's
        model[0].bias.copy_(torch.from_numpy(w["b0"]))
        model[2].weight.copy_(torch.from_numpy(w["w1"].T))
        model[2].bias.copy_(torch.from_numpy(w["b1"]))


def load_jax(variables, w):  # linen: params by module name, the canonical layouts
    variables["params"] = {"Dense_0": {"kernel": w["w0"], "bias": w["b0"]},
                           "Dense_1": {"kernel": w["w1"], "bias": w["b1"]}}
    return variables
'''


# --- worker side, no framework: a stand-in backend ------------------------------------------

class Backend:
    name = "pytorch"

    def __init__(self):
        self.model = {}


def _spec(tmp_path, text, options=None):
    path = tmp_path / f"m{abs(hash(text)) % 10**8}.py"
    path.write_text(text)
    return {"source": str(path), "options": options or {}}


LOADS = '''INPUT = {"kind": "vector", "shape": [2], "num_classes": 2}


def canonical_weights(width=2, seed=0):
    import numpy as np
    return {"w": np.random.default_rng(seed).standard_normal((2, width)).astype("float32")}


def load_pytorch(model, w):
    model.update(w)
'''


def test_the_files_weights_go_through_its_loader_and_their_hash_is_returned(tmp_path):
    backend = Backend()
    digest = usermodel.load_canonical(backend, _spec(tmp_path, LOADS, {"width": 3}), seed=7)
    # the options the function names, and the config's seed
    want = np.random.default_rng(7).standard_normal((2, 3)).astype("float32")
    assert np.array_equal(backend.model["w"], want)
    assert digest == weights.params_hash({"w": want})
    # another seed: other weights, another hash (the gate compares equal hashes only)
    assert usermodel.load_canonical(Backend(), _spec(tmp_path, LOADS, {"width": 3}), 8) != digest


def test_no_loader_for_this_framework_means_no_shared_weights(tmp_path):
    backend = Backend()
    backend.name = "tensorflow"  # the file has load_pytorch only
    assert usermodel.load_canonical(backend, _spec(tmp_path, LOADS), seed=0) is None
    assert backend.model == {}
    no_weights = LOADS.replace("def canonical_weights", "def other_name")
    assert usermodel.load_canonical(Backend(), _spec(tmp_path, no_weights), seed=0) is None


@pytest.mark.parametrize("body,message", [
    ("    return [1, 2]\n", "canonical_weights() in model file .* must return a dict"),
    ("    raise KeyError('w9')\n", "canonical_weights() in model file .* raised KeyError"),
])
def test_bad_canonical_weights_say_so(tmp_path, body, message):
    text = LOADS.replace("    import numpy as np\n    return {", body + "    return {")
    with pytest.raises(usermodel.UserModelError, match=message.replace("(", r"\(")
                       .replace(")", r"\)")):
        usermodel.load_canonical(Backend(), _spec(tmp_path, text), seed=0)


def test_a_loader_that_raises_names_itself_and_the_file(tmp_path):
    text = LOADS.replace("    model.update(w)", "    model.weight.copy_(w['w'])")
    spec = _spec(tmp_path, text)
    with pytest.raises(usermodel.UserModelError) as exc:
        usermodel.load_canonical(Backend(), spec, seed=0)
    assert str(exc.value).startswith(f"load_pytorch() in model file {spec['source']} raised "
                                     "AttributeError")


# --- the verdicts, no framework: stored results of a user's model -----------------------------

def _result(tmp_path, fw, out, weights_hash):
    path = tmp_path / f"{fw}.npz"
    out = np.asarray(out, np.float32)
    np.savez(path, index=np.arange(out.size), out_before=out, out_after=out + 1)
    return {"status": "ok", "params": {"trainable": 10, "non_trainable": 0},
            "expected_params": None, "weights_hash": weights_hash, "batches_hash": "b",
            "output_dtype": "float32", "output_shape": [out.size], "outputs": str(path),
            "loss_before": 1.0, "train_losses": [0.9, 0.8], "loss_after": 0.7}


def test_numbers_are_compared_only_between_frameworks_with_the_same_weights(tmp_path):
    got = {"pytorch": _result(tmp_path, "pytorch", [1, 2, 3], "canon"),
           "jax": _result(tmp_path, "jax", [1, 2, 3.00001], "canon"),
           "tensorflow": _result(tmp_path, "tensorflow", [5, 6, 7], None),
           "keras-jax": _result(tmp_path, "keras-jax", [9, 9, 9], "keras-seeded"),
           "keras-torch": _result(tmp_path, "keras-torch", [9, 9, 9.00001], "keras-seeded")}
    rows, pairs = gate._judge("user", "mine", "cpu", "fp32", got, None)
    by = {r.framework: r for r in rows}
    assert by["pytorch"].passed is True and by["pytorch"].reference == "pairwise: jax"
    assert by["jax"].max_abs_err == pytest.approx(1e-5, rel=0.1)
    assert by["keras-torch"].passed is True and by["keras-torch"].reference == "pairwise: keras-jax"
    # its own initialisation: counts, shapes and batches checked, the numbers not
    assert by["tensorflow"].passed is None
    assert by["tensorflow"].reason == gate.NUMERICS_UNCHECKED
    assert {frozenset((p["a"], p["b"])) for p in pairs} == {
        frozenset(("jax", "pytorch")), frozenset(("keras-jax", "keras-torch"))}
    # the report's gate table never calls the unchecked one verified
    from mlbench.report.render import _gate_rows
    verdicts = {r["framework"]: r["verdict"] for r in _gate_rows(
        gate.GateReport(rows=rows))}
    assert verdicts["tensorflow"] == "numerics unchecked" and verdicts["jax"] == "pass"
    # the same weights and other numbers: both fail (two frameworks: nobody to tell who is right)
    got["jax"] = _result(tmp_path, "jax", [1, 2, 4], "canon")
    rows, _ = gate._judge("user", "mine", "cpu", "fp32", got, None)
    by = {r.framework: r for r in rows}
    assert by["pytorch"].passed is False and by["jax"].passed is False
    assert by["keras-jax"].passed is True


# --- for real: NNX and the loaders through `mlbench run` ---------------------------------------

@pytest.mark.framework
def test_nnx_module_and_canonical_weights_through_mlbench_run(tmp_path, capsys):
    (tmp_path / "nnxbn.py").write_text(NNX_BN)
    (tmp_path / "wrong.py").write_text(WRONG)
    conf = write_config(tmp_path / "c.yaml", frameworks=["pytorch", "jax"], batch_sizes=[16],
                        train_samples=256, eval_samples=64, timed_iterations=2,
                        warmup_iterations=1, ceiling=False, timeout_s=300, threads=1,
                        models=[{"name": "nnxbn", "source": "nnxbn.py"},
                                {"name": "wrong", "source": "wrong.py"}],
                        exclude=[{"model": "wrong"}])  # its gate rows only: no cells to time
    rc, out, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cells = {(c["framework"], c["model"]): c for c in by_cell(tmp_path / "results").values()}
    assert set(cells) == {("pytorch", "nnxbn"), ("jax", "nnxbn")}
    assert {c["status"] for c in cells.values()} == {"ok"}, [c.get("reason") for c in
                                                              cells.values()]
    # the NNX module: its Params trainable, its BatchStats not, as torch's BN parameters/buffers
    nnx_params = cells[("jax", "nnxbn")]["metrics"]["params"]
    assert nnx_params == cells[("pytorch", "nnxbn")]["metrics"]["params"]
    assert nnx_params == {"trainable": 3 * 3 * 3 * 4 + 2 * 4 + 4 * 4 + 4, "non_trainable": 8}
    gate = {(r["framework"], r["model_label"]): r
            for r in json.loads((tmp_path / "results" / "verify.json").read_text())["rows"]}
    for fw in ("pytorch", "jax"):
        # the same canonical weights: outputs and losses compared before and after Adam steps
        # (BN in eval and training mode: NNX's eval()/train() switch through the adapter)
        ok = gate[(fw, "nnxbn")]
        assert ok["passed"] is True and ok["reference"].startswith("pairwise"), ok
        assert ok["max_abs_err"] is not None and ok["steps_loss_err"] is not None
        # a loader that loads another model: the numbers differ, the gate fails
        bad = gate[(fw, "wrong")]
        assert bad["passed"] is False and bad["max_abs_err"] > 1e-2, bad
        assert bad["reason"] == "no two frameworks agree: cannot tell which is right"
        assert bad["params_equal"]  # the counts alone could not have told
    assert rc == 0 and "FAILED" in out + err  # the run goes on, and says what failed
