"""Worker side: the equivalence gate's driver (`mode: verify`, mlbench/run/gate.py compares).

Owns running several models in one process from the same canonical weights and batches as every
other framework, the outputs each saves (a seeded sample plus whole-tensor statistics), and the
test-only perturbations that prove the gate catches a model that differs. Must import only the
standard library at import time (numpy, specs lazily); never mlbench.
"""
from __future__ import annotations

import os
import traceback
from typing import Callable

from starting import check_user_output, load_initial_weights
from harness import FrameworkInterface, SkipCell, is_oom, progress


# Test-only: `perturb` in a verify request deliberately alters the model this worker builds, so
# the tests can prove that the gate catches a framework whose model differs (a framework-default
# epsilon or momentum slipping in). Never set by a normal run.
PERTURBATIONS = {
    "bn_eps": {"bn_eps": 1e-3},        # Keras' BatchNormalization default
    "ln_eps": {"ln_eps": 1e-6},        # Flax's LayerNorm default
    "bn_momentum": {"bn_momentum": 0.01},  # Keras' momentum 0.99 read as torch's convention
}


def run_verify(request: dict, make_backend: Callable[[dict], FrameworkInterface]) -> dict:
    """`mode: verify`: the equivalence gate's worker side, for several models in one process.

    The request carries `models` ([{key, model, model_options}]), `verify_steps` (K),
    `batch_size`, `seed`, `precision`, `verify_dir` (where the outputs go, one .npz per model)
    and optionally `perturb` (test-only, see PERTURBATIONS). Per model: build, load the
    canonical weights of workers/weights.py, forward (inference mode) on eval batch 0 -> outputs
    and loss; K optimizer steps in training mode on train batches 0..K-1 -> their losses; then
    forward and loss again (the updated weights and running statistics). A model that fails or
    is unsupported is reported as such; the others still run.
    """
    models = {}
    for entry in request["models"]:
        sub = {k: v for k, v in request.items() if k != "models"}
        sub.update(model=entry["model"], model_options=entry.get("model_options") or {},
                   user_model=entry.get("user_model"))
        key = entry.get("key") or entry["model"]
        progress("verify", model=key)
        stage = ["build"]  # _verify_one moves it on: the parent tells a builder error apart
        try:
            models[key] = _verify_one(sub, key, make_backend, stage)
        except SkipCell as exc:
            models[key] = {"status": "skipped", "reason": str(exc),
                           "kind": getattr(exc, "kind", None)}
        except Exception as exc:  # noqa: BLE001 - one model's failure is data, not the end
            models[key] = {"status": "oom" if is_oom(exc) else "error",
                           "reason": f"{type(exc).__name__}: {str(exc)[:1000]}",
                           "stage": stage[0],
                           "traceback": traceback.format_exc()[-4000:]}
    return {"mode": "verify", "models": models}


def _verify_one(request: dict, key: str, make_backend, stage: list) -> dict:
    """One model's gate outputs; `stage[0]` says how far it got ("build": constructing the
    backend and the model; "weights": loading the shared weights; "run": data, forward, steps)."""
    import hashlib

    import numpy as np
    import specs

    steps = int(request.get("verify_steps", 3))
    bs = int(request["batch_size"])
    request = {**request, "train_samples": steps * bs, "eval_samples": bs, "data_path": None}
    backend = make_backend(request)
    spec = specs.request_spec(request)
    backend.check_supported()
    perturb = request.get("perturb")
    build_spec = dict(spec, **PERTURBATIONS[perturb]) if perturb else spec
    backend.build_model(build_spec)
    counts = backend.count_parameters()
    stage[0] = "weights"
    weights_hash = load_initial_weights(backend, spec, int(request["seed"]), exercise=True)
    stage[0] = "run"
    data = specs.make_dataset(spec, request)
    backend.load_data(data)
    if spec["model"] == "user":
        check_user_output(backend, spec, bs)
    digest = hashlib.sha256()
    for split, index in [("train", i) for i in range(steps)] + [("eval", 0)]:
        for a in backend.received_batch(split, index):
            a = np.ascontiguousarray(a)
            digest.update(f"{split}{index}{a.shape}{a.dtype}".encode() + a.tobytes())
    raw_before = backend.predict(0)
    out_before = backend.to_numpy(raw_before)
    loss_before = float(backend.evaluate()["loss"])
    train_losses = [float(backend.sync(backend.train_step(i))) for i in range(steps)]
    out_after = backend.to_numpy(backend.predict(0))
    loss_after = float(backend.evaluate()["loss"])
    path = os.path.join(request["verify_dir"],
                        f"{request['framework']}-{key}-{request['precision']}.npz")
    index = sample_indices(out_before.size, int(request["seed"]))
    np.savez(path, index=index, out_before=out_before.reshape(-1)[index],
             out_after=out_after.reshape(-1)[index])
    return {"status": "ok", "params": counts, "expected_params": specs.count_params(spec),
            "weights_hash": weights_hash, "data_hash": data["hash"],
            "output_dtype": _dtype_name(raw_before),
            "batches_hash": digest.hexdigest(), "loss_before": loss_before,
            "train_losses": train_losses, "loss_after": loss_after,
            "output_shape": list(out_before.shape), "outputs": path, "perturb": perturb,
            "output_stats": {"before": summary_stats(out_before),
                             "after": summary_stats(out_after)},
            "settings": backend.settings()}


def _dtype_name(value) -> str:
    import usermodel
    return usermodel.dtype_name(value)


VERIFY_SAMPLE = 65536  # output values compared per array: gpt2-small's logits are 823M at bs 16


def sample_indices(size: int, seed: int):
    """The flat output indices the gate compares: all of them up to VERIFY_SAMPLE, else
    VERIFY_SAMPLE distinct ones drawn from the seed, sorted: the same in every framework (and
    every worker process), so the parent compares like with like."""
    import numpy as np
    dtype = np.uint32 if size < 2 ** 32 else np.int64
    if size <= VERIFY_SAMPLE:
        return np.arange(size, dtype=dtype)
    rng = np.random.default_rng([seed, 0x6A7E])
    return np.sort(rng.choice(size, VERIFY_SAMPLE, replace=False)).astype(dtype)


def summary_stats(a, chunk: int = 1 << 22) -> dict:
    """Max |x|, mean and L2 norm of the whole output (in float64 chunks: no full-size copy),
    and whether every value is finite: what the sample cannot see."""
    import numpy as np
    flat = a.reshape(-1)
    max_abs, total, sq, finite = 0.0, 0.0, 0.0, True
    for i in range(0, flat.size, chunk):
        c = flat[i:i + chunk].astype(np.float64)
        finite &= bool(np.isfinite(c).all())
        max_abs = max(max_abs, float(np.abs(c).max(initial=0.0)))
        total += float(c.sum())
        sq += float(np.dot(c, c))
    if not finite:  # JSON has no NaN/inf; the flag says it
        return {"max_abs": None, "mean": None, "l2": None, "size": int(flat.size),
                "finite": False}
    return {"max_abs": max_abs, "mean": total / max(1, flat.size), "l2": sq ** 0.5,
            "size": int(flat.size), "finite": True}


