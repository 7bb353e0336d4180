"""TensorFlow worker: the built-in models in Keras 3 on the TF backend, trained by a custom
step under `tf.function` (optionally XLA), timed by the shared harness.

Owns what is TensorFlow's own: the TF runtime settings (threads, TF32, mixed precision policy,
device placement), the train step (GradientTape under `tf.function`, XLA with `jit_compile`),
fp16 loss scaling, the predict/evaluate primitives and the BFC allocator's memory figures. The
models themselves (and their canonical weights, and the spec's Adam) come from the one Keras zoo,
keras_models.py, which the keras-* frameworks build through too. Imports the harness,
keras_models, specs, numpy and TensorFlow/Keras only; never mlbench, pydantic, polars or plotly.
"""
from __future__ import annotations

import math
import os

import driver
import harness
import keras_models
from harness import DeviceUnusable, FrameworkInterface

tf = None     # imported by import_framework, timed like any framework import
keras = None

OPTIONS = {"jit_compile": False}
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
LOSS_SCALE_INIT = 2.0 ** 16  # fp16: torch.amp.GradScaler's initial scale (jax_worker.SCALE_INIT)


def build_keras_model(spec: dict):
    """The Keras functional model of `spec` (float32 outputs under every precision policy): a
    built-in model from the one Keras zoo (keras_models.py), or the user's own file's."""
    if spec["model"] != "user":
        return keras_models.build(keras, spec)
    import specs
    import usermodel
    model = usermodel.build(spec, "tensorflow", keras.Model, "a Keras model")
    shape, dtype = specs.input_shape(spec)
    model(tf.zeros((1, *shape), dtype), training=False)  # variables now, not in a trace
    return model


def _count(model) -> dict:
    def n(variables):
        return int(sum(math.prod(int(s) for s in v.shape) for v in variables))
    return {"trainable": n(model.trainable_weights),
            "non_trainable": n(model.non_trainable_weights)}


# ----------------------------------------------------------------------------------------------

