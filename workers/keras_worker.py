"""Keras 3 worker: one Keras model, run on the backend the framework names (keras-jax,
keras-torch, keras-tensorflow).

Owns: choosing the Keras backend for this process (KERAS_BACKEND, set before keras is imported,
from the request's framework: process isolation makes one backend per cell natural), building
the model (the user's file's `keras(**options)`, or a built-in model of keras_models.py, which
also loads the canonical weights), the train/predict/evaluate primitives of
`harness.FrameworkInterface` the Keras way, and the shared starting weights of the
equivalence gate (`load_shared`: one seeded numpy draw per weight, in `model.weights` order,
which is the same on every backend, so every backend starts from the very same numbers).

Training is Keras' own compiled step: `model.compile(optimizer=Adam, loss=sparse categorical
cross-entropy from logits, jit_compile="auto")` then `train_on_batch` (jax: jitted; tensorflow:
tf.function, XLA where Keras finds it safe; torch: eager); inference is `predict_on_batch`. Both
return host values, so each step is synced: the harness's block timing still holds (the sync
is in the step). The optimizer is the spec's Adam (keras_models.spec_adam, in keras.ops:
backend-neutral), so a built-in model under Keras matches the native frameworks in the gate.
Imports the harness, specs, keras_models, numpy and keras (with its backend) only; never
mlbench.
"""
from __future__ import annotations

import contextlib
import hashlib
import os

import driver
import harness
import keras_models
import specs
from harness import DeviceUnusable, FrameworkInterface, SkipCell

keras = None  # imported by import_framework, after KERAS_BACKEND is set
np = None

