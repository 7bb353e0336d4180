"""The per-cell summaries that results.json carries, and the JSON Schema of results.json.

Owns the typed shape of results.json (pydantic models: ResultsDoc, CellSummary, ...), the
conversion of the per-cell table (mlbench.results.aggregate.cells_frame) into `summaries` (one entry
per cell_id, all its repeats together, the figures the report shows), `annotate` (what the runner
adds to results.json at the end of a run) and the schema file shipped as package data
(mlbench/schema/results.schema.json, generated from these models with model_json_schema:
`python -m mlbench.results.summary` rewrites it). Intervals are null, never absent, when a cell has
a single process. Never imports an ML framework or plotly; the report's verdict rule only when
`verdicts` are built.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .attempt import Attempt, NonNegInt

SCHEMA_FILE = Path(__file__).parent.parent / "schema" / "results.schema.json"
Num = float | None


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_M):
    median: Num = Field(description="median (pooled raw samples for throughput; over repeats "
                                    "otherwise)")
    ci_low: Num = Field(description="bootstrap 95% interval over the per-process values; null "
                                    "with a single process")
    ci_high: Num = Field(description="see ci_low")


class Percentiles(_M):
    p50: Num
    p90: Num
    p99: Num


class EpochTime(_M):
    total: Num = Field(description="wall time of the first epoch (holds the one-off costs), "
                                   "median over repeats, seconds")
    first_step: Num = Field(description="first training step: trace/compile + one step, s")
    warmup: Num = Field(description="the warm-up steps after the first one, seconds")
    steady: Num = Field(description="steady-state epoch: steps per epoch x median steady-state "
                                    "step time, seconds (what rankings use)")


class Memory(_M):
    headline_bytes: Num = Field(description="the figure comparisons use; see headline_figure")
    headline_figure: str | None = Field(description="device_peak | device_process_peak | working | host_peak")
    headline_meaning: str | None
    working_bytes: Num = Field(description="CPU: peak RSS - RSS just before the model is built")
    host_peak_rss_bytes: Num = Field(description="max of the parent's sampled peak and the "
                                                 "worker's ru_maxrss (whole process)")
    host_baseline_rss_bytes: Num = Field(description="worker RSS just before the model is built")
    peak_device_bytes: Num = Field(description="the framework allocator's peak (accelerators)")
    nvml_peak_process_bytes: Num = Field(description="NVML's per-process peak (GPUs)")


class AchievedFlops(_M):
    train: Num = Field(description="analytic training FLOPs per sample x samples/s")
    inference: Num = Field(description="analytic forward FLOPs x batch / p50 latency")


class Mfu(_M):
    value: Num = Field(description="achieved training FLOP/s / yardstick_flops_s")
    inference: Num = Field(description="achieved inference FLOP/s / yardstick_flops_s")
    yardstick: str = Field(description="what the yardstick is")
    yardstick_flops_s: Num = Field(description="best matmul FLOP/s any framework reached on "
                                               "this device and precision in the run")
    yardstick_framework: str | None
    vs_own_ceiling: Num = Field(description="achieved / this framework's own ceiling")
    vs_datasheet: Num = Field(description="achieved / datasheet dense peak (known GPUs)")
    datasheet_flops_s: Num
    datasheet_note: str | None = Field(None, description="why there is no datasheet peak (a "
                                                         "MIG slice, an unknown GPU)")


class Energy(_M):
    """NVML energy of the whole GPU between the worker's phase boundaries (mlbench.analysis.energy);
    null where the GPU has no counter and too few power samples, or for a CPU cell."""
    train_j_per_step: Num = Field(description="joules per steady-state training step")
    train_j_per_ksample: Num = Field(description="joules per 1,000 training samples")
    infer_j_per_call: Num = Field(description="joules per inference call (one batch)")
    infer_j_per_ksample: Num = Field(description="joules per 1,000 inferred samples")
    power_limit_w: Num = Field(description="the GPU's enforced power limit before the cell")
    throttle_reasons: str | None = Field(description="NVML throttle reasons seen while the "
                                                     "cell ran (sw_power_cap, hw_slowdown, ...)")
    note: str | None = Field(description="why a figure is missing: no counter and too few "
                                         "power samples, a counter that did not advance, 0 W")


class SingleStream(_M):
    latency_s: Percentiles = Field(description="batch-1 query latency (scenario single_stream), "
                                               "pooled over the processes, seconds")


class ServerTrial(_M):
    """One offered rate of the server scenario's search (workers/loadgen.py)."""
    process: int = Field(description="which process (0, 1, ...: the cell's ok repeats) ran it")
    offered_qps: float
    achieved_qps: float = Field(description="queries / (last completion - start)")
    queries: int
    mean_s: float = Field(description="mean latency, completion - arrival (queueing included)")
    p50_s: float
    p90_s: float
    p99_s: float
    mean_batch: float = Field(description="queries per service call (dynamic batching)")
    within_bound: bool = Field(description="p99_s <= latency_bound_ms")


