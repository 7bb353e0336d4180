"""Aggregation: raw attempt records (as loaded by mlbench.store) -> polars tables.

Owns every number the report and `mlbench compare` show. Statistics are computed from the raw
samples (step times, latencies), never from pre-rounded figures:
  attempts_frame  one row per latest attempt (cell_id, repeat) with its own per-repeat statistics
  cells_frame     one row per cell: pooled-sample medians/percentiles, spread, per-repeat values
  comparison_frame  frameworks side by side per (model, options, device, batch, precision)
  failures_frame  every attempt that did not end "ok", with reason, stderr tail and rerun command
Per cell also: bootstrap 95% intervals over the per-process values (mlbench.stats; none for a
single process), pyperf-like warnings (instability, extreme values, short samples, busy machine
or device), achieved FLOP/s from the analytic FLOPs per sample, and MFU against the measured
ceiling of the run (mlbench.ceiling, ceilings.json) when there is one.
The equivalence gate's verdicts (mlbench.verify, verify.json next to the results) are read by
load_parity: a cell that failed the gate is "not comparable" (comparison_frame ranks only the
others; its vs-best ratios are null); a skipped or unverified cell stays comparable.
Every field of a record may be missing or of the wrong type (partial runs, older files): such
values become null. Never imports an ML framework.
"""
from __future__ import annotations

import json
import math

import numpy as np
import polars as pl

from . import stats

KEY = ["model_label", "device", "batch_size", "precision"]  # what frameworks are compared on


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x) -> int | None:
    v = _num(x)
    return int(v) if v is not None else None


def _nums(xs) -> list[float]:
    if not isinstance(xs, list):
        return []
    return [v for v in map(_num, xs) if v is not None and v >= 0]


_PLAIN = {float, int}


def _samples(xs) -> np.ndarray:
    """A list of raw samples as float64, dropping anything that is not a finite number >= 0.
    Fast path through numpy; the per-item path only for lists with strings, bools or None."""
    if not isinstance(xs, list) or not xs:
        return np.empty(0)
    if set(map(type, xs)) <= _PLAIN:  # bool, str, None...: slow path
        arr = np.asarray(xs, dtype=np.float64)
    else:
        arr = np.asarray(_nums(xs), dtype=np.float64)
    return arr[np.isfinite(arr) & (arr >= 0)]


def _d(x) -> dict:
    return x if isinstance(x, dict) else {}


def _s(x) -> str | None:
    if x is None:
        return None
    return x if isinstance(x, str) else json.dumps(x, default=str)


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def settings_label(settings: dict) -> str:
    """The numeric settings of a cell (tf32, matmul precision, compile, threads...) as one
    compact line; nested values flattened as a.b=v."""
    out = []
    for k, v in sorted(settings.items()):
        if isinstance(v, dict):
            out.extend(f"{k}.{k2}={_s(v2)}" for k2, v2 in sorted(v.items()))
        elif not isinstance(v, list) and v is not None:
            out.append(f"{k}={v}")
    return ", ".join(out)


def options_label(opts) -> str:
    if not isinstance(opts, dict) or not opts:
        return _s(opts) or ""
    return ", ".join(f"{k}={_s(v)}" for k, v in sorted(opts.items()))


