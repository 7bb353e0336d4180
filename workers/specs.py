"""Framework-neutral model specs, parameter counts, FLOPs and synthetic data.

Owns: the one entry point to the models (a facade over workers/models/, one module per model:
`mlp`, `cnn`, `transformer`, `lstm`, `vit`; each owns its presets, counts, FLOPs, input kind, data
and canonical parameters), the shared hyper-parameters (HYPER), the spec of a request (built-in
or the user's own model), and the seeded, byte-identical datasets.

Imports only the standard library at module level (numpy lazily, in the data functions), so the
parent can read presets and counts from this file without importing numpy or any framework; it
loads the models package next to it by path when it is not itself part of a package (the parent
loads this file by path: mlbench/config/catalog.py). Never imports mlbench, pydantic, polars or
plotly.

Conventions every framework follows (the specs set what framework defaults would change):
  * dense: y = x @ W + b; ReLU (mlp, cnn), GELU tanh approximation (transformer, vit).
  * conv: no bias, explicit symmetric padding k//2, then batch norm (eps 1e-5, running statistics
    updated as 0.9 * old + 0.1 * batch, i.e. torch momentum 0.1 = keras/flax momentum 0.9).
  * images are NHWC in numpy; a framework that wants NCHW transposes on load.
  * transformer: pre-norm blocks, layer norm eps 1e-5, attention scaled by 1/sqrt(head_dim),
    causal mask, MLP ratio 4, final layer norm, output head tied to the token embedding (no bias).
  * vit: patch embedding (conv, kernel = stride = patch, with bias), class token first, learned
    positions, the transformer's pre-norm blocks without the causal mask, final layer norm, head
    on the class token (workers/models/vit.py).
  * lstm: one bias vector of 4*hidden per layer (keras/flax layout); torch keeps b_hh frozen at 0.
  * optimizer: Adam(lr, beta1 0.9, beta2 0.999, eps 1e-8), no weight decay; cross-entropy loss
    averaged over samples (over tokens for the transformer); no dropout. Adam's eps is added to
    sqrt(v_hat) (torch, optax); Keras adds it to the uncorrected sqrt(v), so the TF worker uses
    the spec's rule (keras_models.spec_adam).
  * weights: the canonical layout and explicit initialisation live in weights.py, next to this
    file; every worker converts them to its own layout (`load_canonical`). The equivalence gate
    (gate.run_verify, mlbench/run/gate.py) loads them in every framework and compares.
  * one inherent difference the gate tolerates: torch updates BN's running variance with the
    unbiased batch variance (n/(n-1), n = batch*H*W), Keras and Flax with the biased one. No
    framework exposes the other convention without slower kernels; at n >= 512 it moves the
    running variance by < 0.2% of the batch part (measured max output error 1.7e-5 after 3
    steps on cnn tiny, batch 16, well inside the fp32 tolerance).
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import os
import sys


def _models():
    """workers/models/, next to this file. Workers import this module as `specs` (the workers
    folder on sys.path) and the parent loads it by file path: either way the package is loaded
    from its own folder under a private name, never whatever else `models` means on sys.path
    (a user's project may well have one)."""
    if __package__:  # shipped inside a package: a plain relative import
        return importlib.import_module(f"{__package__}.models")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
    name = "_mlbench_models_" + hashlib.sha1(here.encode()).hexdigest()[:12]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(here, "__init__.py"), submodule_search_locations=[here])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: the package's relative imports find it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


_M = _models()
MODULES = _M.MODULES
SpecError = _M.SpecError
MODELS = tuple(MODULES)
PRESETS: dict[str, dict[str, dict]] = {m: mod.PRESETS for m, mod in MODULES.items()}
DEFAULT_PRESET = {m: mod.DEFAULT_PRESET for m, mod in MODULES.items()}
# Published trainable parameter counts the presets must reproduce in every framework.
PUBLISHED_PARAMS = {(m, preset): n for m, mod in MODULES.items()
                    for preset, n in mod.PUBLISHED_PARAMS.items()}

