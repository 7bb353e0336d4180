"""TensorFlow worker: the built-in models in Keras 3 on the TF backend, trained by a custom
step under `tf.function` (optionally XLA), timed by the shared harness.

Owns: building the models of workers/models/ (`mlp`, `cnn`, `transformer`, `lstm`, `vit`: one
builder and one canonical-weight loader each, BUILDERS and LOADERS) with Keras layers exactly as
the model modules describe them (parameter counts to the unit), the TF runtime settings (threads, TF32, mixed precision,
device placement) and the train/predict/evaluate primitives. Imports the harness, specs, numpy and
TensorFlow/Keras only; never mlbench, pydantic, polars or plotly.
"""
from __future__ import annotations

import math
import os

import harness
from harness import DeviceUnusable, FrameworkInterface

tf = None     # imported by import_framework, timed like any framework import
keras = None

OPTIONS = {"jit_compile": False}
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
LOSS_SCALE_INIT = 2.0 ** 16  # fp16: torch.amp.GradScaler's initial scale (jax_worker.SCALE_INIT)


# ----------------------------------------------------------------------------------------------
# Models. Built inside functions so that the layer classes exist only once keras is imported.

def _custom_layers():
    """The layers Keras lacks: tied embedding, learned positions, a pre-norm (GPT-2) block,
    a class token (transformer, vit)."""

    class TiedEmbedding(keras.layers.Embedding):
        """Token embedding that, called with reverse=True, is the output head h @ E^T (no bias).

        The matmul runs in the compute dtype (like torch autocast does for the tied head); the
        logits are returned in float32 so the softmax and the loss are computed in float32.
        """

        def call(self, inputs, reverse=False):
            if not reverse:
                return super().call(inputs)
            w = tf.cast(self.embeddings, inputs.dtype)
            return tf.cast(tf.matmul(inputs, w, transpose_b=True), tf.float32)

        def compute_output_spec(self, inputs, reverse=False):
            if not reverse:
                return super().compute_output_spec(inputs)
            return keras.KerasTensor((*inputs.shape[:-1], self.input_dim), dtype="float32")

    class PositionEmbedding(keras.layers.Layer):
        """Learned absolute positions (seq_len, d), added to the token embeddings."""

        def __init__(self, seq_len, d, **kw):
            super().__init__(**kw)
            self.seq_len, self.d = seq_len, d

        def build(self, input_shape):
            self.pos = self.add_weight(shape=(self.seq_len, self.d), name="pos",
                                       initializer=keras.initializers.RandomNormal(stddev=0.02))

        def call(self, x):
            return x + tf.cast(self.pos, x.dtype)[: x.shape[1]]

    class ClassToken(keras.layers.Layer):
        """A learned vector (d,) prepended to the token sequence (the vit's class token)."""

        def __init__(self, d, **kw):
            super().__init__(**kw)
            self.d = d

        def build(self, input_shape):
            self.cls = self.add_weight(shape=(self.d,), name="cls",
                                       initializer=keras.initializers.RandomNormal(stddev=0.02))

        def call(self, x):
            cls = tf.broadcast_to(tf.cast(self.cls, x.dtype), [tf.shape(x)[0], 1, self.d])
            return tf.concat([cls, x], axis=1)

        def compute_output_shape(self, input_shape):
            n = None if input_shape[1] is None else input_shape[1] + 1
            return (input_shape[0], n, self.d)

    class Block(keras.layers.Layer):
        """Pre-norm block: x + proj(attn(ln1(x))); x + fc2(gelu_tanh(fc1(ln2(x)))); the
        attention causal for the transformer, not for the vit."""

        def __init__(self, d, n_heads, eps, causal=True, **kw):
            super().__init__(**kw)
            self.d, self.h, self.causal = d, n_heads, causal
            self.ln1 = keras.layers.LayerNormalization(epsilon=eps)
            self.qkv = keras.layers.Dense(3 * d)
            self.proj = keras.layers.Dense(d)
            self.ln2 = keras.layers.LayerNormalization(epsilon=eps)
            self.fc1 = keras.layers.Dense(4 * d)
            self.fc2 = keras.layers.Dense(d)

        def build(self, input_shape):
            d = self.d
            self.ln1.build(input_shape)
            self.qkv.build(input_shape)
            self.proj.build((*input_shape[:-1], d))
            self.ln2.build(input_shape)
            self.fc1.build(input_shape)
            self.fc2.build((*input_shape[:-1], 4 * d))

        def call(self, x):
            t, d, h = x.shape[1], self.d, self.h
            hd = d // h
            b = tf.shape(x)[0]
            qkv = tf.reshape(self.qkv(self.ln1(x)), [b, t, 3, h, hd])
            q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))  # each (B, H, T, hd)
            scores = tf.matmul(q, k, transpose_b=True) * tf.cast(1.0 / math.sqrt(hd), q.dtype)
            # softmax in float32 (as Keras' MultiHeadAttention does under mixed precision)
            scores = tf.cast(scores, tf.float32)
            if self.causal:
                causal = tf.linalg.band_part(tf.ones((t, t), tf.bool), -1, 0)
                scores = tf.where(causal, scores, -1e9)
            attn = tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype)
            o = tf.reshape(tf.transpose(tf.matmul(attn, v), [0, 2, 1, 3]), [b, t, d])
            x = x + self.proj(o)
            return x + self.fc2(tf.nn.gelu(self.fc1(self.ln2(x)), approximate=True))

    return TiedEmbedding, PositionEmbedding, Block, ClassToken


