"""The one decision rule of mlbench: when a difference between two sets of per-process values
names a winner (report verdicts, the modes section) or a regression (`mlbench compare`).

Owns the rule, its defaults and the list of warnings that void a comparison; README.md quotes
RULE and VOIDING verbatim (tests/test_decision.py compares them). numpy, scipy and stdlib only
(through mlbench.analysis.stats, imported when deciding, so config/schema.py reads the defaults at
no cost); no ML framework, no pydantic (config/schema.py validates the user's `decision:` block,
`settings_from` reads it back from a run's stored config).

Why these defaults:
* min_processes 3: the unit of evidence is a process (stats.py). With 2 processes per side the
  median is the mean of the two, so one stray process (a contended one, a bad memory layout)
  moves it halfway; from 3 on, the median ignores one stray process. A single process has no
  interval at all.
* margin 5%: differences smaller than that are within what independent runs of one config
  differ by on a shared machine (issue 20's A/A runs), and matter little to a user choosing a
  framework.
* voiding warnings: those that say the measurement itself is biased, not merely noisy: another
  load shared the machine or the device (contended, busy machine, busy device), or a sample was
  too short for the timer. "unstable" (spread between processes) and "extreme values" (a few far
  raw samples within a process) do not void: the interval over per-process medians already
  carries the spread between processes, and a median is unmoved by a few extreme samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MARGIN = 0.05
DEFAULT_MIN_PROCESSES = 3
TEST_NAME = ("ratio of medians over processes; 95% bootstrap interval widened to Welch's t "
             "on the logs")

RULE = ("A winner only when the 95% interval of the ratio of medians over processes (the "
        "bootstrap's, widened to Welch's t interval on the logs where that is wider) lies "
        "entirely beyond the practical-equivalence margin (default 5%), each side has at "
        "least the minimum number of processes (default 3; a single process never gives a "
        "winner) and no voiding warning applies to either side; otherwise no winner, naming the "
        "leader, the ratio, its interval and the reason.")
# warning texts (stats.judge_from, stats.busy_warnings, the contention sampler) that void a
# comparison, by prefix
VOIDING = ("contended", "busy machine", "busy device", "samples too short")


@dataclass(frozen=True)
class Settings:
    margin: float = DEFAULT_MARGIN
    min_processes: int = DEFAULT_MIN_PROCESSES


def settings_from(run: dict | None) -> Settings:
    """The `decision:` block of a run's stored config (run.json), defaults where absent."""
    cfg = run.get("config") if isinstance(run, dict) else None
    d = cfg.get("decision") if isinstance(cfg, dict) else None
    d = d if isinstance(d, dict) else {}
    m, k = d.get("margin"), d.get("min_processes")
    ok_m = isinstance(m, (int, float)) and not isinstance(m, bool) and 0 <= m < 10
    ok_k = isinstance(k, int) and not isinstance(k, bool) and k >= 2
    return Settings(float(m) if ok_m else DEFAULT_MARGIN, k if ok_k else DEFAULT_MIN_PROCESSES)


def voiding(warnings) -> list[str]:
    """The warnings among `warnings` that void a comparison."""
    return [w for w in warnings or () if isinstance(w, str) and w.lower().startswith(VOIDING)]


def cell_warnings(cell: dict, column: str | None) -> list[str]:
    """The warnings about the samples of one figure of a cells_frame row: its own column
    (warn_train, warn_latency; None: none), the machine-wide ones (warn_all), and every
    contention warning of the cell, once each."""
    own = list(cell.get(column) or []) if column else []
    contended = [w for w in (cell.get("warnings") or []) if str(w).startswith("contended")]
    return list(dict.fromkeys([*own, *(cell.get("warn_all") or []), *contended]))