class TensorFlowBackend(FrameworkInterface):
    name = "tensorflow"

    def __init__(self, request: dict):
        super().__init__(request)
        self.options = dict(OPTIONS)
        for key, value in (request.get("options") or {}).items():
            if key not in OPTIONS:
                raise ValueError(f"unknown tensorflow option {key!r}; allowed: "
                                 f"{', '.join(OPTIONS)}")
            if not isinstance(value, bool):
                raise ValueError(f"tensorflow option {key!r} must be a bool, not {value!r}")
            self.options[key] = value
        self.precision = request.get("precision", "fp32")
        if self.precision not in POLICIES:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: "
                             f"{', '.join(POLICIES)}")
        device = str(request.get("device", "cpu"))
        if device == "cpu":
            self.dev = "/CPU:0"
        elif device == "cuda" or device.startswith("cuda:"):
            self.dev = "/GPU:0"  # the parent exposes only the cell's GPU: the first visible one
        else:
            raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda:N")
        self.device = device
        self.traces = {"train_step": 0, "predict": 0, "evaluate": 0}
        # Runtime knobs must be set before the first op initialises the TF context.
        threads = int(request.get("threads") or 0)
        if threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.experimental.enable_tensor_float_32_execution(bool(request.get("tf32")))
        # The global policy is read when layers are created: set before any build.
        keras.mixed_precision.set_global_policy(POLICIES[self.precision])

    def framework_info(self) -> dict:
        return _info()

    def check_supported(self) -> None:
        if self.dev == "/GPU:0" and not tf.config.list_physical_devices("GPU"):
            raise DeviceUnusable(
                f"device {self.device} not present: TensorFlow sees no GPU (tensorflow "
                f"{tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        # fp16 and bf16 both run on the CPU in TF 2.21 (Eigen/oneDNN kernels), so no skip here.

    # --- build -----------------------------------------------------------------------------
    def build_model(self, spec: dict) -> None:
        self.spec = spec
        keras.utils.set_random_seed(int(self.request["seed"]))
        with tf.device(self.dev):
            self.model = build_keras_model(spec)
            opt = keras_models.spec_adam(keras)(
                learning_rate=spec["learning_rate"], beta_1=spec["beta1"], beta_2=spec["beta2"],
                epsilon=spec["adam_eps"])
            if self.precision == "fp16":
                # dynamic loss scaling with the rule torch's GradScaler and the jax worker use:
                # start at 2^16 (Keras' default 2^15 skips other steps: seen by the gate)
                opt = keras.optimizers.LossScaleOptimizer(
                    opt, initial_scale=LOSS_SCALE_INIT, dynamic_growth_steps=2000)
            opt.build(self.model.trainable_variables)  # slots now, not inside the first trace
            self.opt = opt

    def count_parameters(self) -> dict:
        return _count(self.model)

    def count_parameters_abstract(self, spec: dict) -> dict:
        # Under a StatelessScope, Keras 3 defers every variable's initializer: the model is built
        # (shapes only) without allocating or initialising the weights (gpt2-small in ~2 s, of
        # symbolic tracing). initialize_variables=False: leaving the scope must not allocate them
        # after all; the deferred variables stay unallocated (count mode builds nothing else).
        with tf.device("/CPU:0"), keras.StatelessScope(initialize_variables=False):
            return _count(build_keras_model(spec))

    # --- data and steps --------------------------------------------------------------------
    def load_data(self, data: dict) -> None:
        bs = int(self.request["batch_size"])
        self.bs = bs
        with tf.device(self.dev):
            self.data = {k: tf.identity(tf.convert_to_tensor(data[k]))
                         for k in ("x_train", "y_train", "x_eval", "y_eval")}
        self.n_eval = int(data["y_eval"].shape[0])
        self.pred_bs = min(bs, self.n_eval)
        jit = self.options["jit_compile"]
        index = [tf.TensorSpec([], tf.int32)]
        self._train_fn = tf.function(self._train_impl, input_signature=index, jit_compile=jit)
        self._predict_fn = tf.function(self._predict_impl, input_signature=index,
                                       jit_compile=jit)
        xe, ye = self.data["x_eval"], self.data["y_eval"]
        self._eval_fn = tf.function(
            self._eval_impl, jit_compile=jit,
            input_signature=[tf.TensorSpec([None, *xe.shape[1:]], xe.dtype),
                             tf.TensorSpec([None, *ye.shape[1:]], ye.dtype)])
        # Host-side index tensors made once, so a step costs no conversion.
        self._idx = {}

    def _batch(self, t, start, size):
        """Rows [start, start+size) of `t`, with a static shape: one trace for every batch."""
        if self.options["jit_compile"]:
            # XLA treats tf.slice's `begin` as a compile-time constant (one compilation per batch
            # index!); a gather of start + range(size) is a true dynamic slice.
            return tf.gather(t, start + tf.range(size))
        # without XLA, a contiguous leading-dimension slice can alias the buffer (no copy)
        return tf.slice(t, [start] + [0] * (t.shape.rank - 1), [size, *t.shape[1:]])

    def _loss(self, logits, y):
        per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return tf.reduce_mean(per)  # over samples (over tokens for the transformer)

    def _train_impl(self, i):
        self.traces["train_step"] += 1  # Python side effect: runs only while tracing
        start = i * self.bs
        x = self._batch(self.data["x_train"], start, self.bs)
        y = self._batch(self.data["y_train"], start, self.bs)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self._loss(self.model(x, training=True), y)
            scaled = self.opt.scale_loss(loss)  # identity unless LossScaleOptimizer
        grads = tape.gradient(scaled, variables)
        self.opt.apply_gradients(zip(grads, variables))  # unscales under fp16
        return loss

    def _predict_impl(self, i):
        self.traces["predict"] += 1
        x = self._batch(self.data["x_eval"], i * self.pred_bs, self.pred_bs)
        out = self.model(x, training=False)
        # a scalar that depends on the whole output: its host copy waits for the device
        return out, tf.reshape(out, [-1])[-1]

    def _eval_impl(self, x, y):
        self.traces["evaluate"] += 1
        logits = self.model(x, training=False)
        per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=y.dtype), y),
                          tf.float32)
        return tf.reduce_sum(per), tf.reduce_sum(correct), tf.cast(tf.size(y), tf.float32)

    def _index(self, i: int):
        t = self._idx.get(i)
        if t is None:
            with tf.device("/CPU:0"):
                t = self._idx[i] = tf.constant(i, tf.int32)
        return t

    def train_step(self, batch_index: int):
        with tf.device(self.dev):
            return self._train_fn(self._index(batch_index))

    def predict(self, batch_index: int):
        with tf.device(self.dev):
            return self._predict_fn(self._index(batch_index))

    def sync(self, value):
        # A host copy waits on the device's compute stream, which by then holds every kernel the
        # step enqueued (the tf.function returns only once its stateful optimizer updates are
        # enqueued): the loss's .numpy() therefore waits for the whole step.
        if isinstance(value, tuple):
            # predict: copying the scalar probe to the host waits for the whole forward pass;
            # copying all logits (gpt2-small: 200 MB per sample) would time PCIe, not the model.
            return value[1].numpy()
        return value.numpy()

    def sync_losses(self, losses):
        return [float(v) for v in tf.stack(losses).numpy()]  # one host copy for the block

    def evaluate(self) -> dict:
        loss = correct = count = 0.0
        xe, ye = self.data["x_eval"], self.data["y_eval"]
        with tf.device(self.dev):
            for start in range(0, self.n_eval, self.bs):
                ls, c, n = self._eval_fn(xe[start:start + self.bs], ye[start:start + self.bs])
                loss, correct, count = loss + float(ls), correct + float(c), count + float(n)
        return {"loss": loss / max(count, 1.0), "accuracy": correct / max(count, 1.0)}

    # --- equivalence gate ----------------------------------------------------------------
    def load_canonical(self, params: dict) -> None:
        with tf.device(self.dev):
            keras_models.load_canonical(self.model, self.spec, params, "tensorflow")

    def to_numpy(self, output):
        out = output[0] if isinstance(output, tuple) else output
        return tf.cast(out, tf.float32).numpy()

    def received_batch(self, split: str, index: int) -> tuple:
        s = slice(index * self.bs, (index + 1) * self.bs)
        return (self.data[f"x_{split}"][s].numpy(), self.data[f"y_{split}"][s].numpy())

    # --- reporting -------------------------------------------------------------------------
    def _has_attention(self) -> bool:
        import specs
        return specs.attention(self.spec) is not None

    MEMORY_FIGURE = ("tf.config.experimental.get_memory_info peak: the BFC allocator's bytes "
                     "in use")

    def reset_peak_memory(self) -> bool:
        if self.dev != "/GPU:0":
            return False
        tf.config.experimental.reset_memory_stats("GPU:0")
        return True

    def peak_memory(self) -> int | None:
        if self.dev != "/GPU:0":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def get_memory_usage(self) -> dict:
        if self.dev == "/GPU:0":  # the whole cell's peak: the largest of its phases'
            phases = self.phase_memory()
            seen = [v for v in (phases["peak_device_warmup_bytes"],
                                phases["peak_device_train_bytes"],
                                phases["peak_device_infer_bytes"], self.peak_memory())
                    if v is not None]
            return {"peak_device_bytes": max(seen), **phases}
        return {"peak_device_bytes": None}

    def settings(self) -> dict:
        policy = keras.mixed_precision.global_policy()
        threading = tf.config.threading
        return {
            "threads": {"intra_op": threading.get_intra_op_parallelism_threads(),
                        "inter_op": threading.get_inter_op_parallelism_threads()},
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "jit_compile": self.options["jit_compile"],
            "compile": "xla" if self.options["jit_compile"] else "tf.function",
            "precision_policy": policy.name,
            "compute_dtype": policy.compute_dtype,
            # a Keras mixed policy: every layer's output in the compute dtype
            "activation_dtype": policy.compute_dtype,
            **_gpu_build_facts(self.dev),
            "loss_scaling": "dynamic" if self.precision == "fp16" else None,
            "loss_scale_init": LOSS_SCALE_INIT if self.precision == "fp16" else None,
            "tied_head_dtype": (policy.compute_dtype if keras_models.has_tied_head(self.model)
                                else None),
            # TF enables oneDNN by default on x86 Linux; '0' turns it off
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "xla_flags": os.environ.get("XLA_FLAGS"),
            "tf_xla_flags": os.environ.get("TF_XLA_FLAGS"),
            "gpu_allow_growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"),
            "device": self.dev,
            "data_layout": "NHWC",
            "tf_function_traces": dict(self.traces),
            # the Block's attention is written out (matmul, float32 softmax, matmul), as Keras'
            # MultiHeadAttention computes it: no fused kernel, unless XLA fuses it
            "attention": (("xla" if self.options["jit_compile"] else "explicit")
                          if self._has_attention() else None),
        }


