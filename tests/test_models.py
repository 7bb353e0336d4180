"""Models as modules: every built-in model is one module of workers/models/ with the whole
interface, every framework worker has a builder and a canonical-weight loader for each, and the
parent reads them without numpy and without mistaking another `models` package for them.

No framework is imported: the worker files bind their framework lazily."""
import math
import subprocess
import sys
import types

import pytest

from workerutil import ROOT, WORKERS

sys.path.insert(0, str(WORKERS))
import jax_worker  # noqa: E402
import keras_models  # noqa: E402
import numpy_worker  # noqa: E402
import pytorch_worker  # noqa: E402
import specs  # noqa: E402
import weights  # noqa: E402

MODELS = specs._M  # the models package, as specs.py loaded it


@pytest.mark.parametrize("model", specs.MODELS)
def test_every_model_module_provides_the_whole_interface(model):
    mod = specs.module(model)
    assert MODELS.missing(mod) == []
    assert mod.INPUT_KIND in MODELS.INPUT_KINDS
    assert mod.DEFAULT_PRESET in mod.PRESETS
    assert mod.REFERENCE in (None, "numpy")
    for preset in mod.PRESETS:
        spec = specs.model_spec(model, {"preset": preset})
        counts = mod.count_params(spec)
        assert counts["trainable"] > 0 and counts["non_trainable"] >= 0
        assert mod.flops(spec) > 0
        shape, dtype = mod.input_shape(spec)
        assert all(isinstance(n, int) and n > 0 for n in shape) and dtype in ("float32", "int32")
        # the canonical layout holds exactly the trainable + non-trainable parameters
        total = sum(math.prod(s) for _, s, _ in mod.param_shapes(spec))
        assert total == counts["trainable"] + counts["non_trainable"], preset
        att = mod.attention(spec)
        assert att is None or att["heads"] * att["head_dim"] == spec["d_model"]
    for preset, n in mod.PUBLISHED_PARAMS.items():
        assert mod.count_params(specs.model_spec(model, {"preset": preset}))["trainable"] == n


def test_a_module_missing_part_of_the_interface_is_named():
    partial = types.ModuleType("half_a_model")
    for name in MODELS.INTERFACE:
        if name not in ("flops", "param_shapes"):
            setattr(partial, name, None)
    assert MODELS.missing(partial) == ["flops", "param_shapes"]


@pytest.mark.parametrize("model", specs.MODELS)
def test_tiny_data_has_the_shape_kind_and_classes_the_module_says(model):
    spec = specs.model_spec(model, {"preset": "tiny"})
    data = specs.make_dataset(spec, {"train_samples": 8, "eval_samples": 4, "seed": 1})
    shape, dtype = specs.input_shape(spec)
    assert data["x_train"].shape == (8, *shape) and data["x_train"].dtype == dtype
    assert data["y_train"].max() < specs.num_classes(spec)
    again = specs.make_dataset(spec, {"train_samples": 8, "eval_samples": 4, "seed": 1})
    assert again["hash"] == data["hash"]
    params = weights.canonical_params(spec, 0)
    assert set(params) == {name for name, _, _ in weights.param_shapes(spec)}


@pytest.mark.parametrize("worker", [pytorch_worker, keras_models, jax_worker])
def test_every_framework_builds_every_model(worker):
    # adding a model = one module + one builder per framework: a missing one fails
    # (tensorflow and the keras-* frameworks build through the one Keras zoo, keras_models)
    assert set(worker.BUILDERS) == set(specs.MODELS)


def test_canonical_weights_load_by_convention_in_every_framework():
    # pytorch, Keras and jax find every canonical tensor by its layer's name and type: no
    # per-model loader table to forget (jax's tree_* converters and TREES are gone)
    for worker in (pytorch_worker, keras_models, jax_worker):
        assert not hasattr(worker, "LOADERS") and not hasattr(worker, "TREES"), worker
    assert callable(pytorch_worker.load_canonical) and callable(keras_models.load_canonical)
    assert callable(jax_worker.canonical_leaves)
    assert not [n for n in dir(jax_worker) if n.startswith("tree_")]


def test_the_numpy_reference_builds_exactly_the_models_that_name_it():
    assert set(numpy_worker.BUILDERS) == {m for m in specs.MODELS
                                         if specs.gate_reference(m) == "numpy"}


def test_specs_load_by_path_without_numpy_and_ignore_another_models_package(tmp_path):
    # the parent (mlbench/config/catalog.py) loads workers/specs.py by file path; a user's project
    # on sys.path may have its own `models` package, which must not be taken for workers/models
    decoy = tmp_path / "models"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy models package')\n")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mlbench.config.schema import catalog\n"
            "s = catalog.specs()\n"
            "assert 'numpy' not in sys.modules, 'numpy imported'\n"
            "print(','.join(s.MODELS), s.count_params(s.model_spec('cnn', {'preset': 'resnet18'}))"
            "['trainable'])\n" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    names, count = out.stdout.split()
    assert names.split(",") == list(specs.MODELS) and int(count) == 11_689_512
