"""The one Keras zoo: the built-in spec models written once in Keras 3, for the tensorflow
worker and every Keras backend (keras-jax, keras-torch, keras-tensorflow), the canonical weights
loaded into them, and the spec's Adam (`spec_adam`).

Owns: one builder per built-in model in `BUILDERS` (mlp, cnn, transformer, lstm; and vit, for a
tree whose specs have it: workers/models/vit.py), following the
conventions of specs.py exactly (dense y = x @ W + b; conv without bias, symmetric k//2 padding,
batch norm eps 1e-5 and momentum 0.9 in Keras' convention; pre-norm transformer blocks with GELU
tanh, causal attention scaled by 1/sqrt(head_dim), final layer norm, output head tied to the token
embedding; one LSTM bias of 4*hidden with gates i, f, g, o), written in `keras.layers` and
`keras.ops` only (no tf.*, torch.* or jax.*: the same code runs on every backend), layers named
by the canonical weight names of weights.py; and `load_canonical`, which assigns those weights
generically, each variable the tensor its path names (`canonical_name`; Keras' layouts are the
canonical ones: Dense [in, out], Conv2D HWIO, LSTM kernel [in, 4h]).

A model without a builder here raises `NoKerasBuilder` (the worker turns it into a skip naming
the models that have one). The `keras` module is passed in by the caller (tensorflow_worker, or
keras_worker after it has chosen the backend); this file imports only the standard library (weights.py lazily); never
mlbench or a framework.
"""
from __future__ import annotations

import math


class NoKerasBuilder(LookupError):
    """A built-in model that has no Keras 3 builder (yet)."""


def builder(model: str):
    if model not in BUILDERS:
        raise NoKerasBuilder(f"model {model} has no Keras 3 builder (built-in models with one: "
                             f"{', '.join(BUILDERS)}; or give a model file with keras())")
    return BUILDERS[model]


def build(keras, spec: dict):
    """The Keras functional model of `spec` (float32 logits under every precision policy)."""
    return builder(spec["model"])(keras, spec)


# --- builders (keras is the caller's module: its backend is already chosen) --------------------

def build_mlp(keras, spec: dict):
    layers = keras.layers
    inp = keras.Input((spec["input_dim"],), dtype="float32")
    x = inp
    for i, width in enumerate(spec["hidden"]):
        x = layers.Dense(width, activation="relu", name=f"dense{i}")(x)
    out = layers.Dense(spec["num_classes"], dtype="float32",
                       name=f"dense{len(spec['hidden'])}")(x)
    return keras.Model(inp, out, name="mlp")