def _gpu_build_facts(dev: str) -> dict:
    """cuDNN/CUDA versions TF was built with and, on a GPU newer than the wheel's SASS (TF
    2.21: up to sm_89, compute_90 PTX), "PTX JIT": the driver compiles every kernel on first
    use, which inflates the first steps (kept in CUDA_CACHE_PATH for the next cell)."""
    if dev != "/GPU:0":
        return {}
    out: dict = {}
    try:
        build = tf.sysconfig.get_build_info()
        out["cudnn_version"] = build.get("cudnn_version")
        out["cuda_build_version"] = build.get("cuda_version")
        archs = [a for a in build.get("cuda_compute_capabilities") or [] if a.startswith("sm_")]
        cc = tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[0]).get("compute_capability")
        top = max((int(a[3:]) for a in archs if a[3:].isdigit()), default=None)
        if cc and top is not None and cc[0] * 10 + cc[1] > top:
            out["kernels"] = (f"PTX JIT: compute capability {cc[0]}.{cc[1]} is above the "
                              f"wheel's SASS (sm_{top}); first steps include the driver's JIT")
        else:
            out["kernels"] = "SASS"
    except Exception as exc:  # noqa: BLE001 - a fact for the record, never a failed cell
        out["kernels"] = f"unknown ({type(exc).__name__})"
    out["cuda_cache_path"] = os.environ.get("CUDA_CACHE_PATH")
    return out


def _info() -> dict:
    info = {"framework_version": tf.__version__, "keras_version": keras.__version__,
            "keras_backend": keras.backend.backend()}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["device_name"] = details.get("device_name", gpus[0].name)
    else:
        info["device_name"] = "cpu: " + harness.cpu_name()
    return info



def import_framework() -> dict:
    global tf, keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"  # this worker is the Keras-on-TF measurement
    import tensorflow
    import keras as keras_module
    tf, keras = tensorflow, keras_module
    if keras.backend.backend() != "tensorflow":
        raise ImportError(f"keras is configured for the {keras.backend.backend()} backend")
    tf.get_logger().setLevel("ERROR")
    return _info()


if __name__ == "__main__":
    harness.main(TensorFlowBackend, "tensorflow", import_framework, driver.run_cell)
