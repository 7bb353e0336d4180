"""`mlbench compare BASE NEW`: per-cell change of the headline metrics between two runs, and the
changes of the report's verdicts.

Owns how two runs are set against each other. Metrics: steady-state training samples/s (higher
is better), inference p50 latency and the cell's headline memory figure (lower is better; two
runs whose memory figures differ are "not comparable" on memory), and where the cell served
(the serving scenarios) single-stream p90 latency and the server's max QPS within the bound,
all from
mlbench.results.aggregate.cells_frame. The verdict of each metric is mlbench.analysis.decision's one
rule on the per-process values of NEW against BASE, with the threshold as the margin:
* "REGRESSED" / "improved" only when the 95% bootstrap interval of new/base (ratio of medians
  over processes, decision.TEST_NAME) lies beyond 1 + threshold in that direction, each side
  has at least the minimum number of processes (the NEW run's `decision.min_processes`,
  default 3) and no voiding warning (contended, busy machine, ...) applies to either side;
* "within noise" when the interval reaches inside the threshold;
* "cannot tell" with the reason otherwise (single process, too few processes, voided by ...).
Whole-run shift: two runs made at different times also differ by what the machine did between
them (clock speed, thermal state, background load), and that moves every cell alike: two quiet
back-to-back quick sweeps here differed by +4% to +38% per cell, +13% in the middle, while no
framework had changed. So, per metric (throughput, latency), the run's shift is the median over
frameworks of each framework's median new/base over its cells (with a bootstrap interval over
cells); where it can be told apart from one framework's own change (at least
MIN_SHIFT_FRAMEWORKS frameworks: the majority moved together) and lies within `drift` (default
DRIFT, what a machine drifts between runs), a cell is REGRESSED or improved only when it
departs from that shift too (the rule again on new / shift against base);
a cell that moved only with the whole run is "within noise", saying so. A shift beyond `drift`
is not explained away: every cell is judged on its own. `drift` 0 turns this off.
A cell that had results in BASE and has none in NEW (failed, oom, ...) regressed. `strict`
keeps the older rule (the point change beyond the threshold, the interval only guarding
cells with >= 2 processes on both sides). Cells missing from NEW, or only in NEW, are listed,
not regressions; two runs with no cell compared in common are `nothing_compared` (the command
exits 2). The verdicts of both runs (report.modes.verdict_records) are diffed: a changed winner
is listed. Never imports an ML framework.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import decision, stats
from ..results.frames import load_frames
from ..errors import UserError

METRICS = (  # column, per-repeat column, label, higher is better, display scale, unit, warnings
    ("train_sps", "train_sps_r", "train samples/s", True, 1.0, "", "warn_train"),
    ("lat_median", "lat_p50_r", "inference p50", False, 1000.0, " ms", "warn_latency"),
    ("mem_bytes", "mem_r", "memory (headline figure)", False, 1 / 1048576, " MiB", None),
    ("ss_p90", "ss_p90_r", "single-stream p90", False, 1000.0, " ms", None),
    ("server_max_qps", "server_max_qps_r", "server max QPS", True, 1.0, "", None),
)
# what a machine's drift moves (not memory)
SHIFTED = ("train samples/s", "inference p50 ms", "single-stream p90 ms", "server max QPS")
DRIFT = 0.15          # the whole-run shift a machine may show between runs (seen here: +13%)
MIN_SHIFT_FRAMEWORKS = 3  # a shift most frameworks share is the machine's; with 2, either one


@dataclass(frozen=True)
class Row:
    cell_id: str
    metric: str
    base: float | None
    new: float | None
    change: float | None   # new / base - 1
    verdict: str           # REGRESSED | improved | within noise | cannot tell | ...
    regressed: bool
    note: str = ""
    change_lo: float | None = None   # 95% interval of new / base - 1 (per-process bootstrap)
    change_hi: float | None = None
    significant: bool | None = None  # that interval excludes 0; None for a single process
    relative: float | None = None    # new / (base x the run's shift) - 1, when judged against it


@dataclass
class CompareResult:
    base: str
    new: str
    threshold: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strict: bool = False
    min_processes: int = decision.DEFAULT_MIN_PROCESSES
    verdict_changes: list[str] = field(default_factory=list)
    advice: str = ""
    drift: float = DRIFT
    shifts: dict = field(default_factory=dict)  # metric -> {shift, lo, hi, cells, frameworks, used}
    samples: dict = field(default_factory=dict, repr=False)  # (cell, metric) -> what was judged

    @property
    def regressed(self) -> bool:
        return any(r.regressed for r in self.rows)

    @property
    def nothing_compared(self) -> bool:
        """No cell had results in both runs (or none is in both): nothing was compared."""
        return not self.rows

    def render_text(self) -> str:
        head = ("cell", "metric", "base", "new", "change", "95% CI", "verdict")
        body = [(r.cell_id, r.metric, _fmt(r.base), _fmt(r.new),
                 "–" if r.change is None else f"{r.change * 100:+.1f}%",
                 "–" if r.change_lo is None else
                 f"[{r.change_lo * 100:+.1f}%, {r.change_hi * 100:+.1f}%]",
                 r.verdict + (f" ({r.note})" if r.note else "")) for r in self.rows]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
        rule = ("--strict: the point change alone beyond the threshold" if self.strict else
                f"test: {decision.TEST_NAME}; beyond the threshold in the whole interval, "
                f"at least {self.min_processes} processes per side, no voiding warning")
        lines = [f"compare {self.base} -> {self.new} (threshold {self.threshold:.1%}; {rule})"]
        for row in [head, *body]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        lines.extend(self.shift_lines())
        lines.extend(self.notes)
        lines.extend(self.verdict_changes)
        if self.advice:
            lines.append(f"to tell: {self.advice}")
        n = sum(r.regressed for r in self.rows)
        cells = len({r.cell_id for r in self.rows if r.regressed})
        lines.append("nothing compared: the two runs have no cell with results in both" if
                     self.nothing_compared else
                     f"{n} regression(s) in {cells} cell(s)" if n else "no regressions")
        return "\n".join(lines)

    def shift_lines(self) -> list[str]:
        out = []
        for metric, sh in self.shifts.items():
            ci = "" if sh["lo"] is None else f" [{sh['lo'] - 1:+.1%}, {sh['hi'] - 1:+.1%}]"
            head = (f"whole run: {metric} moved {sh['shift'] - 1:+.1%}{ci} (the middle of "
                    f"{sh['frameworks']} framework(s)' medians over {sh['cells']} cells); ")
            if sh["used"]:
                out.append(head + f"within the ±{self.drift:.0%} a machine drifts between runs, "
                           "so a cell is flagged only where it departs from that shift too")
            elif sh["why"]:
                out.append(head + sh["why"])
        return out


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def _interval(base: list, new: list) -> dict:
    rat = stats.ratio_ci(new, base)
    return {} if rat is None or not rat.has_ci else {
        "change_lo": rat.lo - 1, "change_hi": rat.hi - 1, "significant": rat.significant}


def _strict_row(cell: str, name: str, bv: float, nv: float, b: list, n: list, higher: bool,
                threshold: float, scale: float) -> Row:
    """The older rule: the point change beyond the threshold regresses unless an interval
    (>= 2 processes on both sides) includes 1."""
    change = nv / bv - 1
    worse = -change if higher else change
    r_worse, r_better = stats.ratio_ci(n, b), stats.ratio_ci(b, n)
    ci = _interval(b, n)
    single = "single measurement" if r_worse is None or not r_worse.has_ci else ""
    if worse > threshold:
        if r_worse is not None and r_worse.has_ci and not (
                r_worse.hi < 1 if higher else r_worse.lo > 1):
            return Row(cell, name, bv * scale, nv * scale, change, "within noise", False,
                       "95% CI of the ratio includes 1", **ci)
        return Row(cell, name, bv * scale, nv * scale, change, "REGRESSED", True, single, **ci)
    better_sig = r_better is not None and r_better.has_ci and not (
        r_better.hi < 1 if higher else r_better.lo > 1)
    if -worse > threshold and not better_sig:
        return Row(cell, name, bv * scale, nv * scale, change, "improved", False, single, **ci)
    return Row(cell, name, bv * scale, nv * scale, change, "unchanged", False, single, **ci)


def _metric_row(cell: str, base: dict, new: dict, metric: tuple, res: CompareResult
                ) -> Row | None:
    col, reps, label, higher, scale, unit, warn = metric
    bv, nv = base.get(col), new.get(col)
    if bv is None and nv is None:
        return None
    name = label + unit
    if col == "mem_bytes" and base.get("mem_figure") != new.get("mem_figure"):
        # e.g. whole-process RSS (an older store) against working memory: not the same figure
        return Row(cell, name, bv and bv * scale, nv and nv * scale, None, "not comparable",
                   False, f"different memory figures: {base.get('mem_figure')} vs "
                   f"{new.get('mem_figure')}")
    if bv is None or nv is None or bv <= 0:
        return Row(cell, name, bv and bv * scale, nv and nv * scale, None,
                   "not comparable", False, "missing on one side")
    if higher and nv <= 0:
        # a server that met its latency bound at some offered rate in BASE and at none in NEW
        # (max QPS 0): no ratio to test, and a regression all the same
        return Row(cell, name, bv * scale, nv * scale, -1.0, "REGRESSED", True,
                   "now 0: no offered rate met the latency bound")
    b, n = list(base.get(reps) or []), list(new.get(reps) or [])
    if res.strict:
        return _strict_row(cell, name, bv, nv, b, n, higher, res.threshold, scale)
    d = decision.decide(n, b, higher_is_better=higher,
                        warnings=[*decision.cell_warnings(base, warn),
                                  *decision.cell_warnings(new, warn)],
                        settings=decision.Settings(res.threshold, res.min_processes))
    res.advice = res.advice or d.advice
    res.samples[(cell, name)] = (b, n, higher, [*decision.cell_warnings(base, warn),
                                                *decision.cell_warnings(new, warn)])
    out = dict(cell_id=cell, metric=name, base=bv * scale, new=nv * scale, change=nv / bv - 1,
               **_interval(b, n))
    if d.outcome == "winner":
        worse = d.leader == "b"
        return Row(verdict="REGRESSED" if worse else "improved", regressed=worse,
                   note=d.reason, **out)
    if d.outcome in ("equivalent", "unclear"):
        return Row(verdict="within noise", regressed=False, note=d.reason, **out)
    return Row(verdict="cannot tell", regressed=False,
               note=d.reason.removeprefix("cannot tell: "), **out)


def _shift(rows: list[Row], frameworks: dict, drift: float) -> dict:
    """The run's shift of one metric: the median over frameworks of each framework's median
    new/base over its cells (one vote per framework, so one framework's own change never moves
    it while the others stayed), a bootstrap interval over cells, and whether it is used to
    judge the cells (see the module docstring)."""
    from . import stats
    by_fw: dict = {}
    for r in rows:
        if r.change is not None and r.change > -1:
            by_fw.setdefault(frameworks.get(r.cell_id), []).append(math.log1p(r.change))
    if not by_fw:
        return {}
    vals = [x for xs in by_fw.values() for x in xs]
    shift = math.exp(stats.median([stats.median(xs) for xs in by_fw.values()]))
    ci = stats.bootstrap_median_ci(vals)
    lo, hi = (None, None) if ci is None else (math.exp(ci[0]), math.exp(ci[1]))
    why = ""
    if len(by_fw) < MIN_SHIFT_FRAMEWORKS:
        why = (f"fewer than {MIN_SHIFT_FRAMEWORKS} frameworks cannot tell it from one "
               "framework's own change: every cell judged on its own")
    elif abs(math.log(shift)) > math.log1p(drift):
        why = (f"beyond the ±{drift:.0%} a machine drifts between runs: not explained away, "
               "every cell judged on its own")
    return {"shift": shift, "lo": lo, "hi": hi, "cells": len(vals), "frameworks": len(by_fw),
            "used": not why and drift > 0, "why": why if drift > 0 else ""}


def _against_shift(row: Row, samples: tuple, shift: float, res: CompareResult) -> Row:
    """A flagged row judged again on new / shift: flagged only if it departs from the run's
    shift too; the relative change is kept either way."""
    b, n, higher, warns = samples
    rel = None if row.change is None else (1 + row.change) / shift - 1
    if row.verdict not in ("REGRESSED", "improved"):
        return replace(row, relative=rel)
    d = decision.decide([v / shift for v in n], b, higher_is_better=higher, warnings=warns,
                        settings=decision.Settings(res.threshold, res.min_processes))
    same = d.outcome == "winner" and (d.leader == "b") == row.regressed
    if same:
        return replace(row, relative=rel)
    return replace(row, verdict="within noise", regressed=False, relative=rel,
                   note=f"moved with the whole run ({shift - 1:+.1%}); against it "
                        f"{rel:+.1%}, {d.reason.removeprefix('cannot tell: ')}")


def _judge_shifts(res: CompareResult, frameworks: dict) -> None:
    for metric in SHIFTED:
        rows = [r for r in res.rows if r.metric == metric and (r.cell_id, r.metric) in res.samples]
        sh = _shift(rows, frameworks, res.drift)
        if not sh:
            continue
        res.shifts[metric] = sh
        if sh["used"]:
            res.rows = [_against_shift(r, res.samples[(r.cell_id, r.metric)], sh["shift"], res)
                        if r.metric == metric and (r.cell_id, r.metric) in res.samples else r
                        for r in res.rows]


def _verdicts(path, run: dict, cells) -> dict:
    from .gate_verdicts import load_verdicts
    from ..report.modes import verdict_records
    return {(v["model"], v["device"], v["question"]): v
            for v in verdict_records(cells, load_verdicts(path)[0], run)}


def _verdict_changes(old: dict, new: dict) -> list[str]:
    """'verdict changed: ...' for every question whose winner differs between the runs."""
    out = []
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        if a["winner"] != b["winner"]:
            out.append(f"verdict changed: {key[0]} on {key[1]}, {key[2]}: "
                       f"{a['winner'] or 'no winner'} -> {b['winner'] or 'no winner'}"
                       + ("" if b["winner"] else f" ({b['reason']})"))
    return out


def compare(base: str | Path, new: str | Path, threshold: float = 0.05,
            strict: bool = False, drift: float = DRIFT) -> CompareResult:
    if not isinstance(threshold, (int, float)) or not 0 <= threshold < 10:
        raise UserError(f"threshold must be a fraction between 0 and 10, got {threshold!r}",
                        "--threshold")
    if not isinstance(drift, (int, float)) or isinstance(drift, bool) or not 0 <= drift < 10:
        raise UserError(f"drift must be a fraction between 0 and 10, got {drift!r}", "--drift")
    brun, _, _, bcells = load_frames(base)
    nrun, _, _, ncells = load_frames(new)
    res = CompareResult(str(base), str(new), float(threshold), strict=strict,
                        min_processes=decision.settings_from(nrun).min_processes,
                        drift=float(drift))
    b = {r["cell_id"]: r for r in bcells.iter_rows(named=True)}
    n = {r["cell_id"]: r for r in ncells.iter_rows(named=True)}
    for cell, br in b.items():
        nr = n.get(cell)
        if nr is None:
            res.notes.append(f"not in NEW: {cell}")
            continue
        if br.get("mode_settings") != nr.get("mode_settings"):  # same label, other mode
            res.notes.append(f"mode changed: {cell} ran {br.get('mode')} "
                             f"({br.get('mode_settings') or 'no options'}) in BASE, "
                             f"{nr.get('mode')} ({nr.get('mode_settings') or 'no options'}) "
                             "in NEW")
        if br["ok_repeats"] == 0:
            if nr["ok_repeats"] > 0:
                res.notes.append(f"now has results (had none in BASE): {cell}")
            continue
        if nr["ok_repeats"] == 0:
            res.rows.append(Row(cell, "status", None, None, None, "REGRESSED", True,
                                f"had results, now {nr['failed_statuses'] or 'none'}"))
            continue
        for metric in METRICS:
            row = _metric_row(cell, br, nr, metric, res)
            if row:
                res.rows.append(row)
    if not strict:
        _judge_shifts(res, {c: r.get("framework") for c, r in n.items()})
    for cell in n.keys() - b.keys():
        res.notes.append(f"only in NEW: {cell}")
    if not res.rows:
        res.notes.append("no cell has results in both runs: nothing was compared")
    else:
        res.verdict_changes = _verdict_changes(_verdicts(base, brun, bcells),
                                               _verdicts(new, nrun, ncells))
    return res