HYPER = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "adam_eps": 1e-8,
         "bn_eps": 1e-5, "bn_momentum": 0.1, "ln_eps": 1e-5}


def module(model: str):
    """The model module of a built-in model (workers/models/<model>.py)."""
    try:
        return MODULES[model]
    except KeyError:
        raise SpecError(f"unknown model {model!r}; known: {', '.join(MODELS)}") from None


def model_spec(model: str, options: dict | None = None) -> dict:
    """The full spec of `model`: a preset (option `preset`) updated by the other options."""
    mod = module(model)
    options = dict(options or {})
    preset = options.pop("preset", mod.DEFAULT_PRESET)
    if preset not in mod.PRESETS:
        raise SpecError(f"unknown preset {preset!r} for {model}; known: "
                        f"{', '.join(mod.PRESETS)}")
    spec = copy.deepcopy(mod.PRESETS[preset])
    for key, value in options.items():
        if key not in spec:
            raise SpecError(f"unknown option {key!r} for model {model}; known: "
                            f"preset, {', '.join(spec)}")
        if type(value) is not type(spec[key]) and not (
                isinstance(spec[key], int) and isinstance(value, int)):
            raise SpecError(f"option {key!r} of model {model} must be {type(spec[key]).__name__}")
        spec[key] = value
    spec.update(model=model, preset=preset, **HYPER)
    mod.validate(spec)
    return spec


def gate_reference(model: str) -> str | None:
    """The worker the equivalence gate compares `model` with ('numpy' for the mlp), or None:
    judged pairwise (a user's model, or a built-in one without a reference)."""
    mod = MODULES.get(model)
    return mod.REFERENCE if mod is not None else None


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
    return module(spec["model"]).INPUT_KIND


def attention(spec: dict) -> dict | None:
    """The model's attention ({heads, tokens, head_dim, causal}), or None: it has none (and a
    user's model: not known here)."""
    return None if spec["model"] == "user" else module(spec["model"]).attention(spec)


# ----------------------------------------------------------------------------------------------
# Parameter counts (trainable, non-trainable) — the number every framework must reproduce.

def count_params(spec: dict) -> dict | None:
    """None for a user's model: nothing analytic; the gate compares the frameworks' counts."""
    if spec["model"] == "user":
        return None
    return module(spec["model"]).count_params(spec)


def flops_per_sample(spec: dict) -> dict:
    """Analytic FLOPs (a multiply-add is 2) per sample; a training step counts 3x forward."""
    if spec["model"] == "user":  # the file's literal, else counted by the worker's framework
        f = spec.get("flops_per_sample")
        return {"forward": f, "train_step": 3 * f if f else None}
    fwd = module(spec["model"]).flops(spec)
    return {"forward": fwd, "train_step": 3 * fwd}


def input_shape(spec: dict) -> tuple:
    """Shape of one input sample (canonical numpy layout) and its dtype name."""
    if spec["model"] == "user":
        inp = spec["input"]
        if inp["kind"] == "tokens":
            return (inp["seq_len"],), "int32"
        return tuple(inp["shape"]), "float32"
    return module(spec["model"]).input_shape(spec)


def num_classes(spec: dict) -> int:
    if spec["model"] == "user":
        return spec["input"].get("vocab_size") or spec["input"]["num_classes"]
    return module(spec["model"]).num_classes(spec)


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
    if spec["model"] != "user":
        return module(spec["model"]).generate(spec, n, rng)
    common = _M._common  # a user's model: the data of its INPUT kind
    inp = spec["input"]
    if inp["kind"] == "tokens":
        return common.token_data(inp["vocab_size"], inp["seq_len"], n, rng)
    return common.class_data(inp["kind"], input_shape(spec)[0], num_classes(spec), n, rng)
