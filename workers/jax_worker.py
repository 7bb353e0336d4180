"""JAX worker: the built-in models in flax.linen, trained with optax Adam under jax.jit.

Owns: the JAX/Flax build of the models of workers/models/ (`mlp`, `cnn`, `transformer`, `lstm`,
`vit`: one builder each in BUILDERS, every layer named by its canonical weight name), the
canonical weights loaded generically by that naming convention (`load_canonical`: LEAF_NAMES per
layer type, GATE_SPLIT for flax's per-gate LSTM cell; no per-model loader), the jitted train
step (state donated, batches sliced on the device from data put there once), mixed precision
(bf16; fp16 with dynamic loss scaling by hand), thread and matmul-precision settings.
Flax derives each layer's own initial weights from its path, so these names decide JAX's own
seeded initialisation (they replaced Flax's automatic Dense_0, BasicBlock_0/Conv_1, ... names,
which changed it once); the gate and `init: canonical` cells load the canonical weights instead.
Imports the harness, specs, numpy, jax, flax and optax only (jax/flax/optax in import_framework).
"""
from __future__ import annotations

import inspect
import itertools
import os
from functools import partial
from typing import Any, Sequence

import driver
import harness
import specs
from harness import DeviceUnusable, FrameworkInterface, SkipCell

# imported by import_framework, timed like any framework import
np = jax = jnp = lax = nn = optax = flax = traverse_util = None

OPTIONS = {"donate": bool}  # request['options'] keys this worker accepts, with their types
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# fp16 dynamic loss scaling, as torch.cuda.amp.GradScaler's defaults
SCALE_INIT, SCALE_GROWTH_INTERVAL = 2.0 ** 16, 2000
_THREADS: dict = {}  # what import_framework did about threads, for settings()
# jax.monitoring's event for one trace of a jitted function (a compilation of it for new argument
# shapes); counted per function name from import_framework on
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_TRACES: dict[str, int] = {}
_COUNTING = False  # the listener is registered (once, though tests import the framework again)