def _flatten(i: int, a: dict) -> dict:
    m = _d(a.get("metrics"))
    train, ev, mem = _d(m.get("train")), _d(m.get("eval")), _d(m.get("memory"))
    hello, gpu, params = _d(a.get("hello")), _d(a.get("gpu")), _d(m.get("params"))
    model = _s(a.get("model")) or "?"
    opts = options_label(a.get("model_options"))
    dev_peak = _int(mem.get("peak_device_bytes"))
    if dev_peak is None:
        dev_peak = _int(gpu.get("nvml_peak_process_bytes")) or None
    rss = [v for v in (_int(a.get("host_peak_rss_bytes")), _int(mem.get("host_peak_rss_bytes")))
           if v is not None]
    trainable, frozen = _int(params.get("trainable")), _int(params.get("non_trainable"))
    losses = _nums(train.get("epoch_losses"))
    flops = _d(m.get("flops_per_sample"))
    aff = hello.get("cpu_affinity")
    busy = stats.busy_warnings(a.get("machine_before"), a.get("device_before"),
                               _s(a.get("device")), len(aff) if isinstance(aff, list) else 0)
    settings = _d(m.get("settings"))
    return {
        "idx": i, "cell_id": _s(a.get("cell_id")) or "?", "repeat": _int(a.get("repeat")) or 0,
        "order": _int(a.get("order")) or 0,
        "framework": _s(a.get("framework")) or "?", "model": model, "options": opts,
        # a variant (e.g. pytorch-compile) is its own competitor under `framework`; what it runs
        # on and its mode (records before modes existed: the framework, default)
        "base_framework": _s(a.get("base_framework")) or _s(a.get("framework")) or "?",
        "mode": _s(a.get("mode")) or "default",
        "mode_settings": options_label(a.get("mode_settings") or None),
        "model_label": f"{model} ({opts})" if opts else model,
        # the config's label of the model (record field model_label, e.g. "cnn.tiny"): what the
        # equivalence gate's verify.json names it by
        "gate_label": _s(a.get("model_label")) or model,
        "device": _s(a.get("device")) or "?", "batch_size": _int(a.get("batch_size")),
        "precision": _s(a.get("precision")) or "?", "status": _s(a.get("status")) or "?",
        "reason": _s(a.get("reason")), "exit_code": _int(a.get("exit_code")),
        "signal": _s(a.get("signal")), "stderr_tail": _s(a.get("stderr_tail")),
        "rerun": _s(a.get("rerun")), "fingerprint": _s(a.get("fingerprint")),
        "wall_s": _num(a.get("wall_s")),
        "framework_version": _s(hello.get("framework_version")),
        "device_name": _s(hello.get("device_name")),
        "samples_per_step": _num(train.get("samples_per_step")) or _num(a.get("batch_size")),
        "first_step_s": _num(train.get("first_step_s")),
        "epoch_time_s": _median(_nums(train.get("epoch_times_s"))),
        "final_loss": losses[-1] if losses else None,
        "accuracy": _num(ev.get("accuracy")),
        "peak_device_bytes": dev_peak, "host_peak_rss_bytes": max(rss) if rss else None,
        "params_trainable": trainable,
        "params_total": None if trainable is None else trainable + (frozen or 0),
        "flops_fwd": _num(flops.get("forward")), "flops_train": _num(flops.get("train_step")),
        "busy": "\n".join(busy) or None,
        "settings": settings_label(settings) if settings else None,
        "step_times_s": _samples(train.get("step_times_s")),
        "latencies_s": _samples(_d(m.get("inference")).get("latencies_s")),
    }


_SCHEMA = {"idx": pl.Int64, "repeat": pl.Int64, "order": pl.Int64, "batch_size": pl.Int64,
           "exit_code": pl.Int64, "peak_device_bytes": pl.Int64, "host_peak_rss_bytes": pl.Int64,
           "params_trainable": pl.Int64, "params_total": pl.Int64,
           "step_times_s": pl.List(pl.Float64), "latencies_s": pl.List(pl.Float64),
           "busy": pl.Utf8, "settings": pl.Utf8}
for _c in ("wall_s", "samples_per_step", "first_step_s", "epoch_time_s", "final_loss",
           "accuracy", "flops_fwd", "flops_train"):
    _SCHEMA[_c] = pl.Float64


def _long(idx: list[int], arrays: list[np.ndarray], name: str) -> pl.DataFrame:
    """Raw samples of all attempts as a list column keyed by idx, built without Python loops
    over the samples."""
    lens = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.empty(0)
    long = pl.DataFrame({"idx": np.repeat(np.asarray(idx, dtype=np.int64), lens), name: flat})
    return long.group_by("idx").agg(pl.col(name))