class Server(_M):
    max_qps: Num = Field(description="achieved QPS at the highest offered rate whose p99 stayed "
                                     "within the bound, median over every process that ran "
                                     "the scenario; a process where no rate did counts as 0")
    latency_bound_ms: Num
    processes: int = Field(description="processes that ran the scenario")
    met_bound: int = Field(description="of them, those where some rate met the bound (fewer "
                                       "than processes: the server verdict is voided)")
    trials: list[ServerTrial] = Field(description="every rate tried, by every process")


class CellSummary(_M):
    cell_id: str
    framework: str
    model_label: str
    device: str
    batch_size: int | None
    precision: str
    repeats: int = Field(description="repeats under the cell's latest fingerprint")
    ok_repeats: int
    stale_repeats: int = Field(description="repeats under an older fingerprint, left out")
    params_trainable: int | None
    train_samples_per_s: Interval
    step_time_s: Percentiles = Field(description="steady-state step time (each sample the "
                                                 "mean step time of one block), pooled")
    epoch_time_s: EpochTime
    compile_s: Interval = Field(description="first step - median steady step time (>= 0)")
    latency_s: Percentiles = Field(description="per-call inference latency, pooled")
    latency_p50_ci: Interval
    memory: Memory
    achieved_flops: AchievedFlops
    mfu: Mfu
    train_loss_mean_last_epoch: Num
    eval_accuracy: Num
    ci_basis: str | None = Field(description="'single process' or 'bootstrap over N processes'")
    warnings: list[str]
    energy: Energy | None = Field(None, description="GPU cells: medians over repeats")
    single_stream: SingleStream | None = Field(None, description="scenario single_stream "
                                                                 "(cells of batch size 1)")
    server: Server | None = Field(None, description="scenario server (README: Serving)")
    export_s: Num = Field(None, description="exported runtimes (onnxruntime, openvino): export "
                                            "and runtime load time, seconds, median over "
                                            "processes; apart from compile time")


class Verdict(_M):
    """One answer of the report's verdict (mlbench.analysis.decision's rule), per (model, device,
    question)."""
    question: str = Field(description="e.g. 'fastest to train', 'fastest to train out of "
                                      "the box'")
    model: str
    device: str
    figure: str = Field(description="the figure compared")
    winner: str | None = Field(description="null: no winner (see reason)")
    leader: str | None = Field(description="ahead on the point estimate, winner or not")
    runner_up: str | None
    ratio: Num = Field(description=">= 1: how many times better the leader is (geometric mean "
                                   "over the shared configurations)")
    ci_low: Num = Field(description="bootstrap 95% interval of the ratio; null without one")
    ci_high: Num
    reason: str
    warnings: list[str] = Field(description="warnings about the samples the verdict rests on")


# --- run.json inside results.json (the attempt records are mlbench.results.attempt's): every key
# mlbench writes is typed; keys a newer mlbench adds are allowed (open models)
# ----------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Session(_Open):
    started_at: str | None = None
    mode: str | None = None


class FrameworkInfo(_Open):
    python: str | None = None
    version: str | None = None