def _define_models():
    """The flax modules; defined after the import so this file imports without jax. Every layer
    is named by its canonical name (workers/weights.py), so `load_canonical` finds its weights
    by the naming convention (LEAF_NAMES)."""
    global MLP, CNN, Transformer, LSTMClassifier, ViT

    class MLP(nn.Module):
        hidden: Sequence[int]
        num_classes: int
        dtype: Any = jnp.float32

        @nn.compact
        def __call__(self, x, train: bool = False):
            for i, width in enumerate(self.hidden):
                x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"dense{i}")(x))
            return nn.Dense(self.num_classes, dtype=self.dtype, name=f"dense{len(self.hidden)}")(x)

    class CNN(nn.Module):
        """ResNet with BasicBlocks; explicit symmetric padding so it equals torch's layer for
        layer ('SAME' pads stride-2 convolutions asymmetrically). A block is a function, not a
        module of its own: its layers sit in the model's scope as conv<j>/bn<j>, numbered in
        models/cnn.py `layers` order (stem, then per block conv1, conv2, shortcut conv)."""
        widths: Sequence[int]
        blocks: Sequence[int]
        stem: str
        num_classes: int
        dtype: Any = jnp.float32
        bn_eps: float = 1e-5
        bn_momentum: float = 0.9  # flax convention: 1 - the spec's (torch's) momentum

        @nn.compact
        def __call__(self, x, train: bool = False):
            count = itertools.count()  # j of conv<j>/bn<j>, in call order

            def conv_bn(x, width, k, stride):
                j, pad = next(count), ((k // 2, k // 2),) * 2
                x = nn.Conv(width, (k, k), (stride, stride), padding=pad, use_bias=False,
                            dtype=self.dtype, name=f"conv{j}")(x)
                return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                    epsilon=self.bn_eps, dtype=self.dtype, name=f"bn{j}")(x)

            w0 = self.widths[0]
            if self.stem == "imagenet":
                x = nn.relu(conv_bn(x, w0, 7, 2))
                x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
            else:
                x = nn.relu(conv_bn(x, w0, 3, 1))
            for stage, (width, n) in enumerate(zip(self.widths, self.blocks)):
                for b in range(n):
                    stride = 2 if (stage > 0 and b == 0) else 1
                    y = nn.relu(conv_bn(x, width, 3, stride))
                    y = conv_bn(y, width, 3, 1)
                    if stride != 1 or x.shape[-1] != width:
                        x = conv_bn(x, width, 1, stride)
                    x = nn.relu(y + x)
            x = jnp.mean(x, axis=(1, 2))
            return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)

    class Block(nn.Module):
        """Pre-norm block; the attention causal for the transformer, not for the vit. Layers
        named as in _common.pre_norm_block (ln1, qkv, proj, ln2, fc, out)."""
        n_heads: int
        dtype: Any
        attention: str
        ln_eps: float = 1e-5
        causal: bool = True

        @nn.compact
        def __call__(self, x):
            b, t, d = x.shape
            h = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="ln1")(x)
            qkv = nn.Dense(3 * d, dtype=self.dtype, name="qkv")(h)
            q, k, v = (a.reshape(b, t, self.n_heads, d // self.n_heads)
                       for a in jnp.split(qkv, 3, axis=-1))
            if self.attention in ("cudnn", "xla"):
                # scale 1/sqrt(head_dim); cuDNN's fused (flash) kernel on GPU at bf16/fp16, the
                # fused kernel torch's SDPA also uses there; else XLA, softmax in float32
                att = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal,
                                                   implementation=self.attention)
            else:
                att = _explicit_attention(q, k, v, self.causal)
            att = att.reshape(b, t, d)
            x = x + nn.Dense(d, dtype=self.dtype, name="proj")(att)
            h = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="ln2")(x)
            h = nn.gelu(nn.Dense(4 * d, dtype=self.dtype, name="fc")(h), approximate=True)
            return x + nn.Dense(d, dtype=self.dtype, name="out")(h)

    class Transformer(nn.Module):
        """GPT-2 style decoder-only LM; the head is the token embedding (tied, no bias)."""
        vocab_size: int
        seq_len: int
        d_model: int
        n_layers: int
        n_heads: int
        dtype: Any = jnp.float32
        attention: str = "xla"
        ln_eps: float = 1e-5

        @nn.compact
        def __call__(self, tokens, train: bool = False):
            init = nn.initializers.normal(0.02)  # GPT-2's; flax's default (std 1) is too wide
            tok = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype,
                           embedding_init=init, name="tok")
            pos = nn.Embed(self.seq_len, self.d_model, dtype=self.dtype,
                           embedding_init=init, name="pos")
            x = tok(tokens) + pos(jnp.arange(tokens.shape[1]))[None]
            for i in range(self.n_layers):
                x = Block(self.n_heads, self.dtype, self.attention, self.ln_eps,
                          name=f"block{i}")(x)
            x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="ln_f")(x)
            return tok.attend(x)

    class ViT(nn.Module):
        """Vision Transformer: patch embedding (Conv, kernel = stride = patch), class token,
        learned positions, pre-norm blocks without a causal mask, final LN, head on the class
        token. Takes NHWC images."""
        patch_size: int
        d_model: int
        n_layers: int
        n_heads: int
        num_classes: int
        dtype: Any = jnp.float32
        attention: str = "xla"
        ln_eps: float = 1e-5

        @nn.compact
        def __call__(self, x, train: bool = False):
            p, d = self.patch_size, self.d_model
            x = nn.Conv(d, (p, p), (p, p), padding="VALID", dtype=self.dtype, name="patch")(x)
            b = x.shape[0]
            x = x.reshape(b, -1, d)  # row-major patches, as torch's flatten
            init = nn.initializers.normal(0.02)
            cls = self.param("cls", init, (d,))
            pos = self.param("pos", init, (x.shape[1] + 1, d))
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
            x = x + pos.astype(x.dtype)
            for i in range(self.n_layers):
                x = Block(self.n_heads, self.dtype, self.attention, self.ln_eps, causal=False,
                          name=f"block{i}")(x)
            x = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="ln_f")(x)
            return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x[:, 0])

    class LSTMClassifier(nn.Module):
        """Stacked LSTM (flax layout: input kernels without bias, hidden kernels with bias, i.e.
        one 4*hidden bias per layer); classifies from the last time step."""
        hidden: int
        n_layers: int
        num_classes: int
        dtype: Any = jnp.float32

        @nn.compact
        def __call__(self, x, train: bool = False):
            for layer in range(self.n_layers):
                x = nn.RNN(nn.OptimizedLSTMCell(self.hidden, dtype=self.dtype,
                                                name=f"lstm{layer}"))(x)
            return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x[:, -1])


