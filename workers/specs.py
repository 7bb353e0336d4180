"""Framework-neutral model specs, parameter counts, FLOPs and synthetic data.

Owns: the one description of each model (`mlp`, `cnn`, `transformer`, `lstm`) that every
framework builds, its presets (two are standard architectures: `resnet18`, `gpt2-small`), the
analytic parameter counts and FLOPs, and the seeded, byte-identical datasets.

Imports only the standard library at module level (numpy lazily, in the data functions), so the
parent can read presets and counts from this file without importing numpy or any framework.
Never imports mlbench, pydantic, polars or plotly.

Conventions every framework follows (the specs set what framework defaults would change):
  * dense: y = x @ W + b; ReLU (mlp, cnn), GELU tanh approximation (transformer).
  * conv: no bias, explicit symmetric padding k//2, then batch norm (eps 1e-5, running statistics
    updated as 0.9 * old + 0.1 * batch, i.e. torch momentum 0.1 = keras/flax momentum 0.9).
  * images are NHWC in numpy; a framework that wants NCHW transposes on load.
  * transformer: pre-norm blocks, layer norm eps 1e-5, attention scaled by 1/sqrt(head_dim),
    causal mask, MLP ratio 4, final layer norm, output head tied to the token embedding (no bias).
  * lstm: one bias vector of 4*hidden per layer (keras/flax layout); torch keeps b_hh frozen at 0.
  * optimizer: Adam(lr, beta1 0.9, beta2 0.999, eps 1e-8), no weight decay; cross-entropy loss
    averaged over samples (over tokens for the transformer); no dropout. Adam's eps is added to
    sqrt(v_hat) (torch, optax); Keras adds it to the uncorrected sqrt(v), so the TF worker uses
    the spec's rule (tensorflow_worker.SpecAdam).
  * weights: the canonical layout and explicit initialisation live in weights.py, next to this
    file; every worker converts them to its own layout (`load_canonical`). The equivalence gate
    (gate.run_verify, mlbench/verify.py) loads them in every framework and compares.
  * one inherent difference the gate tolerates: torch updates BN's running variance with the
    unbiased batch variance (n/(n-1), n = batch*H*W), Keras and Flax with the biased one. No
    framework exposes the other convention without slower kernels; at n >= 512 it moves the
    running variance by < 0.2% of the batch part (measured max output error 1.7e-5 after 3
    steps on cnn tiny, batch 16, well inside the fp32 tolerance).
"""
from __future__ import annotations

import copy
import hashlib
import math

MODELS = ("mlp", "cnn", "transformer", "lstm")

PRESETS: dict[str, dict[str, dict]] = {
    "mlp": {
        "tiny": {"input_dim": 784, "hidden": [64], "num_classes": 10},
        "small": {"input_dim": 784, "hidden": [256, 128], "num_classes": 10},
        "large": {"input_dim": 784, "hidden": [2048, 2048, 1024], "num_classes": 10},
    },
    "cnn": {
        "tiny": {"image_size": 16, "channels": 3, "stem": "cifar", "widths": [8, 16],
                 "blocks": [1, 1], "num_classes": 10},
        "small": {"image_size": 32, "channels": 3, "stem": "cifar", "widths": [16, 32, 64],
                  "blocks": [1, 1, 1], "num_classes": 10},
        "resnet18": {"image_size": 224, "channels": 3, "stem": "imagenet",
                     "widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2], "num_classes": 1000},
    },
    "transformer": {
        "tiny": {"vocab_size": 64, "seq_len": 16, "d_model": 32, "n_layers": 1, "n_heads": 2},
        "small": {"vocab_size": 256, "seq_len": 64, "d_model": 128, "n_layers": 2, "n_heads": 4},
        "gpt2-small": {"vocab_size": 50257, "seq_len": 1024, "d_model": 768, "n_layers": 12,
                       "n_heads": 12},
    },
    "lstm": {
        "tiny": {"seq_len": 16, "input_dim": 8, "hidden": 32, "n_layers": 1, "num_classes": 4},
        "small": {"seq_len": 32, "input_dim": 16, "hidden": 128, "n_layers": 2,
                  "num_classes": 8},
    },
}
DEFAULT_PRESET = {"mlp": "small", "cnn": "small", "transformer": "small", "lstm": "small"}
# Published trainable parameter counts the presets must reproduce in every framework.
PUBLISHED_PARAMS = {("cnn", "resnet18"): 11_689_512, ("transformer", "gpt2-small"): 124_439_808}

HYPER = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "adam_eps": 1e-8,
         "bn_eps": 1e-5, "bn_momentum": 0.1, "ln_eps": 1e-5}


