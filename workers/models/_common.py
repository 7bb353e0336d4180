"""What the model modules share: the spec error, canonical-parameter helpers and the synthetic
data of each input kind (the same bytes for every framework).

Owns nothing model-specific. Standard library only at module level (numpy is passed in, as the
caller's `rng`, or imported lazily), so the parent can read presets and counts without numpy.
"""
from __future__ import annotations

import math


class SpecError(ValueError):
    """A model spec that cannot be built (unknown model, preset or option, inconsistent sizes)."""


def dense(out: list, name: str, fin: int, fout: int, init: str = "fan_in") -> None:
    """Append a dense layer's canonical `<name>.kernel` [in, out] and `<name>.bias` [out].

    Init descriptors (interpreted by workers/weights.py): 'fan_in' (torch's Linear/Conv default:
    U(+-1/sqrt(fan_in)), the bias with its kernel's fan-in), ('normal', std) kernels with zero
    biases ('zero_bias': random only when the gate exercises them)."""
    if init == "fan_in":
        out += [(f"{name}.kernel", (fin, fout), "fan_in"), (f"{name}.bias", (fout,), "bias_fan_in")]
    else:
        out += [(f"{name}.kernel", (fin, fout), init), (f"{name}.bias", (fout,), "zero_bias")]


def norm(out: list, name: str, c: int) -> None:
    """A layer norm's canonical `<name>.gamma` and `<name>.beta` [c]."""
    out += [(f"{name}.gamma", (c,), "gamma"), (f"{name}.beta", (c,), "beta")]


def pre_norm_block(out: list, b: str, d: int, n_layers: int) -> None:
    """The canonical parameters of one pre-norm encoder/decoder block (transformer, vit):
    ln1, qkv (columns q | k | v, each split into heads contiguously), proj, ln2, fc (d -> 4d),
    out (4d -> d); GPT-2 init: N(0, 0.02), residual projections N(0, 0.02/sqrt(2*n_layers))."""
    gpt, resid = ("normal", 0.02), ("normal", 0.02 / math.sqrt(2 * n_layers))
    norm(out, f"{b}.ln1", d)
    dense(out, f"{b}.qkv", d, 3 * d, gpt)
    dense(out, f"{b}.proj", d, d, resid)
    norm(out, f"{b}.ln2", d)
    dense(out, f"{b}.fc", d, 4 * d, gpt)
    dense(out, f"{b}.out", 4 * d, d, resid)


def block_params(d: int) -> int:
    """Trainable parameters of one pre-norm block of width d (MLP ratio 4)."""
    return 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)


def block_flops(d: int, tokens: int) -> int:
    """Forward FLOPs of one block per token: 24 d^2 (qkv, proj, MLP) + 4 T d (scores, mix)."""
    return 2 * 12 * d * d + 2 * 2 * tokens * d


# --- synthetic, learnable data ----------------------------------------------------------------

def token_data(vocab: int, seq_len: int, n: int, rng):
    """A noisy order-1 Markov chain: each token has one likely successor. Next-token accuracy
    well above 1/vocab is only reachable by learning the chain. (x, y): y is x shifted by one."""
    import numpy as np

    successor = rng.permutation(vocab)
    tokens = np.empty((n, seq_len + 1), dtype=np.int32)
    tokens[:, 0] = rng.integers(0, vocab, n)
    noise = rng.random((n, seq_len)) < 0.2
    random_tok = rng.integers(0, vocab, (n, seq_len))
    for i in range(seq_len):
        tokens[:, i + 1] = np.where(noise[:, i], random_tok[:, i], successor[tokens[:, i]])
    return tokens[:, :-1].copy(), tokens[:, 1:].copy()


# The class signal is set per sample, not per element: a class template's per-element amplitude
# scales as 1 / sqrt(elements), so the distance between two classes' templates in units of
# the noise (what any classifier separates them by) is the same for 20 features as for 150,528
# pixels. A fixed per-element amplitude made small inputs nearly unlearnable (a 20-feature,
# 3-class task stayed at 0.4 accuracy) and large ones trivial. Each total is the one the quick
# config's model of that kind always had (mlp: 784 features at 0.15, cnn tiny: 16x16x3 at 0.4,
# lstm tiny: 16x8 at 0.8), so those models see the same bytes as before: one epoch lands well
# above chance but below 100%, and accuracy still tells a model that learned from one that did
# not.
# (per-element amplitude, elements of the sample it was tuned on) per kind
SIGNAL = {"vector": (0.15, 784), "image": (0.4, 16 * 16 * 3), "sequence": (0.8, 16 * 8)}


def signal(kind: str, shape: tuple) -> float:
    """The per-element amplitude of the class templates for one sample of `shape`: the tuned
    amplitude scaled by sqrt(tuned elements / elements) (exactly the tuned one at its size)."""
    amp, ref = SIGNAL[kind]
    n = math.prod(shape)
    return amp if n == ref else amp * math.sqrt(ref / n)


def class_data(kind: str, shape: tuple, classes: int, n: int, rng):
    """Labelled samples of one input kind: a class template plus noise (float32 x, int32 y).

    image (H, W, C): smooth class templates (low-frequency patterns) plus pixel noise;
    sequence (T, F): each class a different mix of sinusoids over time; vector: a random
    template per class."""
    import numpy as np

    y = rng.integers(0, classes, n).astype(np.int32)
    if kind == "image":
        h, w, c = shape
        coarse = rng.standard_normal((classes, 4, 4, c))
        rh, rw = math.ceil(h / 4), math.ceil(w / 4)
        templates = np.kron(coarse, np.ones((1, rh, rw, 1)))[:, :h, :w, :]
    elif kind == "sequence":
        t, f = shape
        freq = rng.uniform(0.5, 3.0, (classes, 1, f))
        phase = rng.uniform(0, 2 * math.pi, (classes, 1, f))
        time_axis = np.linspace(0, 2 * math.pi, t).reshape(1, t, 1)
        templates = np.sin(freq * time_axis + phase)
    else:
        templates = rng.standard_normal((classes, *shape))
    x = templates[y] * signal(kind, shape) + rng.standard_normal((n, *shape))
    return x.astype(np.float32), y
