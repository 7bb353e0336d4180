"""Aggregation: raw attempt records (as loaded by mlbench.results.store) -> polars tables.

Owns every number the report and `mlbench compare` show. Statistics are computed from the raw
samples (step times, latencies), never from pre-rounded figures:
  attempts_frame  one row per latest attempt (cell_id, repeat) with its own per-repeat statistics
  cells_frame     one row per cell: pooled-sample medians/percentiles, spread, per-repeat values
  comparison_frame  frameworks side by side per (model, options, device, batch, precision)
  failures_frame  every attempt that did not end "ok", with reason, stderr tail and rerun command
Per cell also: bootstrap 95% intervals over the per-process values (mlbench.analysis.stats; none for
a single process), pyperf-like warnings (instability, extreme values, short samples, busy machine
or device), achieved FLOP/s from the analytic FLOPs per sample, and MFU against the measured
ceiling of the run (mlbench.analysis.ceiling, ceilings.json) when there is one.
The equivalence gate's verdicts (mlbench.analysis.gate_verdicts, verify.json next to the results): a
cell that failed the gate is "not comparable" (comparison_frame ranks only the others; its vs-best
ratios are null); a cell the gate skipped or did not check stays comparable.
Per cell the epoch time is decomposed (first step = compile + one step, warm-up, steady state:
steps per epoch x median steady step time), compile_s = first step - median steady step time;
memory is named (mem_figure): on the CPU the working memory (peak RSS - RSS just before the model
is built), on accelerators the allocator's peak; MFU uses ONE yardstick per device and precision
(the best matmul ceiling any framework reached in the run), so it ranks cells as achieved FLOP/s
does. Repeats of a cell id measured under an older fingerprint are left out (latest wins).
Records are read through their typed model (mlbench.results.attempt.view): older formats upgraded, a
missing or ill-typed value null, a bad sample left out. Never imports an ML framework.
"""
from __future__ import annotations

import json
import math

import numpy as np
import polars as pl

from . import attempt
from ..analysis import ceiling, datasheet, energy, hardware, stats
from ..run import contention
from ..analysis.gate_verdicts import GateVerdicts

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
    if isinstance(opts, dict) and not opts:
        return ""  # a user's model without options: no empty braces in its label
    if not isinstance(opts, dict):
        return _s(opts) or ""
    return ", ".join(f"{k}={_s(v)}" for k, v in sorted(opts.items()))