class SpecError(ValueError):
    pass


def model_spec(model: str, options: dict | None = None) -> dict:
    """The full spec of `model`: a preset (option `preset`) updated by the other options."""
    if model not in PRESETS:
        raise SpecError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    options = dict(options or {})
    preset = options.pop("preset", DEFAULT_PRESET[model])
    if preset not in PRESETS[model]:
        raise SpecError(f"unknown preset {preset!r} for {model}; known: "
                        f"{', '.join(PRESETS[model])}")
    spec = copy.deepcopy(PRESETS[model][preset])
    for key, value in options.items():
        if key not in spec:
            raise SpecError(f"unknown option {key!r} for model {model}; known: "
                            f"preset, {', '.join(spec)}")
        if type(value) is not type(spec[key]) and not (
                isinstance(spec[key], int) and isinstance(value, int)):
            raise SpecError(f"option {key!r} of model {model} must be {type(spec[key]).__name__}")
        spec[key] = value
    spec.update(model=model, preset=preset, **HYPER)
    if model == "transformer" and spec["d_model"] % spec["n_heads"]:
        raise SpecError("transformer d_model must be divisible by n_heads")
    if model == "cnn" and len(spec["widths"]) != len(spec["blocks"]):
        raise SpecError("cnn widths and blocks must have the same length")
    return spec


def user_spec(user: dict) -> dict:
    """The spec of the user's own model (`models[].source`, see usermodel.py in this folder):
    its INPUT (kind image | vector | tokens) drives the data, loss and checks as a built-in
    model's sizes do; its options go to the file's builder functions."""
    inp = dict(user["input"])
    return {"model": "user", "name": user["name"], "source": user["path"],
            "sha256": user.get("sha256"), "input": inp,
            "options": dict(user.get("options") or {}),
            "flops_per_sample": user.get("flops_per_sample"), **HYPER}


def request_spec(request: dict) -> dict:
    """The spec a worker request asks for: the user's model or a built-in one."""
    if request.get("user_model"):
        return user_spec(request["user_model"])
    return model_spec(request["model"], request.get("model_options") or {})


def kind(spec: dict) -> str:
    """What a model eats: image (NHWC), vector, tokens (next-token LM) or sequence (lstm)."""
    if spec["model"] == "user":
        return spec["input"]["kind"]
    return {"mlp": "vector", "cnn": "image", "transformer": "tokens",
            "lstm": "sequence"}[spec["model"]]


# ----------------------------------------------------------------------------------------------
# Parameter counts (trainable, non-trainable) — the number every framework must reproduce.

def _cnn_layers(spec: dict):
    """Yield ('conv', k, cin, cout, stride, h_out) / ('bn', c) / ('fc', in, out) in order."""
    size, cin = spec["image_size"], spec["channels"]
    w0 = spec["widths"][0]
    if spec["stem"] == "imagenet":
        size = (size + 2 * 3 - 7) // 2 + 1
        yield ("conv", 7, cin, w0, 2, size)
        yield ("bn", w0)
        size = (size + 2 * 1 - 3) // 2 + 1  # max pool 3x3 stride 2 padding 1
    else:
        yield ("conv", 3, cin, w0, 1, size)
        yield ("bn", w0)
    c = w0
    for stage, (width, nblocks) in enumerate(zip(spec["widths"], spec["blocks"])):
        for b in range(nblocks):
            stride = 2 if (stage > 0 and b == 0) else 1
            out = (size + 2 - 3) // stride + 1
            yield ("conv", 3, c, width, stride, out)
            yield ("bn", width)
            yield ("conv", 3, width, width, 1, out)
            yield ("bn", width)
            if stride != 1 or c != width:
                yield ("conv", 1, c, width, stride, out)
                yield ("bn", width)
            c, size = width, out
    yield ("fc", c, spec["num_classes"])


