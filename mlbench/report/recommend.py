"""Recommendations computed from the per-cell table (mlbench.aggregate.cells_frame).

Owns the judgement "who wins, by how much, and is it beyond the noise" for each model and device
and for four aspects: steady-state training throughput, compile time (first step - median step),
inference p50 latency, memory (the figure the cells name: working memory on the CPU, the
allocator's peak on accelerators), and the overall verdict built from them. Never canned text,
never imports an ML framework.
* a warning about the samples an aspect rests on (samples too short, spread too large, extreme
  values, busy machine) voids them: no winner, "no clear winner" with the warning as the reason,
  and the warning is repeated in the recommendation;
* every recommendation carries its ratio and interval (ratio, lo, hi: the 95% CI of the ratio
  for one shared configuration, the range of the per-configuration CIs for several; none for a
  single process, where the within-run spread is the guard and the text says so).

Method, per (model, device, aspect):
* a framework's score is the geometric mean, over the (batch, precision) configurations it shares
  with at least one other framework, of how far it is from the best framework there (1 = best);
  the lowest score wins, the next is the runner-up;
* the margin is the geometric mean of runner-up/winner over the configurations both measured;
* noise, per shared configuration: with >= 2 ok repeats on both sides, the ratio of the medians of
  the per-process values gets a bootstrap 95% interval (mlbench.stats.ratio_ci) and the difference
  counts only when that interval excludes 1 (significant). With a single repeat the difference
  counts only when it exceeds half the larger within-run relative IQR of the raw samples
  (memory: 2 %, compile time: 10 %), and the sentence says it is a single measurement that
  should not be over-read;
* "no clear winner" when no configuration shows a difference beyond the noise, or when the
  configurations disagree;
* with the equivalence gate (verify.json, gate_verdicts.GateVerdicts): a (framework, precision)
  that failed it is not comparable and cannot win or be ranked; the text says which were left
  out, and which were not checked by the gate (skipped / nothing to compare with: ranked, but
  "not checked by the equivalence gate").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import polars as pl

from .. import stats

MEMORY_SINGLE_BAND = 0.02


@dataclass(frozen=True)
class Aspect:
    key: str
    verb: str           # "<framework> <verb>"
    value: str          # cells_frame column with the headline value
    repeats: str        # cells_frame list column with per-repeat values
    spread: str | None  # within-run relative IQR column for single measurements
    higher_is_better: bool
    unit: str
    warn: str | None = None   # cells_frame list column of warnings that void these samples
    title: str = ""           # the verdict's row name


ASPECTS = (
    Aspect("train", "trains fastest (steady state)", "train_sps", "train_sps_r", "step_iqr_rel",
           True, "steady-state training samples/s", "warn_train", "fastest to train"),
    Aspect("compile", "compiles fastest", "compile_s", "compile_r", None, False,
           "compile time (first step - median step)", None, "fastest to compile"),
    Aspect("latency", "serves with the lowest latency", "lat_median", "lat_p50_r",
           "lat_iqr_rel", False, "inference p50 latency", "warn_latency", "lowest latency"),
    Aspect("memory", "uses the least memory", "mem_bytes", "mem_r", None, False,
           "memory", None, "least memory"),
)
SINGLE_BAND = {"memory": 0.02, "compile": 0.10}  # single process: differences within count 0


@dataclass(frozen=True)
class Recommendation:
    model: str
    device: str
    aspect: str
    winner: str | None
    verdict: str        # clear | single | no-clear-winner | nothing-to-compare
    text: str
    runner_up: str | None = None
    ratio: float | None = None     # > 1: how far ahead the leader is
    lo: float | None = None        # interval of the ratio (see interval_kind); None: none
    hi: float | None = None
    interval_kind: str | None = None
    warnings: tuple[str, ...] = ()  # warnings about the samples this rests on
    title: str = ""
    unit: str = ""                  # the figure compared (e.g. "working memory (...)")

    @property
    def ratio_text(self) -> str:
        """'1.50x [1.41-1.62]' (low-high around the ratio), or the ratio alone."""
        if self.ratio is None:
            return "–"
        if self.lo is None or self.hi is None:
            return f"{self.ratio:.2f}x"
        return f"{self.ratio:.2f}x [{self.lo:.2f}-{self.hi:.2f}]"


def _geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def _cfg(batch, precision) -> str:
    return f"bs{batch} {precision}"


def _badness(v: float, best: float, higher: bool) -> float:
    return best / v if higher else v / best


def _pair(asp: Aspect, w: dict, r: dict) -> tuple[tuple, tuple]:
    """The (a, b) of the ratio a / b that says how far ahead the winner is (> 1: winner
    better)."""
    a, b = (w["reps"], r["reps"]) if asp.higher_is_better else (r["reps"], w["reps"])
    return tuple(a), tuple(b)


class _Ratios:
    """Ratio intervals of all the (a, b) pairs the recommendations need, computed in one
    vectorised stats.ratio_ci_many call (same numbers as stats.ratio_ci pair by pair)."""

    def __init__(self, pairs):
        keys = list(dict.fromkeys(pairs))
        self._by = dict(zip(keys, stats.ratio_ci_many([(list(a), list(b)) for a, b in keys])))

    def get(self, asp: Aspect, w: dict, r: dict) -> "stats.Ratio | None":
        key = _pair(asp, w, r)
        if key not in self._by:  # not prefetched: compute it alone
            self._by[key] = stats.ratio_ci(list(key[0]), list(key[1]))
        return self._by[key]


def _judge(asp: Aspect, w: dict, r: dict, ratios: _Ratios) -> str:
    """'w', 'r' (beyond noise, favouring winner / runner-up) or '=' (within noise)."""
    rw, rr = w["reps"], r["reps"]
    if len(rw) >= 2 and len(rr) >= 2:
        rat = ratios.get(asp, w, r)
        if rat is None or not rat.significant:
            return "="
        return "w" if rat.lo > 1 else "r"
    band = SINGLE_BAND.get(asp.key, MEMORY_SINGLE_BAND) if asp.spread is None else max(
        (w["spread"] or 0.0), (r["spread"] or 0.0)) / 2
    ratio = _badness(r["v"], w["v"], asp.higher_is_better)  # > 1 when winner is better
    if abs(math.log(ratio)) <= math.log1p(band):
        return "="
    return "w" if ratio > 1 else "r"


def _margin_words(asp: Aspect, ratio: float, runner: str) -> str:
    if asp.key == "train":
        return f"{ratio:.2f}x the {asp.unit} of {runner}"
    if asp.key in ("latency", "compile"):
        return f"{asp.unit} {ratio:.2f}x lower than {runner}"
    return f"{(1 - 1 / ratio) * 100:.0f}% less {asp.unit} than {runner} ({ratio:.2f}x)"


def _prepare(model: str, device: str, asp: Aspect, rows: list[dict]
             ) -> "Recommendation | dict":
    """Everything up to the noise judgements: a final Recommendation, or the state _finish
    needs (whose ratio pairs are known before any interval is computed)."""
    data: dict[tuple, dict[str, dict]] = {}
    for c in rows:
        v = c.get(asp.value)
        if v is None or not v > 0:
            continue
        warn = [*(c.get(asp.warn) or [] if asp.warn else []), *(c.get("warn_all") or [])]
        data.setdefault((c["batch_size"], c["precision"]), {})[c["framework"]] = {
            "v": v, "reps": [x for x in (c.get(asp.repeats) or []) if x is not None],
            "spread": c.get(asp.spread) if asp.spread else None, "warn": warn}
    if asp.key == "memory":  # name the figure the cells use
        figs = sorted({c.get("mem_figure_text") for c in rows if c.get("mem_figure_text")})
        asp = replace(asp, unit=" / ".join(figs) if figs else "memory")
    shared = {k: fws for k, fws in data.items() if len(fws) >= 2}
    fws_all = sorted({fw for fws in data.values() for fw in fws})

    def rec(winner, verdict, text):
        return Recommendation(model, device, asp.key, winner, verdict, text, title=asp.title,
                              unit=asp.unit)

    if not shared:
        why = (f"only {fws_all[0]} has {asp.unit} results" if len(fws_all) == 1 else
               "no configuration has results from two frameworks" if fws_all else
               f"no {asp.unit} results")
        return rec(None, "nothing-to-compare", f"Nothing to compare for {asp.unit}: {why}.")
    scores: dict[str, list[float]] = {}
    for fws in shared.values():
        best = (max if asp.higher_is_better else min)(d["v"] for d in fws.values())
        for fw, d in fws.items():
            scores.setdefault(fw, []).append(_badness(d["v"], best, asp.higher_is_better))
    ranked = sorted(scores, key=lambda fw: (_geomean(scores[fw]), fw))
    winner, runner = ranked[0], ranked[1]
    both = sorted((k for k, fws in shared.items() if winner in fws and runner in fws),
                  key=lambda k: (str(k[1]), k[0] or 0))
    if not both:  # ranked from disjoint configurations: say so rather than invent a margin
        return rec(None, "no-clear-winner", f"No clear winner for {asp.unit}: {winner} and "
                   f"{runner} were never measured in the same configuration.")
    return {"model": model, "device": device, "asp": asp, "shared": shared, "ranked": ranked,
            "both": both}


def _needed(st: dict) -> list[tuple]:
    """The ratio pairs _finish will ask for."""
    asp, shared, both = st["asp"], st["shared"], st["both"]
    winner, runner = st["ranked"][0], st["ranked"][1]
    return [_pair(asp, shared[k][winner], shared[k][runner]) for k in both
            if len(shared[k][winner]["reps"]) >= 2 and len(shared[k][runner]["reps"]) >= 2]


def _finish(st: dict, ratios: _Ratios) -> Recommendation:
    model, device, asp = st["model"], st["device"], st["asp"]
    shared, ranked, both = st["shared"], st["ranked"], st["both"]
    winner, runner = ranked[0], ranked[1]
    ratio = _geomean([_badness(shared[k][runner]["v"], shared[k][winner]["v"],
                               asp.higher_is_better) for k in both])
    single = any(len(shared[k][fw]["reps"]) < 2 for k in both for fw in (winner, runner))
    cis = [] if single else [ratios.get(asp, shared[k][winner], shared[k][runner]) for k in both]
    cis = [r for r in cis if r is not None and r.has_ci]
    lo = hi = kind = None
    if cis and len(cis) == len(both):
        lo, hi = min(r.lo for r in cis), max(r.hi for r in cis)
        kind = ("95% CI of the ratio" if len(both) == 1 else
                f"range of the 95% CIs over {len(both)} configurations")
    warns = tuple(dict.fromkeys(f"{fw} ({_cfg(*k)}): {w}" for k in both for fw in (winner, runner)
                                for w in shared[k][fw]["warn"]))

    def rec(win, verdict, text):
        return Recommendation(model, device, asp.key, win, verdict, text, runner, ratio, lo, hi,
                              kind, warns, asp.title, asp.unit)

    calls = {k: _judge(asp, shared[k][winner], shared[k][runner], ratios) for k in both}
    nw = sum(1 for c in calls.values() if c == "w")
    nr = sum(1 for c in calls.values() if c == "r")
    where = (f"in {_cfg(*both[0])}" if len(both) == 1 else
             f"geometric mean over {len(both)} shared configurations")
    noise = ("half the within-run IQR of the raw samples" if single and asp.spread else
             f"a {SINGLE_BAND.get(asp.key, MEMORY_SINGLE_BAND):.0%} band" if single else
             "the noise (95% CI of the ratio excludes 1)")
    if lo is not None:
        where += f", {kind} {lo:.2f}-{hi:.2f}"
    caveat = (f" Single measurement (1 process): do not over-read it; {stats.REPEATS_ADVICE}."
              if single else "")
    void = (" Warnings about the samples: " + "; ".join(warns) + ".") if warns else ""
    if nr and nw:
        flips = ", ".join(_cfg(*k) for k, c in calls.items() if c == "r")
        return rec(None, "no-clear-winner",
                   f"No clear winner for {asp.unit}: {winner} leads overall ("
                   f"{_margin_words(asp, ratio, runner)}, {where}), but {runner} is ahead "
                   f"beyond noise in {flips}.{caveat}{void}")
    if not nw:
        within = ("within the noise: the 95% CIs of the ratio include 1" if not single
                  else f"within {noise}")
        return rec(None, "no-clear-winner",
                   f"No clear winner for {asp.unit}: {winner} and {runner} differ by "
                   f"{abs(ratio - 1) * 100:.1f}% ({where}), {within}.{caveat}{void}")
    if warns:  # the samples are void: never a winner on them
        return rec(None, "no-clear-winner",
                   f"No clear winner for {asp.unit}: {winner} leads ("
                   f"{_margin_words(asp, ratio, runner)}, {where}), but warnings void the "
                   "samples it rests on: " + "; ".join(warns) + "." + caveat)
    others = [fw for fw in ranked[2:]]
    tail = f" Also measured: {', '.join(others)}." if others else ""
    return rec(winner, "single" if single else "clear",
               f"{winner} {asp.verb}: {_margin_words(asp, ratio, runner)} ({where}); "
               f"{'significant' if not single else 'beyond ' + noise} in {nw} of {len(both)} "
               "configuration"
               f"{'s' if len(both) != 1 else ''}.{caveat}{tail}")


def _listing(pairs: set[tuple[str, str]]) -> str:
    by: dict[str, list[str]] = {}
    for fw, prec in sorted(pairs, key=lambda x: (str(x[0]), str(x[1]))):
        by.setdefault(str(fw), []).append(str(prec))
    return "; ".join(f"{fw} ({', '.join(precs)})" for fw, precs in by.items())


def recommend(cells: pl.DataFrame, verdicts=None) -> list[Recommendation]:
    """One recommendation per (model, device, aspect) that has ok results. With `verdicts`
    (gate_verdicts.GateVerdicts), cells that failed the equivalence gate are left out of the
    ranking."""
    ok = cells.filter(pl.col("ok_repeats") > 0)
    out: list[Recommendation] = []
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
    prepared = [_prepare(model, device, asp, groups[(model, device)])
                for (model, device) in sorted(groups) for asp in ASPECTS]
    ratios = _Ratios([p for st in prepared if isinstance(st, dict) for p in _needed(st)])
    for st in prepared:
        rec = st if isinstance(st, Recommendation) else _finish(st, ratios)
        key = (rec.model, rec.device)
        extra = ""
        if key in failed:
            extra += (" Not comparable (failed the equivalence gate), left out of the ranking: "
                      f"{_listing(failed[key])}.")
        if key in unchecked:
            extra += f" Not checked by the equivalence gate: {_listing(unchecked[key])}."
        out.append(replace(rec, text=rec.text + extra) if extra else rec)
    return out