def _raw(attempts: list[dict]) -> pl.DataFrame:
    rows = [_flatten(i, a) for i, a in enumerate(attempts)] or [_flatten(0, {})]
    lists = {k: [r.pop(k) for r in rows] for k in ("step_times_s", "latencies_s")}
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    df = pl.DataFrame(cols, schema_overrides={k: v for k, v in _SCHEMA.items() if k in cols},
                      strict=False)
    for name, arrays in lists.items():
        df = df.join(_long(cols["idx"], arrays, name), on="idx", how="left").with_columns(
            pl.col(name).fill_null(pl.lit([], dtype=pl.List(pl.Float64))))
    return df if attempts else df.head(0)


def _sample_stats(raw: pl.DataFrame, col: str, by: str, prefix: str,
                  extremes: bool = False) -> pl.DataFrame:
    """Median, p90, p99 and relative IQR of the raw samples in list column `col`, per `by`.
    With extremes: also how many raw samples are extreme (stats.extremes' rule: beyond Q1 - 3 IQR
    or Q3 + 3 IQR and at least 10% from the median, groups of 4 samples or more) and max / median,
    in the same single aggregation (per-group scalars broadcast inside it, no window passes)."""
    v = pl.col(col)
    q1, q3 = v.quantile(0.25, interpolation="linear"), v.quantile(0.75, interpolation="linear")
    med = v.median()
    aggs = [med.alias(f"{prefix}_median"),
            v.quantile(0.9, interpolation="linear").alias(f"{prefix}_p90"),
            v.quantile(0.99, interpolation="linear").alias(f"{prefix}_p99"),
            ((q3 - q1) / med).alias(f"{prefix}_iqr_rel"), pl.len().alias(f"{prefix}_n")]
    if extremes:
        iqr = q3 - q1
        far = (v - med).abs() >= stats.EXTREME_MIN_REL * med
        ext = ((v > q3 + stats.EXTREME_IQR * iqr) | (v < q1 - stats.EXTREME_IQR * iqr)) & far
        aggs += [pl.when(pl.len() >= 4).then(ext.sum()).otherwise(0).cast(pl.Int64)
                 .alias(f"{prefix}_extreme"), (v.max() / med).alias(f"{prefix}_max_rel")]
    return raw.select(by, col).explode(col).drop_nulls(col).group_by(by).agg(aggs)


def attempts_frame(attempts: list[dict]) -> pl.DataFrame:
    """One row per attempt given (pass Loaded.latest), with per-attempt sample statistics:
    train_sps = samples_per_step / median step time; lat_* in seconds."""
    raw = _raw(attempts)
    st = _sample_stats(raw, "step_times_s", "idx", "step", extremes=True)
    lt = _sample_stats(raw, "latencies_s", "idx", "lat", extremes=True)
    ext = [f"{p}_{c}" for p in ("step", "lat") for c in ("extreme", "max_rel")]
    return (raw.join(st.drop(ext[:2]), on="idx", how="left")
            .join(lt.drop(ext[2:]), on="idx", how="left")
            .join(st.select("idx", *ext[:2]), on="idx", how="left")
            .join(lt.select("idx", *ext[2:]), on="idx", how="left")
            .with_columns((pl.col("samples_per_step") / pl.col("step_median")).alias("train_sps"))
            .sort("order", "idx"))