def _explicit_attention(q, k, v, causal: bool = True):
    """Attention written out, the same maths as the XLA path of jax.nn.dot_product_attention
    (f32 logits and softmax). Used for fp16 on the CPU, where that function's backward pass asks
    for the F16_F16_F32 dot algorithm, which XLA:CPU lacks."""
    t, h = q.shape[1], q.shape[-1]
    logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) / h ** 0.5
    if causal:
        logits = jnp.where(jnp.tril(jnp.ones((t, t), bool)), logits,
                           jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bnts,bsnh->btnh", probs, v)


def attention_kind(precision: str, platform: str) -> str:
    """'cudnn' (fused flash attention) on a GPU at bf16/fp16, 'explicit' for fp16 on the CPU,
    else 'xla' (XLA's own attention: every score matrix materialised)."""
    if platform == "gpu" and precision in ("bf16", "fp16"):
        return "cudnn"
    return "explicit" if (precision == "fp16" and platform == "cpu") else "xla"


def cudnn_attention_error(spec: dict, dtype) -> str | None:
    """None if cuDNN's fused attention compiles and runs (forward and backward) for this
    model's attention shapes here; else why not (head size, sequence length, cuDNN version...)."""
    att = specs.attention(spec)
    q = jnp.ones((1, att["tokens"], att["heads"], att["head_dim"]), dtype)
    try:
        f = jax.jit(jax.grad(lambda q: jax.nn.dot_product_attention(
            q, q, q, is_causal=att["causal"], implementation="cudnn").astype(jnp.float32).sum()))
        f(q).block_until_ready()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "use XLA's attention"
        return f"{type(exc).__name__}: {str(exc)[:300]}"


def make_mlp(spec: dict, dtype, attention: str):
    return MLP(tuple(spec["hidden"]), spec["num_classes"], dtype)


def make_cnn(spec: dict, dtype, attention: str):
    return CNN(tuple(spec["widths"]), tuple(spec["blocks"]), spec["stem"],
               spec["num_classes"], dtype, spec["bn_eps"], 1.0 - spec["bn_momentum"])


def make_transformer(spec: dict, dtype, attention: str):
    return Transformer(spec["vocab_size"], spec["seq_len"], spec["d_model"],
                       spec["n_layers"], spec["n_heads"], dtype, attention, spec["ln_eps"])


def make_lstm(spec: dict, dtype, attention: str):
    return LSTMClassifier(spec["hidden"], spec["n_layers"], spec["num_classes"], dtype)


def make_vit(spec: dict, dtype, attention: str):
    return ViT(spec["patch_size"], spec["d_model"], spec["n_layers"], spec["n_heads"],
               spec["num_classes"], dtype, attention, spec["ln_eps"])


# One builder per built-in model (workers/models/): (spec, compute dtype, attention kind) ->
# a flax.linen module taking (x, train).
BUILDERS = {"mlp": make_mlp, "cnn": make_cnn, "transformer": make_transformer,
            "lstm": make_lstm, "vit": make_vit}


def make_model(spec: dict, dtype, attention: str = "xla") -> Any:
    m = spec["model"]
    if m == "user":  # the user's own file: its jax(**options), Flax linen or NNX (adapted)
        import jax_nnx
        import usermodel
        return jax_nnx.adapt(usermodel.build(spec, "jax", jax_nnx.module_types(nn), jax_nnx.WHAT))
    if m not in BUILDERS:
        raise ValueError(f"unknown model {m!r}; the jax worker builds {', '.join(BUILDERS)}")
    return BUILDERS[m](spec, dtype, attention)


# The naming convention (workers/weights.py's canonical names): a layer is named by its
# canonical name (dense0, conv3, bn3, block0.qkv, tok, ...); its variables by the layer's type,
# {type: {(collection, flax leaf): canonical suffix}}, as pytorch_worker.TENSOR_NAMES. Flax's
# layouts are the canonical ones (Dense [in, out], Conv HWIO, Embed [n, d]). A variable of any
# other module is named by its path (the vit's own cls, pos).
LEAF_NAMES = {
    "Dense": {("params", "kernel"): ".kernel", ("params", "bias"): ".bias"},
    "Conv": {("params", "kernel"): ".kernel", ("params", "bias"): ".bias"},
    "LayerNorm": {("params", "scale"): ".gamma", ("params", "bias"): ".beta"},
    "BatchNorm": {("params", "scale"): ".gamma", ("params", "bias"): ".beta",
                  ("batch_stats", "mean"): ".mean", ("batch_stats", "var"): ".var"},
    "Embed": {("params", "embedding"): ""},  # the table itself: tok, pos
}

# The layer whose layout is not the canonical one, by type: flax's OptimizedLSTMCell keeps one
# kernel per gate, children i<gate> [in, h] (no bias) and h<gate> [h, h] (with the one bias),
# where the canonical lstm<l> puts the gates side by side (kernel [in, 4h], recurrent [h, 4h],
# bias [4h], gates i, f, g, o): {(child's first letter, leaf): canonical suffix}; each child
# takes its gate's h columns of that tensor.
GATE_SPLIT = {
    "OptimizedLSTMCell": {("i", "kernel"): ".kernel", ("h", "kernel"): ".recurrent",
                          ("h", "bias"): ".bias"},
}
GATES = "ifgo"


def layer_types(model, spec: dict) -> dict:
    """{scope path: layer type name} of every module `model` creates (traced, never run)."""
    types: dict = {}

    def record(call, args, kwargs, context):
        if context.module.scope is not None:  # an unbound copy (the RNN's carry) has no place
            types.setdefault(tuple(context.module.path), type(context.module).__name__)
        return call(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), _dummy_input(spec))
    return types


