"""Each framework out of the box and at its best: the report's verdicts and the cost of compiling.

Owns, for runs whose frameworks ran in more than one mode (config `modes:` or variant entries,
see mlbench.config.catalog.MODES):
* two verdicts per model and device, on training throughput: "out of the box" (every framework in
  its default mode) and "at its best" (every framework in whichever of its modes trains fastest),
  each naming the mode that won; the ranking and the noise rule are mlbench.report.recommend's,
  run on those two selections of cells;
* the compile cost per cell: compile time = first step - median steady-state step (the first step
  holds tracing, compilation and autotuning), against the steady-state step time, and the
  break-even step count n* after which a mode's total time (compile + n * step) beats its
  framework's default mode: n* = (compile_mode - compile_default) / (step_default - step_mode)
  when the mode's steps are faster, "never" otherwise, "immediately" when n* <= 0;
* the compile-cost figure (one point per cell, each variant in its framework's colour family).
Reads cells_frame columns only (framework = the variant label, base_framework, mode,
mode_settings, first_step_s, step_median, train_sps). Never imports an ML framework.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from ..config import catalog
from ..analysis import decision
from .figures import Figure, bases_of, colour, esc, grid_layout, symbol
from .recommend import Recommendation, recommend

QUESTIONS = ("out of the box", "at its best")


def break_even(compile_mode: float, step_mode: float, compile_default: float,
               step_default: float) -> float | None:
    """Steps after which the mode's compile + n * step is below the default's (0.0: from the
    first step on; None: never, its steady-state steps are not faster)."""
    if not step_mode < step_default:
        return None
    return max(0.0, (compile_mode - compile_default) / (step_default - step_mode))


def break_even_text(n: float | None) -> str:
    if n is None:
        return "never"
    if n <= 0:
        return "immediately"
    return f"after {math.ceil(n):,} steps"


@dataclass(frozen=True)
class ModeVerdict:
    question: str      # "out of the box" | "at its best"
    model: str
    device: str
    winner: str | None  # the variant label, None without a clear winner
    verdict: str       # recommend's: clear | no-clear-winner | nothing-to-compare
    text: str          # a sentence or two
    details: tuple[str, ...] = ()   # shown on demand: the modes compared
    rec: "Recommendation | None" = None

    def record(self) -> dict:
        """The verdict object of results.json (question: '<aspect> <question>')."""
        return self.rec.record(f"{self.rec.title} {self.question}")


@dataclass(frozen=True)
class ModesSection:
    verdicts: list[ModeVerdict]
    costs: list[dict]          # compile-cost rows (compile_costs), for the table
    figure: Figure | None


def has_modes(cells: pl.DataFrame) -> bool:
    """True when some framework ran in a mode other than its default (or under another label)."""
    if "mode" not in cells.columns or cells.is_empty():
        return False
    return bool(cells.filter((pl.col("mode") != "default")
                             | (pl.col("framework") != pl.col("base_framework"))).height)


def _ok(cells: pl.DataFrame, gate) -> pl.DataFrame:
    ok = cells.filter(pl.col("ok_repeats") > 0)
    if gate is None or ok.is_empty():
        return ok
    keep = [gate.status(r["framework"], r.get("gate_label") or r["model"], r["device"],
                        r["precision"]) != "fail" for r in ok.iter_rows(named=True)]
    return ok.filter(pl.Series(keep, dtype=pl.Boolean))


def _default_labels(ok: pl.DataFrame) -> set[str]:
    """Per framework, the label of its default mode (the plain name when there are several)."""
    out = {}
    for label, base in ok.filter(pl.col("mode") == "default").select(
            "framework", "base_framework").unique().sort("framework").iter_rows():
        if base not in out or label == base:
            out[base] = label
    return set(out.values())


def _best_labels(ok: pl.DataFrame) -> set[tuple[str, str, str]]:
    """{(model_label, device, label)}: per model, device and framework, the mode with the highest
    geometric-mean training throughput over the configurations all its modes measured."""
    chosen = set()
    rows = ok.filter(pl.col("train_sps") > 0).select(
        "model_label", "device", "base_framework", "framework", "batch_size", "precision",
        "train_sps").to_dicts()
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        g = groups.setdefault((r["model_label"], r["device"], r["base_framework"]), {})
        g.setdefault(r["framework"], {})[(r["batch_size"], r["precision"])] = r["train_sps"]
    for (model, device, _), labels in groups.items():
        shared = set.intersection(*(set(v) for v in labels.values()))
        if not shared:  # modes never measured side by side: the one with the most configs
            shared = None

        def score(label: str) -> float:
            vals = labels[label]
            keys = shared if shared is not None else vals
            return math.exp(sum(math.log(vals[k]) for k in keys) / len(keys))
        chosen.add((model, device, max(sorted(labels), key=score)))
    return chosen


def _describe(ok: pl.DataFrame, labels: list[str]) -> str:
    seen = {}
    for label, base, mode, settings in ok.select(
            "framework", "base_framework", "mode", "mode_settings").unique().iter_rows():
        if label in labels:
            m = catalog.MODES.get(base)
            what = (m.default if mode == "default" else m.best_text.split(" (")[0]) \
                if m is not None and mode != "custom" else "custom"
            seen[label] = f"{label} = {base} {mode}: {what}" + (f" ({settings})" if settings
                                                                else "")
    return "; ".join(seen[k] for k in sorted(seen))


def verdicts(cells: pl.DataFrame, gate=None,
             settings: decision.Settings | None = None) -> list[ModeVerdict]:
    """Both questions for every model and device, on training throughput (cells that failed
    the equivalence gate left out)."""
    ok = _ok(cells, gate)
    if ok.is_empty():
        return []
    default = ok.filter(pl.col("framework").is_in(sorted(_default_labels(ok))))
    best_keys = _best_labels(ok)
    best = ok.filter(pl.Series([(r[0], r[1], r[2]) in best_keys for r in ok.select(
        "model_label", "device", "framework").iter_rows()], dtype=pl.Boolean))
    out = []
    for question, sub in zip(QUESTIONS, (default, best)):
        for rec in recommend(sub, None, settings):
            if rec.aspect != "train":
                continue
            part = sub.filter((pl.col("model_label") == rec.model) & (pl.col("device") ==
                                                                      rec.device))
            labels = sorted(set(part["framework"].to_list()))
            won = f" Winning mode: {_describe(part, [rec.winner])}." if rec.winner else ""
            out.append(ModeVerdict(question, rec.model, rec.device, rec.winner, rec.verdict,
                                   f"{rec.text}{won}",
                                   (f"Compared: {_describe(part, labels)}.", *rec.details),
                                   rec))
    return out


def verdict_rows(recs: list[Recommendation], mode_verdicts: list[ModeVerdict] | None
                 ) -> list[dict]:
    """The verdicts as data (summary.Verdict), in the page's order: every recommendation, then
    the modes section's two questions."""
    return [r.record() for r in recs] + [v.record() for v in mode_verdicts or []]