def flatten(i: int, a: dict) -> dict:
    """One attempt record as one flat row: every figure any table of mlbench reads from a
    record is extracted here once (the per-attempt frame, results.csv: store.flat_row), from
    the record's typed fields (mlbench.results.attempt.view: in the current format, a value that
    does not validate read as absent)."""
    r = attempt.view(a)
    m = r.metrics or attempt.Metrics()
    train, ev, mem = m.train or attempt.TrainMetrics(), m.eval or attempt.EvalMetrics(), \
        m.memory or attempt.MemoryMetrics()
    inf, params = m.inference or attempt.InferenceMetrics(), m.params or attempt.ParamCounts()
    hello, gpu = r.hello or attempt.Hello(), r.gpu or {}
    model = r.model or "?"
    # the config's label of the model (record field model_label, e.g. "cnn.tiny", or the user's
    # label of a data: model): what cells are compared on, and what verify.json names them by
    label = r.model_label or model
    mopts = r.model_options
    shown = label
    if mopts is not None and mopts.get("preset") is not None \
            and label in (model, f"{model}.{mopts['preset']}"):
        # one scheme for every built-in model: model.preset ("mlp.small" beside "cnn.tiny"),
        # also when the config left the default preset out of its label
        shown = f"{model}.{_s(mopts['preset'])}"
        mopts = {k: v for k, v in mopts.items() if k != "preset"} or None  # the label says it
    opts = options_label(mopts)
    # each figure under its own name: the allocator's peak, and NVML's per-process peak (which
    # includes the CUDA context); the headline memory picks between them (cell_frame), by name
    nvml_peak = _int(gpu.get("nvml_peak_process_bytes")) or None
    # one RSS figure per meaning: the peak is the larger of the parent's sampled peak (attempt
    # record) and the worker's own ru_maxrss; the working memory subtracts the RSS the worker
    # had just before building the model (imports, runtime and data already loaded)
    rss = [v for v in (r.host_peak_rss_bytes, mem.host_peak_rss_bytes) if v is not None]
    peak_rss = max(rss) if rss else None
    base_rss = mem.host_baseline_rss_bytes
    working = max(0, peak_rss - base_rss) if peak_rss is not None and base_rss else None
    trainable, frozen = params.trainable, params.non_trainable
    losses = [v for v in train.epoch_loss_means or () if v is not None]
    flops = m.flops_per_sample or attempt.FlopsPerSample()
    aff = hello.cpu_affinity
    busy = stats.busy_warnings(r.machine_before, r.device_before, r.device,
                               len(aff) if aff else 0)
    busy = busy + energy.warnings(a)  # a GPU that throttled (heat, hardware slowdown)
    busy += contention.warnings(a)  # "contended: ..." while the cell ran (voids its verdicts)
    settings = m.settings or {}
    blocks = [b.seconds for b in train.steady_blocks or () if b.steps > 0]
    epochs = train.epoch_times_s or []
    return {
        "idx": i, "cell_id": r.cell_id or "?", "repeat": r.repeat, "order": r.order,
        "framework": r.framework or "?", "model": model, "options": opts,
        # a variant (e.g. pytorch-compile) is its own competitor under `framework`; what it runs
        # on and its mode
        "base_framework": r.base_framework or r.framework or "?",
        "mode": r.mode or "default",
        "mode_settings": options_label(r.mode_settings or None),
        "model_label": f"{shown} ({opts})" if opts else shown,
        "gate_label": label,
        "device": r.device or "?", "batch_size": r.batch_size,
        "precision": r.precision or "?", "status": r.status or "?",
        "reason": r.reason, "exit_code": r.exit_code,
        "signal": r.signal, "stderr_tail": r.stderr_tail,
        "rerun": r.rerun, "fingerprint": r.fingerprint,
        "wall_s": r.wall_s,
        "framework_version": hello.framework_version,
        "device_name": hello.device_name,
        "samples_per_step": train.samples_per_step,
        "steps_per_epoch": train.steps_per_epoch,
        "first_step_s": train.first_step_s,
        "warmup_s": train.warmup_s,
        # the first epoch holds the one-off costs (compile, warm-up): its wall time is "total"
        "epoch_total_s": epochs[0] if epochs else None,
        "epoch_last_s": epochs[-1] if epochs else None,
        "block_median_s": stats.median(blocks),
        "train_loss_mean_last_epoch": losses[-1] if losses else None,
        "accuracy": ev.accuracy,
        "inference_loops": inf.loops,
        "peak_device_bytes": mem.peak_device_bytes, "nvml_peak_process_bytes": nvml_peak,
        "host_peak_rss_bytes": peak_rss, "host_baseline_rss_bytes": base_rss,
        "host_working_bytes": working,
        "params_trainable": trainable,
        "params_total": None if trainable is None else trainable + (frozen or 0),
        "flops_fwd": flops.forward, "flops_train": flops.train_step,
        "busy": "\n".join(busy) or None,
        "settings": settings_label(settings) if settings else None,
        # the request's flag (launcher.run_cell), for the datasheet's TF32 peak
        "tf32_requested": r.tf32,
        **energy.fields(a),
        "step_times_s": np.asarray(train.step_times_s or (), dtype=np.float64),
        "latencies_s": np.asarray(inf.latencies_s or (), dtype=np.float64),
        **_serving_fields(m.serving or {}),
        "export_s": inf.export_s,  # an exported runtime's export + load time
        # the framework it was exported from (workers/exported.py settings: source)
        "export_source": _s(settings.get("source")) if inf.export_s else None,
    }


def _serving_fields(serving: dict) -> dict:
    """The serving scenarios of one attempt (workers/loadgen.py): the single-stream latency
    samples, the server's max QPS within its bound and every trial (JSON text: one cell
    holds a few, the figure and results.json read them back)."""
    ss, server = _d(serving.get("single_stream")), _d(serving.get("server"))
    trials = [t for t in server.get("trials") or () if isinstance(t, dict)]
    # a process whose search found no rate within the bound served 0 QPS within it (every
    # rate it tried was over; the truth lies below the lowest, and is 0 when one call already
    # takes longer than the bound): it counts, so the median over processes is not biased up
    # by keeping only the processes that met the bound (README: Serving)
    qps = _num(server.get("max_qps")) if trials else None
    return {"ss_latencies_s": _samples(ss.get("latencies_s")),
            "server_max_qps": (qps or 0.0) if trials else None,
            "server_bound_ms": _num(server.get("latency_bound_ms")),
            "server_trials": json.dumps(trials) if trials else None}