def cells_frame(att: pl.DataFrame, ceilings: dict | None = None) -> pl.DataFrame:
    """One row per cell. Pooled over the ok repeats: step/latency median, p90, p99, relative IQR;
    per-repeat values kept as lists (train_sps_r, lat_p50_r, mem_r) for noise judgements; their
    bootstrap 95% intervals (*_ci_lo/hi, null for a single process) and spread (*_cv); warnings;
    achieved FLOP/s; MFU when `ceilings` ({framework: {device: {precision: FLOP/s}}}) is given."""
    ok = att.filter(pl.col("status") == "ok")
    ident = ["framework", "base_framework", "mode", "mode_settings", "model", "options",
             "model_label", "gate_label", "device", "batch_size", "precision"]
    status = att.group_by("cell_id").agg(
        *[pl.col(c).first() for c in ident], pl.col("order").min().alias("first_order"),
        pl.len().alias("repeats"), (pl.col("status") == "ok").sum().alias("ok_repeats"),
        pl.col("status").filter(pl.col("status") != "ok").unique().sort().str.join(", ")
        .alias("failed_statuses"))
    # the per-cell "memory" is device memory on accelerators, host RSS on the CPU
    mem = (pl.when(pl.col("device") != "cpu").then(pl.col("peak_device_bytes"))
           .otherwise(pl.col("host_peak_rss_bytes")))
    okc = ok.with_columns(mem.cast(pl.Float64).alias("mem")).sort("repeat")
    per = okc.group_by("cell_id").agg(
        pl.col("train_sps").drop_nulls().alias("train_sps_r"),
        pl.col("lat_median").drop_nulls().alias("lat_p50_r"),
        pl.col("mem").drop_nulls().alias("mem_r"),
        pl.col("samples_per_step").median(), pl.col("epoch_time_s").median(),
        pl.col("first_step_s").median(), pl.col("accuracy").median(),
        pl.col("final_loss").median(), pl.col("wall_s").median(),
        pl.col("peak_device_bytes").max(), pl.col("host_peak_rss_bytes").max(),
        pl.col("params_trainable").max(), pl.col("params_total").max(),
        pl.col("framework_version").drop_nulls().first(),
        pl.col("device_name").drop_nulls().first(),
        pl.col("flops_fwd").drop_nulls().first(), pl.col("flops_train").drop_nulls().first(),
        pl.col("settings").drop_nulls().first(),
        pl.col("step_extreme").sum(), pl.col("step_n").sum(), pl.col("step_max_rel").max(),
        pl.col("lat_extreme").sum(), pl.col("lat_n").sum().alias("lat_n_r"),
        pl.col("lat_max_rel").max())
    busy = (att.select("cell_id", pl.col("busy").str.split("\n")).drop_nulls("busy")
            .explode("busy").group_by("cell_id").agg(pl.col("busy").unique(maintain_order=True)))
    st = _sample_stats(okc, "step_times_s", "cell_id", "step")  # pooled over the repeats
    lt = _sample_stats(okc, "latencies_s", "cell_id", "lat")
    out = (status.join(per.drop("step_n"), on="cell_id", how="left")
           .join(st, on="cell_id", how="left").join(lt, on="cell_id", how="left")
           .join(busy, on="cell_id", how="left"))
    out = out.with_columns(
        (pl.col("samples_per_step") / pl.col("step_median")).alias("train_sps"),
        pl.col("train_sps_r").list.min().alias("train_sps_min"),
        pl.col("train_sps_r").list.max().alias("train_sps_max"),
        pl.col("lat_p50_r").list.min().alias("lat_p50_min"),
        pl.col("lat_p50_r").list.max().alias("lat_p50_max"),
        pl.when(pl.col("mem_r").list.len() > 0).then(pl.col("mem_r").list.median())
        .alias("mem_bytes"),
    )
    out = out.with_columns(
        (pl.col("flops_train") * pl.col("train_sps")).alias("train_flops_s"),
        (pl.col("flops_fwd") * pl.col("batch_size") / pl.col("lat_median")).alias("infer_flops_s"))
    out = _with_intervals_and_warnings(out)
    out = with_mfu(out, ceilings or {})
    return out.sort("model_label", "device", "precision", "batch_size", "framework",
                    nulls_last=True)


def _k(values, c) -> int:
    """How many per-process values a cv rests on (only needed when that cv raises a warning)."""
    return len(stats._arr(values)) if c is not None and c >= stats.UNSTABLE_CV else 0