def count_params(spec: dict) -> dict | None:
    """None for a user's model: nothing analytic; the gate compares the frameworks' counts."""
    m = spec["model"]
    if m == "user":
        return None
    trainable = non_trainable = 0
    if m == "mlp":
        dims = [spec["input_dim"], *spec["hidden"], spec["num_classes"]]
        trainable = sum(a * b + b for a, b in zip(dims, dims[1:]))
    elif m == "cnn":
        for layer in _cnn_layers(spec):
            if layer[0] == "conv":
                _, k, ci, co, _, _ = layer
                trainable += k * k * ci * co
            elif layer[0] == "bn":
                trainable += 2 * layer[1]
                non_trainable += 2 * layer[1]
            else:
                trainable += layer[1] * layer[2] + layer[2]
    elif m == "transformer":
        v, t, d, n = spec["vocab_size"], spec["seq_len"], spec["d_model"], spec["n_layers"]
        block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) \
            + (4 * d * d + d)
        trainable = v * d + t * d + n * block + 2 * d
    elif m == "lstm":
        h, f = spec["hidden"], spec["input_dim"]
        for layer in range(spec["n_layers"]):
            fin = f if layer == 0 else h
            trainable += 4 * h * (fin + h) + 4 * h
        trainable += h * spec["num_classes"] + spec["num_classes"]
    return {"trainable": trainable, "non_trainable": non_trainable}


def flops_per_sample(spec: dict) -> dict:
    """Analytic FLOPs (a multiply-add is 2) per sample; a training step counts 3x forward."""
    m = spec["model"]
    fwd = 0
    if m == "user":  # the file's literal, else counted by the worker's framework (or unknown)
        f = spec.get("flops_per_sample")
        return {"forward": f, "train_step": 3 * f if f else None}
    if m == "mlp":
        dims = [spec["input_dim"], *spec["hidden"], spec["num_classes"]]
        fwd = sum(2 * a * b for a, b in zip(dims, dims[1:]))
    elif m == "cnn":
        for layer in _cnn_layers(spec):
            if layer[0] == "conv":
                _, k, ci, co, _, out = layer
                fwd += 2 * k * k * ci * co * out * out
            elif layer[0] == "fc":
                fwd += 2 * layer[1] * layer[2]
    elif m == "transformer":
        v, t, d, n = spec["vocab_size"], spec["seq_len"], spec["d_model"], spec["n_layers"]
        per_token = n * (2 * 12 * d * d + 2 * 2 * t * d) + 2 * d * v
        fwd = per_token * t
    elif m == "lstm":
        h, f, t = spec["hidden"], spec["input_dim"], spec["seq_len"]
        for layer in range(spec["n_layers"]):
            fin = f if layer == 0 else h
            fwd += t * 2 * 4 * h * (fin + h)
        fwd += 2 * h * spec["num_classes"]
    return {"forward": fwd, "train_step": 3 * fwd}


def input_shape(spec: dict) -> tuple:
    """Shape of one input sample (canonical numpy layout) and its dtype name."""
    m = spec["model"]
    if m == "user":
        inp = spec["input"]
        if inp["kind"] == "tokens":
            return (inp["seq_len"],), "int32"
        return tuple(inp["shape"]), "float32"
    if m == "mlp":
        return (spec["input_dim"],), "float32"
    if m == "cnn":
        return (spec["image_size"], spec["image_size"], spec["channels"]), "float32"
    if m == "transformer":
        return (spec["seq_len"],), "int32"
    return (spec["seq_len"], spec["input_dim"]), "float32"


