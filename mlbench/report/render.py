"""Rendering: tables, figures and recommendations -> index.html, summary.csv, aggregated.parquet.

Owns the HTML page (one jinja2 template, autoescape always on, plotly.js inlined exactly once so
the file works offline) and the plain statements about what is missing from a run. Figure JSON
goes into <script> only after checking it cannot close the script element.
Never imports an ML framework.
"""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import polars as pl
from plotly.utils import PlotlyJSONEncoder
from plotly.offline import get_plotlyjs

from .. import __version__
from ..analysis import ceiling as ceiling_mod
from ..results.aggregate import flat_for_csv
from ..analysis.gate_verdicts import NUMERICS_UNCHECKED
from .energy import figures as energy_figures
from .figures import COLOURS, Figure, bases_of
from .gatemarks import GateMarks
from .recommend import BANNER, Recommendation

TEMPLATE = "template.html.j2"
SUMMARY_COLUMNS = [  # (cells_frame column, header, format)
    ("cell_id", "cell", "s"), ("framework", "framework", "s"), ("model_label", "model", "s"),
    ("device", "device", "s"), ("precision", "precision", "s"), ("gate_text", "gate", "s"),
    ("batch_size", "batch", "s"),
    ("params_trainable", "parameters", "int"),
    ("ok_repeats", "ok", "s"), ("repeats", "repeats", "s"), ("train_sps", "samples/s", "num"),
    ("train_sps_ci_lo", "CI95 lo", "num"), ("train_sps_ci_hi", "CI95 hi", "num"),
    ("train_sps_cv", "spread", "pct"), ("step_iqr_rel", "step IQR", "pct"),
    ("train_flops_s", "train FLOP/s", "flops"), ("mfu", "MFU (one yardstick)", "pct"),
    ("mfu_own", "vs own ceiling", "pct"), ("mfu_datasheet", "MFU vs datasheet", "pct"),
    ("epoch_steady_s", "steady epoch", "sec"), ("epoch_total_s", "first epoch total", "sec"),
    ("first_step_s", "first step", "sec"), ("warmup_s", "warm-up", "sec"),
    ("compile_s", "compile (est.)", "sec"), ("lat_median", "p50 latency", "sec"),
    ("lat_p90", "p90 latency", "sec"), ("lat_p99", "p99 latency", "sec"),
    ("lat_p50_ci_lo", "p50 CI95 lo", "sec"), ("lat_p50_ci_hi", "p50 CI95 hi", "sec"),
    ("accuracy", "accuracy", "num"), ("train_loss_mean_last_epoch", "train loss (mean, last "
                                      "epoch)", "num"),
    ("infer_flops_s", "infer FLOP/s", "flops"),
    ("mem_bytes", "memory (headline)", "bytes"), ("mem_figure", "memory figure", "s"),
    ("host_working_bytes", "host working", "bytes"), ("host_peak_rss_bytes", "host peak RSS",
                                                     "bytes"),
    ("peak_device_bytes", "device peak", "bytes"),
    ("train_j_per_ksample", "J / 1k train samples", "num"),
    ("n_warnings", "warnings", "s"), ("failed_statuses", "failed repeats", "s")]


# 1-based columns right-aligned as numbers (one CSS rule instead of a class on every cell)
SUMMARY_NUM_COLS = [i for i, (col, _, kind) in enumerate(SUMMARY_COLUMNS, 1)
                    if kind != "s" or col in ("batch_size", "ok_repeats", "repeats")]