def _gate_columns(gate: int, array, shape):
    """One gate's columns of a canonical [.., 4h] LSTM tensor, for a flax leaf of `shape`."""
    import weights
    h = shape[-1]
    if array.shape[-1] != 4 * h:
        raise weights.WeightMismatch(f"jax: an LSTM gate of {h} units needs a canonical tensor "
                                     f"of {4 * h} columns, got {tuple(array.shape)}")
    return array[..., gate * h:(gate + 1) * h]


def canonical_leaves(model, spec: dict, variables: dict) -> list:
    """[(flax path (collection, *scope, leaf), canonical name, convert or None)] for every leaf
    of `variables` ({"params", "batch_stats"?}), found by the naming convention (LEAF_NAMES,
    GATE_SPLIT); convert(canonical array, flax shape) -> the leaf's array."""
    import weights
    types = layer_types(model, spec)
    out = []
    for path in traverse_util.flatten_dict(variables):
        collection, *scope, leaf = path
        rules = LEAF_NAMES.get(types.get(tuple(scope)))
        split = GATE_SPLIT.get(types.get(tuple(scope[:-1]))) if scope else None
        if rules is not None:
            suffix, convert = rules.get((collection, leaf)), None
        elif split is not None and len(scope[-1]) == 2 and scope[-1][1] in GATES:
            suffix = split.get((scope[-1][0], leaf))
            convert = partial(_gate_columns, GATES.index(scope[-1][1]))
            scope = scope[:-1]
        else:  # a module's own variable: its path
            scope, suffix, convert = [*scope, leaf], "", None
        if suffix is None:
            raise weights.WeightMismatch(f"jax: {'/'.join(path)} of a {types.get(tuple(scope))} "
                                         "has no canonical name")
        out.append((path, ".".join(scope) + suffix, convert))
    return out


def _count(variables) -> dict:
    size = lambda tree: int(sum(np.prod(a.shape) for a in jax.tree.leaves(tree)))  # noqa: E731
    return {"trainable": size(variables.get("params", {})),
            "non_trainable": size(variables.get("batch_stats", {}))}


def _dummy_input(spec: dict):
    import specs
    shape, dtype = specs.input_shape(spec)
    return jax.ShapeDtypeStruct((1, *shape), jnp.dtype(dtype))