def _with_intervals_and_warnings(cells: pl.DataFrame) -> pl.DataFrame:
    train_r, lat_r = cells["train_sps_r"].to_list(), cells["lat_p50_r"].to_list()
    tr_ci = stats.bootstrap_median_ci_many(train_r)
    la_ci = stats.bootstrap_median_ci_many(lat_r)
    tr_cv, la_cv = stats.cv_many(train_r), stats.cv_many(lat_r)
    needed, basis, warns = [], [], []
    cols = {c: cells[c].to_list() for c in (
        "step_median", "lat_median", "step_extreme", "step_n", "step_max_rel", "lat_extreme",
        "lat_n_r", "lat_max_rel", "ok_repeats", "busy")}
    for i, (tcv, lcv) in enumerate(zip(tr_cv, la_cv)):
        worst = max((c for c in (tcv, lcv) if c is not None), default=None)
        needed.append(stats.repeats_needed(worst))
        ok = cols["ok_repeats"][i] or 0
        basis.append(None if ok == 0 else "single process" if ok == 1 else
                     f"bootstrap over {ok} processes")
        w = stats.judge_from(
            train_cv=tcv, train_k=_k(train_r[i], tcv), lat_cv=lcv, lat_k=_k(lat_r[i], lcv),
            step_median=cols["step_median"][i], lat_median=cols["lat_median"][i],
            step_extreme=cols["step_extreme"][i] or 0, step_n=cols["step_n"][i] or 0,
            step_max_rel=cols["step_max_rel"][i], lat_extreme=cols["lat_extreme"][i] or 0,
            lat_n=cols["lat_n_r"][i] or 0, lat_max_rel=cols["lat_max_rel"][i]) if ok else []
        warns.append(w + list(cols["busy"][i] or []))
    extra = pl.DataFrame({
        "train_sps_ci_lo": [c[0] if c else None for c in tr_ci],
        "train_sps_ci_hi": [c[1] if c else None for c in tr_ci],
        "lat_p50_ci_lo": [c[0] if c else None for c in la_ci],
        "lat_p50_ci_hi": [c[1] if c else None for c in la_ci],
        "train_sps_cv": tr_cv, "lat_p50_cv": la_cv, "repeats_needed": needed,
        "ci_basis": basis, "warnings": warns,
    }, schema={"train_sps_ci_lo": pl.Float64, "train_sps_ci_hi": pl.Float64,
               "lat_p50_ci_lo": pl.Float64, "lat_p50_ci_hi": pl.Float64,
               "train_sps_cv": pl.Float64, "lat_p50_cv": pl.Float64,
               "repeats_needed": pl.Int64, "ci_basis": pl.Utf8, "warnings": pl.List(pl.Utf8)})
    return pl.concat([cells.drop("lat_n_r", "busy"), extra], how="horizontal").with_columns(
        pl.col("warnings").list.len().alias("n_warnings"))


def with_mfu(cells: pl.DataFrame, ceilings: dict) -> pl.DataFrame:
    """Add ceiling_flops_s (this framework's measured matmul ceiling on the cell's device and
    precision), mfu (achieved training FLOP/s / ceiling) and mfu_infer; null without a ceiling."""
    keys = [(fw, dev, prec, c) for fw, devs in (ceilings or {}).items() if isinstance(devs, dict)
            for dev, precs in devs.items() if isinstance(precs, dict)
            for prec, c in precs.items() if isinstance(c, (int, float)) and c > 0]
    table = pl.DataFrame(keys, schema={"framework": pl.Utf8, "device": pl.Utf8,
                                       "precision": pl.Utf8, "ceiling_flops_s": pl.Float64},
                         orient="row")
    out = cells.drop([c for c in ("ceiling_flops_s", "mfu", "mfu_infer") if c in cells.columns])
    fw = "base_framework" if "base_framework" in out.columns else "framework"  # a variant: its
    return out.join(table, left_on=[fw, "device", "precision"],            # framework's ceiling
                    right_on=["framework", "device", "precision"], how="left").with_columns(
        (pl.col("train_flops_s") / pl.col("ceiling_flops_s")).alias("mfu"),
        (pl.col("infer_flops_s") / pl.col("ceiling_flops_s")).alias("mfu_infer"))


