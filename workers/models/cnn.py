"""The `cnn` model: a ResNet of BasicBlocks (stem `cifar` or `imagenet`); preset `resnet18` is
the published ResNet-18 (11,689,512 trainable parameters at 1000 classes).

Conventions: conv without bias, explicit symmetric padding k//2, then batch norm (eps 1e-5,
running statistics updated as 0.9 * old + 0.1 * batch); ReLU; global average pooling; a dense
head `fc`. Images are NHWC in numpy. Canonical parameters `conv<j>.kernel` (HWIO) and
`bn<j>.gamma|beta|mean|var`, j in the order of `layers` (stem, then per block conv1, conv2 and
the shortcut conv when there is one).
Standard library only at module level; never mlbench or an ML framework.
"""
from __future__ import annotations

from ._common import SpecError, class_data, dense

INPUT_KIND = "image"
PRESETS = {
    "tiny": {"image_size": 16, "channels": 3, "stem": "cifar", "widths": [8, 16],
             "blocks": [1, 1], "num_classes": 10},
    "small": {"image_size": 32, "channels": 3, "stem": "cifar", "widths": [16, 32, 64],
              "blocks": [1, 1, 1], "num_classes": 10},
    "resnet18": {"image_size": 224, "channels": 3, "stem": "imagenet",
                 "widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2], "num_classes": 1000},
}
DEFAULT_PRESET = "small"
PUBLISHED_PARAMS = {"resnet18": 11_689_512}
REFERENCE = None  # judged pairwise


def validate(spec: dict) -> None:
    if len(spec["widths"]) != len(spec["blocks"]):
        raise SpecError("cnn widths and blocks must have the same length")
    if spec["stem"] not in ("cifar", "imagenet"):
        raise SpecError(f"unknown cnn stem {spec['stem']!r}; known: cifar, imagenet")


def layers(spec: dict):
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


def shortcuts(spec: dict) -> list[bool]:
    """Per BasicBlock, in order: whether it has a projection shortcut (1x1 conv + bn)."""
    out, c = [], spec["widths"][0]
    for stage, (width, nblocks) in enumerate(zip(spec["widths"], spec["blocks"])):
        for b in range(nblocks):
            out.append((stage > 0 and b == 0) or c != width)
            c = width
    return out


def count_params(spec: dict) -> dict:
    trainable = non_trainable = 0
    for layer in layers(spec):
        if layer[0] == "conv":
            _, k, ci, co, _, _ = layer
            trainable += k * k * ci * co
        elif layer[0] == "bn":
            trainable += 2 * layer[1]
            non_trainable += 2 * layer[1]
        else:
            trainable += layer[1] * layer[2] + layer[2]
    return {"trainable": trainable, "non_trainable": non_trainable}


def flops(spec: dict) -> int:
    fwd = 0
    for layer in layers(spec):
        if layer[0] == "conv":
            _, k, ci, co, _, out = layer
            fwd += 2 * k * k * ci * co * out * out
        elif layer[0] == "fc":
            fwd += 2 * layer[1] * layer[2]
    return fwd


def input_shape(spec: dict) -> tuple:
    return (spec["image_size"], spec["image_size"], spec["channels"]), "float32"


def num_classes(spec: dict) -> int:
    return spec["num_classes"]


def attention(spec: dict) -> None:
    return None


def generate(spec: dict, n: int, rng):
    return class_data(INPUT_KIND, input_shape(spec)[0], num_classes(spec), n, rng)


def param_shapes(spec: dict) -> list:
    out: list = []
    nconv = nbn = 0
    for layer in layers(spec):
        if layer[0] == "conv":
            _, k, ci, co, _, _ = layer
            out.append((f"conv{nconv}.kernel", (k, k, ci, co), "fan_in"))
            nconv += 1
        elif layer[0] == "bn":
            c = layer[1]
            out += [(f"bn{nbn}.gamma", (c,), "gamma"), (f"bn{nbn}.beta", (c,), "beta"),
                    (f"bn{nbn}.mean", (c,), "mean"), (f"bn{nbn}.var", (c,), "var")]
            nbn += 1
        else:
            dense(out, "fc", layer[1], layer[2])
    return out