class JaxBackend(FrameworkInterface):
    name = "jax"

    def __init__(self, request: dict):
        super().__init__(request)
        options = dict(request.get("options") or {})
        for key, value in options.items():
            if key not in OPTIONS:
                raise ValueError(f"unknown jax option {key!r}; allowed: {', '.join(OPTIONS)}")
            if not isinstance(value, OPTIONS[key]):
                raise ValueError(f"jax option {key!r} must be {OPTIONS[key].__name__}")
        self.donate = options.get("donate", True)
        self.precision = request.get("precision", "fp32")
        if self.precision not in DTYPES:
            raise ValueError(f"unknown precision {self.precision!r}; allowed: {', '.join(DTYPES)}")
        self.compute_dtype = jnp.dtype(DTYPES[self.precision])
        self.device = None

    # --- device and precision ------------------------------------------------------------
    def _resolve_device(self):
        dev = str(self.request.get("device", "cpu"))
        if dev == "cpu":
            return jax.devices("cpu")[0]
        if dev == "cuda" or dev.startswith("cuda:"):
            return gpu_devices(dev)[0]  # CUDA_VISIBLE_DEVICES holds the cell's one GPU
        raise SkipCell(f"device {dev} is not supported by the jax worker (cpu, cuda:N)")

    def framework_info(self) -> dict:
        return {"framework_version": jax.__version__, "device_name": _device_name(self.request)}

    def check_supported(self) -> None:
        self.device = self._resolve_device()
        jax.config.update("jax_default_device", self.device)
        if self.precision != "fp32":
            # Prove the compute dtype compiles and runs here (dot, conv) before timing anything.
            try:
                x = jnp.ones((2, 4, 4, 3), self.compute_dtype)
                w = jnp.ones((3, 3, 3, 8), self.compute_dtype)
                y = jax.jit(lambda x, w: jnp.einsum(  # a dot accumulating in f32 (attention)
                    "bi,ij->bj", lax.conv_general_dilated(
                        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
                    .reshape(2, -1), jnp.ones((128, 4), x.dtype),
                    preferred_element_type=jnp.float32).astype(x.dtype))(x, w)
                if y.dtype != self.compute_dtype or not bool(jnp.isfinite(y).all()):
                    raise RuntimeError(f"got {y.dtype}")
            except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
                raise SkipCell(f"precision {self.precision} not usable on "
                               f"{self.device.platform}: {exc}")

    # --- model ---------------------------------------------------------------------------
    def build_model(self, spec: dict) -> None:
        if self.device is None:
            self.check_supported()
        self.spec = spec
        self.attention = attention_kind(self.precision, self.device.platform)
        self.attention_note = None
        if self.attention == "cudnn" and specs.attention(spec) is not None:
            why = cudnn_attention_error(spec, self.compute_dtype)
            if why is not None:
                self.attention, self.attention_note = "xla", f"cudnn unavailable: {why}"
        self.model = make_model(spec, self.compute_dtype, self.attention)
        # built-in models take `train`; a user's module may not (then it has no BN/dropout)
        self.takes_train = spec["model"] != "user" or "train" in inspect.signature(
            type(self.model).__call__).parameters
        self.tx = optax.adam(spec["learning_rate"], b1=spec["beta1"], b2=spec["beta2"],
                             eps=spec["adam_eps"])
        dummy = _dummy_input(spec)
        key = jax.random.PRNGKey(int(self.request["seed"]))
        init = jax.jit(lambda key: self.model.init(key, jnp.zeros(dummy.shape, dummy.dtype)))
        try:
            # Init runs once: optimising its code (unrolled threefry) took 7 s of a 7.5 s
            # build for the tiny cnn on the CPU; level 0 compiles it in under a second.
            init = init.lower(key).compile(compiler_options={"xla_backend_optimization_level": 0})
        except Exception:  # noqa: BLE001 - an option this backend lacks: compile as usual
            pass
        variables = init(key)
        self.has_bn = "batch_stats" in variables
        params = variables["params"]
        self.state = {
            "params": params,
            "batch_stats": variables.get("batch_stats", {}),
            "opt_state": self.tx.init(params),
            "scale": jnp.float32(SCALE_INIT if self.loss_scaling else 1.0),
            "good_steps": jnp.int32(0),
            "skipped": jnp.int32(0),
        }
        self.state = jax.block_until_ready(jax.device_put(self.state, self.device))
        self._train = jax.jit(self._train_fn, donate_argnums=(0,) if self.donate else ())
        self._predict = jax.jit(self._predict_fn)
        self._eval = jax.jit(self._eval_fn)

    @property
    def loss_scaling(self) -> bool:
        return self.precision == "fp16"

    def count_parameters(self) -> dict:
        return _count(self.state)

    def count_parameters_abstract(self, spec: dict) -> dict:
        model = make_model(spec, self.compute_dtype)
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), _dummy_input(spec))
        return _count(shapes)

    # --- jitted functions ----------------------------------------------------------------
    def _apply(self, params, batch_stats, x, train: bool, f32: bool = True):
        variables = {"params": params}
        if self.has_bn:
            variables["batch_stats"] = batch_stats
        kw = {"train": train} if self.takes_train else {}
        if train and self.has_bn:
            logits, updates = self.model.apply(variables, x, mutable=["batch_stats"], **kw)
            batch_stats = updates["batch_stats"]
        else:
            logits = self.model.apply(variables, x, **kw)
        # training's logits and loss in float32; inference returns them in the compute dtype,
        # as torch's autocast does (the eval loss casts them itself)
        return (logits.astype(jnp.float32) if f32 else logits), batch_stats

    def _train_fn(self, state, x_all, y_all, index):
        x = lax.dynamic_slice_in_dim(x_all, index * self.bs, self.bs)
        y = lax.dynamic_slice_in_dim(y_all, index * self.bs, self.bs)

        def loss_fn(params):
            logits, batch_stats = self._apply(params, state["batch_stats"], x, True)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss * state["scale"], (loss, batch_stats)

        grads, (loss, batch_stats) = jax.grad(loss_fn, has_aux=True)(state["params"])
        new = dict(state, batch_stats=batch_stats)
        if self.loss_scaling:
            grads = jax.tree.map(lambda g: g / state["scale"], grads)
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        new.update(params=optax.apply_updates(state["params"], updates), opt_state=opt_state)
        if self.loss_scaling:
            # Dynamic loss scaling (GradScaler's rule): a step with non-finite gradients is
            # skipped and halves the scale; 2000 good steps in a row double it.
            finite = jnp.all(jnp.array([jnp.isfinite(g).all() for g in jax.tree.leaves(grads)]))
            keep = lambda a, b: jax.tree.map(lambda u, v: jnp.where(finite, u, v), a, b)  # noqa
            new.update(params=keep(new["params"], state["params"]),
                       opt_state=keep(new["opt_state"], state["opt_state"]),
                       batch_stats=keep(new["batch_stats"], state["batch_stats"]))
            good = jnp.where(finite, state["good_steps"] + 1, 0)
            grow = good >= SCALE_GROWTH_INTERVAL
            new["scale"] = jnp.where(finite, jnp.where(grow, state["scale"] * 2, state["scale"]),
                                     state["scale"] / 2)
            new["good_steps"] = jnp.where(grow, 0, good)
            new["skipped"] = state["skipped"] + (~finite).astype(jnp.int32)
        return new, loss

    def _predict_fn(self, params, batch_stats, x_all, index):
        x = lax.dynamic_slice_in_dim(x_all, index * self.bs, self.bs)
        return self._apply(params, batch_stats, x, False, f32=False)[0]

    def _eval_fn(self, params, batch_stats, x_all, y_all, mask_all, index):
        logits = self._predict_fn(params, batch_stats, x_all, index).astype(jnp.float32)
        y = lax.dynamic_slice_in_dim(y_all, index * self.bs, self.bs)
        mask = lax.dynamic_slice_in_dim(mask_all, index * self.bs, self.bs)
        mask = mask.reshape(mask.shape + (1,) * (y.ndim - 1))  # per sample -> per token
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
        count = jnp.broadcast_to(mask, y.shape).sum()
        return jnp.stack([(loss * mask).sum(), (correct * mask).sum(), count])

    # --- data and steps ------------------------------------------------------------------
    def load_data(self, data: dict) -> None:
        self.bs = int(self.request["batch_size"])
        n_eval = len(data["y_eval"])
        # Pad the eval split to whole batches (masked out), so one compiled function serves all.
        n_pad = -n_eval % self.bs if n_eval >= self.bs else self.bs - n_eval
        pad = lambda a: np.concatenate([a, np.zeros((n_pad, *a.shape[1:]), a.dtype)])  # noqa
        mask = np.concatenate([np.ones(n_eval, np.float32), np.zeros(n_pad, np.float32)])
        host = {"x_train": data["x_train"], "y_train": data["y_train"],
                "x_eval": pad(data["x_eval"]), "y_eval": pad(data["y_eval"]), "mask": mask}
        self.data = jax.block_until_ready(jax.device_put(host, self.device))
        self.n_eval_batches = len(mask) // self.bs

    def train_step(self, batch_index: int):
        self.state, loss = self._train(self.state, self.data["x_train"], self.data["y_train"],
                                       np.int32(batch_index))
        return loss

    def predict(self, batch_index: int):
        return self._predict(self.state["params"], self.state["batch_stats"],
                             self.data["x_eval"], np.int32(batch_index))

    def sync(self, value):
        value = jax.block_until_ready(value)
        return float(value) if getattr(value, "ndim", None) == 0 else value

    def sync_losses(self, losses):
        return [float(v) for v in jax.device_get(losses)]  # waits for every step of the block

    def evaluate(self) -> dict:
        total = jnp.zeros(3, jnp.float32)  # accumulated on the device, one sync at the end
        for i in range(self.n_eval_batches):
            total = total + self._eval(self.state["params"], self.state["batch_stats"],
                                       self.data["x_eval"], self.data["y_eval"],
                                       self.data["mask"], np.int32(i))
        loss_sum, correct, count = (float(v) for v in np.asarray(total))
        return {"loss": loss_sum / count, "accuracy": correct / count}

    # --- equivalence gate ----------------------------------------------------------------
    def load_canonical(self, params: dict) -> None:
        """The canonical weights (workers/weights.py) into the model, each leaf the tensor its
        canonical name finds (canonical_leaves); every leaf must get one of its shape and every
        canonical tensor must be used. The optimizer state starts afresh."""
        import weights
        current = {"params": self.state["params"]}
        if self.has_bn:
            current["batch_stats"] = self.state["batch_stats"]
        flat, new, used = traverse_util.flatten_dict(current), {}, set()
        for path, name, convert in canonical_leaves(self.model, self.spec, current):
            if name not in params:
                raise weights.WeightMismatch(f"jax: the model's {'/'.join(path)} ({name}) has "
                                             "no canonical weight")
            target = flat[path]
            array = params[name] if convert is None else convert(params[name], target.shape)
            weights.expect_shape(name, array, target.shape, "jax")
            new[path] = jnp.asarray(array, dtype=target.dtype)
            used.add(name)
        weights.check_consumed(params, used, "jax")
        tree = traverse_util.unflatten_dict(new)
        self.state = jax.block_until_ready(jax.device_put(dict(
            self.state, params=tree["params"], batch_stats=tree.get("batch_stats", {}),
            opt_state=self.tx.init(tree["params"])), self.device))

    def to_numpy(self, output):
        return np.asarray(jax.block_until_ready(output), dtype=np.float32)

    def count_flops(self) -> int | None:
        """Forward FLOPs per sample of a user's model, from XLA's cost analysis."""
        cost = self._predict.lower(self.state["params"], self.state["batch_stats"],
                                   self.data["x_eval"], np.int32(0)).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return int(cost["flops"] / self.bs) if cost and cost.get("flops") else None

    def received_batch(self, split: str, index: int) -> tuple:
        s = slice(index * self.bs, (index + 1) * self.bs)
        return np.asarray(self.data[f"x_{split}"][s]), np.asarray(self.data[f"y_{split}"][s])

    # --- reporting -----------------------------------------------------------------------
    MEMORY_FIGURE = ("jax memory_stats peak_bytes_in_use: allocator bytes in use over the whole "
                     "process (no reset in JAX); train/infer: XLA's memory_analysis of the "
                     "compiled step (arguments + outputs + temporaries - aliased)")

    def get_memory_usage(self) -> dict:
        stats = self.device.memory_stats() if self.device is not None else None
        out = {"peak_device_bytes": int(stats["peak_bytes_in_use"]) if stats else None}
        if stats and self.device.platform == "gpu":  # XLA autotuning scratch is in the peak
            idx = np.int32(0)
            out.update(self.phase_memory(), peak_device_reset_after_warmup=False,
                       peak_device_train_bytes=compiled_bytes(
                           self._train, self.state, self.data["x_train"],
                           self.data["y_train"], idx),
                       peak_device_infer_bytes=compiled_bytes(
                           self._predict, self.state["params"], self.state["batch_stats"],
                           self.data["x_eval"], idx))
        return out

    def settings(self) -> dict:
        out = {
            **_THREADS,
            "matmul_precision": jax.config.jax_default_matmul_precision
            or "default (cpu: full float32, no tf32)",
            "tf32_requested": bool(self.request.get("tf32")),
            "jit": True,
            "donate_state": self.donate,
            "precision": self.precision,
            "compute_dtype": str(self.compute_dtype),
            # Flax dtype=compute dtype: every activation (norms and residual stream too)
            "activation_dtype": str(self.compute_dtype),
            "inference_output_dtype": str(self.compute_dtype),
            "cudnn_version": _cudnn_version(),
            "param_dtype": "float32",
            "loss_scaling": ({"kind": "dynamic", "init": SCALE_INIT,
                              "growth_interval": SCALE_GROWTH_INTERVAL}
                             if self.loss_scaling else None),
            "xla_python_client_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "platform": self.device.platform if self.device is not None else None,
            "attention": getattr(self, "attention", None)
            if getattr(self, "spec", None) and specs.attention(self.spec) else None,
            "attention_note": getattr(self, "attention_note", None),
            "xla_python_client_mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
        }
        if hasattr(self, "_train"):
            out["train_step_compilations"] = _compilations(self._train)
            if self.loss_scaling:
                out["loss_scale_final"] = float(self.state["scale"])
                out["skipped_steps"] = int(self.state["skipped"])
        return out