def build_cnn(keras, spec: dict):
    layers = keras.layers
    bn = dict(epsilon=spec["bn_eps"], momentum=1.0 - spec["bn_momentum"])  # keras 0.9 == torch 0.1
    count = [0]  # conv j / bn j named in specs._cnn_layers order (the canonical weights')

    def conv_bn(x, filters, k, stride):
        # At stride 1 and odd k, 'same' is exactly symmetric k//2 padding. At stride 2 'same'
        # pads asymmetrically (right/bottom only) and would not be the spec's model: explicit
        # symmetric padding, then 'valid'.
        padding = "same"
        if stride > 1 and k // 2:
            x = layers.ZeroPadding2D(k // 2)(x)
            padding = "valid"
        j, count[0] = count[0], count[0] + 1
        x = layers.Conv2D(filters, k, strides=stride, padding=padding, use_bias=False,
                          name=f"conv{j}")(x)
        return layers.BatchNormalization(**bn, name=f"bn{j}")(x)

    s = spec["image_size"]
    inp = keras.Input((s, s, spec["channels"]), dtype="float32")  # NHWC, the canonical layout
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
    out = layers.Dense(spec["num_classes"], dtype="float32", name="fc")(x)
    return keras.Model(inp, out, name="cnn")


def _transformer_layers(keras):
    """The transformer layers Keras lacks (tied embedding, learned positions, a GPT-2 block),
    in keras.ops only."""
    ops = keras.ops

    class TiedEmbedding(keras.layers.Embedding):
        """Token embedding that, called with reverse=True, is the output head h @ E^T (no bias),
        computed in the compute dtype and returned in float32 (softmax and loss in float32)."""

        tied_head = True  # read by has_tied_head (the tensorflow worker's settings)

        def call(self, inputs, reverse=False):
            if not reverse:
                return super().call(inputs)
            w = ops.cast(self.embeddings, inputs.dtype)
            return ops.cast(ops.matmul(inputs, ops.transpose(w)), "float32")

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
            return x + ops.cast(self.pos, x.dtype)[: x.shape[1]]

    class ClassToken(keras.layers.Layer):
        """A learned vector (d,) prepended to the token sequence (the vit's class token)."""

        def __init__(self, d, **kw):
            super().__init__(**kw)
            self.d = d

        def build(self, input_shape):
            self.cls = self.add_weight(shape=(self.d,), name="cls",
                                       initializer=keras.initializers.RandomNormal(stddev=0.02))

        def call(self, x):
            cls = ops.cast(self.cls, x.dtype)[None, None, :] + ops.zeros_like(x[:, :1, :1])
            return ops.concatenate([cls, x], axis=1)

        def compute_output_shape(self, input_shape):
            n = None if input_shape[1] is None else input_shape[1] + 1
            return (input_shape[0], n, self.d)

    class Block(keras.layers.Layer):
        """Pre-norm block: x + proj(attn(ln1(x))); x + out(gelu_tanh(fc(ln2(x)))); attention
        causal for the transformer, not for the vit."""

        def __init__(self, d, n_heads, eps, causal=True, **kw):
            super().__init__(**kw)
            self.d, self.h, self.causal = d, n_heads, causal
            # named by the canonical names (_common.pre_norm_block): the weights load by path
            self.ln1 = keras.layers.LayerNormalization(epsilon=eps, name="ln1")
            self.qkv = keras.layers.Dense(3 * d, name="qkv")
            self.proj = keras.layers.Dense(d, name="proj")
            self.ln2 = keras.layers.LayerNormalization(epsilon=eps, name="ln2")
            self.fc = keras.layers.Dense(4 * d, name="fc")
            self.out = keras.layers.Dense(d, name="out")

        def build(self, input_shape):
            d = self.d
            self.ln1.build(input_shape)
            self.qkv.build(input_shape)
            self.proj.build((*input_shape[:-1], d))
            self.ln2.build(input_shape)
            self.fc.build(input_shape)
            self.out.build((*input_shape[:-1], 4 * d))

        def call(self, x):
            t, d, h = x.shape[1], self.d, self.h
            hd = d // h
            qkv = ops.reshape(self.qkv(self.ln1(x)), (-1, t, 3, h, hd))
            qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, H, T, hd)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
            scores = scores * ops.cast(1.0 / math.sqrt(hd), scores.dtype)
            # softmax in float32 (as Keras' MultiHeadAttention does under mixed precision)
            scores = ops.cast(scores, "float32")
            if self.causal:
                i = ops.arange(t)
                causal = ops.expand_dims(i, 1) >= ops.expand_dims(i, 0)
                scores = ops.where(causal, scores, -1e9)
            attn = ops.cast(ops.softmax(scores, axis=-1), v.dtype)
            o = ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (-1, t, d))
            x = x + self.proj(o)
            return x + self.out(ops.gelu(self.fc(self.ln2(x)), approximate=True))

    return TiedEmbedding, PositionEmbedding, Block, ClassToken