CMP_NUM_COLS = [3, 6, 9, 12, 13, 14, 15, 16]  # the vs-best cells (7, 10) may wrap

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""),
             (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def si(v: float, unit: str = "", digits: int = 4) -> str:
    """A number with an SI prefix and `digits` significant digits, never in e-notation:
    5681 -> "5.681 k", 31110 -> "31.11 k", 0.00042 s -> "420 µs". Unitless numbers between
    0.001 and 1000 keep no prefix ("0.5", "12.5")."""
    if v == 0:
        return f"0 {unit}".rstrip()
    a = abs(v)
    for scale, prefix in _PREFIXES:
        if a >= scale * 0.9995 or scale == 1e-9:
            if not unit and scale < 1 and a >= 1e-3:
                scale, prefix = 1.0, ""
            x = v / scale
            text = f"{x:.{digits}g}"
            if "e" in text:  # 999.96 k rounds to 1e+03: one prefix up
                continue
            return f"{text} {prefix}{unit}".rstrip()
    return f"{v:.{digits}g} {unit}".rstrip()


def fmt(v, kind: str = "g") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if kind == "s":
        return str(v)
    if kind == "int":
        return f"{int(v):,}"
    if kind in ("num", "g"):
        return si(v) if isinstance(v, (int, float)) else str(v)
    if kind == "sec":
        return si(v, "s")
    if kind == "ms":
        return si(v, "s")
    if kind in ("mib", "bytes"):
        return f"{v / 1048576:.4g} MiB" if abs(v) < 1024 ** 3 else f"{v / 1024 ** 3:.4g} GiB"
    if kind == "pct":
        return f"{v * 100:.3g}%"
    if kind == "e":
        return f"{v:.2e}" if isinstance(v, (int, float)) else str(v)
    if kind == "yn":
        return "yes" if v is True else "no" if v is False else str(v)
    if kind == "x":
        return f"{v:.2f}×"
    if kind == "flops":
        return si(v, "FLOP/s")
    return str(v)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env


def figure_json(f: Figure) -> str:
    """The figure as compact JSON for a <script> element. Every "<" is written as \\u003c
    (inside JSON it can only occur in strings, where the escape means the same character), so
    nothing in it can close the script element or open a comment; U+2028/U+2029 are escaped
    for older JavaScript parsers. Other characters stay as they are (the page is UTF-8): plotly's
    own encoder would also escape every > and / and all non-ASCII text, which made the
    hover templates of big sweeps several times longer. NaN and infinities become null, as with
    plotly's encoder."""
    text = json.dumps(f.spec, cls=PlotlyJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))


def _d(x) -> dict:
    return x if isinstance(x, dict) else {}


def missing_notes(run: dict, att: pl.DataFrame, cells: pl.DataFrame, warnings: list[str],
                  verdicts=None, gate_error: str | None = None) -> list[str]:
    """Plain statements of what this report cannot show, derived from the data."""
    notes = []
    if gate_error:
        notes.append(f"verify.json could not be read ({gate_error}): the equivalence gate's "
                     "verdicts are unknown, so speed comparisons are not backed by the gate.")
    elif verdicts is None:
        notes.append("The equivalence gate was not run (no verify.json): speed comparisons are "
                     "not backed by the gate.")
    elif verdicts.n_failed:
        notes.append(f"{verdicts.n_failed} cell(s) failed the equivalence gate: their speed is "
                     "marked not comparable and they cannot win a recommendation (see "
                     "Equivalence gate).")
    n_ok = cells.filter(pl.col("ok_repeats") > 0).height
    if n_ok == 0:
        notes.append(f"Nothing succeeded: all {att.height} attempts ended without results "
                     "(failed, skipped, ...). There are no measurements, figures or "
                     "recommendations; the failures table below says why each cell failed.")
    if not run:
        notes.append("No run record was found (run.json): the environment and the configuration "
                     "are unknown.")
    elif not run.get("ended_at"):
        notes.append("The run has no end time: it was interrupted or is still running, so cells "
                     "that were never attempted are missing from this report.")
    measured = set(cells.filter(pl.col("ok_repeats") > 0)["framework"].to_list())
    wanted_measured = measured | (set(cells.filter(pl.col("ok_repeats") > 0)["base_framework"]
                                      .to_list()) if "base_framework" in cells.columns else set())
    wanted = list(_d(run.get("frameworks"))) or list(
        _d(run.get("config")).get("frameworks") or [])
    for fw in wanted if n_ok else []:
        if isinstance(fw, str) and fw not in wanted_measured:
            notes.append(f"No successful results for {fw}.")
    if len(measured) == 1:
        notes.append(f"Only one framework ({next(iter(measured))}) has results: nothing is "
                     "compared across frameworks.")
    if n_ok == 1:
        notes.append("Only one cell has results.")
    partial = cells.filter((pl.col("ok_repeats") > 0) & (pl.col("ok_repeats") < pl.col("repeats")))
    if partial.height:
        notes.append(f"{partial.height} cell(s) have failed repeats; their numbers use only the "
                     "ok repeats.")
    bad = att.filter(pl.col("status") != "ok")
    if bad.height:
        counts = bad.group_by("status").len().sort("status").iter_rows()
        notes.append("Attempts without results: " + ", ".join(f"{n} {s}" for s, n in counts)
                     + " (see Failures and skips).")
    single = cells.filter(pl.col("ok_repeats") == 1).height if "ok_repeats" in cells.columns \
        else 0
    if single:
        notes.append(f"{single} cell(s) were measured in a single process: they have no "
                     "confidence interval, their run-to-run noise is unknown, and no verdict "
                     "names a winner on them (the rule and the advice head the "
                     "Recommendations).")
    stale = int(cells["stale_repeats"].sum() or 0) if "stale_repeats" in cells.columns else 0
    if stale:
        n = cells.filter(pl.col("stale_repeats") > 0).height
        notes.append(f"{stale} attempt(s) of {n} cell(s) were measured under an older "
                     "configuration (another request fingerprint) than the cell's latest "
                     "attempt: they are left out, never pooled with it (the latest fingerprint "
                     "wins).")
    figs = sorted({f for f in cells["mem_figure_text"].drop_nulls().to_list()}) \
        if "mem_figure_text" in cells.columns else []
    if figs:
        notes.append("Memory compared: " + "; ".join(figs) + ".")
    if "n_warnings" in cells.columns:
        warned = cells.filter(pl.col("n_warnings") > 0).height
        if warned:
            notes.append(f"{warned} cell(s) carry measurement warnings (instability, extreme "
                         "values, samples too short, busy machine or device): see Warnings.")
    if n_ok and "mfu" in cells.columns and cells["mfu"].is_null().all():
        notes.append("No device ceiling was measured for this run (ceilings.json): achieved "
                     "FLOP/s are shown, model FLOPs utilisation is not.")
    notes.extend(f"Skipped while reading the results: {w}" for w in warnings)
    return notes


