"""The `vit` model: a Vision Transformer (Dosovitskiy et al. 2020) classifying NHWC images;
preset `vit-b16` is the published ViT-B/16 at 224 px and 1000 classes (86,567,656 trainable
parameters).

Conventions: patch embedding = a convolution with kernel = stride = patch_size (with bias; the
same as a dense layer on each flattened patch), a learned class token prepended, learned position
embeddings for the class token and every patch, pre-norm encoder blocks as the transformer's
(layer norm eps per HYPER, attention scaled by 1/sqrt(head_dim) WITHOUT a causal mask, MLP ratio
4 with GELU in its tanh approximation, the built-in transformer's convention; the paper uses
the exact erf GELU), a final layer norm, and a dense head on the class token. No dropout.
Canonical parameters: `patch.kernel` [p, p, c, d] (HWIO) and `patch.bias` [d]; `cls` [d];
`pos` [1 + (image/p)^2, d] (row 0: the class token's); `block<i>.*` (_common.pre_norm_block);
`ln_f`; `head.kernel` [d, classes] and `head.bias`. Init: patch embedding and head as torch's
default U(+-1/sqrt(fan_in)); class token and positions N(0, 0.02); blocks GPT-2 style.
Standard library only at module level; never mlbench or an ML framework.
"""
from __future__ import annotations

from ._common import (SpecError, block_flops, block_params, class_data, dense, norm,
                      pre_norm_block)

INPUT_KIND = "image"
PRESETS = {
    "tiny": {"image_size": 16, "channels": 3, "patch_size": 4, "d_model": 32, "n_layers": 1,
             "n_heads": 2, "num_classes": 10},
    "small": {"image_size": 32, "channels": 3, "patch_size": 4, "d_model": 128, "n_layers": 4,
              "n_heads": 4, "num_classes": 10},
    "vit-b16": {"image_size": 224, "channels": 3, "patch_size": 16, "d_model": 768,
                "n_layers": 12, "n_heads": 12, "num_classes": 1000},
}
DEFAULT_PRESET = "small"
PUBLISHED_PARAMS = {"vit-b16": 86_567_656}
REFERENCE = None  # judged pairwise


def validate(spec: dict) -> None:
    if spec["image_size"] % spec["patch_size"]:
        raise SpecError("vit image_size must be a multiple of patch_size")
    if spec["d_model"] % spec["n_heads"]:
        raise SpecError("vit d_model must be divisible by n_heads")


def patches(spec: dict) -> int:
    """Patches per image: (image_size / patch_size)^2; the encoder sees one more token (cls)."""
    return (spec["image_size"] // spec["patch_size"]) ** 2


def count_params(spec: dict) -> dict:
    p, c, d = spec["patch_size"], spec["channels"], spec["d_model"]
    trainable = (p * p * c * d + d) + d + (patches(spec) + 1) * d \
        + spec["n_layers"] * block_params(d) + 2 * d + (d * spec["num_classes"] + spec["num_classes"])
    return {"trainable": trainable, "non_trainable": 0}


def flops(spec: dict) -> int:
    p, c, d = spec["patch_size"], spec["channels"], spec["d_model"]
    n, t = patches(spec), patches(spec) + 1
    return 2 * n * p * p * c * d + spec["n_layers"] * block_flops(d, t) * t \
        + 2 * d * spec["num_classes"]


def input_shape(spec: dict) -> tuple:
    return (spec["image_size"], spec["image_size"], spec["channels"]), "float32"


def num_classes(spec: dict) -> int:
    return spec["num_classes"]


def attention(spec: dict) -> dict:
    return {"heads": spec["n_heads"], "tokens": patches(spec) + 1,
            "head_dim": spec["d_model"] // spec["n_heads"], "causal": False}


def generate(spec: dict, n: int, rng):
    return class_data(INPUT_KIND, input_shape(spec)[0], num_classes(spec), n, rng)


def param_shapes(spec: dict) -> list:
    p, c, d, n = spec["patch_size"], spec["channels"], spec["d_model"], spec["n_layers"]
    out: list = [("patch.kernel", (p, p, c, d), "fan_in"), ("patch.bias", (d,), "bias_fan_in"),
                 ("cls", (d,), ("normal", 0.02)), ("pos", (patches(spec) + 1, d), ("normal", 0.02))]
    for i in range(n):
        pre_norm_block(out, f"block{i}", d, n)
    norm(out, "ln_f", d)
    dense(out, "head", d, spec["num_classes"])
    return out
