"""Built-in models in Keras 3 (workers/keras_models.py): on every Keras backend they are the
spec's model, numerically, to the native frameworks' fp32 tolerance: one real equivalence gate
run of keras-jax, keras-torch and keras-tensorflow against native PyTorch, tiny presets of the
models with layers of their own (cnn, transformer, lstm, and vit where the specs have it),
canonical weights in every process (one process per framework)."""
import sys

import pytest

from mlbench.run import gate
from mlbench.config.schema import Config
from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import keras_models  # noqa: E402
import specs  # noqa: E402

KERAS = ["keras-jax", "keras-torch", "keras-tensorflow"]
# mlp's Keras builder is plain Dense layers; it is left out for time (the numpy reference's
# extra process and four more builds), the three with layers of their own are checked
MODELS = ["cnn", "transformer", "lstm"] + (["vit"] if "vit" in specs.MODELS else [])


@pytest.mark.framework
def test_keras_builders_match_native_pytorch_on_every_backend(tmp_path):
    config = Config(frameworks=["pytorch", *KERAS],
                    models=[{"name": m, "preset": "tiny"} for m in MODELS],
                    batch_sizes=[16], threads=1, timeout_s=300)
    report = gate.run(config, tmp_path)
    text = report.render_text()
    rows = {(r.model, r.framework): r for r in report.rows}
    assert set(rows) == {(m, f) for m in MODELS for f in ["pytorch", *KERAS]}, text
    for (model, fw), r in rows.items():
        assert r.passed is True, text
        # counts to the unit (spec's trainable and BN's non-trainable), the same batches
        assert r.params_equal and r.data_hash_equal, text
        assert r.params == specs.count_params(specs.model_spec(model, {"preset": "tiny"}))
        assert r.max_abs_err is not None and r.steps_loss_err is not None, text
        # compared with native torch, not only among the Keras backends
        assert "pytorch" in r.reference or fw == "pytorch", text
    # really different backends computed them (identical numbers would mean one ran thrice)
    errs = [p["max_abs_err"] for p in report.pairs if p["model"] == "cnn"
            and "pytorch" not in (p["a"], p["b"])]
    assert len(errs) == 3 and max(errs) > 0, report.pairs


def test_a_model_without_keras_builder_says_which_have_one():
    with pytest.raises(keras_models.NoKerasBuilder) as exc:
        keras_models.builder("unet")
    message = str(exc.value)
    assert message.startswith("model unet has no Keras 3 builder")
    for model in ("mlp", "cnn", "transformer", "lstm"):
        assert model in message


def test_keras_variable_paths_name_the_canonical_weights():
    # the generic loader's naming convention (tensorflow and every keras-* framework): a path
    # as Keras 3 gives it -> the canonical name of workers/weights.py
    cases = {"dense0/kernel": "dense0.kernel", "block1/qkv/bias": "block1.qkv.bias",
             "bn3/moving_mean": "bn3.mean", "bn3/moving_variance": "bn3.var",
             "bn3/gamma": "bn3.gamma", "lstm1/lstm_cell/recurrent_kernel": "lstm1.recurrent",
             "lstm0/lstm_cell/bias": "lstm0.bias", "tok/embeddings": "tok", "pos/pos": "pos",
             "cls/cls": "cls", "block0/ln2/beta": "block0.ln2.beta"}
    assert {path: keras_models.canonical_name(path) for path in cases} == cases