def _environment(run: dict, cells: pl.DataFrame) -> dict:
    host = _d(run.get("host"))
    gpus = [g for g in (host.get("gpus") or []) if isinstance(g, dict)]
    seen = {}
    for r in cells.select("framework", "framework_version").drop_nulls().unique().iter_rows():
        seen.setdefault(r[0], set()).add(r[1])
    fws = []
    for name in sorted(set(_d(run.get("frameworks"))) | set(seen)):
        info = _d(_d(run.get("frameworks")).get(name))
        fws.append({"name": name, "version": info.get("version"), "python": info.get("python"),
                    "reported": ", ".join(sorted(seen.get(name, ()))) or None})
    host_rows = [(k, host.get(k)) for k in ("cpu_model", "cores_logical", "cores_physical",
                                            "memory_bytes", "os", "python") if k in host]
    return {"host": host_rows, "gpus": gpus, "frameworks": fws}


def _gate_rows(verdicts) -> list[dict]:
    """The gate table: one row per (model, device, precision, framework) of verify.json."""
    if verdicts is None:
        return []
    out = []
    for r in verdicts.rows:
        verdict = {True: "pass", False: "fail"}.get(r.passed, "skip")
        if r.passed is None and r.reason == NUMERICS_UNCHECKED:
            verdict = "numerics unchecked"  # a user's native model: counts/batches only
        out.append({"model": r.model_label or r.model, "device": r.device,
                    "precision": r.precision, "framework": r.framework,
                    "reference": r.reference, "max_abs_err": r.max_abs_err,
                    "max_rel_err": r.max_rel_err, "loss_err": r.loss_err,
                    "steps_loss_err": r.steps_loss_err, "params_equal": r.params_equal,
                    "data_hash_equal": r.data_hash_equal, "verdict": verdict,
                    "reason": r.reason})
    return sorted(out, key=lambda x: tuple(str(x[k]) for k in (
        "model", "device", "precision", "framework")))


def _fw_class(cells: pl.DataFrame) -> dict[str, str]:
    """The colour swatch class per framework; a variant (pytorch-compile) takes its framework's."""
    out = {fw: f"fw-{i}" for i, fw in enumerate(COLOURS, 1)}
    out.update({label: out[base] for label, base in bases_of(cells).items()
                if base in out and label not in out})
    return out


