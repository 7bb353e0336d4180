"""`mlbench compare BASE NEW`: per-cell change of the headline metrics between two runs.

Owns the regression rule. Metrics: steady-state training samples/s (higher is better), inference
p50 latency and the cell's headline memory figure (lower is better; working memory on the CPU,
allocator peak on accelerators; two runs whose figures differ are "not comparable" on memory),
all from mlbench.aggregate.cells_frame. A metric regressed when
it got worse by more than `threshold` (a fraction: 0.05 = 5 %) and
* with >= 2 ok repeats on both sides: the bootstrap 95% interval of new/base (ratio of the
  medians of the per-process values, mlbench.stats.ratio_ci) excludes 1 (significant);
* with a single measurement on either side: the threshold is the only guard, and the row says so.
A cell that had results in BASE and has none in NEW (failed, oom, ...) is a regression too.
Cells missing from NEW, or only in NEW, are listed but are not regressions.
Never imports an ML framework.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import stats
from .aggregate import load_frames
from .errors import UserError

METRICS = (  # column, per-repeat column, label, higher is better, display scale, unit
    ("train_sps", "train_sps_r", "train samples/s", True, 1.0, ""),
    ("lat_median", "lat_p50_r", "inference p50", False, 1000.0, " ms"),
    ("mem_bytes", "mem_r", "memory (headline figure)", False, 1 / 1048576, " MiB"),
)


@dataclass(frozen=True)
class Row:
    cell_id: str
    metric: str
    base: float | None
    new: float | None
    change: float | None   # new / base - 1
    verdict: str           # regressed | improved | unchanged | within noise | ...
    regressed: bool
    note: str = ""
    change_lo: float | None = None   # 95% interval of new / base - 1 (per-process bootstrap)
    change_hi: float | None = None
    significant: bool | None = None  # that interval excludes 0; None for a single process


@dataclass
class CompareResult:
    base: str
    new: str
    threshold: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(r.regressed for r in self.rows)

    def render_text(self) -> str:
        head = ("cell", "metric", "base", "new", "change", "95% CI", "verdict")
        body = [(r.cell_id, r.metric, _fmt(r.base), _fmt(r.new),
                 "–" if r.change is None else f"{r.change * 100:+.1f}%",
                 "–" if r.change_lo is None else
                 f"[{r.change_lo * 100:+.1f}%, {r.change_hi * 100:+.1f}%]",
                 r.verdict + (f" ({r.note})" if r.note else "")) for r in self.rows]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
        lines = [f"compare {self.base} -> {self.new} (threshold {self.threshold:.1%})"]
        for row in [head, *body]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        lines.extend(self.notes)
        n = sum(r.regressed for r in self.rows)
        cells = len({r.cell_id for r in self.rows if r.regressed})
        lines.append(f"{n} regression(s) in {cells} cell(s)" if n else "no regressions")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def _beyond_noise(b: list[float], n: list[float], higher: bool) -> bool | None:
    """True/False when both sides have >= 2 repeats (the 95% interval of new/base excludes 1 in
    the worse direction, or not); None for a single measurement."""
    r = stats.ratio_ci(n, b)
    if r is None or not r.has_ci:
        return None
    return r.hi < 1 if higher else r.lo > 1


def _metric_row(cell: str, base: dict, new: dict, metric: tuple, threshold: float) -> Row | None:
    col, reps, label, higher, scale, unit = metric
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
    change = nv / bv - 1
    worse = -change if higher else change
    noise = _beyond_noise(base.get(reps) or [], new.get(reps) or [], higher)
    better_noise = _beyond_noise(new.get(reps) or [], base.get(reps) or [], higher)
    single = "single measurement" if noise is None else ""
    rat = stats.ratio_ci(new.get(reps) or [], base.get(reps) or [])
    ci = {} if rat is None or not rat.has_ci else {
        "change_lo": rat.lo - 1, "change_hi": rat.hi - 1, "significant": rat.significant}
    if worse > threshold:
        if noise is False:
            return Row(cell, name, bv * scale, nv * scale, change, "within noise", False,
                       "95% CI of the ratio includes 1", **ci)
        return Row(cell, name, bv * scale, nv * scale, change, "REGRESSED", True, single, **ci)
    if -worse > threshold and better_noise is not False:
        return Row(cell, name, bv * scale, nv * scale, change, "improved", False, single, **ci)
    return Row(cell, name, bv * scale, nv * scale, change, "unchanged", False, single, **ci)


def compare(base: str | Path, new: str | Path, threshold: float = 0.05) -> CompareResult:
    if not isinstance(threshold, (int, float)) or not 0 <= threshold < 10:
        raise UserError(f"threshold must be a fraction between 0 and 10, got {threshold!r}",
                        "--threshold")
    _, _, _, bcells = load_frames(base)
    _, _, _, ncells = load_frames(new)
    res = CompareResult(str(base), str(new), float(threshold))
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
            row = _metric_row(cell, br, nr, metric, threshold)
            if row:
                res.rows.append(row)
    for cell in n.keys() - b.keys():
        res.notes.append(f"only in NEW: {cell}")
    if not res.rows:
        res.notes.append("no cell has results in both runs: nothing was compared")
    return res
