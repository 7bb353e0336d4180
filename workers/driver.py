"""Worker side: the benchmark phase driver, the same for every framework.

Owns the order and timing of a cell's phases (data -> build -> train -> evaluate -> inference;
`mode: count` only counts; `mode: verify` goes to gate.py) and a user's model's FLOP count; the
shared starting weights and the user's output check are starting.py's. The primitives are the backend's (harness.FrameworkInterface); the timing of training
blocks and inference samples is the harness' own. Must import only the standard library at
import time (numpy, specs, weights, usermodel lazily); never mlbench.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from harness import FrameworkInterface, TrainRecord, current_rss_bytes, peak_rss_bytes, progress
from starting import check_user_output, load_initial_weights


def run_cell(request: dict, make_backend: Callable[[dict], FrameworkInterface],
             import_s: float) -> dict:
    """Drive the phases of one cell and return the result metrics."""
    import specs

    if request.get("mode") == "verify":
        import gate
        return gate.run_verify(request, make_backend)
    backend = make_backend(request)
    spec = specs.request_spec(request)
    user = spec["model"] == "user"  # the user's own model file (workers/usermodel.py)
    if request.get("mode") == "count":
        if user:  # nothing abstract about a user's builder: build it and count
            backend.check_supported()
            backend.build_model(spec)
        return {"params": backend.count_parameters() if user else
                backend.count_parameters_abstract(spec),
                "flops_per_sample": specs.flops_per_sample(spec), "model_spec": spec}
    backend.check_supported()
    clock = time.perf_counter

    progress("data")
    t0 = clock()
    data = specs.make_dataset(spec, request)
    data_gen_s = clock() - t0

    baseline_rss = current_rss_bytes()  # after imports and data: what the model adds is above

    progress("build")
    t0 = clock()
    backend.build_model(spec)
    if request.get("init", "framework") == "canonical":
        # the same starting weights in every framework (workers/weights.py), instead of each
        # framework's default initialisers: same trajectory, comparable accuracy
        load_initial_weights(backend, spec, int(request["seed"]))
    build_s = clock() - t0
    params = backend.count_parameters()

    t0 = clock()
    backend.load_data(data)
    load_s = clock() - t0
    flops = specs.flops_per_sample(spec)
    if user:
        check_user_output(backend, spec, min(int(request["batch_size"]), len(data["y_eval"])))
        flops = user_flops(backend, spec)

    bs = int(request["batch_size"])
    n_train = len(data["y_train"])
    steps = n_train // bs
    if steps < 2:
        raise ValueError(f"train_samples={n_train} gives {steps} step(s) at batch size {bs}; "
                         "need at least 2 (one for compile, one timed)")
    # Steps after the first one still settle (TF's step time falls for ~20 steps): the first
    # tenth of the run, at most 10 steps, is kept apart as warm-up, not in the steady state.
    rec = TrainRecord(warmup_steps=min(10, steps * int(request["epochs"]) // 10))
    epoch_times, epoch_losses = [], []
    for epoch in range(int(request["epochs"])):
        progress(rec.phase, epoch=epoch, step=0, steps=steps)
        secs, loss = backend.train_epoch(epoch, steps, rec)
        epoch_times.append(secs)
        epoch_losses.append(loss)

    progress("evaluate")
    t0 = clock()
    ev = backend.evaluate()
    eval_s = clock() - t0

    # enough evidence: more steady blocks when the epochs gave too few or too short a steady
    # state (measurement steps, after `evaluate`: the accuracy is the configured epochs')
    meas = measurement(request)
    backend.measure_more(steps, rec, meas["min_time_s"], meas["min_blocks"], meas["max_extra_s"])

    progress("inference")
    n_eval_batches = max(1, len(data["y_eval"]) // bs)
    inf = backend.benchmark_inference(n_eval_batches, int(request["warmup_iterations"]),
                                      int(request["timed_iterations"]), meas["min_time_s"],
                                      meas["max_extra_s"])
    import loadgen  # the serving scenarios (single_stream, server), when the request asks
    serving = loadgen.run_scenarios(backend, request, n_eval_batches, inf)
    mem = backend.get_memory_usage()
    mem["host_peak_rss_bytes"] = peak_rss_bytes()
    mem["host_baseline_rss_bytes"] = baseline_rss
    return {
        "params": params,
        "flops_per_sample": flops,
        "model_spec": spec,
        "data_hash": data["hash"],
        "data_gen_s": data_gen_s,
        "build_s": build_s,
        "load_data_s": load_s,
        "train": {
            "steps_per_epoch": steps,
            "samples_per_step": bs,
            **rec.metrics(),
            "epoch_times_s": epoch_times,
            "epoch_loss_means": epoch_losses,
        },
        "eval": {**ev, "time_s": eval_s, "samples": len(data["y_eval"])},
        "inference": {**inf, "batch_size": bs},
        "memory": mem,
        "settings": {**backend.settings(), **wait_policy()},
        "measurement": meas,
        **({"serving": serving} if serving else {}),
    }


def measurement(request: dict) -> dict:
    """The request's evidence minimums (mlbench's `measurement:` block); a request without
    one (older parents, hand-written requests) asks for none beyond the configured epochs."""
    m = request.get("measurement") or {}
    return {"min_time_s": float(m.get("min_time_s", 0.0)),
            "min_blocks": int(m.get("min_blocks", 0)),
            "max_extra_s": float(m.get("max_extra_s", 60.0))}


def wait_policy() -> dict:
    """The thread-pool wait policy the cell ran under (mlbench sets it for every framework
    alike), in the cell's settings so that the report shows it."""
    return {k.lower(): os.environ[k] for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")
            if k in os.environ}


def user_flops(backend: FrameworkInterface, spec: dict) -> dict:
    """FLOPs per sample of a user's model: the file's own figure, else the framework's count
    (`count_flops`: torch's FlopCounterMode, XLA's cost analysis), else unknown (MFU n/a)."""
    import usermodel
    fwd, source = usermodel.file_flops(spec), "model file"
    if fwd is None and hasattr(backend, "count_flops"):
        try:
            fwd, source = backend.count_flops(), f"counted by {backend.name}"
        except Exception:  # noqa: BLE001 - a count is a bonus; without it MFU is n/a
            fwd = None
    spec["flops_source"] = source if fwd else "unknown (MFU n/a)"  # reported in model_spec
    if not fwd:
        return {"forward": None, "train_step": None}
    return {"forward": int(fwd), "train_step": 3 * int(fwd)}


