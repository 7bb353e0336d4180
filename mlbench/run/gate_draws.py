"""The equivalence gate's second draw: a different model, or a knife-edge of fp32 rounding?

Owns the rule for a framework whose parameter counts, batches and forward pass (the outputs and
loss before any step, and the first training-mode loss) agree with its reference or peers, but
whose outputs or losses after the gate's Adam steps do not (mlbench.run.gate._judge's `steps_only`).
Such a framework gets a second, independent draw of canonical weights and batches (the seed plus
SECOND_DRAW) and fails only if it differs on that draw too.

Why: a different model (another optimizer epsilon, a batch-norm momentum) differs on every draw.
A knife-edge does not: when an input of a ReLU lies within fp32 rounding of zero, two correct
implementations (another summation order in a convolution) put it on either side, so one element
of one gradient is zero in one framework and not in the other; Adam's first step moves every
weight by about lr * sign(gradient), so that one element spreads over the whole model and the
outputs after three steps differ by about 1% (configs/modes.yaml's cnn on seed 0: tensorflow
without XLA at 6.7e-4; on seed 1: pytorch and jax instead). Which framework lands on which side
changes with the draw. Must not import an ML framework.
"""
from __future__ import annotations

from dataclasses import replace

from ..analysis.gate_verdicts import GateRow

SECOND_DRAW = 1  # the second draw's seed: the run's seed plus this


def combine(first: list[GateRow], second: list[GateRow], retried: set[str],
            seed: int) -> list[GateRow]:
    """The first draw's rows, with each `retried` framework's row replaced by its second-draw
    verdict when that passed (the reason says what the first draw saw), else kept failed with
    what the second draw said."""
    again = {r.framework: r for r in second}
    out = []
    for r in first:
        r2 = again.get(r.framework)
        if r.framework not in retried:
            out.append(r)
        elif r2 is not None and r2.passed is True:
            out.append(replace(r2, reason=(
                f"passed on a second draw (seed {seed + SECOND_DRAW}); on seed {seed} only the "
                f"training steps differed ({r.reason}; max abs err {_e(r.max_abs_err)}, max rel "
                f"err {_e(r.max_rel_err)}) while the forward agreed: a rounding knife-edge "
                "(e.g. a ReLU input within rounding of zero), not another model")))
        else:
            out.append(replace(r, reason=(
                f"{r.reason}; on a second draw (seed {seed + SECOND_DRAW}) too: "
                f"{(r2.reason if r2 is not None else None) or 'no answer'}")))
    return out


def _e(v: float | None) -> str:
    return f"{v:.2e}" if v is not None else "-"