def compiled_bytes(fn, *args) -> int | None:
    """The device bytes XLA plans for one call of a jitted function: arguments + outputs +
    temporaries - aliased (donated) buffers, from the compiled executable's memory_analysis
    (lowering does not run it). None where the backend gives no analysis."""
    try:
        m = fn.lower(*args).compile().memory_analysis()
        if m is None:
            return None
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - a diagnostic figure, never worth a failed cell
        return None


def _cudnn_version() -> int | None:
    """The version of the cuDNN library this process loaded (JAX's CUDA plugin loads it), asked
    of cuDNN's own cudnnGetVersion() (JAX has no public call for it); None where none is loaded
    (a CPU cell) or it cannot say."""
    try:
        import ctypes
        with open("/proc/self/maps", encoding="utf-8") as maps:
            loaded = sorted({line.split()[-1] for line in maps if "/libcudnn.so" in line})
        if not loaded:
            return None
        lib = ctypes.CDLL(loaded[0])  # the library already loaded: the same handle
        lib.cudnnGetVersion.restype = ctypes.c_size_t
        return int(lib.cudnnGetVersion())
    except Exception:  # noqa: BLE001 - a diagnostic, never worth a failed cell
        return None


def _count_trace(event: str, duration_s: float, **kwargs) -> None:
    if event == TRACE_EVENT:
        name = str(kwargs.get("fun_name"))
        _TRACES[name] = _TRACES.get(name, 0) + 1