@dataclass(frozen=True)
class Decision:
    """The outcome for two sides A and B. ratio > 1: how many times better the leader is
    (higher-is-better figures: leader / other; lower-is-better: other / leader), with its
    interval (None without one)."""
    outcome: str            # winner | equivalent | unclear | cannot tell
    leader: str | None      # "a" or "b" (None when nothing to compare)
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    reason: str
    n_a: int = 0
    n_b: int = 0
    advice: str = ""        # what would let it tell (said once by the caller, not per row)
    voided_by: tuple[str, ...] = ()   # the voiding warnings themselves (the reason names kinds)

    @property
    def winner(self) -> str | None:
        return self.leader if self.outcome == "winner" else None


def orient(r, higher_is_better: bool) -> tuple[str, float, float | None,
                                                             float | None]:
    """(leader, advantage, low, high) from a / b: the advantage >= 1 is the leader's lead."""
    a_leads = r.ratio >= 1 if higher_is_better else r.ratio <= 1
    flip = (not a_leads) if higher_is_better else a_leads
    if not flip:
        return ("a" if a_leads else "b"), r.ratio, r.lo, r.hi
    return (("a" if a_leads else "b"), 1 / r.ratio,
            None if r.hi is None else 1 / r.hi, None if r.lo is None else 1 / r.lo)


def decide_ratio(r, *, higher_is_better: bool, warnings=(),
                 settings: Settings = Settings()) -> Decision:
    """The rule on a stats.Ratio a / b of medians over processes (stats.ratio_ci / ratio_ci_many, or
    a geometric mean of several: stats.geomean_ratio_ci) and the warnings of both sides."""
    from . import stats  # numpy: not at import, config/schema.py reads the defaults above
    if r is None:
        return Decision("cannot tell", None, None, None, None, "nothing to compare")
    leader, adv, lo, hi = orient(r, higher_is_better)
    base = dict(leader=leader, ratio=adv, ci_low=lo, ci_high=hi, n_a=r.n_a, n_b=r.n_b)
    n = min(r.n_a, r.n_b)
    if n < 2 or lo is None:
        return Decision("cannot tell", reason="cannot tell: single process",
                        advice=stats.REPEATS_ADVICE, **base)
    if n < settings.min_processes:
        return Decision("cannot tell", reason=f"cannot tell: only {n} processes on one side "
                        f"(at least {settings.min_processes} needed)",
                        advice=stats.REPEATS_ADVICE, **base)
    void = tuple(dict.fromkeys(voiding(warnings)))
    if void:
        kinds = [k for k in VOIDING if any(w.lower().startswith(k) for w in void)]
        return Decision("cannot tell", reason="cannot tell: voided by " + ", ".join(kinds),
                        voided_by=void, **base)
    edge = 1 + settings.margin
    if lo > edge:
        return Decision("winner", reason=f"the interval lies beyond the ±{settings.margin:.0%} "
                        "margin", **base)
    if hi <= edge and lo >= 1 / edge:
        return Decision("equivalent", reason=f"equivalent: the interval lies within the "
                        f"±{settings.margin:.0%} margin", **base)
    return Decision("unclear", reason=f"within noise: the interval reaches inside the "
                    f"±{settings.margin:.0%} margin", **base)


def decide(a, b, *, higher_is_better: bool, warnings=(),
           settings: Settings = Settings()) -> Decision:
    """The rule on per-process values a and b (ratio of medians a / b, bootstrap interval)."""
    from . import stats
    return decide_ratio(stats.ratio_ci(a, b), higher_is_better=higher_is_better,
                        warnings=warnings, settings=settings)


def interval_text(d: Decision) -> str:
    """'1.50x [1.41-1.62]', or the ratio alone without an interval, or '–'."""
    if d.ratio is None or not math.isfinite(d.ratio):
        return "–"
    if d.ci_low is None or d.ci_high is None:
        return f"{d.ratio:.2f}x"
    return f"{d.ratio:.2f}x [{d.ci_low:.2f}-{d.ci_high:.2f}]"
