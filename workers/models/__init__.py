"""The built-in models, one module each, and the table of them (MODULES).

Owns which models exist and the interface every model module provides (INTERFACE): its presets,
analytic parameter counts and FLOPs, input kind, synthetic data and canonical parameter shapes
and initialisation. Adding a model = one module here + one entry in MODULES + one builder per
framework worker (each worker loads the canonical weights by its naming rule: no loader code).

Standard library only at import time (numpy lazily, in the data functions): the parent reads
presets and counts through workers/specs.py without numpy or any framework. Never imports
mlbench, pydantic, polars, plotly or an ML framework. Relative imports only: specs.py may load
this package under a private name (see specs._models).
"""
from __future__ import annotations

from . import cnn, lstm, mlp, transformer, vit
from ._common import SpecError

MODULES = {"mlp": mlp, "cnn": cnn, "transformer": transformer, "lstm": lstm, "vit": vit}

# What every model module provides (tests/test_models.py checks each one):
#   INPUT_KIND        'vector' | 'image' (NHWC) | 'tokens' (next-token LM) | 'sequence'
#   PRESETS           {preset: {size option: value}}; DEFAULT_PRESET, one of them
#   PUBLISHED_PARAMS  {preset: trainable count of the published architecture} (may be empty)
#   REFERENCE         the worker the gate compares with ('numpy'), or None: judged pairwise
#   validate(spec)    raise SpecError for sizes that cannot be built
#   count_params(spec) -> {'trainable', 'non_trainable'};  flops(spec) -> forward FLOPs/sample
#   input_shape(spec) -> (shape of one sample, dtype name);  num_classes(spec) -> int
#   attention(spec)   -> {'heads', 'tokens', 'head_dim', 'causal'} or None (no attention)
#   generate(spec, n, rng) -> (x, y) numpy arrays, seeded by rng
#   param_shapes(spec) -> [(canonical name, shape, init descriptor)] in drawing order
INTERFACE = ("INPUT_KIND", "PRESETS", "DEFAULT_PRESET", "PUBLISHED_PARAMS", "REFERENCE",
             "validate", "count_params", "flops", "input_shape", "num_classes", "attention",
             "generate", "param_shapes")
INPUT_KINDS = ("vector", "image", "tokens", "sequence")


def missing(module) -> list[str]:
    """The parts of INTERFACE that `module` lacks (empty for a complete model module)."""
    return [name for name in INTERFACE if not hasattr(module, name)]


__all__ = ["INTERFACE", "INPUT_KINDS", "MODULES", "SpecError", "missing"]