def _tolerances(verdicts) -> list[tuple]:
    tol = verdicts.report.tolerances if verdicts is not None else None
    if not isinstance(tol, dict):
        return []
    return [(prec, t) for prec, t in tol.items() if isinstance(t, dict)]


def render(out_dir: Path, source: str, run: dict, att: pl.DataFrame, cells: pl.DataFrame,
           comparison: pl.DataFrame, failures: pl.DataFrame, figures: list[Figure],
           recs: list[Recommendation], warnings: list[str],
           ceilings: dict | None = None, verdicts=None, gate_error: str | None = None,
           modes=None, verdict_rows: list[dict] | None = None, marks=None) -> Path:
    """`verdict_rows`: the verdicts as data (report.modes.verdict_rows, what results.json
    carries); the verdict table renders from them (from `recs` when not given). `marks`: the
    gate's marks (report.gatemarks), built here when not given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if marks is None:
        marks = GateMarks(cells, verdicts)
    if "gate_text" not in cells.columns:
        cells = marks.columns(cells)
    figures = figures + [marks.mark(f) for f in energy_figures(cells)]  # GPU cells, NVML
    by_workload: dict[tuple[str, str], list[Recommendation]] = {}
    for r in recs:
        by_workload.setdefault((r.model, r.device), []).append(r)
    config = run.get("config")
    ctx = {
        "version": __version__, "source": source, "run": run,
        "run_id": run.get("run_id") or "(unknown run)",
        "started": run.get("started_at"), "ended": run.get("ended_at"),
        "n_attempts": att.height, "n_cells": cells.height,
        "n_ok": cells.filter(pl.col("ok_repeats") > 0).height,
        "notes": missing_notes(run, att, cells, warnings, verdicts, gate_error),
        "gate_rows": _gate_rows(verdicts), "gate_ran": verdicts is not None,
        "gate_note": verdicts.note if verdicts is not None else None,
        "gate_tolerances": _tolerances(verdicts),
        "recs": by_workload, "banner": BANNER,
        "verdict_rows": verdict_rows if verdict_rows is not None else
        [r.record() for r in recs],
        "panel_keys": sorted({k for f in figures for k in (f.spec.get("panels") or {})}),
        "figures": [(f, figure_json(f)) for f in figures],
        "modes": modes,  # report.modes.ModesSection, or None: every framework in its default
        "plotlyjs": get_plotlyjs() if figures else "",
        "colours": COLOURS,
        "fw_class": _fw_class(cells),
        "comparison": comparison.to_dicts(),
        # the gate's sentence per cell id and per (framework, model, device, precision), for
        # the tables whose rows are not cells_frame rows (report.gatemarks.GateMarks)
        "gate_by_cell": {k: v[1] for k, v in marks.by_cell.items()},
        "gate_of": marks.of,
        # the comparison table's short gate word (the sentence is its tooltip)
        "gate_word": {"fail": "failed", "unchecked": "not checked", "pass": "passed"},
        "summary_cols": SUMMARY_COLUMNS,
        "summary_num_cols": SUMMARY_NUM_COLS, "cmp_num_cols": CMP_NUM_COLS,
        "summary": cells.to_dicts(), "failures": failures.to_dicts(),
        "env": _environment(run, cells),
        "ceilings": ceiling_mod.table(ceilings),
        "ceiling_fws": sorted({fw for r in ceiling_mod.table(ceilings) for fw in r["per"]}),
        "warned": [r for r in cells.select(
            "cell_id", "framework", "warnings", "repeats_needed", "ci_basis").to_dicts()
            if r["warnings"]] if "warnings" in cells.columns else [],
        "settings_rows": cells.select("cell_id", "framework", "settings").to_dicts()
        if "settings" in cells.columns else [],
        "config": json.dumps(config, indent=2, sort_keys=True, default=str)
        if config is not None else None,
    }
    page = _env().get_template(TEMPLATE).render(**ctx)
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    flat_for_csv(cells).write_csv(out_dir / "summary.csv")
    cells.write_parquet(out_dir / "aggregated.parquet")
    return index