class Parity:
    """The equivalence gate's verdicts (a verify.VerifyReport) keyed the way the report matches
    cells: (framework, model_label, device, precision), model_label being the config's label of
    the model (cells_frame column gate_label, the attempt record's model_label). status():
    "pass", "fail" (the cell's speed must not be ranked against the others) or "unverified"
    (skipped, nothing to compare with, or no row for that cell: comparable, but not backed by a
    parity check)."""

    def __init__(self, report, note: str | None = None):
        self.report = report
        self.note = note
        self._failed = report.failed_cells()
        self._passed = {(r.framework, r.model_label, r.device, r.precision)
                        for r in report.rows if r.passed is True}

    def status(self, framework, model_label, device, precision) -> str:
        key = (framework, model_label, device, precision)
        return "fail" if key in self._failed else "pass" if key in self._passed else "unverified"

    def comparable(self, framework, model_label, device, precision) -> bool:
        return (framework, model_label, device, precision) not in self._failed

    @property
    def rows(self) -> list:
        return self.report.rows

    @property
    def n_failed(self) -> int:
        return len(self._failed)


def load_parity(path) -> tuple[Parity | None, str | None]:
    """verify.json of a run directory (or of the directory holding a results file), as
    (Parity, None); (None, None) when there is none; (None, why) when it cannot be read."""
    from pathlib import Path
    p = Path(path)
    p = p if p.is_dir() else p.parent
    f = p / "verify.json"
    if not f.is_file():
        return None, None
    try:
        from . import verify
        doc = json.loads(f.read_text())
        note = doc.get("tolerance_note") if isinstance(doc, dict) else None
        return Parity(verify.load(f), note if isinstance(note, str) else None), None
    except Exception as e:  # noqa: BLE001 - any malformed file: the report still renders
        return None, f"{type(e).__name__}: {e}"[:300]