class RunDoc(_Open):
    """run.json as results.json carries it: the configuration is required (a run is not
    reproducible without it)."""
    schema_: int | None = Field(None, alias="schema")
    run_id: str | None = None
    mlbench_version: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    sessions: list[Session] | None = None
    config: dict[str, Any] = Field(description="the validated configuration of the run")
    host: dict[str, Any] | None = None
    frameworks: dict[str, FrameworkInfo] | None = None
    order: list[tuple[str, NonNegInt]] | None = Field(None, description="[[cell_id, repeat]]")
    executor: dict[str, Any] | None = None
    ceilings: dict[str, Any] | None = None


class ResultsDoc(BaseModel):
    """results.json: the latest attempt per (cell, repeat) with raw samples, and per cell the
    summary the report shows."""
    model_config = ConfigDict(extra="allow")
    schema_: int = Field(alias="schema")
    run: RunDoc
    cells: list[Attempt]
    cell_warnings: dict[str, list[str]] | None = None
    summaries: list[CellSummary] | None = None
    summaries_error: str | None = None
    verdicts: list[Verdict] | None = None
    verdicts_error: str | None = None


def json_schema() -> dict:
    return ResultsDoc.model_json_schema(by_alias=True)


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1, sort_keys=True) + "\n"


def _f(v) -> float | None:
    return None if v is None else float(v)


def summaries(cells) -> list[dict]:
    """One summary per row of cells_frame (a polars DataFrame), validated by CellSummary."""
    out = []
    for r in cells.iter_rows(named=True):
        g = r.get
        s = CellSummary(
            cell_id=r["cell_id"], framework=r["framework"], model_label=r["model_label"],
            device=r["device"], batch_size=g("batch_size"), precision=r["precision"],
            repeats=g("repeats") or 0, ok_repeats=g("ok_repeats") or 0,
            stale_repeats=g("stale_repeats") or 0, params_trainable=g("params_trainable"),
            train_samples_per_s=Interval(median=_f(g("train_sps")),
                                         ci_low=_f(g("train_sps_ci_lo")),
                                         ci_high=_f(g("train_sps_ci_hi"))),
            step_time_s=Percentiles(p50=_f(g("step_median")), p90=_f(g("step_p90")),
                                    p99=_f(g("step_p99"))),
            epoch_time_s=EpochTime(total=_f(g("epoch_total_s")), first_step=_f(g("first_step_s")),
                                   warmup=_f(g("warmup_s")), steady=_f(g("epoch_steady_s"))),
            compile_s=Interval(median=_f(g("compile_s")), ci_low=_f(g("compile_ci_lo")),
                               ci_high=_f(g("compile_ci_hi"))),
            latency_s=Percentiles(p50=_f(g("lat_median")), p90=_f(g("lat_p90")),
                                  p99=_f(g("lat_p99"))),
            latency_p50_ci=Interval(median=_f(g("lat_median")), ci_low=_f(g("lat_p50_ci_lo")),
                                    ci_high=_f(g("lat_p50_ci_hi"))),
            memory=Memory(headline_bytes=_f(g("mem_bytes")), headline_figure=g("mem_figure"),
                          headline_meaning=g("mem_figure_text"),
                          working_bytes=_f(g("host_working_bytes")),
                          host_peak_rss_bytes=_f(g("host_peak_rss_bytes")),
                          host_baseline_rss_bytes=_f(g("host_baseline_rss_bytes")),
                          peak_device_bytes=_f(g("peak_device_bytes")),
                          nvml_peak_process_bytes=_f(g("nvml_peak_process_bytes"))),
            achieved_flops=AchievedFlops(train=_f(g("train_flops_s")),
                                         inference=_f(g("infer_flops_s"))),
            mfu=Mfu(value=_f(g("mfu")), inference=_f(g("mfu_infer")),
                    yardstick="best matmul FLOP/s of any framework on this device and "
                              "precision in the run (ceilings.json)",
                    yardstick_flops_s=_f(g("ceiling_flops_s")),
                    yardstick_framework=g("ceiling_framework"),
                    vs_own_ceiling=_f(g("mfu_own")), vs_datasheet=_f(g("mfu_datasheet")),
                    datasheet_flops_s=_f(g("datasheet_flops_s")),
                    datasheet_note=g("datasheet_note")),
            train_loss_mean_last_epoch=_f(g("train_loss_mean_last_epoch")),
            eval_accuracy=_f(g("accuracy")), ci_basis=g("ci_basis"),
            warnings=list(g("warnings") or []),
            energy=None if g("device") == "cpu" else Energy(
                **{k: _f(g(k)) for k in Energy.model_fields
                   if k not in ("throttle_reasons", "note")},
                throttle_reasons=g("throttle_reasons"), note=g("energy_note")),
            **_serving(g))
        out.append(s.model_dump())
    return out


