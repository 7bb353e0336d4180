"""The canonical weights of a spec model: generated once with numpy from the seed, in ONE layout
that every framework worker converts to its own (`load_canonical` in each worker).

Owns: drawing a weight set from the names, shapes and init descriptors each model module lists
(`param_shapes` in workers/models/<model>.py, summarised below), the meaning of those
descriptors, the hash of a weight set and the checks a worker's loader makes. Imports the
standard library at module level and numpy lazily; never mlbench or an ML framework.

Canonical layout (names are flat strings; arrays are float32):
  * dense   `<name>.kernel` [in, out] (y = x @ kernel + bias), `<name>.bias` [out]
            mlp: dense0 .. denseN; cnn and lstm head: fc; transformer: block<i>.{qkv,proj,fc,out}
            (qkv columns: q | k | v, each split into heads contiguously: col = part*d + head*hd + j)
  * conv    `conv<j>.kernel` [kh, kw, in, out] (HWIO), no bias; j counts convolutions in the
            order of models/cnn.py `layers` (stem, then per block conv1, conv2, shortcut conv)
  * bn      `bn<j>.gamma|beta|mean|var` [c]; mean/var are the running statistics (non-trainable)
  * ln      `<name>.gamma|beta` [d]: block<i>.ln1, block<i>.ln2, ln_f
  * embed   `tok` [vocab, d] (also the tied output head: logits = h @ tok.T), `pos` [seq_len, d]
  * lstm    `lstm<l>.kernel` [in, 4h], `lstm<l>.recurrent` [h, 4h], `lstm<l>.bias` [4h] (one bias),
            gates in the order i, f, g, o (input, forget, cell candidate, output)

Initialisation (the spec's explicit init, so no framework default decides it): dense and conv
kernels and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default for Linear/Conv); LSTM
U(-1/sqrt(h), 1/sqrt(h)) for every weight and the bias; transformer GPT-2 style: N(0, 0.02) for
embeddings and kernels, N(0, 0.02/sqrt(2*n_layers)) for the residual projections (proj, out),
zero biases; norms gamma 1, beta 0; running mean 0, var 1.

`exercise=True` (used by the equivalence gate) also randomises what the plain init leaves at 0 or
1 (biases of the transformer, gamma/beta, running mean/var), so a wrong epsilon, momentum, bias
layout or affine parameter shows up in the outputs instead of hiding behind an identity.
"""
from __future__ import annotations

import hashlib
import math


def param_shapes(spec: dict) -> list[tuple[str, tuple[int, ...], object]]:
    """[(name, shape, init descriptor)] in canonical order (the order the generator draws
    them): the model module's own table (workers/models/<model>.py)."""
    import specs

    return specs.module(spec["model"]).param_shapes(spec)


def canonical_params(spec: dict, seed: int, exercise: bool = False) -> dict:
    """{name: float32 ndarray} in the canonical layout, drawn from `seed` in canonical order.

    Init descriptors: 'fan_in' U(+-1/sqrt(prod(shape[:-1]))) and 'bias_fan_in' (its kernel's,
    drawn just before it); ('uniform', bound); ('normal', std); 'zero_bias' (zeros, random when
    exercised); 'gamma' / 'beta' / 'mean' / 'var' (1 / 0 / 0 / 1, random when exercised)."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 0x5EED])  # a stream of its own, not the data's
    params = {}
    for name, shape, init in param_shapes(spec):
        kind, arg = (init if isinstance(init, tuple) else (init, None))
        if kind in ("fan_in", "bias_fan_in"):
            fan_in = math.prod(shape[:-1]) if kind == "fan_in" else None
            if fan_in is None:  # a bias: the fan-in of its kernel, drawn just before it
                fan_in = math.prod(params[name[:-len("bias")] + "kernel"].shape[:-1])
            bound = 1.0 / math.sqrt(fan_in)
            a = rng.uniform(-bound, bound, shape)
        elif kind == "uniform":
            a = rng.uniform(-arg, arg, shape)
        elif kind == "normal":
            a = rng.normal(0.0, arg, shape)
        elif kind == "zero_bias":
            a = rng.normal(0.0, 0.02, shape) if exercise else np.zeros(shape)
        elif kind == "gamma":
            a = rng.uniform(0.5, 1.5, shape) if exercise else np.ones(shape)
        elif kind == "beta":
            a = rng.uniform(-0.2, 0.2, shape) if exercise else np.zeros(shape)
        elif kind == "mean":
            a = rng.normal(0.0, 0.2, shape) if exercise else np.zeros(shape)
        elif kind == "var":
            # small variances make the normalisation (and so its epsilon) matter
            a = rng.uniform(0.5, 1.5, shape) if exercise else np.ones(shape)
        else:
            raise ValueError(f"{name}: unknown init {init!r}")
        params[name] = np.ascontiguousarray(a, dtype=np.float32)
    return params


def params_hash(params: dict) -> str:
    """sha256 over names, shapes and bytes in canonical order: 'these are the same weights'."""
    digest = hashlib.sha256()
    for name in sorted(params):
        a = params[name]
        digest.update(f"{name}{tuple(a.shape)}{a.dtype}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


class WeightMismatch(ValueError):
    """A canonical weight set does not fit a framework's model (name or shape)."""


def check_consumed(params: dict, used: set, framework: str) -> None:
    """Every canonical tensor must have gone somewhere: a leftover means a different model."""
    left = sorted(set(params) - used)
    if left:
        raise WeightMismatch(f"{framework}: canonical weights not used by the model: "
                             f"{', '.join(left[:8])}{' ...' if len(left) > 8 else ''}")


def expect_shape(name: str, array, shape, framework: str):
    if tuple(array.shape) != tuple(shape):
        raise WeightMismatch(f"{framework}: {name} has shape {tuple(shape)} in the model, "
                             f"{tuple(array.shape)} converted from the canonical layout")
    return array
