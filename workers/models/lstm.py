"""The `lstm` model: stacked LSTM layers over a (seq_len, input_dim) sequence, classified from
the last time step by a dense head `fc`.

Conventions: one bias vector of 4*hidden per layer (keras/flax layout; torch keeps b_hh frozen at
0), gates in the order i, f, g, o; every weight and bias U(+-1/sqrt(hidden)). Canonical
parameters `lstm<l>.kernel` [in, 4h], `lstm<l>.recurrent` [h, 4h], `lstm<l>.bias` [4h], `fc`.
Standard library only at module level; never mlbench or an ML framework.
"""
from __future__ import annotations

import math

from ._common import class_data, dense

INPUT_KIND = "sequence"
PRESETS = {
    "tiny": {"seq_len": 16, "input_dim": 8, "hidden": 32, "n_layers": 1, "num_classes": 4},
    "small": {"seq_len": 32, "input_dim": 16, "hidden": 128, "n_layers": 2, "num_classes": 8},
}
DEFAULT_PRESET = "small"
PUBLISHED_PARAMS: dict[str, int] = {}
REFERENCE = None  # judged pairwise


def validate(spec: dict) -> None:
    pass


def count_params(spec: dict) -> dict:
    h, f = spec["hidden"], spec["input_dim"]
    trainable = 0
    for layer in range(spec["n_layers"]):
        fin = f if layer == 0 else h
        trainable += 4 * h * (fin + h) + 4 * h
    trainable += h * spec["num_classes"] + spec["num_classes"]
    return {"trainable": trainable, "non_trainable": 0}


def flops(spec: dict) -> int:
    h, f, t = spec["hidden"], spec["input_dim"], spec["seq_len"]
    fwd = 0
    for layer in range(spec["n_layers"]):
        fin = f if layer == 0 else h
        fwd += t * 2 * 4 * h * (fin + h)
    return fwd + 2 * h * spec["num_classes"]


def input_shape(spec: dict) -> tuple:
    return (spec["seq_len"], spec["input_dim"]), "float32"


def num_classes(spec: dict) -> int:
    return spec["num_classes"]


def attention(spec: dict) -> None:
    return None


def generate(spec: dict, n: int, rng):
    return class_data(INPUT_KIND, input_shape(spec)[0], num_classes(spec), n, rng)


def param_shapes(spec: dict) -> list:
    h = spec["hidden"]
    init = ("uniform", 1.0 / math.sqrt(h))
    out: list = []
    for layer in range(spec["n_layers"]):
        fin = spec["input_dim"] if layer == 0 else h
        out += [(f"lstm{layer}.kernel", (fin, 4 * h), init),
                (f"lstm{layer}.recurrent", (h, 4 * h), init),
                (f"lstm{layer}.bias", (4 * h,), init)]
    dense(out, "fc", h, spec["num_classes"])
    return out