def _serving(g) -> dict:
    """The serving scenarios of a cells_frame row (columns of mlbench.results.aggregate)."""
    out: dict = {"export_s": _f(g("export_s"))}
    if g("ss_median") is not None:
        out["single_stream"] = SingleStream(latency_s=Percentiles(
            p50=_f(g("ss_median")), p90=_f(g("ss_p90")), p99=_f(g("ss_p99"))))
    runs = g("server_trials_r") or []
    if runs:
        trials = [ServerTrial(process=r, **{k: t[k] for k in ServerTrial.model_fields
                                            if k != "process"})
                  for r, text in enumerate(runs) for t in json.loads(text)]
        out["server"] = Server(max_qps=_f(g("server_max_qps")),
                               latency_bound_ms=_f(g("server_bound_ms")),
                               processes=int(g("server_processes") or 0),
                               met_bound=int(g("server_met_bound") or 0), trials=trials)
    return out


def annotate(latest: list[dict], run_dir: str | Path | None = None) -> dict:
    """What results.json adds to the raw attempts at the end of a run: cell_warnings (as
    before) and summaries. A failure here never loses results: it is recorded instead."""
    from . import aggregate
    from ..analysis import ceiling
    out: dict = {}
    try:
        best = ceiling.best_flops(ceiling.load(run_dir)) if run_dir is not None else None
        _, cells = aggregate.frames(latest, _run_doc(run_dir), best)
        out["cell_warnings"] = {r["cell_id"]: list(r["warnings"] or [])
                                for r in cells.select("cell_id", "warnings").iter_rows(named=True)}
        out["summaries"] = summaries(cells)
    except Exception as exc:  # noqa: BLE001 - advice and summaries: never lose the results
        out["summaries_error"] = f"{type(exc).__name__}: {exc}"[:500]
        return out
    try:
        out["verdicts"] = verdicts(cells, _run_doc(run_dir), run_dir)
    except Exception as exc:  # noqa: BLE001 - nor the summaries for a verdict
        out["verdicts_error"] = f"{type(exc).__name__}: {exc}"[:500]
    return out


def verdicts(cells, run: dict | None, run_dir: str | Path | None) -> list[dict]:
    """The report's verdicts as data (validated by Verdict): the same function the page's
    verdict table renders from (mlbench.report.modes.verdict_records)."""
    from ..analysis.gate_verdicts import load_verdicts
    from ..report.modes import verdict_records
    gate = load_verdicts(run_dir)[0] if run_dir is not None else None
    return [Verdict(**v).model_dump() for v in verdict_records(cells, gate, run)]


def _run_doc(run_dir: str | Path | None) -> dict | None:
    """run.json of `run_dir` (its ceilings_by_kind), or None."""
    try:
        from .records import parse_json  # out-of-range numbers refused, as every reader does
        doc = parse_json((Path(run_dir) / "run.json").read_bytes()) if run_dir else None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def validate(doc: dict) -> ResultsDoc:
    """Validate a results.json document against the models (raises pydantic.ValidationError),
    as JSON and strictly: "32" is not a batch size, exactly as the JSON Schema says."""
    return ResultsDoc.model_validate_json(json.dumps(doc), strict=True)


if __name__ == "__main__":  # regenerate the shipped schema file
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(SCHEMA_FILE)
