"""The `transformer` model: a GPT-2 style decoder-only language model (next-token prediction);
preset `gpt2-small` is the published GPT-2 small (124,439,808 trainable parameters).

Conventions: pre-norm blocks (layer norm eps per HYPER), attention scaled by 1/sqrt(head_dim)
with a causal mask, MLP ratio 4 with GELU in its tanh approximation, final layer norm, output
head tied to the token embedding (no bias); loss averaged over tokens. Canonical parameters:
`tok` [vocab, d] (also the head: logits = h @ tok.T), `pos` [seq_len, d], `block<i>.*` (see
_common.pre_norm_block), `ln_f`.
Standard library only at module level; never mlbench or an ML framework.
"""
from __future__ import annotations

from ._common import SpecError, block_flops, block_params, norm, pre_norm_block, token_data

INPUT_KIND = "tokens"
PRESETS = {
    "tiny": {"vocab_size": 64, "seq_len": 16, "d_model": 32, "n_layers": 1, "n_heads": 2},
    "small": {"vocab_size": 256, "seq_len": 64, "d_model": 128, "n_layers": 2, "n_heads": 4},
    "gpt2-small": {"vocab_size": 50257, "seq_len": 1024, "d_model": 768, "n_layers": 12,
                   "n_heads": 12},
}
DEFAULT_PRESET = "small"
PUBLISHED_PARAMS = {"gpt2-small": 124_439_808}
REFERENCE = None  # judged pairwise


def validate(spec: dict) -> None:
    if spec["d_model"] % spec["n_heads"]:
        raise SpecError("transformer d_model must be divisible by n_heads")


def count_params(spec: dict) -> dict:
    v, t, d, n = spec["vocab_size"], spec["seq_len"], spec["d_model"], spec["n_layers"]
    return {"trainable": v * d + t * d + n * block_params(d) + 2 * d, "non_trainable": 0}


def flops(spec: dict) -> int:
    v, t, d, n = spec["vocab_size"], spec["seq_len"], spec["d_model"], spec["n_layers"]
    return (n * block_flops(d, t) + 2 * d * v) * t


def input_shape(spec: dict) -> tuple:
    return (spec["seq_len"],), "int32"


def num_classes(spec: dict) -> int:
    return spec["vocab_size"]  # a class per token of the vocabulary, at every position


def attention(spec: dict) -> dict:
    return {"heads": spec["n_heads"], "tokens": spec["seq_len"],
            "head_dim": spec["d_model"] // spec["n_heads"], "causal": True}


def generate(spec: dict, n: int, rng):
    return token_data(spec["vocab_size"], spec["seq_len"], n, rng)


def param_shapes(spec: dict) -> list:
    v, t, d, n = spec["vocab_size"], spec["seq_len"], spec["d_model"], spec["n_layers"]
    out: list = [("tok", (v, d), ("normal", 0.02)), ("pos", (t, d), ("normal", 0.02))]
    for i in range(n):
        pre_norm_block(out, f"block{i}", d, n)
    norm(out, "ln_f", d)
    return out
