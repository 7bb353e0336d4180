"""Recommendations and verdicts computed from the per-cell table
(mlbench.results.aggregate.cells_frame).

Owns the question "who wins, by how much, and does the evidence hold" for each model and device
and each aspect: steady-state training throughput, compile time (first step - median step; asked
of compiled modes only: eager frameworks are shown apart with their first-step overhead),
inference p50 latency, memory (the figure the cells name; on the CPU the working memory, with
the whole-process peak RSS beside it), and energy per 1,000 training samples where measured.
The decision itself is mlbench.analysis.decision's one rule; this module only gathers its evidence.
Never canned text, never imports an ML framework.

Method, per (model, device, aspect):
* ranking: a framework's score is the geometric mean, over the (batch, precision) configurations
  it shares with at least one other framework, of how far it is from the best framework there
  (1 = best); the lowest score leads, the next is the runner-up;
* evidence: the ratio of medians of the per-process values, leader against runner-up, as a
  geometric mean over the configurations both measured, with its bootstrap 95% interval
  (stats.geomean_ratio_ci); decision.decide_ratio names a winner or says why not, with the
  warnings of both sides' cells (decision.VOIDING says which void);
* configurations that disagree (the runner-up ahead beyond the margin in one of them) give no
  winner, naming them;
* the equivalence gate (gate_verdicts.GateVerdicts): a (framework, precision) that failed it
  never enters a ranking or a verdict; the details say which were left out and which were not
  checked.
Recommendation.record is the verdict object of results.json (`verdicts`, see
report.modes.verdict_records), the data the page's verdict table renders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import polars as pl

from ..analysis import decision, stats


@dataclass(frozen=True)
class Aspect:
    key: str
    verb: str           # "<framework> <verb>"
    value: str          # cells_frame column with the headline value
    repeats: str        # cells_frame list column with per-repeat values ("" : the value only)
    higher_is_better: bool
    unit: str
    warn: str | None = None   # cells_frame list column of warnings about these samples
    title: str = ""           # the verdict's question
    short: str = ""           # the figure in a sentence


ASPECTS = (
    Aspect("train", "trains fastest", "train_sps", "train_sps_r", True,
           "steady-state training samples/s", "warn_train", "fastest to train", "throughput"),
    Aspect("compile", "compiles fastest", "compile_s", "compile_r", False,
           "compile time (first step - median step)", None, "fastest to compile",
           "compile time"),
    Aspect("latency", "serves with the lowest latency", "lat_median", "lat_p50_r", False,
           "inference p50 latency", "warn_latency", "lowest latency", "p50 latency"),
    Aspect("memory", "uses the least memory", "mem_bytes", "mem_r", False,
           "memory", None, "least memory", "memory"),
    Aspect("energy", "uses the least energy per sample", "train_j_per_ksample",
           "train_j_per_ksample_r", False, "training energy (J per 1,000 samples)", "warn_train",
           "least energy per sample", "energy per sample"),
    # serving (README "Serving"): asked only where the scenario was measured (SERVING)
    Aspect("single_stream", "answers single queries fastest", "ss_p90", "ss_p90_r", False,
           "single-stream p90 latency", "warn_latency", "lowest single-stream latency",
           "single-stream p90 latency"),
    Aspect("server", "serves the most queries/s within the bound", "server_max_qps",
           "server_max_qps_r", True, "server QPS with p99 within the latency bound",
           "warn_latency", "most server QPS within the latency bound", "server QPS"),
)
SERVING = ("single_stream", "server")
# said once, in the banner above the recommendations (render.py), never per recommendation
BANNER = (f"{decision.RULE} Voiding warnings: {', '.join(decision.VOIDING)}. Over several "
          "configurations (batch size, precision): the geometric mean over those both "
          f"frameworks measured. Advice: {stats.REPEATS_ADVICE}.")


@dataclass(frozen=True)
class Recommendation:
    model: str
    device: str
    aspect: str
    winner: str | None
    verdict: str        # clear | no-clear-winner | nothing-to-compare
    text: str           # one or two sentences
    runner_up: str | None = None
    ratio: float | None = None     # >= 1: how far ahead the leader is
    lo: float | None = None        # its 95% interval (None: none)
    hi: float | None = None
    interval_kind: str | None = None
    warnings: tuple[str, ...] = ()  # warnings about the samples this rests on
    title: str = ""
    unit: str = ""                  # the figure compared
    leader: str | None = None
    reason: str = ""
    details: tuple[str, ...] = ()   # shown on demand

    @property
    def ratio_text(self) -> str:
        """'1.50x [1.41-1.62]' (low-high around the ratio), or the ratio alone."""
        if self.ratio is None:
            return "–"
        if self.lo is None or self.hi is None:
            return f"{self.ratio:.2f}x"
        return f"{self.ratio:.2f}x [{self.lo:.2f}-{self.hi:.2f}]"

    def record(self, question: str | None = None) -> dict:
        """The verdict object of results.json (summary.Verdict)."""
        return {"question": question or self.title or self.aspect, "model": self.model,
                "device": self.device, "figure": self.unit, "winner": self.winner,
                "leader": self.leader, "runner_up": self.runner_up, "ratio": self.ratio,
                "ci_low": self.lo, "ci_high": self.hi, "reason": self.reason,
                "warnings": list(self.warnings)}


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def _cfg(batch, precision) -> str:
    return f"bs{batch} {precision}"


def _badness(v: float, best: float, higher: bool) -> float:
    return best / v if higher else v / best


def compiles(row: dict) -> bool:
    """Whether a cell's mode compiles before it steps: eager PyTorch (no torch.compile) and the
    numpy reference do not; tf.function traces a graph, jax.jit and Keras compile."""
    base = row.get("base_framework") or row.get("framework")
    settings = str(row.get("mode_settings") or "")
    if base == "numpy":
        return False
    if base == "pytorch":
        return "compile=" in settings and "compile=False" not in settings
    return True


def _words(asp: Aspect, d: decision.Decision, other: str) -> str:
    r = decision.interval_text(d)
    if asp.key in ("train", "server"):
        return f"{r} the {asp.short} of {other}"
    if asp.key == "memory":
        return f"{(1 - 1 / d.ratio) * 100:.0f}% less {asp.short} than {other} ({r})"
    return f"{r} lower {asp.short} than {other}"


def _memory_detail(rows: list[dict], both: list, leader: str, other: str) -> str | None:
    """CPU working memory against the whole-process peak RSS of the same two frameworks."""
    vals = [(c["host_peak_rss_bytes"], o["host_peak_rss_bytes"]) for c, o in
            ((_cell(rows, k, leader), _cell(rows, k, other)) for k in both)
            if c and o and c.get("host_peak_rss_bytes") and o.get("host_peak_rss_bytes")]
    if not vals:
        return None
    r = _geomean([a / b for a, b in vals])
    gb = lambda x: f"{x / 2 ** 20:.0f} MiB"  # noqa: E731
    a, b = vals[0]
    if r > 1:
        return (f"Whole-process peak RSS disagrees: {leader} {gb(a)} against {other} {gb(b)} "
                f"({r:.2f}x {leader}'s higher): {leader} needs less working memory but its "
                "process as a whole peaks higher (runtime and libraries).")
    return f"Whole-process peak RSS agrees: {leader} {gb(a)}, {other} {gb(b)}."


def _cell(rows: list[dict], key: tuple, fw: str) -> dict | None:
    return next((c for c in rows if (c["batch_size"], c["precision"]) == key
                 and c["framework"] == fw), None)


def _eager_note(rows: list[dict]) -> str | None:
    """'eager: no compilation: pytorch (first-step overhead 3 ms)': the first step's extra time
    (first step - median step) of the cells that do not compile, apart from the question."""
    eager: dict[str, list[float]] = {}
    for c in rows:
        if not compiles(c) and c.get("compile_s") is not None:
            eager.setdefault(c["framework"], []).append(c["compile_s"])
    if not eager:
        return None
    return "eager: no compilation: " + ", ".join(
        f"{fw} (first-step overhead {stats.median(v) * 1e3:.3g} ms)" for fw, v in sorted(
            eager.items())) + "."


def _prepare(model: str, device: str, asp: Aspect, rows: list[dict]
             ) -> "Recommendation | dict":
    """Everything up to the ratio's interval: a final Recommendation (nothing to compare), or
    the state _finish needs, whose ratio pairs are known before any interval is computed (so
    that all of them are bootstrapped in one vectorised call)."""
    note = None   # compile: the eager frameworks, apart from the question
    if asp.key == "compile":
        note = _eager_note(rows)
        rows = [c for c in rows if compiles(c)]
    data: dict[tuple, dict[str, dict]] = {}
    beyond = []   # server: competitors with no rate within the bound in most processes
    for c in rows:
        v = c.get(asp.value)
        if asp.key == "server" and v == 0:
            beyond.append(f"{c['framework']} ({_cfg(c['batch_size'], c['precision'])}: "
                          f"{c.get('server_met_bound') or 0} of "
                          f"{c.get('server_processes') or 0} processes)")
        if v is None or not v > 0:
            continue
        # a ratio needs positive values (a compile time can be 0: nothing to compile)
        reps = [x for x in (c.get(asp.repeats) or []) if x is not None and x > 0] or [v]
        data.setdefault((c["batch_size"], c["precision"]), {})[c["framework"]] = {
            "v": v, "reps": reps, "warn": decision.cell_warnings(c, asp.warn),
            "unmet": bound_not_met(c) if asp.key == "server" else None}
    if asp.key == "memory":  # name the figure the cells use
        figs = sorted({c.get("mem_figure_text") for c in rows if c.get("mem_figure_text")})
        asp = replace(asp, unit=" / ".join(figs) if figs else "memory")
    shared = {k: fws for k, fws in data.items() if len(fws) >= 2}
    fws_all = sorted({fw for fws in data.values() for fw in fws})

    def rec(text: str, reason: str, **kw) -> Recommendation:
        return Recommendation(model, device, asp.key, kw.pop("winner", None),
                              kw.pop("verdict", "nothing-to-compare"),
                              f"{text} {note}" if note else text, title=asp.title,
                              unit=asp.unit, reason=reason, details=tuple(
                                  kw.pop("details", ())) + beyond_note, **kw)

    beyond_note = (("Met the latency bound in too few processes (median 0 QPS within it), "
                    f"not ranked: {', '.join(beyond)}.",) if beyond else ())

    if not shared:
        why = (f"only {fws_all[0]} has {asp.unit} results" if len(fws_all) == 1 else
               "no configuration has results from two frameworks" if fws_all else
               ("no compiled mode was measured" if asp.key == "compile" and not rows else
                f"no {asp.unit} results"))
        return rec(f"Nothing to compare: {why}.", why)
    scores: dict[str, list[float]] = {}
    for fws in shared.values():
        best = (max if asp.higher_is_better else min)(d["v"] for d in fws.values())
        for fw, d in fws.items():
            scores.setdefault(fw, []).append(_badness(d["v"], best, asp.higher_is_better))
    ranked = sorted(scores, key=lambda fw: (_geomean(scores[fw]), fw))
    first, second = ranked[0], ranked[1]
    both = sorted((k for k, fws in shared.items() if first in fws and second in fws),
                  key=lambda k: (str(k[1]), k[0] or 0))
    if not both:
        why = f"{first} and {second} were never measured in the same configuration"
        return rec(f"No clear winner: {why}.", why, verdict="no-clear-winner", leader=first,
                   runner_up=second)
    pairs = [(tuple(shared[k][first]["reps"]), tuple(shared[k][second]["reps"])) for k in both]
    return {"asp": asp, "rows": rows, "rec": rec, "device": device, "shared": shared,
            "ranked": ranked, "both": both, "pairs": pairs}


def bound_not_met(cell: dict) -> str | None:
    """'bound not met: 1 of 3 processes ...' for a server cell where some processes found a
    rate within the latency bound and others none. Its per-process evidence holds a 0 (aggregate
    counts such a process as 0 QPS) that no ratio of medians can carry, and dropping it would
    bias the interval up: such a side voids the verdict (README: Serving)."""
    n, met = cell.get("server_processes") or 0, cell.get("server_met_bound") or 0
    if 0 < met < n:
        return (f"bound not met: {n - met} of {n} processes found no rate whose p99 stayed "
                f"within {cell.get('server_bound_ms') or 0:.4g} ms")
    return None


def _finish(st: dict, ratio, per_config: dict, settings: decision.Settings) -> Recommendation:
    asp, rows, rec, device = st["asp"], st["rows"], st["rec"], st["device"]
    shared, ranked, both, pairs = st["shared"], st["ranked"], st["both"], st["pairs"]
    first, second = ranked[0], ranked[1]
    raw_warn = [w for k in both for fw in (first, second) for w in shared[k][fw]["warn"]]
    d = decision.decide_ratio(ratio, higher_is_better=asp.higher_is_better, warnings=raw_warn,
                              settings=settings)
    unmet = [f"{fw} ({_cfg(*k)}): {shared[k][fw]['unmet']}" for k in both
             for fw in (first, second) if shared[k][fw].get("unmet")]
    if unmet:  # over any other reason (the per-process values it rests on lack the 0s),
        # naming the voiding warnings too (decide_ratio names them only after its own checks)
        void = decision.voiding(raw_warn)
        kinds = [k for k in decision.VOIDING if any(w.lower().startswith(k) for w in void)]
        d = replace(d, outcome="cannot tell",
                    reason=f"cannot tell: voided by {', '.join([*kinds, 'bound not met'])}")
    leader, other = (first, second) if d.leader != "b" else (second, first)
    warns = tuple(dict.fromkeys([*(f"{fw} ({_cfg(*k)}): {w}" for k in both
                                   for fw in (first, second) for w in shared[k][fw]["warn"]),
                                 *unmet]))
    kind = None if d.ci_low is None else ("95% CI of the ratio" if len(both) == 1 else
                                         f"95% CI of the geometric mean over {len(both)} "
                                         "configurations")
    details = [f"Configurations: {', '.join(_cfg(*k) for k in both)}."]
    if ranked[2:]:
        details.append(f"Also measured: {', '.join(ranked[2:])}.")
    if asp.key == "memory" and device == "cpu":
        m = _memory_detail(rows, both, leader, other)
        if m:
            details.append(m)
    reason = d.reason
    if d.outcome == "winner" and len(both) > 1:
        flips = []
        for k, pair in zip(both, pairs):
            dk = decision.decide_ratio(per_config.get(pair),
                                       higher_is_better=asp.higher_is_better,
                                       warnings=raw_warn, settings=settings)
            if dk.outcome == "winner" and dk.leader != d.leader:
                flips.append(_cfg(*k))
        if flips:
            reason = f"configurations disagree: {other} is ahead beyond the margin in " + \
                     ", ".join(flips)
            d = replace(d, outcome="unclear")
    common = dict(runner_up=other, ratio=d.ratio, lo=d.ci_low, hi=d.ci_high,
                  interval_kind=kind, warnings=warns, leader=leader, details=details)
    if d.outcome == "winner":
        return rec(f"{leader} {asp.verb}: {_words(asp, d, other)}.", reason,
                   winner=leader, verdict="clear", **common)
    return rec(f"No clear winner: {leader} leads {other} by {decision.interval_text(d)}; "
               f"{reason}.", reason, verdict="no-clear-winner", **common)


def _listing(pairs: set[tuple[str, str]]) -> str:
    by: dict[str, list[str]] = {}
    for fw, prec in sorted(pairs, key=lambda x: (str(x[0]), str(x[1]))):
        by.setdefault(str(fw), []).append(str(prec))
    return "; ".join(f"{fw} ({', '.join(precs)})" for fw, precs in by.items())


def recommend(cells: pl.DataFrame, verdicts=None,
              settings: decision.Settings | None = None) -> list[Recommendation]:
    """One recommendation per (model, device, aspect) that has ok results (energy only where
    measured). With `verdicts` (gate_verdicts.GateVerdicts), cells that failed the equivalence
    gate are left out of the ranking."""
    settings = settings or decision.Settings()
    ok = cells.filter(pl.col("ok_repeats") > 0)
    groups: dict[tuple[str, str], list[dict]] = {}
    failed: dict[tuple[str, str], set] = {}
    unchecked: dict[tuple[str, str], set] = {}
    for row in ok.iter_rows(named=True):
        key = (row["model_label"], row["device"])
        groups.setdefault(key, [])
        st = verdicts.status(row["framework"], row.get("gate_label") or row.get("model"),
                             row["device"], row["precision"]) if verdicts is not None else None
        if st == "fail":
            failed.setdefault(key, set()).add((row["framework"], row["precision"]))
            continue
        if st == "unchecked":
            unchecked.setdefault(key, set()).add((row["framework"], row["precision"]))
        groups[key].append(row)
    has_energy = "train_j_per_ksample" in cells.columns and \
        cells["train_j_per_ksample"].drop_nulls().len() > 0
    out: list[Recommendation] = []
    measured = {a.key for a in ASPECTS if a.key in SERVING and a.value in cells.columns
                and cells[a.value].drop_nulls().len() > 0}
    prepared = [(key, _prepare(*key, asp, groups[key])) for key in sorted(groups)
                for asp in ASPECTS if (asp.key != "energy" or has_energy)
                and (asp.key not in SERVING or asp.key in measured)]
    states = [st for _, st in prepared if isinstance(st, dict)]
    per_config: dict = {}  # each configuration's own ratio: configurations that disagree
    ratios = iter(stats.geomean_ratio_ci_many([st["pairs"] for st in states],
                                              pairs_out=per_config))
    for key, st in prepared:
        rec = _finish(st, next(ratios), per_config, settings) if isinstance(st, dict) else st
        extra = []
        if key in failed:
            extra.append("Not comparable (failed the equivalence gate), left out: "
                         f"{_listing(failed[key])}.")
        if key in unchecked:
            extra.append(f"Not checked by the equivalence gate: {_listing(unchecked[key])}.")
        out.append(replace(rec, details=rec.details + tuple(extra)) if extra else rec)
    return out