def _compilations(fn) -> int | None:
    """How often a jitted function was traced (compiled for new argument shapes) in this
    process, by its name, from jax.monitoring's trace events; None when jax reported no trace
    of anything (an event renamed by a jax release: the figure is a diagnostic, never worth a
    failed cell)."""
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or not _TRACES:
        return None
    return _TRACES.get(name, 0)


def cuda_plugins() -> list[str]:
    """The jax CUDA plugins installed here (found without importing them)."""
    import importlib.util
    return [m for m in ("jax_cuda13_plugin", "jax_cuda12_plugin")
            if importlib.util.find_spec(m) is not None]


def gpu_devices(dev: str = "cuda:0") -> list:
    """jax's GPUs, or DeviceUnusable with jax's own reason (no CUDA plugin, driver too old).
    With JAX_PLATFORMS=cuda and no plugin jax 0.10 fails with a bare AssertionError, hence the
    broad except and the plugin list in the reason."""
    try:
        gpus = jax.devices("gpu")
        if gpus:
            return gpus
        why = "jax.devices('gpu') is empty"
    except Exception as exc:  # noqa: BLE001 - RuntimeError, or AssertionError without a backend
        why = f"jax.devices('gpu') failed: {type(exc).__name__}: {str(exc)[:500]}"
    raise DeviceUnusable(f"device {dev} not usable by jax {jax.__version__}: {why} "
                         f"(JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS')!r}, CUDA plugins "
                         f"installed: {', '.join(cuda_plugins()) or 'none'})")