def num_classes(spec: dict) -> int:
    if spec["model"] == "user":
        return spec["input"].get("vocab_size") or spec["input"]["num_classes"]
    return spec["vocab_size"] if spec["model"] == "transformer" else spec["num_classes"]


# ----------------------------------------------------------------------------------------------
# Synthetic, learnable data: the same bytes for every framework.

def make_dataset(spec: dict, request: dict) -> dict:
    import numpy as np

    path = request.get("data_path")
    if path:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.ascontiguousarray(npz[k]) for k in
                      ("x_train", "y_train", "x_eval", "y_eval")}
        # the dtype synthetic data has (mlbench checked the file and said so): never fp64
        x_dtype = input_shape(spec)[1]
        for k in ("x_train", "x_eval"):
            arrays[k] = arrays[k].astype(x_dtype, copy=False)
        for k in ("y_train", "y_eval"):
            arrays[k] = arrays[k].astype(np.int32, copy=False)
    else:
        n_train, n_eval = int(request["train_samples"]), int(request["eval_samples"])
        rng = np.random.default_rng(int(request["seed"]))
        x, y = _generate(spec, n_train + n_eval, rng)
        arrays = {"x_train": x[:n_train], "y_train": y[:n_train],
                  "x_eval": x[n_train:], "y_eval": y[n_train:]}
    digest = hashlib.sha256()
    for key in ("x_train", "y_train", "x_eval", "y_eval"):
        digest.update(key.encode() + str(arrays[key].shape).encode() + str(arrays[key].dtype).encode())
        digest.update(arrays[key].tobytes())
    arrays["hash"] = digest.hexdigest()
    return arrays


def _generate(spec: dict, n: int, rng):
    import numpy as np

    m = spec["model"]
    k = kind(spec)
    if k == "tokens":
        # A noisy order-1 Markov chain: each token has one likely successor. Next-token accuracy
        # well above 1/vocab is only reachable by learning the chain.
        src = spec["input"] if m == "user" else spec
        v, t = src["vocab_size"], src["seq_len"]
        successor = rng.permutation(v)
        tokens = np.empty((n, t + 1), dtype=np.int32)
        tokens[:, 0] = rng.integers(0, v, n)
        noise = rng.random((n, t)) < 0.2
        random_tok = rng.integers(0, v, (n, t))
        for i in range(t):
            tokens[:, i + 1] = np.where(noise[:, i], random_tok[:, i], successor[tokens[:, i]])
        return tokens[:, :-1].copy(), tokens[:, 1:].copy()
    classes = num_classes(spec)
    y = rng.integers(0, classes, n).astype(np.int32)
    shape, _ = input_shape(spec)
    if k == "image":
        # Smooth class templates (low-frequency patterns) plus pixel noise.
        h, w, c = shape
        coarse = rng.standard_normal((classes, 4, 4, c))
        rh, rw = math.ceil(h / 4), math.ceil(w / 4)
        templates = np.kron(coarse, np.ones((1, rh, rw, 1)))[:, :h, :w, :]
    elif k == "sequence":
        # Each class is a different mix of sinusoids over time.
        t, f = spec["seq_len"], spec["input_dim"]
        freq = rng.uniform(0.5, 3.0, (classes, 1, f))
        phase = rng.uniform(0, 2 * math.pi, (classes, 1, f))
        time_axis = np.linspace(0, 2 * math.pi, t).reshape(1, t, 1)
        templates = np.sin(freq * time_axis + phase)
    else:
        templates = rng.standard_normal((classes, *shape))
    # Signal-to-noise chosen so one epoch of the quick config lands well above chance but
    # below 100%: accuracy still tells a model that learned from one that did not.
    signal = {"vector": 0.15, "image": 0.4, "sequence": 0.8}[k]
    x = templates[y] * signal + rng.standard_normal((n, *shape))
    return x.astype(np.float32), y
