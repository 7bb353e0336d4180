"""The equivalence gate: do the frameworks run the *same* model? (`mlbench gate`, pre-run check)

Owns running the gate: every framework's worker in the wire's `mode: verify` (the protocol's
name for this request, workers/wire.py; one fresh process per framework, device and precision,
all models of the sweep in it), comparing what they report against the numpy reference (mlp) or
pairwise, and writing the verdicts (mlbench.analysis.gate_verdicts: rows, tolerances, the stored
document verify.json in the run directory, which the report's gate table reads). Must not import
an ML framework (numpy only, to read the workers' output arrays).

Every framework loads the same canonical weights (workers/weights.py, drawn once from the seed and
converted by each worker to its own layout) and the same batches; the gate compares the forward
outputs and loss in inference mode, the training losses of K identical Adam steps, and the
outputs and loss after them (so BN momentum and the optimizer are checked too), plus the
trainable / non-trainable parameter counts (against specs.count_params) and the hash of the
batches each framework read back from its own copy of the data.

Each framework variant of the sweep (config.variants: e.g. pytorch-compile) runs the gate in its
own process with its own options and gets its own rows, keyed by its label.
Verdict per (device, precision, model, framework): against numpy where it has a reference (mlp);
otherwise pairwise: the largest group of frameworks that all agree within tolerance passes, the
others fail ("disagrees with ..."); a tie (two frameworks that disagree) fails both, since
nothing says which one is wrong. A framework whose forward agrees but whose training steps do
not is judged again on a second draw of weights and batches (mlbench.run.gate_draws says why).
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Callable

from ..config import catalog
from . import gate_draws, launcher
from ..config.schema import Config
from ..analysis.gate_verdicts import (
    GATE_BATCH, GATE_STEPS, GATE_WORK_DIR, NUMERICS_UNCHECKED, ONLY_FRAMEWORK, TOLERANCES,
    GateReport, GateRow, max_known)
from .matrix import resolve_threads
from .protocol import VerifyRequest


def run(config: Config, out_dir: Path, *, frameworks: list[str] | None = None,
        precisions: list[str] | None = None, devices: list[str] | None = None,
        perturb: dict[str, str] | None = None, timeout_s: float | None = None,
        on_record: Callable[[str, dict], None] | None = None,
        stop: launcher.Stop | None = None,
        launch: launcher.Launch | None = None, write: bool = True) -> GateReport:
    """Run the gate for the models of `config` and write its document
    (`<out_dir>/verify.json`, gate_verdicts.GATE_JSON).

    frameworks/precisions/devices default to the config's (the dummy worker is left out; the
    numpy reference runs on the CPU at fp32 whenever an mlp is in the sweep). `perturb`
    ({framework: 'bn_eps'|'ln_eps'|'bn_momentum'}) is test-only: it deliberately alters that
    framework's model. `on_record(label, attempt_record)` is called after each worker process.
    Every worker starts through `launch` (the one spawner, mlbench.run.launcher.launch, unless an
    executor passes its own) and stops with `stop` (Ctrl-C): a gate stopped half-way is not
    written (nothing half-checked is kept as a verdict); with `write=False` the caller stores
    the verdicts (a rerun merges them into the run's document: gate_verdicts.merge).
    TF32 is always off in the gate (it checks the model, not the speed knobs).
    """
    t0 = time.monotonic()
    stop = stop or launcher.Stop()
    launch = launch or launcher.launch
    out_dir = Path(out_dir)
    work = out_dir / GATE_WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    variants = {v.label: v for v in config.variants if v.framework in catalog.FRAMEWORKS}
    for f in frameworks or ():  # asked for by name, not in the sweep: its plain default
        if f not in variants and f in catalog.FRAMEWORKS:
            variants[f] = catalog.Variant(f, f, _options(config, f), "default")
    frameworks = [f for f in (frameworks or list(variants)) if f in variants]
    precisions = precisions or list(config.precisions)
    devices = devices or list(config.devices)
    entries = [{"key": m.id_label, "model": m.name, "model_options": m.model_options,
                **({"user_model": m.user_model} if m.source is not None else {})}
               for m in config.models]
    names = {m.id_label: m.name for m in config.models}
    perturb = perturb or {}
    threads = resolve_threads(config)

    def check(label: str, device: str, precision: str, models: list[dict],
              seed: int | None = None) -> dict:
        var = variants.get(label) or catalog.Variant(label, label, _options(config, label),
                                                     "default")
        fw = var.framework
        tag = f"{label}-{device.replace(':', '')}-{precision}" + (
            f"-seed{seed}" if seed is not None else "")
        job_dir = work / tag
        job_dir.mkdir(parents=True, exist_ok=True)
        request = VerifyRequest(
            cell_id=f"gate-{tag}", framework=fw, device=device, precision=precision,
            seed=config.seed if seed is None else seed, threads=threads,
            options=dict(var.options),
            batch_size=GATE_BATCH, verify_steps=GATE_STEPS,
            verify_dir=str(job_dir.resolve()), models=models,
            memory_limit_mb=config.memory_limit_mb,
            perturb=perturb.get(label, perturb.get(fw))).to_wire()
        settings = config.framework_settings.get(fw)
        python = settings.python if settings and settings.python else sys.executable
        job = launcher.Job(catalog.worker_script(fw), python, request, fw, device, threads,
                           timeout_s or config.timeout_s, config.seed)
        record = launch(job, job_dir, stop)
        record.pop("final", None)
        if on_record:
            on_record(tag, record)
        if record["status"] != "ok":
            return {e["key"]: {"status": record["status"], "reason": record.get("reason")}
                    for e in models}
        return record["metrics"]["models"]

    # the models with a numpy reference (workers/models/<model>.py REFERENCE: the mlp)
    has_ref = {m.id_label: m.source is None and catalog.specs().gate_reference(m.name) == "numpy"
               for m in config.models}
    ref_entries = [e for e in entries if has_ref[e["key"]]]
    reference = check("numpy", "cpu", "fp32", ref_entries) if ref_entries else {}
    rows: list[GateRow] = []
    pairs: list[dict] = []
    def judge(results: dict, ref_results: dict, e: dict, device: str, precision: str,
              steps_only: set | None = None) -> tuple[list[GateRow], list[dict]]:
        key = e["key"]
        got = {fw: results[fw].get(key, {"status": "error", "reason": "no answer"})
               for fw in frameworks}
        ref = ref_results.get(key) if has_ref[key] else None
        return _judge(names[key], key, device, precision, got, ref, steps_only)

    for device in devices:
        for precision in precisions:
            results = {fw: check(fw, device, precision, entries) for fw in frameworks}
            retry = {e["key"]: set() for e in entries}
            judged = {e["key"]: judge(results, reference, e, device, precision, retry[e["key"]])
                      for e in entries}
            again = [e for e in entries if retry[e["key"]]]
            if again and not stop.requested:
                # the training steps alone differed: a second draw tells a different model
                # from a rounding knife-edge (mlbench.run.gate_draws)
                seed2 = config.seed + gate_draws.SECOND_DRAW
                results2 = {fw: check(fw, device, precision, again, seed2) for fw in frameworks}
                refs = [e for e in again if has_ref[e["key"]]]
                ref2 = check("numpy", "cpu", "fp32", refs, seed2) if refs else {}
                for e in again:
                    r2, p2 = judge(results2, ref2, e, device, precision)
                    r1, p1 = judged[e["key"]]
                    judged[e["key"]] = (gate_draws.combine(r1, r2, retry[e["key"]], config.seed),
                                        p1 + [{**p, "seed": seed2} for p in p2])
            for e in entries:
                rows += judged[e["key"]][0]
                pairs += judged[e["key"]][1]
    report = GateReport(rows=rows, pairs=pairs, seconds=time.monotonic() - t0)
    if write and not stop.requested:
        report.write(out_dir)
    return report


def _options(config: Config, fw: str) -> dict:
    s = config.framework_settings.get(fw)
    return dict(s.options) if s else {}


# --- comparison --------------------------------------------------------------------------------

def _arrays(result: dict):
    """(indices, before, after): the worker's sample, small by construction (float64 of the
    sample only; the parent never sees a whole output tensor)."""
    import numpy as np
    with np.load(result["outputs"], allow_pickle=False) as npz:
        index = np.asarray(npz["index"]) if "index" in npz.files else None
        return index, [np.asarray(npz[k], dtype=np.float64).reshape(-1)
                       for k in ("out_before", "out_after")]


def _stats_ok(a: dict, ref: dict, tol: dict) -> bool:
    """The whole-tensor statistics agree within what the element tolerance implies: |mean| and
    max|x| move by at most atol + rtol*|.|, the L2 norm by at most atol*sqrt(n) + rtol*norm."""
    sa, sr = a.get("output_stats"), ref.get("output_stats")
    if not sa or not sr:
        return True  # an older artefact without them: the sample alone decides
    for when in ("before", "after"):
        x, r = sa[when], sr[when]
        if not x["finite"] or not r["finite"]:
            return False
        n = max(1, int(r["size"]))
        for key, atol in (("max_abs", tol["atol"]), ("mean", tol["atol"]),
                          ("l2", tol["atol"] * n ** 0.5)):
            if abs(x[key] - r[key]) > atol + tol["rtol"] * abs(r[key]):
                return False
    return True


def _compare(a: dict, ref: dict, tol: dict) -> dict:
    """Errors of result `a` against result `ref` and whether they are within `tol`."""
    import numpy as np
    ok = True
    max_abs = max_rel = 0.0
    shape_differs = {"agree": False, "why": f"output shape {a['output_shape']} vs "
                     f"{ref['output_shape']}", "max_abs_err": None, "max_rel_err": None,
                     "loss_err": None, "steps_loss_err": None, "forward_agree": False}
    if a["output_shape"] != ref["output_shape"]:
        return shape_differs
    (ia, xs), (ir, rs) = _arrays(a), _arrays(ref)
    if ia is not None and ir is not None and not np.array_equal(ia, ir):
        return {**shape_differs, "why": "compared output samples at different indices"}
    forward_ok = None  # the outputs before any step (the after-step ones come second)
    for x, r in zip(xs, rs):
        if x.shape != r.shape:
            return shape_differs
        err = np.abs(x - r)
        ok &= bool(np.all(err <= tol["atol"] + tol["rtol"] * np.abs(r)))
        ok &= bool(np.all(np.isfinite(x)))
        forward_ok = ok if forward_ok is None else forward_ok
        max_abs = max(max_abs, float(err.max(initial=0.0)))
        big = np.abs(r) > tol["atol"]
        if big.any():
            max_rel = max(max_rel, float((err[big] / np.abs(r[big])).max()))

    def loss_ok(u, v):
        return abs(u - v) <= tol["loss_atol"] + tol["loss_rtol"] * abs(v)

    loss_err = abs(a["loss_before"] - ref["loss_before"])
    later = list(zip(a["train_losses"] + [a["loss_after"]],
                     ref["train_losses"] + [ref["loss_after"]]))
    steps_err = max(abs(u - v) for u, v in later)
    losses_ok = loss_ok(a["loss_before"], ref["loss_before"]) and all(loss_ok(u, v)
                                                                      for u, v in later)
    stats_ok = _stats_ok(a, ref, tol)
    why = None
    if not ok:
        why = "outputs differ beyond tolerance"
    elif not stats_ok:
        why = "output statistics (max |x|, mean, L2 norm) differ beyond tolerance"
        ok = False
    elif not losses_ok:
        why = "losses differ beyond tolerance"
    # the model computes the same forward (outputs and loss before any step, and the first
    # training-mode loss): a disagreement is then the training steps' alone (gate_draws)
    forward = forward_ok and loss_ok(a["loss_before"], ref["loss_before"]) and bool(
        a["train_losses"]) and loss_ok(a["train_losses"][0], ref["train_losses"][0])
    return {"agree": ok and losses_ok, "why": why, "forward_agree": forward, "max_abs_err": max_abs,
            "max_rel_err": max_rel, "loss_err": loss_err, "steps_loss_err": steps_err}


def _judge(model: str, label: str, device: str, precision: str, got: dict,
           ref: dict | None, steps_only: set | None = None) -> tuple[list[GateRow], list[dict]]:
    """The gate's rows for one (model, device, precision) and the pairs compared. `steps_only`,
    when given, receives the frameworks that failed on the training steps alone (same counts,
    batches and forward: gate_draws gives them a second draw)."""
    tol = TOLERANCES[precision]
    base = dict(model=model, model_label=label, device=device, precision=precision)
    ok = {fw: r for fw, r in got.items() if r.get("status") == "ok"}
    rows: dict[str, GateRow] = {}
    for fw, r in got.items():
        if fw not in ok:
            status, reason = r.get("status", "error"), r.get("reason")
            if status == "skipped" and r.get("kind") == "device" and device.startswith("cuda"):
                # the gate only runs on devices NVML sees: a framework that cannot use it failed
                status, reason = "failed", f"{fw} cannot use {device}, which NVML sees: {reason}"
            elif status in ("error", "oom") and r.get("stage") in STAGE_FAILURES:
                # not a verdict on the numerics: the model never got that far
                reason = f"{STAGE_FAILURES[r['stage']]}: {reason}"
            rows[fw] = GateRow(**base, framework=fw, reference="-", status=status,
                                 passed=None if status == "skipped" else False, reason=reason)
    if ref is not None and ref.get("status") != "ok":
        ref = None
    # A user's model (no analytic counts): numbers are compared only between frameworks that
    # started from the same shared weights (weights_hash: the file's canonical_weights() loaded
    # by its loaders, or one Keras 3 model's seeded weights on its backends); the others are
    # checked for counts, output shape and dtype, and batches only: numerics unchecked.
    user = any(r.get("expected_params") is None for r in ok.values())
    same = {fw: [g for g in ok if ok[g].get("weights_hash") == r.get("weights_hash")]
            for fw, r in ok.items()} if user else {fw: list(ok) for fw in ok}
    numeric = {fw: r for fw, r in ok.items()
               if not user or (r.get("weights_hash") and len(same[fw]) > 1)}
    hashes = [r["batches_hash"] for r in ok.values()]
    want_hash = ref["batches_hash"] if ref else (max(set(hashes), key=hashes.count)
                                                 if hashes else None)
    pairs = []
    cmp: dict[tuple[str, str], dict] = {}
    for a, b in itertools.combinations(sorted(numeric), 2):
        if b not in same[a]:
            continue  # other starting weights: their numbers say nothing about each other
        c = cmp[(a, b)] = cmp[(b, a)] = _compare(ok[a], ok[b], tol)
        pairs.append({**base, "a": a, "b": b, **{k: c[k] for k in (
            "agree", "max_abs_err", "max_rel_err", "loss_err", "steps_loss_err")}})
    if ref is not None:
        verdicts = {fw: ("numpy", _compare(r, ref, tol)) for fw, r in ok.items()}
    else:
        verdicts = {fw: ("-", None) for fw in ok}
        for fw in numeric:
            peers = sorted(g for g in numeric if g in same[fw])
            group = _largest_agreeing(peers, cmp)
            others = [g for g in (group or peers) if g != fw]
            if not others:
                verdicts[fw] = ("-", None)
                continue
            cs = [cmp[(fw, g)] for g in others]
            worst = {k: max_known(*(c[k] for c in cs)) for k in
                     ("max_abs_err", "max_rel_err", "loss_err", "steps_loss_err")}
            worst["forward_agree"] = all(c.get("forward_agree") for c in cs)
            agree = group is not None and fw in group
            why = None if agree else (f"disagrees with {', '.join(others)}" if group else
                                      "no two frameworks agree: cannot tell which is right")
            verdicts[fw] = ("pairwise: " + ", ".join(others), {**worst, "agree": agree,
                                                                "why": why})
    counts = [json.dumps(r["params"], sort_keys=True) for r in ok.values()]
    shapes = [json.dumps([r["output_shape"], r.get("output_dtype")]) for r in ok.values()]
    for fw, r in ok.items():
        reference, c = verdicts[fw]
        want = r["expected_params"] if not user else json.loads(_majority(counts))
        params_equal = r["params"] == want
        data_equal = r["batches_hash"] == want_hash
        reasons = []
        if not params_equal:
            reasons.append(f"parameters {r['params']} != "
                           f"{'the other frameworks' if user else 'spec'} {want}")
        if not data_equal:
            reasons.append("received other batches (hash differs)")
        if user and json.dumps([r["output_shape"], r.get("output_dtype")]) != _majority(shapes):
            reasons.append(f"output {r['output_shape']} {r.get('output_dtype')} differs from "
                           f"the other frameworks' {_majority(shapes)}")
        if c is not None and not c["agree"]:
            if not reasons and c.get("forward_agree") and steps_only is not None:
                steps_only.add(fw)
            reasons.append(c["why"])
        passed = None if c is None and not reasons else not reasons
        if c is None and not reasons:
            # alone (the only framework that ran: a user's model with canonical weights too)
            # is not "no shared weights": that is for peers with other starting weights
            alone = len(ok) == 1 or fw in numeric
            reasons.append(ONLY_FRAMEWORK if alone else NUMERICS_UNCHECKED)
        errs = {k: c.get(k) for k in ("max_abs_err", "max_rel_err", "loss_err",
                                      "steps_loss_err")} if c else {}
        rows[fw] = GateRow(**base, framework=fw, reference=reference, passed=passed,
                             reason="; ".join(reasons) or None, params_equal=params_equal,
                             data_hash_equal=data_equal, params=r["params"], **errs)
    return [rows[fw] for fw in got], pairs


# What a model's error in the gate worker was, by how far it got (workers/gate.py `stage`).
STAGE_FAILURES = {"build": "builder error", "weights": "error loading the shared weights",
                  "run": "error in the gate's forward and steps"}


def _majority(values: list[str]) -> str | None:
    return max(sorted(set(values)), key=values.count) if values else None


def _largest_agreeing(fws: list[str], cmp: dict) -> list[str] | None:
    """The unique largest set (>= 2) of frameworks agreeing pairwise; None if none or a tie."""
    for size in range(len(fws), 1, -1):
        groups = [g for g in itertools.combinations(fws, size)
                  if all(cmp[(a, b)]["agree"] for a, b in itertools.combinations(g, 2))]
        if len(groups) == 1:
            return list(groups[0])
        if groups:
            return None
    return None

