"""The `mlp` model: dense layers with ReLU, a 784-wide vector in, class logits out.

Owns its presets, parameter count, FLOPs, input kind, data and canonical parameters
(`dense0` .. `denseN`). The numpy worker implements it by hand: the gate's reference.
Standard library only at module level; never mlbench or an ML framework.
"""
from __future__ import annotations

from ._common import class_data, dense

INPUT_KIND = "vector"
PRESETS = {
    "tiny": {"input_dim": 784, "hidden": [64], "num_classes": 10},
    "small": {"input_dim": 784, "hidden": [256, 128], "num_classes": 10},
    "large": {"input_dim": 784, "hidden": [2048, 2048, 1024], "num_classes": 10},
}
DEFAULT_PRESET = "small"
PUBLISHED_PARAMS: dict[str, int] = {}
REFERENCE = "numpy"  # the gate compares every framework with the numpy worker's hand-written mlp


def validate(spec: dict) -> None:
    pass  # any positive sizes make an mlp


def _dims(spec: dict) -> list[int]:
    return [spec["input_dim"], *spec["hidden"], spec["num_classes"]]


def count_params(spec: dict) -> dict:
    dims = _dims(spec)
    return {"trainable": sum(a * b + b for a, b in zip(dims, dims[1:])), "non_trainable": 0}


def flops(spec: dict) -> int:
    dims = _dims(spec)
    return sum(2 * a * b for a, b in zip(dims, dims[1:]))


def input_shape(spec: dict) -> tuple:
    return (spec["input_dim"],), "float32"


def num_classes(spec: dict) -> int:
    return spec["num_classes"]


def attention(spec: dict) -> None:
    return None


def generate(spec: dict, n: int, rng):
    return class_data(INPUT_KIND, input_shape(spec)[0], num_classes(spec), n, rng)


def param_shapes(spec: dict) -> list:
    out: list = []
    dims = _dims(spec)
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        dense(out, f"dense{i}", a, b)
    return out