_SCHEMA = {"idx": pl.Int64, "repeat": pl.Int64, "order": pl.Int64, "batch_size": pl.Int64,
           "exit_code": pl.Int64, "peak_device_bytes": pl.Int64, "host_peak_rss_bytes": pl.Int64,
           "nvml_peak_process_bytes": pl.Int64, "host_baseline_rss_bytes": pl.Int64,
           "host_working_bytes": pl.Int64,
           "params_trainable": pl.Int64, "params_total": pl.Int64,
           "step_times_s": pl.List(pl.Float64), "latencies_s": pl.List(pl.Float64),
           "ss_latencies_s": pl.List(pl.Float64), "server_trials": pl.Utf8,
           "server_max_qps": pl.Float64, "server_bound_ms": pl.Float64, "export_s": pl.Float64,
           "export_source": pl.Utf8, "busy": pl.Utf8, "settings": pl.Utf8, "fingerprint": pl.Utf8,
           "tf32_requested": pl.Boolean, "throttle_reasons": pl.Utf8, "energy_note": pl.Utf8,
           "power_limit_w": pl.Float64}
for _c in ("wall_s", "samples_per_step", "steps_per_epoch", "first_step_s", "warmup_s",
           "epoch_total_s", "epoch_last_s", "block_median_s", "train_loss_mean_last_epoch",
           "accuracy",
           "inference_loops", "flops_fwd", "flops_train", *energy.FIELDS):
    _SCHEMA[_c] = pl.Float64


def _long(idx: list[int], arrays: list[np.ndarray], name: str) -> pl.DataFrame:
    """Raw samples of all attempts as a list column keyed by idx, built without Python loops
    over the samples."""
    lens = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.empty(0)
    long = pl.DataFrame({"idx": np.repeat(np.asarray(idx, dtype=np.int64), lens), name: flat})
    return long.group_by("idx").agg(pl.col(name))


def _raw(attempts: list[dict]) -> pl.DataFrame:
    rows = [flatten(i, a) for i, a in enumerate(attempts)] or [flatten(0, {})]
    lists = {k: [r.pop(k) for r in rows] for k in ("step_times_s", "latencies_s",
                                                    "ss_latencies_s")}
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
    ssr = _sample_stats(raw, "ss_latencies_s", "idx", "ssr").select("idx", "ssr_p90")
    return (raw.join(st.drop(ext[:2]), on="idx", how="left").join(ssr, on="idx", how="left")
            .join(lt.drop(ext[2:]), on="idx", how="left")
            .join(st.select("idx", *ext[:2]), on="idx", how="left")
            .join(lt.select("idx", *ext[2:]), on="idx", how="left")
            .with_columns((pl.col("samples_per_step") / pl.col("step_median")).alias("train_sps"),
                          # compile estimate: the first step minus what a warm step costs
                          (pl.col("first_step_s") - pl.col("step_median")).clip(lower_bound=0.0)
                          .alias("compile_s"),
                          (pl.col("steps_per_epoch") * pl.col("step_median"))
                          .alias("epoch_steady_s"))
            .sort("order", "idx"))


MEM_FIGURES = {  # mem_figure -> what it is, as every table, chart and recommendation says it
    "device_peak": "peak device memory (the framework allocator's peak)",
    "device_process_peak": "peak device memory of the process (NVML; the allocator gave no "
                           "peak; includes the CUDA context)",
    "working": "working memory (peak RSS minus RSS just before the model is built)",
    "host_peak": "peak host RSS (whole process, libraries included: this store has no baseline)",
}


def latest_fingerprint_only(att: pl.DataFrame) -> pl.DataFrame:
    """The attempts of each cell id measured under the fingerprint of its latest attempt (highest
    order): repeats stored under an older request (another config) are never pooled with it."""
    if att.is_empty():
        return att
    latest = (att.sort("order").group_by("cell_id")
              .agg(pl.col("fingerprint").last().alias("_fp_latest")))
    return (att.join(latest, on="cell_id", how="left")
            .filter(pl.col("_fp_latest").is_null() | pl.col("fingerprint").is_null()
                    | (pl.col("fingerprint") == pl.col("_fp_latest"))).drop("_fp_latest"))