def verdict_records(cells: pl.DataFrame, gate=None, run: dict | None = None) -> list[dict]:
    """results.json's `verdicts`: what the page's verdict table shows for these cells, under
    the run's `decision:` settings."""
    settings = decision.settings_from(run)
    return verdict_rows(recommend(cells, gate, settings),
                        verdicts(cells, gate, settings) if has_modes(cells) else None)


def compile_costs(cells: pl.DataFrame, gate=None) -> pl.DataFrame:
    """Per ok cell: compile_s (first step - median steady step, >= 0), step_s, and against the
    default mode of its framework in the same configuration: break_even (steps; null: never or
    no default measured) and break_even_text. A cell that failed the equivalence gate keeps its
    row, marked not comparable, with no break-even, and is never the default measured
    against (gate_failed: True)."""
    ok = cells.filter((pl.col("ok_repeats") > 0) & pl.col("first_step_s").is_not_null()
                      & pl.col("step_median").is_not_null())
    passing = set(_ok(ok, gate)["cell_id"].to_list()) if "cell_id" in ok.columns else None
    cost = ok.select(
        "model_label", "device", "precision", "batch_size", "framework", "base_framework", "mode",
        "mode_settings", "train_sps", pl.col("step_median").alias("step_s"),
        (pl.col("first_step_s") - pl.col("step_median")).clip(lower_bound=0.0)
        .alias("compile_s"),
        (pl.col("cell_id").is_in(sorted(passing)).not_() if passing is not None
         else pl.lit(False)).alias("gate_failed"))
    key = ["base_framework", "model_label", "device", "precision", "batch_size"]
    defaults = cost.filter(pl.col("framework").is_in(sorted(_default_labels(ok)))
                           & pl.col("gate_failed").not_()).select(
        *key, pl.col("framework").alias("default_label"),
        pl.col("compile_s").alias("default_compile_s"), pl.col("step_s").alias("default_step_s"))
    rows = cost.join(defaults, on=key, how="left").sort(
        "model_label", "device", "precision", "batch_size", "base_framework", "framework"
    ).to_dicts()
    for r in rows:
        if r["gate_failed"]:
            r["break_even"], r["break_even_text"] = None, \
                "not comparable (failed the equivalence gate)"
            continue
        if r["default_label"] is None or r["default_label"] == r["framework"]:
            r["break_even"], r["break_even_text"] = None, "–" if r["default_label"] else \
                "no comparable default mode measured"
            continue
        n = break_even(r["compile_s"], r["step_s"], r["default_compile_s"], r["default_step_s"])
        r["break_even"], r["break_even_text"] = n, break_even_text(n) + f" vs {r['default_label']}"
    return pl.DataFrame(rows, infer_schema_length=None) if rows else cost.head(0)