def comparison_frame(cells: pl.DataFrame, parity: Parity | None = None) -> pl.DataFrame:
    """Frameworks side by side for every (model, device, batch, precision) measured by two or
    more frameworks. *_vs_best: how many times slower / bigger than the best framework there,
    with the bootstrap 95% interval of that ratio (*_lo, *_hi; null for a single process) and
    *_sig: whether the interval excludes 1 (null for the best itself or without an interval).
    With `parity` (the equivalence gate): column parity ("pass" / "fail" / "unverified"; null
    without a gate); a "fail" row is not ranked (its *_vs_best are null) and the best is the
    best of the other frameworks."""
    ok = cells.filter(pl.col("ok_repeats") > 0)
    if parity is not None:
        label = "gate_label" if "gate_label" in ok.columns else "model"
        status = [parity.status(*r) for r in ok.select(
            "framework", label, "device", "precision").iter_rows()]
        ok = ok.with_columns(pl.Series("parity", status, dtype=pl.Utf8))
    else:
        ok = ok.with_columns(pl.lit(None, dtype=pl.Utf8).alias("parity"))
    comparable = pl.col("parity").fill_null("") != "fail"

    def only(c: str) -> pl.Expr:
        return pl.when(comparable).then(pl.col(c))

    n = pl.col("framework").n_unique().over(KEY)
    df = (ok.with_columns(n.alias("frameworks_here")).filter(pl.col("frameworks_here") > 1)
          .with_columns(
              (only("train_sps").max().over(KEY) / only("train_sps")).alias("train_vs_best"),
              (only("lat_median") / only("lat_median").min().over(KEY)).alias("lat_vs_best"),
              (only("mem_bytes") / only("mem_bytes").min().over(KEY)).alias("mem_vs_best"))
          .sort(*KEY, "framework", nulls_last=True))
    extra: dict[str, list] = {f"{m}_vs_best_{x}": [] for m in ("train", "lat")
                              for x in ("lo", "hi", "sig")}
    rows = df.select(*KEY, "framework", "train_sps", "train_sps_r", "lat_median", "lat_p50_r",
                     "parity").to_dicts()
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["parity"] != "fail":
            groups.setdefault(tuple(r[k] for k in KEY), []).append(r)
    jobs: list[tuple] = []   # (row index, metric, (a, b))
    for i, r in enumerate(rows):
        if r["parity"] == "fail":
            continue
        g = groups[tuple(r[k] for k in KEY)]
        for m, val, reps, higher in (("train", "train_sps", "train_sps_r", True),
                                     ("lat", "lat_median", "lat_p50_r", False)):
            cands = [x for x in g if x[val] is not None]
            best = (max if higher else min)(cands, key=lambda x: x[val]) if cands else None
            if best is not None and best is not r and r[val] is not None:
                jobs.append((i, m, (best[reps], r[reps]) if higher else (r[reps], best[reps])))
    found = {(i, m): rat for (i, m, _), rat in zip(jobs, stats.ratio_ci_many([j[2] for j in jobs]))}
    for i in range(len(rows)):
        for m in ("train", "lat"):
            rat = found.get((i, m))
            extra[f"{m}_vs_best_lo"].append(rat.lo if rat else None)
            extra[f"{m}_vs_best_hi"].append(rat.hi if rat else None)
            extra[f"{m}_vs_best_sig"].append(rat.significant if rat else None)
    schema = {k: (pl.Boolean if k.endswith("sig") else pl.Float64) for k in extra}
    df = pl.concat([df, pl.DataFrame(extra, schema=schema)], how="horizontal")
    return df.select(*KEY, "framework", "train_sps", "train_sps_ci_lo", "train_sps_ci_hi",
                     "train_vs_best", "train_vs_best_lo", "train_vs_best_hi",
                     "train_vs_best_sig", "lat_median", "lat_vs_best", "lat_vs_best_lo",
                     "lat_vs_best_hi", "lat_vs_best_sig", "mem_bytes", "mem_vs_best", "mfu",
                     "repeats", "n_warnings", "parity",
                     *[c for c in ("mode", "mode_settings") if c in df.columns])


def failures_frame(att: pl.DataFrame) -> pl.DataFrame:
    return att.filter(pl.col("status") != "ok").select(
        "cell_id", "repeat", "framework", "model_label", "device", "batch_size", "precision",
        "status", "reason", "exit_code", "signal", "stderr_tail", "rerun")


def flat_for_csv(cells: pl.DataFrame) -> pl.DataFrame:
    """The per-cell summary without list columns (CSV cannot hold lists)."""
    return cells.select([c for c, t in cells.schema.items() if not isinstance(t, pl.List)])


def load_frames(path) -> tuple[dict, list[str], pl.DataFrame, pl.DataFrame]:
    """store.load + validation + attempts_frame(latest) + cells_frame, for report and compare.
    Zero attempts is a UserError: an empty run, or a file that is not mlbench output."""
    from . import store
    from .errors import UserError
    loaded = store.load(path)
    attempts = [a if isinstance(a.get("repeat", 0), int) else {**a, "repeat": 0}
                for a in loaded.attempts
                if isinstance(a, dict) and "cell_id" in a and "status" in a]
    if not attempts:
        what = ("not mlbench output: no line is an attempt record" if loaded.warnings
                else "no usable cells: the results contain no attempts")
        raise UserError(what, str(path))
    att = attempts_frame(store.latest_attempts(attempts))
    run = loaded.run if isinstance(loaded.run, dict) else {}
    from .ceiling import best_flops, load as load_ceilings
    return run, loaded.warnings, att, cells_frame(att, best_flops(load_ceilings(path)))