def _device_name(request: dict) -> str:
    try:
        dev = jax.devices("cpu" if request.get("device", "cpu") == "cpu" else "gpu")[0]
    except Exception:  # noqa: BLE001 - no usable backend: check_supported says why
        return f"{request.get('device')} (absent)"
    return f"{dev.platform}: {dev.device_kind}"


def _limit_threads(request: dict) -> None:
    """XLA:CPU has no working thread-count flag in jax 0.10 (--xla_cpu_multi_thread_eigen=false
    and intra_op_parallelism_threads change nothing measurable), but it sizes its thread pools
    from the CPU affinity mask. So a CPU cell with N threads is pinned to N of the allowed CPUs
    before jax is imported: enforced by the OS, not a hint."""
    threads = int(request.get("threads") or 0)
    _THREADS.update(threads=threads, threads_enforced=False, thread_mechanism="none")
    if threads <= 0 or request.get("device", "cpu") != "cpu":
        if threads > 0:
            _THREADS["thread_mechanism"] = "not applied: host threads of a GPU cell unpinned"
        return
    affinity = harness.pin_cpu_threads(request)  # the one pinning (harness.main's already)
    _THREADS.update(threads_enforced=affinity is not None, cpu_affinity=affinity,
                    thread_mechanism="cpu affinity" if affinity is not None else "none")


def import_framework(request: dict | None = None) -> dict:
    """Import jax/flax/optax after the settings that must precede it; `request` defaults to the
    one on the command line (harness.main calls this without arguments; tests pass one)."""
    global np, jax, jnp, lax, nn, optax, flax, traverse_util, _COUNTING
    request = harness.read_request() if request is None else request
    if request.get("device", "cpu") == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # never probe a GPU for a CPU cell
    _limit_threads(request)
    import numpy
    import jax as _jax
    import jax.numpy as _jnp
    import jaxlib
    import flax as _flax
    import flax.linen as _nn
    import flax.traverse_util as _traverse_util
    import optax as _optax
    np, jax, jnp, lax, nn, optax, flax = numpy, _jax, _jnp, _jax.lax, _nn, _optax, _flax
    traverse_util = _traverse_util
    if not _COUNTING:
        jax.monitoring.register_event_duration_secs_listener(_count_trace)
        _COUNTING = True
    if request.get("device", "cpu") != "cpu" and request.get("precision", "fp32") == "fp32":
        # fp32 cells only: 'highest' on a bf16/fp16 cell would make XLA multiply its
        # low-precision operands in full float32 (torch and TF multiply them natively)
        jax.config.update("jax_default_matmul_precision",
                          "tensorfloat32" if request.get("tf32") else "highest")
    # On the CPU, XLA's default already multiplies float32 in full float32 and there is no TF32;
    # forcing 'highest' there breaks fp16 (the F16_F16_F32 dot algorithm is GPU-only).
    _define_models()
    return {"framework_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "flax_version": flax.__version__, "optax_version": optax.__version__,
            "device_name": _device_name(request)}


if __name__ == "__main__":
    harness.main(JaxBackend, "jax", import_framework, driver.run_cell)