def cells_frame(att: pl.DataFrame, ceilings: dict | None = None) -> pl.DataFrame:
    """One row per cell. Pooled over the ok repeats: step/latency median, p90, p99, relative IQR;
    per-repeat values kept as lists (train_sps_r, lat_p50_r, mem_r, compile_r) for noise
    judgements; their bootstrap 95% intervals (*_ci_lo/hi, null for a single process) and spread
    (*_cv); warnings (also split into warn_train / warn_latency / warn_all: what voids which
    samples); achieved FLOP/s; MFU when `ceilings` ({framework: {device: {precision: FLOP/s}}})
    is given. Repeats under an older fingerprint than the cell's latest are left out
    (stale_repeats counts them)."""
    n_all = att.group_by("cell_id").agg(pl.len().alias("_n_all"))
    att = latest_fingerprint_only(att)
    ok = att.filter(pl.col("status") == "ok")
    ident = ["framework", "base_framework", "mode", "mode_settings", "model", "options",
             "model_label", "gate_label", "device", "batch_size", "precision"]
    status = att.group_by("cell_id").agg(
        *[pl.col(c).first() for c in ident], pl.col("order").min().alias("first_order"),
        pl.len().alias("repeats"), (pl.col("status") == "ok").sum().alias("ok_repeats"),
        pl.col("status").filter(pl.col("status") != "ok").unique().sort().str.join(", ")
        .alias("failed_statuses"))
    status = status.join(n_all, on="cell_id", how="left").with_columns(
        (pl.col("_n_all") - pl.col("repeats")).alias("stale_repeats")).drop("_n_all")
    # the per-cell headline memory: the allocator's peak on accelerators (NVML's per-process
    # peak where the allocator gave none, named as such); on the CPU the working memory when the
    # worker recorded its baseline, else (older stores) the whole-process peak
    on_dev = pl.col("device") != "cpu"
    has_alloc = pl.col("peak_device_bytes").is_not_null()
    has_base = pl.col("host_working_bytes").is_not_null()
    mem = (pl.when(on_dev & has_alloc).then(pl.col("peak_device_bytes"))
           .when(on_dev).then(pl.col("nvml_peak_process_bytes"))
           .when(has_base).then(pl.col("host_working_bytes"))
           .otherwise(pl.col("host_peak_rss_bytes")))
    fig = (pl.when(on_dev & has_alloc).then(pl.lit("device_peak"))
           .when(on_dev).then(pl.lit("device_process_peak"))
           .when(has_base).then(pl.lit("working")).otherwise(pl.lit("host_peak")))
    okc = ok.with_columns(mem.cast(pl.Float64).alias("mem"), fig.alias("mem_figure"),
                          (pl.col("block_median_s").fill_null(pl.col("step_median")))
                          .alias("train_sample_s"),
                          (pl.col("lat_median") * pl.col("inference_loops"))
                          .alias("lat_sample_s")).sort("repeat")
    per = okc.group_by("cell_id").agg(
        pl.col("train_sps").drop_nulls().alias("train_sps_r"),
        pl.col("lat_median").drop_nulls().alias("lat_p50_r"),
        pl.col("mem").drop_nulls().alias("mem_r"),
        pl.col("compile_s").drop_nulls().alias("compile_r"),
        # serving: per-process single-stream p90 and server max QPS (the verdict's evidence)
        pl.col("ssr_p90").drop_nulls().alias("ss_p90_r"),
        # the mean batch-1 query time, pooled: what N queries cost is N x the mean (the
        # export's break-even, report.serving)
        pl.col("ss_latencies_s").explode().mean().alias("ss_mean"),
        pl.col("server_max_qps").drop_nulls().alias("server_max_qps_r"),
        pl.col("server_max_qps").median(), pl.col("server_bound_ms").max(),
        pl.col("server_max_qps").count().alias("server_processes"),
        (pl.col("server_max_qps") > 0).sum().alias("server_met_bound"),
        pl.col("export_s").median(), pl.col("export_source").drop_nulls().first(),
        pl.col("server_trials").drop_nulls().alias("server_trials_r"),
        pl.col("mem_figure").first(),
        pl.col("samples_per_step").median(), pl.col("steps_per_epoch").median(),
        pl.col("epoch_total_s").median(), pl.col("epoch_steady_s").median(),
        pl.col("first_step_s").median(), pl.col("warmup_s").median(),
        pl.col("compile_s").median(), pl.col("accuracy").median(),
        pl.col("train_loss_mean_last_epoch").median(), pl.col("wall_s").median(),
        pl.col("train_sample_s").median(), pl.col("lat_sample_s").median(),
        pl.col("inference_loops").max(),
        pl.col("peak_device_bytes").max(), pl.col("nvml_peak_process_bytes").max(),
        pl.col("host_peak_rss_bytes").max(), pl.col("host_baseline_rss_bytes").median(),
        pl.col("host_working_bytes").max(),
        pl.col("params_trainable").max(), pl.col("params_total").max(),
        pl.col("framework_version").drop_nulls().first(),
        pl.col("device_name").drop_nulls().first(),
        pl.col("flops_fwd").drop_nulls().first(), pl.col("flops_train").drop_nulls().first(),
        pl.col("settings").drop_nulls().first(), pl.col("tf32_requested").drop_nulls().first(),
        *[pl.col(c).median() for c in energy.FIELDS], pl.col("power_limit_w").max(),
        pl.col("throttle_reasons").drop_nulls().first(),
        pl.col("energy_note").drop_nulls().first(),
        pl.col("step_extreme").sum(), pl.col("step_n").sum(), pl.col("step_max_rel").max(),
        pl.col("lat_extreme").sum(), pl.col("lat_n").sum().alias("lat_n_r"),
        pl.col("lat_max_rel").max())
    busy = (att.select("cell_id", pl.col("busy").str.split("\n")).drop_nulls("busy")
            .explode("busy").group_by("cell_id").agg(pl.col("busy").unique(maintain_order=True)))
    st = _sample_stats(okc, "step_times_s", "cell_id", "step")  # pooled over the repeats
    lt = _sample_stats(okc, "latencies_s", "cell_id", "lat")
    ss = _sample_stats(okc, "ss_latencies_s", "cell_id", "ss").drop("ss_iqr_rel")
    out = (status.join(per.drop("step_n"), on="cell_id", how="left")
           .join(st, on="cell_id", how="left").join(lt, on="cell_id", how="left")
           .join(ss, on="cell_id", how="left")
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
    out = out.with_columns(pl.col("mem_figure").replace_strict(
        MEM_FIGURES, default=None, return_dtype=pl.Utf8).alias("mem_figure_text"))
    return out.sort("model_label", "device", "precision", "batch_size", "framework",
                    nulls_last=True)


def _k(values, c) -> int:
    """How many per-process values a cv rests on (only needed when that cv raises a warning)."""
    return len(stats._arr(values)) if c is not None and c >= stats.UNSTABLE_CV else 0


def _with_intervals_and_warnings(cells: pl.DataFrame) -> pl.DataFrame:
    train_r, lat_r = cells["train_sps_r"].to_list(), cells["lat_p50_r"].to_list()
    comp_r = cells["compile_r"].to_list()
    tr_ci = stats.bootstrap_median_ci_many(train_r)
    la_ci = stats.bootstrap_median_ci_many(lat_r)
    co_ci = stats.bootstrap_median_ci_many(comp_r)
    tr_cv, la_cv = stats.cv_many(train_r), stats.cv_many(lat_r)
    needed, basis, warns, w_train, w_lat, w_all = [], [], [], [], [], []
    cols = {c: cells[c].to_list() for c in (
        "train_sample_s", "lat_sample_s", "step_extreme", "step_n", "step_max_rel",
        "lat_extreme", "lat_n_r", "lat_max_rel", "ok_repeats", "busy")}
    for i, (tcv, lcv) in enumerate(zip(tr_cv, la_cv)):
        worst = max((c for c in (tcv, lcv) if c is not None), default=None)
        needed.append(stats.repeats_needed(worst))
        ok = cols["ok_repeats"][i] or 0
        basis.append(None if ok == 0 else "single process" if ok == 1 else
                     f"bootstrap over {ok} processes")
        # judged per aspect, so a recommendation repeats (and is voided by) only the warnings
        # about the samples it rests on; "too short" is judged on the duration of one sample
        # (a steady block, or `loops` inference calls), not of one step
        wt = stats.judge_from(
            train_cv=tcv, train_k=_k(train_r[i], tcv), lat_cv=None, lat_k=0,
            step_median=cols["train_sample_s"][i], step_extreme=cols["step_extreme"][i] or 0,
            step_n=cols["step_n"][i] or 0, step_max_rel=cols["step_max_rel"][i]) if ok else []
        wl = stats.judge_from(
            train_cv=None, train_k=0, lat_cv=lcv, lat_k=_k(lat_r[i], lcv),
            lat_median=cols["lat_sample_s"][i], lat_extreme=cols["lat_extreme"][i] or 0,
            lat_n=cols["lat_n_r"][i] or 0, lat_max_rel=cols["lat_max_rel"][i]) if ok else []
        wa = list(cols["busy"][i] or [])
        w_train.append(wt)
        w_lat.append(wl)
        w_all.append(wa)
        warns.append(wt + wl + wa)
    lists = pl.List(pl.Utf8)
    extra = pl.DataFrame({
        "train_sps_ci_lo": [c[0] if c else None for c in tr_ci],
        "train_sps_ci_hi": [c[1] if c else None for c in tr_ci],
        "lat_p50_ci_lo": [c[0] if c else None for c in la_ci],
        "lat_p50_ci_hi": [c[1] if c else None for c in la_ci],
        "compile_ci_lo": [c[0] if c else None for c in co_ci],
        "compile_ci_hi": [c[1] if c else None for c in co_ci],
        "train_sps_cv": tr_cv, "lat_p50_cv": la_cv, "repeats_needed": needed,
        "ci_basis": basis, "warnings": warns, "warn_train": w_train, "warn_latency": w_lat,
        "warn_all": w_all,
    }, schema={"train_sps_ci_lo": pl.Float64, "train_sps_ci_hi": pl.Float64,
               "lat_p50_ci_lo": pl.Float64, "lat_p50_ci_hi": pl.Float64,
               "compile_ci_lo": pl.Float64, "compile_ci_hi": pl.Float64,
               "train_sps_cv": pl.Float64, "lat_p50_cv": pl.Float64,
               "repeats_needed": pl.Int64, "ci_basis": pl.Utf8, "warnings": lists,
               "warn_train": lists, "warn_latency": lists, "warn_all": lists})
    return pl.concat([cells.drop("lat_n_r", "busy"), extra], how="horizontal").with_columns(
        pl.col("warnings").list.len().alias("n_warnings"))


def with_mfu(cells: pl.DataFrame, ceilings: dict) -> pl.DataFrame:
    """MFU against ONE yardstick per device and precision: ceiling_flops_s is the best matmul
    FLOP/s any framework reached there in the run (ceiling_framework: which), mfu = achieved
    training FLOP/s / ceiling_flops_s (so MFU ranks cells exactly as achieved FLOP/s does),
    mfu_infer likewise for inference. Secondary: own_ceiling_flops_s / mfu_own, against the
    cell's own framework's ceiling. On a GPU named in ceiling.DATASHEET_TFLOPS also
    datasheet_flops_s / mfu_datasheet. Nulls where a figure is unknown."""
    yard = ceiling.yardsticks(ceilings or {})
    own = [(fw, dev, prec, c) for fw, devs in (ceilings or {}).items() if isinstance(devs, dict)
           for dev, precs in devs.items() if isinstance(precs, dict)
           for prec, c in precs.items() if isinstance(c, (int, float)) and c > 0]
    own_t = pl.DataFrame(own, schema={"framework": pl.Utf8, "device": pl.Utf8,
                                      "precision": pl.Utf8, "own_ceiling_flops_s": pl.Float64},
                         orient="row")
    yard_t = pl.DataFrame([(d, p, v, fw) for (d, p), (v, fw) in yard.items()],
                          schema={"device": pl.Utf8, "precision": pl.Utf8,
                                  "ceiling_flops_s": pl.Float64, "ceiling_framework": pl.Utf8},
                          orient="row")
    drop = ("ceiling_flops_s", "ceiling_framework", "own_ceiling_flops_s", "mfu", "mfu_infer",
            "mfu_own", "datasheet_flops_s", "datasheet_note", "mfu_datasheet")
    out = cells.drop([c for c in drop if c in cells.columns])
    tf32 = out["tf32_requested"].to_list() if "tf32_requested" in out.columns else \
        [None] * out.height
    sheet = [datasheet.peak(n, p, t is True) if d != "cpu" else (None, None)
             for n, p, t, d in zip(out["device_name"].to_list(), out["precision"].to_list(),
                                   tf32, out["device"].to_list())]
    out = out.with_columns(pl.Series("datasheet_flops_s", [v for v, _ in sheet],
                                     dtype=pl.Float64),
                           pl.Series("datasheet_note", [w for _, w in sheet], dtype=pl.Utf8))
    fw = "base_framework" if "base_framework" in out.columns else "framework"  # a variant: its
    return (out.join(own_t, left_on=[fw, "device", "precision"],             # framework's own
                     right_on=["framework", "device", "precision"], how="left")
            .join(yard_t, on=["device", "precision"], how="left").with_columns(
        (pl.col("train_flops_s") / pl.col("ceiling_flops_s")).alias("mfu"),
        (pl.col("infer_flops_s") / pl.col("ceiling_flops_s")).alias("mfu_infer"),
        (pl.col("train_flops_s") / pl.col("own_ceiling_flops_s")).alias("mfu_own"),
        (pl.col("train_flops_s") / pl.col("datasheet_flops_s")).alias("mfu_datasheet")))


def comparison_frame(cells: pl.DataFrame,
                     verdicts: GateVerdicts | None = None) -> pl.DataFrame:
    """Frameworks side by side for every (model, device, batch, precision) measured by two or
    more frameworks. *_vs_best: how many times slower / bigger than the best framework there,
    with the bootstrap 95% interval of that ratio (*_lo, *_hi; null for a single process) and
    *_sig: whether the interval excludes 1 (null for the best itself or without an interval).
    With `verdicts` (the equivalence gate's): column gate ("pass" / "fail" / "unchecked"; null
    without a gate); a "fail" row is not ranked (its *_vs_best are null) and the best is the
    best of the other frameworks."""
    ok = cells.filter(pl.col("ok_repeats") > 0)
    if verdicts is not None:
        label = "gate_label" if "gate_label" in ok.columns else "model"
        status = [verdicts.status(*r) for r in ok.select(
            "framework", label, "device", "precision").iter_rows()]
        ok = ok.with_columns(pl.Series("gate", status, dtype=pl.Utf8))
    else:
        ok = ok.with_columns(pl.lit(None, dtype=pl.Utf8).alias("gate"))
    comparable = pl.col("gate").fill_null("") != "fail"

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
                     "gate").to_dicts()
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["gate"] != "fail":
            groups.setdefault(tuple(r[k] for k in KEY), []).append(r)
    jobs: list[tuple] = []   # (row index, metric, (a, b))
    for i, r in enumerate(rows):
        if r["gate"] == "fail":
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
                     "repeats", "n_warnings", "gate",
                     *[c for c in ("mode", "mode_settings") if c in df.columns])


