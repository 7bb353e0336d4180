"""The built-in spec models written once in Keras 3, for every Keras backend (keras-jax,
keras-torch, keras-tensorflow), and the canonical weights loaded into them.

Owns: one builder per built-in model in `BUILDERS` (mlp, cnn, transformer, lstm; and vit, for a
tree whose specs have it: workers/models/vit.py), following the
conventions of specs.py exactly (dense y = x @ W + b; conv without bias, symmetric k//2 padding,
batch norm eps 1e-5 and momentum 0.9 in Keras' convention; pre-norm transformer blocks with GELU
tanh, causal attention scaled by 1/sqrt(head_dim), final layer norm, output head tied to the token
embedding; one LSTM bias of 4*hidden with gates i, f, g, o), written in `keras.layers` and
`keras.ops` only (no tf.*, torch.* or jax.*: the same code runs on every backend), layers named
by the canonical weight names of weights.py; and `load_canonical`, which assigns those weights
(Keras' layouts are the canonical ones: Dense [in, out], Conv2D HWIO, LSTM kernel [in, 4h]).

A model without a builder here raises `NoKerasBuilder` (the worker turns it into a skip naming
the models that have one). The `keras` module is passed in by the caller (keras_worker, after it
has chosen the backend); this file imports only the standard library (weights.py lazily); never
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
            return x + self.fc2(ops.gelu(self.fc1(self.ln2(x)), approximate=True))

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


# --- the canonical weights ---------------------------------------------------------------------

def load_canonical(model, spec: dict, params: dict, framework: str) -> None:
    """Assign the canonical weights (workers/weights.py) to a model `build` made: layers are
    found by the canonical names the builders give them; every tensor must be used."""
    import weights

    used: set = set()

    def put(variable, name: str) -> None:
        weights.expect_shape(name, params[name], variable.shape, framework)
        variable.assign(params[name])
        used.add(name)

    def dense(layer, name):
        put(layer.kernel, f"{name}.kernel")
        put(layer.bias, f"{name}.bias")

    def norm(layer, name):
        put(layer.gamma, f"{name}.gamma")
        put(layer.beta, f"{name}.beta")

    m = spec["model"]
    builder(m)
    get = model.get_layer
    if m == "mlp":
        for i in range(len(spec["hidden"]) + 1):
            dense(get(f"dense{i}"), f"dense{i}")
    elif m == "cnn":
        j = 0
        while f"conv{j}.kernel" in params:
            put(get(f"conv{j}").kernel, f"conv{j}.kernel")
            bn = get(f"bn{j}")
            norm(bn, f"bn{j}")
            put(bn.moving_mean, f"bn{j}.mean")
            put(bn.moving_variance, f"bn{j}.var")
            j += 1
        dense(get("fc"), "fc")
    elif m in ("transformer", "vit"):
        if m == "transformer":
            put(get("tok").embeddings, "tok")
        else:
            dense(get("patch"), "patch")  # Conv2D kernel HWIO: the canonical layout
            put(get("cls").cls, "cls")
        put(get("pos").pos, "pos")
        for i in range(spec["n_layers"]):
            blk, b = get(f"block{i}"), f"block{i}"
            norm(blk.ln1, f"{b}.ln1")
            norm(blk.ln2, f"{b}.ln2")
            for attr, canon in (("qkv", "qkv"), ("proj", "proj"), ("fc1", "fc"), ("fc2", "out")):
                dense(getattr(blk, attr), f"{b}.{canon}")
        norm(get("ln_f"), "ln_f")
        if m == "vit":
            dense(get("head"), "head")
    elif m == "lstm":
        for layer in range(spec["n_layers"]):
            cell, n = get(f"lstm{layer}").cell, f"lstm{layer}"
            put(cell.kernel, f"{n}.kernel")
            put(cell.recurrent_kernel, f"{n}.recurrent")
            put(cell.bias, f"{n}.bias")
        dense(get("fc"), "fc")
    weights.check_consumed(params, used, framework)