def build_transformer(keras, spec: dict):
    TiedEmbedding, PositionEmbedding, Block, _ = _transformer_layers(keras)
    v, t, d = spec["vocab_size"], spec["seq_len"], spec["d_model"]
    inp = keras.Input((t,), dtype="int32")
    emb = TiedEmbedding(v, d, embeddings_initializer=keras.initializers.RandomNormal(
        stddev=0.02), name="tok")
    x = PositionEmbedding(t, d, name="pos")(emb(inp))
    for i in range(spec["n_layers"]):
        x = Block(d, spec["n_heads"], spec["ln_eps"], name=f"block{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=spec["ln_eps"], name="ln_f")(x)
    return keras.Model(inp, emb(x, reverse=True), name="transformer")


def build_lstm(keras, spec: dict):
    layers = keras.layers
    inp = keras.Input((spec["seq_len"], spec["input_dim"]), dtype="float32")
    x = inp
    for layer in range(spec["n_layers"]):
        # Keras' defaults are the spec's: tanh, sigmoid gates, one bias [4h] (i, f, c, o)
        x = layers.LSTM(spec["hidden"], return_sequences=layer < spec["n_layers"] - 1,
                        name=f"lstm{layer}")(x)
    out = layers.Dense(spec["num_classes"], dtype="float32", name="fc")(x)
    return keras.Model(inp, out, name="lstm")


def build_vit(keras, spec: dict):
    """Only where the spec knows the vit (workers/models/vit.py): patch conv (kernel = stride =
    patch, with bias), class token, learned positions, non-causal pre-norm blocks, final layer
    norm, dense head on the class token."""
    _, PositionEmbedding, Block, ClassToken = _transformer_layers(keras)
    s, p, d = spec["image_size"], spec["patch_size"], spec["d_model"]
    inp = keras.Input((s, s, spec["channels"]), dtype="float32")  # NHWC
    x = keras.layers.Conv2D(d, p, strides=p, padding="valid", name="patch")(inp)
    x = keras.layers.Reshape(((s // p) ** 2, d))(x)  # row-major patches, as torch's flatten
    x = PositionEmbedding((s // p) ** 2 + 1, d, name="pos")(ClassToken(d, name="cls")(x))
    for i in range(spec["n_layers"]):
        x = Block(d, spec["n_heads"], spec["ln_eps"], causal=False, name=f"block{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=spec["ln_eps"], name="ln_f")(x)
    out = keras.layers.Dense(spec["num_classes"], dtype="float32", name="head")(x[:, 0])
    return keras.Model(inp, out, name="vit")


BUILDERS = {"mlp": build_mlp, "cnn": build_cnn, "transformer": build_transformer,
            "lstm": build_lstm, "vit": build_vit}


def has_tied_head(model) -> bool:
    """Whether the model's logits come from a head tied to its embedding (computed in the
    compute dtype: a fact of the cell's settings)."""
    return any(getattr(layer, "tied_head", False) for layer in model.layers)


# --- the canonical weights ---------------------------------------------------------------------

# Keras' own variable names that the canonical layout spells otherwise (workers/weights.py);
# None: the layer's one tensor, named as the layer (an embedding's table).
KERAS_NAMES = {"embeddings": None, "moving_mean": "mean", "moving_variance": "var",
               "recurrent_kernel": "recurrent"}


def canonical_name(path: str) -> str:
    """The canonical name of a Keras variable, from its path: layers are named by the canonical
    names (`block0/qkv/kernel` -> `block0.qkv.kernel`); an RNN's cell is not a level of its own
    (`lstm0/lstm_cell/kernel` -> `lstm0.kernel`); a weight named as its layer is the layer's
    tensor (`pos/pos` -> `pos`); Keras' spellings per KERAS_NAMES (`bn0/moving_mean` ->
    `bn0.mean`, `tok/embeddings` -> `tok`)."""
    *layers, var = [part for part in path.split("/") if not part.endswith("_cell")]
    var = KERAS_NAMES.get(var, var)
    if var is None or (layers and layers[-1] == var):
        return ".".join(layers)
    return ".".join([*layers, var])


def load_canonical(model, spec: dict, params: dict, framework: str) -> None:
    """Assign the canonical weights (workers/weights.py) to a model `build` made, each to the
    variable whose path names it (`canonical_name`): Keras' layouts are the canonical ones.
    Every variable must get one and every tensor must be used."""
    import weights

    builder(spec["model"])
    used: set = set()
    for variable in model.weights:
        name = canonical_name(variable.path)
        if name not in params:
            raise weights.WeightMismatch(f"{framework}: the model's {variable.path} ({name}) "
                                         "has no canonical weight")
        weights.expect_shape(name, params[name], variable.shape, framework)
        variable.assign(params[name])
        used.add(name)
    weights.check_consumed(params, used, framework)


def spec_adam(keras):
    """Adam as specs.py (torch, optax) define it: var -= lr * m_hat / (sqrt(v_hat) + eps).

    Keras' Adam adds epsilon to the *uncorrected* sqrt(v) ("epsilon hat"), which is the spec's
    rule with eps * sqrt(1 - beta2^t) (3e-10 instead of 1e-8 at the first step): gradients
    near eps get other updates, visible to the equivalence gate as a loss drift after a few
    steps. Same op count as Keras' own update, so the timing is unaffected. In keras.ops only:
    the tensorflow worker and every Keras backend use it.
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
