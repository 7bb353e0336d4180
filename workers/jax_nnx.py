"""The user's `jax()` model inside the jax worker: a Flax linen module as it is, or a Flax NNX
module wrapped so that the worker drives it exactly as it drives a linen one.

Owns: what a file's `jax(**options)` may return (`module_types`: flax.linen.Module or
flax.nnx.Module; the jax worker builds it through usermodel.build), `adapt`, and `NNXModule`,
the adapter: `nnx.split` once into the
graph definition, the parameters (nnx.Param: trainable), the batch statistics (nnx.BatchStat:
non-trainable, updated in training mode like linen's `batch_stats`) and any other state (RNG
streams of Dropout...); then the two pure functions the worker calls on a linen module,
`init(key, x)` -> {"params", "batch_stats"?} and `apply(variables, x, mutable=..., train=...)`,
each an `nnx.merge` + call, so jax.jit, jax.grad, optax and buffer donation work unchanged.
Training mode: a module whose `__call__` takes `train` gets it; otherwise NNX's own switch,
`module.train()` / `module.eval()` (Dropout's `deterministic`, BatchNorm's
`use_running_average`). The other state is not carried from step to step (the jitted step is
pure): Dropout draws from the same RNG state at every step. Also `load_user`: the file's
`load_jax(variables, weights)` applied to the worker's state (the numeric gate of a user model).

Imports flax and jax (inside functions: the caller has imported them) only; never usermodel
(which calls load_user) or mlbench.
"""
from __future__ import annotations

import inspect

WHAT = "a Flax module (flax.linen.Module or flax.nnx.Module)"


def adapt(model):
    """The module a user's jax(**options) built (usermodel.build, checked to be one of
    `module_types`): a linen module as returned, an NNX module as NNXModule."""
    from flax import nnx

    return NNXModule(model) if isinstance(model, nnx.Module) else model


def module_types(linen) -> tuple:
    """What a user's jax(**options) may return: a linen or an NNX module."""
    from flax import nnx

    return (linen.Module, nnx.Module)


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



def load_user(backend, loader, canon: dict) -> None:
    """The file's `load_jax(variables, weights)` on the jax worker's state: it gets
    {"params", "batch_stats"?} as nested dicts of numpy arrays (an NNX module's by attribute
    name) and returns them with the canonical weights in; same tree and shapes required. The
    optimizer state starts afresh from the new parameters."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    nnx_model = is_nnx(backend.model)
    keys = ["params"] + (["batch_stats"] if backend.has_bn else [])
    old = {k: backend.state[k] for k in keys}
    pure = {k: nnx.to_pure_dict(v) if nnx_model else v for k, v in old.items()}
    new = loader(jax.tree.map(np.asarray, pure), canon)
    if not isinstance(new, dict) or set(new) != set(keys):
        raise ValueError(f"load_jax() must return the variables it got (a dict with "
                         f"{', '.join(keys)}), got {type(new).__name__}"
                         + (f" with {', '.join(map(str, new))}" if isinstance(new, dict) else ""))

    def check(path, was, now):
        if tuple(np.shape(now)) != tuple(was.shape):
            name = "/".join(str(getattr(p, "key", p)) for p in path)
            raise ValueError(f"load_jax() gave {name} the shape {tuple(np.shape(now))}; the "
                             f"model's is {tuple(was.shape)}")
        return jnp.asarray(now, was.dtype)

    state = dict(backend.state)
    for k in keys:
        try:
            loaded = jax.tree_util.tree_map_with_path(check, pure[k], new[k])
        except ValueError as exc:
            if "load_jax()" in str(exc):
                raise
            raise ValueError(f"load_jax() returned {k} of another structure than the model's: "
                             f"{exc}") from None
        if nnx_model:
            template = jax.tree.map(lambda a: a, old[k])
            nnx.replace_by_pure_dict(template, loaded)
            loaded = template
        state[k] = loaded
    state["opt_state"] = backend.tx.init(state["params"])
    backend.state = jax.block_until_ready(jax.device_put(state, backend.device))