BACKENDS = {"keras-jax": "jax", "keras-torch": "torch", "keras-tensorflow": "tensorflow"}
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class KerasBackend(FrameworkInterface):
    user_function = "keras"

    def __init__(self, request: dict):
        super().__init__(request)
        self.name = request["framework"]
        opts = dict(request.get("options") or {})
        if opts:
            raise ValueError(f"unknown {self.name} option(s) {', '.join(map(repr, opts))}; "
                             "it takes none")
        self.precision = request.get("precision", "fp32")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}")
        self.device = str(request.get("device", "cpu"))

    def framework_info(self) -> dict:
        return _info()

    def check_supported(self) -> None:
        if self.device != "cpu" and not _gpu_visible():
            raise DeviceUnusable(f"device {self.device} not present: keras on "
                                 f"{keras.backend.backend()} sees no GPU")

    def build_model(self, spec: dict) -> None:
        self.spec = spec
        _set_seed(int(self.request["seed"]))
        keras.mixed_precision.set_global_policy(PRECISIONS[self.precision])
        with _fast_init():
            if spec["model"] == "user":
                import usermodel
                model = usermodel.build(spec, "keras", keras.Model, "a Keras 3 model")
            else:
                try:
                    model = keras_models.build(keras, spec)
                except keras_models.NoKerasBuilder as exc:
                    raise SkipCell(str(exc)) from None
            if not model.built:  # a Sequential without an Input: variables now, in order
                shape, dtype = specs.input_shape(spec)
                model(np.zeros((1, *shape), dtype))
        model.compile(optimizer=keras_models.spec_adam(keras)(
            learning_rate=spec["learning_rate"], beta_1=spec["beta1"], beta_2=spec["beta2"],
            epsilon=spec["adam_eps"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile="auto")
        self.model = model

    def count_parameters(self) -> dict:
        return _count(self.model)

    def count_parameters_abstract(self, spec: dict) -> dict:
        # Under a StatelessScope every initializer is deferred and, with
        # initialize_variables=False, never run: shapes only (gpt2-small in ~1 s, no weights)
        try:
            with keras.StatelessScope(initialize_variables=False):
                return _count(keras_models.build(keras, spec))
        except keras_models.NoKerasBuilder as exc:
            raise SkipCell(str(exc)) from None

    def load_data(self, data: dict) -> None:
        self.bs = int(self.request["batch_size"])
        convert = keras.ops.convert_to_tensor
        self.host = {k: data[k] for k in ("x_train", "y_train", "x_eval", "y_eval")}
        self.data = {k: convert(v) for k, v in self.host.items()}  # on the device once

    def _slice(self, key: str, index: int):
        return self.data[key][index * self.bs:(index + 1) * self.bs]

    def train_step(self, batch_index: int):
        return self.model.train_on_batch(self._slice("x_train", batch_index),
                                         self._slice("y_train", batch_index))

    def predict(self, batch_index: int):
        return self.model.predict_on_batch(self._slice("x_eval", batch_index))

    def sync(self, value):
        if isinstance(value, (list, tuple)):
            value = value[0]
        return float(value) if np.ndim(value) == 0 else value  # host values already

    def evaluate(self) -> dict:
        n = len(self.host["y_eval"])
        loss = correct = 0.0
        for start in range(0, n, self.bs):
            logits = np.asarray(self.model.predict_on_batch(
                self.data["x_eval"][start:start + self.bs]), dtype=np.float64)
            y = self.host["y_eval"][start:start + self.bs]
            z = logits - logits.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
            loss -= float(np.take_along_axis(logp, y[..., None], axis=-1).sum())
            correct += float((logits.argmax(axis=-1) == y).sum())
        count = self.host["y_eval"].size  # samples, or tokens
        return {"loss": loss / count, "accuracy": correct / count}

    # --- the equivalence gate --------------------------------------------------------------
    def load_shared(self, seed: int) -> str:
        """The same starting weights on every backend: constant-initialised weights (biases,
        BN) kept, every other weight drawn from one seeded numpy generator (Glorot-uniform
        bounds), in `model.weights` order. Returns their hash."""
        rng = np.random.default_rng([seed, 0x4B3])
        new, digest = [], hashlib.sha256()
        for w in self.model.get_weights():
            if w.size and not np.all(w == w.flat[0]):
                fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else w.shape[0]
                limit = (6.0 / (fan_in + w.shape[-1])) ** 0.5
                w = rng.uniform(-limit, limit, w.shape).astype(w.dtype)
            new.append(w)
            digest.update(str(w.shape).encode() + w.tobytes())
        self.model.set_weights(new)
        return digest.hexdigest()

    def load_canonical(self, params: dict) -> None:
        keras_models.load_canonical(self.model, self.spec, params, self.name)

    def to_numpy(self, output):
        return np.asarray(output, dtype=np.float32)

    def received_batch(self, split: str, index: int) -> tuple:
        return (keras.ops.convert_to_numpy(self._slice(f"x_{split}", index)),
                keras.ops.convert_to_numpy(self._slice(f"y_{split}", index)))

    def settings(self) -> dict:
        return {"backend": keras.backend.backend(), "keras_version": keras.__version__,
                "train_step": "model.compile + train_on_batch", "adam": "spec (SpecAdam)",
                "jit_compile": getattr(self.model, "jit_compile", None)
                if getattr(self, "model", None) is not None else None,
                "precision_policy": PRECISIONS[self.precision],
                "init_threefry": ("classic lowering (build only)"
                                  if keras.backend.backend() == "jax" else None),
                **_info()}


def _count(model) -> dict:
    def n(ws):
        return int(sum(int(np.prod(w.shape)) for w in ws))
    return {"trainable": n(model.trainable_weights),
            "non_trainable": n(model.non_trainable_weights)}


def _fast_init():
    """Under the jax backend, Keras initialises each weight by an eager jax.random call, each
    compiled on its own; jax's default (partitionable) threefry lowering takes ~10x longer to
    compile on the CPU (measured: 0.6 s -> 6.5 s per weight for the tiny cnn). The model is built
    with the classic lowering: the same distributions, other bits; training traces (dropout)
    keep jax's default."""
    if keras.backend.backend() == "jax":
        import jax
        ctx = getattr(jax, "threefry_partitionable", None)
        if ctx is not None:
            return ctx(False)
    return contextlib.nullcontext()


def _set_seed(seed: int) -> None:
    """keras.utils.set_random_seed (Python, numpy, torch and Keras' own seed) without importing
    TensorFlow under the jax and torch backends: Keras seeds tf.data's generator whenever TF is
    installed, an import of seconds (and TF's thread pools) in a process that never uses it."""
    lazy = None
    if keras.backend.backend() != "tensorflow":
        try:
            from keras.src.utils import rng_utils
            lazy = rng_utils.tf if getattr(rng_utils.tf, "module", True) is None else None
        except ImportError:  # another Keras layout: seed as Keras does, TF and all
            lazy = None
    if lazy is None:
        keras.utils.set_random_seed(seed)
        return
    saved = lazy._available
    lazy._available = False  # "TF not installed", for this one call
    try:
        keras.utils.set_random_seed(seed)
    finally:
        lazy._available = saved


def _gpu_visible() -> bool:
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def _info() -> dict:
    import importlib
    backend = keras.backend.backend()
    version = importlib.import_module(backend).__version__  # jax, torch or tensorflow
    return {"framework_version": f"keras {keras.__version__} / {backend} {version}",
            "device_name": harness.cpu_name()}


def import_framework() -> dict:
    """Set the backend named by the request's framework, then import keras (timed)."""
    global keras, np
    framework = harness.read_request().get("framework", "")
    if framework not in BACKENDS:
        raise ValueError(f"keras worker got framework {framework!r}; known: "
                         f"{', '.join(BACKENDS)}")
    os.environ["KERAS_BACKEND"] = BACKENDS[framework]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy
    import keras as keras_module
    keras, np = keras_module, numpy
    if keras.backend.backend() != BACKENDS[framework]:
        raise ImportError(f"keras runs on {keras.backend.backend()}, not {BACKENDS[framework]}")
    return _info()


if __name__ == "__main__":
    harness.main(KerasBackend, harness.read_request().get("framework", "keras"),
                 import_framework, driver.run_cell)
