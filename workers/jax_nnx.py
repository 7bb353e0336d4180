"""The user's `jax()` model inside the jax worker: a Flax linen module as it is, or a Flax NNX
module wrapped so that the worker drives it exactly as it drives a linen one.

Owns: `build_user` (calls the file's `jax(**options)` through usermodel.build, accepting
flax.linen.Module or flax.nnx.Module) and `NNXModule`, the adapter: `nnx.split` once into the
graph definition, the parameters (nnx.Param: trainable), the batch statistics (nnx.BatchStat:
non-trainable, updated in training mode like linen's `batch_stats`) and any other state (RNG
streams of Dropout...); then the two pure functions the worker calls on a linen module,
`init(key, x)` -> {"params", "batch_stats"?} and `apply(variables, x, mutable=..., train=...)`,
each an `nnx.merge` + call, so jax.jit, jax.grad, optax and buffer donation work unchanged.
Training mode: a module whose `__call__` takes `train` gets it; otherwise NNX's own switch,
`module.train()` / `module.eval()` (Dropout's `deterministic`, BatchNorm's
`use_running_average`). The other state is not carried from step to step (the jitted step is
pure): Dropout draws from the same RNG state at every step. Also the parameters as the nested
dict of arrays a user's `load_jax` sees (`to_pure` / `from_pure`).

Imports flax and jax (inside functions: the caller has imported them) and usermodel; never
mlbench.
"""
from __future__ import annotations

import inspect

WHAT = "a Flax module (flax.linen.Module or flax.nnx.Module)"


def build_user(spec: dict, linen):
    """The file's jax(**options): a linen module as returned, an NNX module as NNXModule."""
    import usermodel
    from flax import nnx

    model = usermodel.build(spec, "jax", (linen.Module, nnx.Module), WHAT)
    return NNXModule(model) if isinstance(model, nnx.Module) else model


def is_nnx(model) -> bool:
    return isinstance(model, NNXModule)


class NNXModule:
    """An nnx.Module seen through linen's init/apply."""

    def __init__(self, module):
        from flax import nnx

        self.graphdef, self.params, self.stats, self.other = nnx.split(
            module, nnx.Param, nnx.BatchStat, ...)
        self.takes_train = "train" in inspect.signature(type(module).__call__).parameters
        self.module_type = type(module)

    def __call__(self, x, train: bool = False):  # the signature the worker inspects
        raise TypeError("an NNX module is called through apply()")

    def init(self, key, x):
        """The module's own initial state (built by the user's jax() with its nnx.Rngs)."""
        variables = {"params": self.params}
        if self.stats:
            variables["batch_stats"] = self.stats
        return variables

    def apply(self, variables, x, mutable=None, train: bool = False):
        import jax
        from flax import nnx

        # fresh Variables at this trace level (under jax.grad inside jax.jit: the innermost),
        # so that BatchNorm's statistics and the RNG counters may be updated in it
        fresh = lambda state: jax.tree.map(lambda a: a, state)  # noqa: E731
        module = nnx.merge(self.graphdef, fresh(variables["params"]),
                           fresh(variables.get("batch_stats", self.stats)), fresh(self.other))
        if self.takes_train:
            out = module(x, train=train)
        else:
            module.train() if train else module.eval()
            out = module(x)
        if mutable:
            return out, {"batch_stats": nnx.state(module, nnx.BatchStat)}
        return out

    # the parameters as a user's loader sees them: nested dicts of arrays, by attribute name
    def to_pure(self, params) -> dict:
        from flax import nnx
        return nnx.to_pure_dict(params)

    def from_pure(self, pure: dict):
        import jax
        from flax import nnx
        state = jax.tree.map(lambda a: a, self.params)
        nnx.replace_by_pure_dict(state, pure)
        return state