def build_mlp(spec: dict):
    layers = keras.layers
    inp = keras.Input((spec["input_dim"],), dtype="float32")
    x = inp
    for i, width in enumerate(spec["hidden"]):
        x = layers.Dense(width, activation="relu", name=f"dense{i}")(x)
    out = layers.Dense(spec["num_classes"], dtype="float32",
                       name=f"dense{len(spec['hidden'])}")(x)
    return inp, out


def build_cnn(spec: dict):
    layers = keras.layers
    bn = dict(epsilon=spec["bn_eps"], momentum=1.0 - spec["bn_momentum"])  # keras 0.9 == torch 0.1
    count = [0]  # conv j / bn j named in models/cnn.py `layers` order (the canonical weights')

    def conv_bn(x, filters, k, stride):
        # At stride 1 and odd k, 'same' is exactly symmetric k//2 padding (and avoids an
        # extra padded copy per conv). At stride 2 TF's 'same' pads asymmetrically and would
        # not be the PyTorch model: explicit symmetric padding, then 'valid'.
        padding = "same"
        if stride > 1 and k // 2:
            x = layers.ZeroPadding2D(k // 2)(x)
            padding = "valid"
        j, count[0] = count[0], count[0] + 1
        x = layers.Conv2D(filters, k, strides=stride, padding=padding, use_bias=False,
                          name=f"conv{j}")(x)
        return layers.BatchNormalization(**bn, name=f"bn{j}")(x)

    s = spec["image_size"]
    inp = keras.Input((s, s, spec["channels"]), dtype="float32")  # NHWC, TF's native layout
    w0 = spec["widths"][0]
    if spec["stem"] == "imagenet":
        x = layers.ReLU()(conv_bn(inp, w0, 7, 2))
        # zero padding == torch's -inf padding here: the input is post-ReLU (>= 0)
        x = layers.MaxPooling2D(3, strides=2, padding="valid")(layers.ZeroPadding2D(1)(x))
    else:
        x = layers.ReLU()(conv_bn(inp, w0, 3, 1))
    c = w0
    for stage, (width, nblocks) in enumerate(zip(spec["widths"], spec["blocks"])):
        for bi in range(nblocks):
            stride = 2 if (stage > 0 and bi == 0) else 1
            y = layers.ReLU()(conv_bn(x, width, 3, stride))
            y = conv_bn(y, width, 3, 1)
            short = conv_bn(x, width, 1, stride) if (stride != 1 or c != width) else x
            x = layers.ReLU()(layers.Add()([y, short]))
            c = width
    x = layers.GlobalAveragePooling2D()(x)
    return inp, layers.Dense(spec["num_classes"], dtype="float32", name="fc")(x)


def build_transformer(spec: dict):
    TiedEmbedding, PositionEmbedding, Block, _ = _custom_layers()
    v, t, d = spec["vocab_size"], spec["seq_len"], spec["d_model"]
    inp = keras.Input((t,), dtype="int32")
    emb = TiedEmbedding(v, d, embeddings_initializer=keras.initializers.RandomNormal(
        stddev=0.02), name="tok")
    x = PositionEmbedding(t, d, name="pos")(emb(inp))
    for i in range(spec["n_layers"]):
        x = Block(d, spec["n_heads"], spec["ln_eps"], name=f"block{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=spec["ln_eps"], name="ln_f")(x)
    return inp, emb(x, reverse=True)


def build_lstm(spec: dict):
    inp = keras.Input((spec["seq_len"], spec["input_dim"]), dtype="float32")
    x = inp
    for layer in range(spec["n_layers"]):
        x = keras.layers.LSTM(spec["hidden"], return_sequences=layer < spec["n_layers"] - 1,
                              name=f"lstm{layer}")(x)
    return inp, keras.layers.Dense(spec["num_classes"], dtype="float32", name="fc")(x)


def build_vit(spec: dict):
    _, PositionEmbedding, Block, ClassToken = _custom_layers()
    s, p, d = spec["image_size"], spec["patch_size"], spec["d_model"]
    inp = keras.Input((s, s, spec["channels"]), dtype="float32")  # NHWC
    x = keras.layers.Conv2D(d, p, strides=p, padding="valid", name="patch")(inp)
    x = keras.layers.Reshape(((s // p) ** 2, d))(x)  # row-major patches, as torch's flatten
    x = PositionEmbedding((s // p) ** 2 + 1, d, name="pos")(ClassToken(d, name="cls")(x))
    for i in range(spec["n_layers"]):
        x = Block(d, spec["n_heads"], spec["ln_eps"], causal=False, name=f"block{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=spec["ln_eps"], name="ln_f")(x)
    return inp, keras.layers.Dense(spec["num_classes"], dtype="float32", name="head")(x[:, 0])


# One builder per built-in model (workers/models/): spec -> (Keras input, float32 logits).
BUILDERS = {"mlp": build_mlp, "cnn": build_cnn, "transformer": build_transformer,
            "lstm": build_lstm, "vit": build_vit}


def build_keras_model(spec: dict):
    """The Keras functional model of `spec` (float32 outputs under every precision policy)."""
    m = spec["model"]
    if m == "user":  # the user's own file: its tensorflow(**options), a Keras model, built
        import specs
        import usermodel
        model = usermodel.build(spec, "tensorflow", keras.Model, "a Keras model")
        shape, dtype = specs.input_shape(spec)
        model(tf.zeros((1, *shape), dtype), training=False)  # variables now, not in a trace
        return model
    if m not in BUILDERS:
        raise ValueError(f"unknown model {m!r}; the tensorflow worker builds "
                         f"{', '.join(BUILDERS)}")
    inp, out = BUILDERS[m](spec)
    return keras.Model(inp, out, name=m)


class _Loader:
    """Assigns canonical tensors (workers/weights.py) to Keras variables, remembering which.
    Keras' layouts are the canonical ones already (Dense [in, out], Conv2D HWIO)."""

    def __init__(self, params: dict):
        self.params, self.used = params, set()

    def put(self, variable, name: str) -> None:
        import weights
        weights.expect_shape(name, self.params[name], variable.shape, "tensorflow")
        variable.assign(self.params[name])
        self.used.add(name)

    def dense(self, layer, name: str) -> None:
        self.put(layer.kernel, f"{name}.kernel")
        self.put(layer.bias, f"{name}.bias")

    def norm(self, layer, name: str) -> None:
        self.put(layer.gamma, f"{name}.gamma")
        self.put(layer.beta, f"{name}.beta")


def load_mlp(model, spec: dict, w: _Loader) -> None:
    for i in range(len(spec["hidden"]) + 1):
        w.dense(model.get_layer(f"dense{i}"), f"dense{i}")


def load_cnn(model, spec: dict, w: _Loader) -> None:
    """BatchNormalization gamma/beta/moving_mean/moving_variance."""
    j = 0
    while f"conv{j}.kernel" in w.params:
        w.put(model.get_layer(f"conv{j}").kernel, f"conv{j}.kernel")
        bn = model.get_layer(f"bn{j}")
        w.norm(bn, f"bn{j}")
        w.put(bn.moving_mean, f"bn{j}.mean")
        w.put(bn.moving_variance, f"bn{j}.var")
        j += 1
    w.dense(model.get_layer("fc"), "fc")


def load_blocks(model, spec: dict, w: _Loader) -> None:
    """The pre-norm Blocks of the transformer and the vit (layers named block<i>)."""
    for i in range(spec["n_layers"]):
        blk, b = model.get_layer(f"block{i}"), f"block{i}"
        w.norm(blk.ln1, f"{b}.ln1")
        w.norm(blk.ln2, f"{b}.ln2")
        for attr, canon in (("qkv", "qkv"), ("proj", "proj"), ("fc1", "fc"), ("fc2", "out")):
            w.dense(getattr(blk, attr), f"{b}.{canon}")


def load_transformer(model, spec: dict, w: _Loader) -> None:
    w.put(model.get_layer("tok").embeddings, "tok")
    w.put(model.get_layer("pos").pos, "pos")
    load_blocks(model, spec, w)
    w.norm(model.get_layer("ln_f"), "ln_f")


def load_lstm(model, spec: dict, w: _Loader) -> None:
    """LSTM kernel [in, 4h] / recurrent_kernel [h, 4h] / one bias, gates i, f, c(=g), o."""
    for layer in range(spec["n_layers"]):
        cell, n = model.get_layer(f"lstm{layer}").cell, f"lstm{layer}"
        w.put(cell.kernel, f"{n}.kernel")
        w.put(cell.recurrent_kernel, f"{n}.recurrent")
        w.put(cell.bias, f"{n}.bias")
    w.dense(model.get_layer("fc"), "fc")


def load_vit(model, spec: dict, w: _Loader) -> None:
    w.dense(model.get_layer("patch"), "patch")  # Conv2D kernel HWIO: the canonical layout
    w.put(model.get_layer("cls").cls, "cls")
    w.put(model.get_layer("pos").pos, "pos")
    load_blocks(model, spec, w)
    w.norm(model.get_layer("ln_f"), "ln_f")
    w.dense(model.get_layer("head"), "head")


# One canonical-weight loader per built-in model; layers are found by the names the builders
# give them (the canonical names).
LOADERS = {"mlp": load_mlp, "cnn": load_cnn, "transformer": load_transformer,
           "lstm": load_lstm, "vit": load_vit}
# Models whose logits come from a head tied to the embedding, computed in the compute dtype.
TIED_HEAD = ("transformer",)


def load_canonical(model, spec: dict, params: dict) -> None:
    """Assign the canonical weights (workers/weights.py) to the Keras model."""
    import weights

    if spec["model"] not in LOADERS:
        raise ValueError(f"unknown model {spec['model']!r}")
    w = _Loader(params)
    LOADERS[spec["model"]](model, spec, w)
    weights.check_consumed(params, w.used, "tensorflow")


def _spec_adam_cls():
    """Adam as specs.py (torch, optax) define it: var -= lr * m_hat / (sqrt(v_hat) + eps).

    Keras' Adam adds epsilon to the *uncorrected* sqrt(v) ("epsilon hat"), which is the spec's
    rule with eps * sqrt(1 - beta2^t) (3e-10 instead of 1e-8 at the first step): gradients
    near eps get other updates, visible to the equivalence gate as a loss drift after a few
    steps. Same op count as Keras' own update, so the timing is unaffected.
    """

    class SpecAdam(keras.optimizers.Adam):
        def update_step(self, gradient, variable, learning_rate):
            ops = keras.ops
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            step = ops.cast(self.iterations + 1, variable.dtype)
            c1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
            c2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v),
                                            1 - self.beta_2))
            # lr * (m / c1) / (sqrt(v / c2) + eps), rearranged so that the bias corrections are
            # scalars: one full-size op fewer per variable than the literal form.
            sqrt_c2 = ops.sqrt(c2)
            denom = ops.add(ops.sqrt(v), self.epsilon * sqrt_c2)
            self.assign_sub(variable, ops.divide(ops.multiply(m, lr * sqrt_c2 / c1), denom))

    return SpecAdam


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
            opt = _spec_adam_cls()(learning_rate=spec["learning_rate"], beta_1=spec["beta1"],
                                        beta_2=spec["beta2"], epsilon=spec["adam_eps"])
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
            load_canonical(self.model, self.spec, params)

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
            "tied_head_dtype": (policy.compute_dtype if self.spec["model"] in TIED_HEAD
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
    harness.main(TensorFlowBackend, "tensorflow", import_framework)