def _figure(costs: pl.DataFrame) -> Figure | None:
    if costs.is_empty():
        return None
    panels = sorted({(r[0], r[1], r[2]) for r in costs.select(
        "model_label", "device", "precision").iter_rows()})
    layout, _ = grid_layout(panels, "compile time (s)", "steady-state step time (ms, log scale)")
    fws = sorted(set(costs["framework"].to_list()))
    bases = bases_of(costs)
    index = {p: i for i, p in enumerate(panels)}
    data, shown = [], set()
    for (model, dev, prec, fw), g in sorted(costs.group_by(
            "model_label", "device", "precision", "framework"), key=lambda x: x[0]):
        i = index[(model, dev, prec)]
        sfx = "" if i == 0 else str(i + 1)
        rows = g.sort("batch_size").to_dicts()
        c = colour(fw, fws, bases)
        name = esc(fw)
        data.append({
            "type": "scatter", "mode": "markers+text", "name": name, "legendgroup": name,
            "showlegend": name not in shown, "xaxis": f"x{sfx}", "yaxis": f"y{sfx}",
            "x": [r["step_s"] * 1000 for r in rows], "y": [r["compile_s"] for r in rows],
            "text": [f"bs{r['batch_size']}" for r in rows], "textposition": "top center",
            "marker": {"color": c, "size": 10, "symbol": symbol(fw, bases)},
            "customdata": [[esc(r["mode"]), esc(r["mode_settings"] or "no options"),
                            esc(r["break_even_text"])] for r in rows],
            "hovertemplate": f"<b>{name}</b> · batch %{{text}}<br>mode: %{{customdata[0]}} "
                             "(%{customdata[1]})<br>steady step: %{x:.4g} ms<br>compile: "
                             "%{y:.4g} s<br>break-even: %{customdata[2]}<extra></extra>"})
        shown.add(name)
    for i in range(len(panels)):
        layout[f"xaxis{'' if i == 0 else i + 1}"]["type"] = "log"
    return Figure("compile-cost", "Compile cost against steady-state speed, per mode",
                  "Compile time = first training step − median steady-state step (tracing, "
                  "compilation, autotuning); one point per cell, each mode in its framework's "
                  "colour family. Down and left is better. Break-even (hover, and the table of "
                  "the modes section): after how many steps a mode's total time, compile + "
                  "steps × step time, beats its framework's default mode; “never” when its "
                  "steady-state steps are not faster.", {"data": data, "layout": layout})


def build(cells: pl.DataFrame, gate=None,
          settings: decision.Settings | None = None) -> ModesSection | None:
    """The modes section, or None when every framework ran only in its default mode."""
    if not has_modes(cells):
        return None
    costs = compile_costs(cells, gate)
    return ModesSection(verdicts(cells, gate, settings), costs.to_dicts(), _figure(costs))