def failures_frame(att: pl.DataFrame) -> pl.DataFrame:
    return att.filter(pl.col("status") != "ok").select(
        "cell_id", "repeat", "framework", "model_label", "device", "batch_size", "precision",
        "status", "reason", "exit_code", "signal", "stderr_tail", "rerun")


def flat_for_csv(cells: pl.DataFrame) -> pl.DataFrame:
    """The per-cell summary without list columns (CSV cannot hold lists)."""
    return cells.select([c for c, t in cells.schema.items() if not isinstance(t, pl.List)])


def frames(latest: list[dict], run: dict | None, ceilings: dict | None
           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(attempts_frame, cells_frame) of the latest attempts, cells of different hardware kinds
    kept apart (mlbench.analysis.hardware) and each kind's MFU from its own ceilings: what the
    report, `compare` and results.json's summaries all read."""
    latest, ceilings = hardware.split_by_kind(latest, run, ceilings)
    att = attempts_frame(latest)
    return att, cells_frame(att, ceilings)


def warnings_by_cell(attempts: list[dict]) -> dict[str, list[str]]:
    """Warnings of every cell in `attempts` (latest attempt per (cell, repeat), as in
    results.json), exactly as the report shows them: cell_id -> sentences."""
    if not attempts:
        return {}
    cells = cells_frame(attempts_frame(attempts))
    return {r["cell_id"]: list(r["warnings"] or [])
            for r in cells.select("cell_id", "warnings").iter_rows(named=True)}


def cell_warnings(attempts_for_cell: list[dict]) -> list[str]:
    """Warnings of one cell from its attempt records (all repeats)."""
    by = warnings_by_cell(attempts_for_cell)
    return [w for ws in by.values() for w in ws]
