"""Worker side: where every framework starts from, shared by the benchmark driver and the
equivalence gate (driver.py, gate.py both import it; it imports neither).

Owns the shared starting weights of a cell (`load_initial_weights`: the canonical weights of a
built-in model, a user's file's own, or the weights a backend can share) and the check that a
user's model maps a batch of its INPUT to logits of the right shape (`check_user_output`).
Must import only the standard library at import time (weights, usermodel lazily); never mlbench.
"""
from __future__ import annotations

from harness import FrameworkInterface


def load_initial_weights(backend: FrameworkInterface, spec: dict, seed: int,
                         exercise: bool = False) -> str | None:
    """Give every framework the same starting weights; return their hash (None: none shared).

    Built-in models: the canonical weights of workers/weights.py. A user's model: the file's
    own `canonical_weights()` when it has a loader for this framework (usermodel.load_canonical),
    else the weights a backend can share (`load_shared`: a Keras 3 model on any backend gets the
    same seeded weights); otherwise it keeps its framework's own initialisation (None).
    """
    if spec["model"] == "user":
        import usermodel
        digest = usermodel.load_canonical(backend, spec, seed)
        if digest is not None:
            return digest
        share = getattr(backend, "load_shared", None)
        return share(seed) if share is not None else None
    import weights
    canon = weights.canonical_params(spec, seed, exercise=exercise)
    backend.load_canonical(canon)
    return weights.params_hash(canon)


def check_user_output(backend: FrameworkInterface, spec: dict, rows: int) -> None:
    """A user's builder must map a batch of INPUT to logits of the right shape: one forward
    pass on eval batch 0 before anything is timed, so a wrong model fails with its shape."""
    import usermodel
    out = backend.predict(0)
    usermodel.check_logits(spec, backend.to_numpy(out).shape, rows,
                           getattr(backend, "user_function", backend.name))
