"""Statistics of repeated measurements: bootstrap confidence intervals, ratios, pyperf-like
warnings, and how many repeats a stable answer needs.

Owns the numeric rules every judgement of noise in mlbench uses (aggregate, report, compare).
The unit of evidence is the *process*: `repeats: N` runs a cell in N fresh processes, and the
confidence interval is a bootstrap over the N per-process values (median throughput or median
latency of each process). Raw samples within one process are correlated (same memory layout, same
JIT decisions, same thermal state) and say nothing about the next process, so with one repeat
there is no interval: the cell is labelled "single process" and its judgements fall back to the
within-process spread, saying so (like pyperf, which also refuses to infer run-to-run noise from
one run).

Every ratio's interval (ratio_ci, ratio_ci_many, geomean_ratio_ci_many) is the percentile
bootstrap widened to Welch's t interval on the logs where that is wider (welch_log_interval says
why: the bootstrap of 3 processes is their range, too narrow to decide on).

numpy, and scipy.special for the t quantile (imported on first use); never imports an ML framework,
polars, plotly or any other mlbench module (the per-cell warnings of records live in
mlbench.results.aggregate.warnings_by_cell: no import cycle).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95
SEED = 20240601          # fixed: the same data always gives the same interval
UNSTABLE_CV = 0.10       # pyperf: "the standard deviation is >= 10% of the mean"
EXTREME_IQR = 3.0        # a raw sample beyond Q1 - 3 IQR or Q3 + 3 IQR ...
EXTREME_MIN_REL = 0.10   # ... and at least 10% from the median (IQR 0 would flag any jitter)
EXTREME_MAX_SHARE = 0.05  # warn when more than 5% of the raw samples are extreme
EXTREME_FACTOR = 5.0     # ... or when any one is 5x the median or more
SHORT_SAMPLE_S = 1e-3    # pyperf: values under 1 ms are dominated by timer and dispatch costs
TARGET_REL_HALFWIDTH = 0.05  # "how many repeats": for a +-5% interval at 95%
BUSY_LOAD_PER_CORE = 0.5  # loadavg_1m above half the logical cores before a cell: busy machine
BUSY_CPU_PCT = 20.0       # or, when recorded, other processes' CPU use above 20%
BUSY_GPU_UTIL_PCT = 10.0  # a GPU already this busy, or running other compute processes
# the one piece of advice on repeats every text gives (2 processes are the minimum for an
# interval; 3 make a 95% percentile-bootstrap interval of the median worth reading)
REPEATS_ADVICE = "run with repeats: 3 or more (each repeat is a fresh process)"


def _arr(values) -> np.ndarray:
    a = np.asarray([v for v in (values if values is not None else [])
                    if v is not None and isinstance(v, (int, float)) and math.isfinite(v)],
                   dtype=np.float64)
    return a


def median(values) -> float | None:
    """The one median of mlbench: float(np.median(a)) for finite values, bit for bit, without
    numpy's per-call overhead (the middle value, or the mean of the two middle values); None
    when there are none. Any sequence or 1-D array."""
    s = sorted(values.tolist() if isinstance(values, np.ndarray) else values)
    n = len(s)
    if not n:
        return None
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2



def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(SEED if seed is None else seed)


def _last_axis_medians(x: np.ndarray) -> np.ndarray:
    """np.median(x, axis=-1), bit for bit (the middle value, or the mean of the two middle
    ones), by one sort of the short last axis: np.median's per-call cost dominated the
    bootstrap of a few processes."""
    s = np.sort(x, axis=-1)
    n = x.shape[-1]
    return s[..., n // 2] if n % 2 else (s[..., n // 2 - 1] + s[..., n // 2]) / 2


def _boot_medians(a: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    return _last_axis_medians(a[idx])


def bootstrap_median_ci(values, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                        seed: int | None = None) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the median of per-process values; None under 2 values.
    With 3 values the 95% interval is their range: that is what 3 processes can tell."""
    a = _arr(values)
    if len(a) < 2:
        return None
    meds = _boot_medians(a, _rng(seed), n_boot)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(meds, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _plan_medians(data: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """np.median(data[:, plan], axis=2) (cells x n_boot) without materialising the
    cells x n_boot x n resamples, with bit-identical results.

    The median of a resample is an order statistic of it (or the mean of the two middle ones),
    and the order statistics of data[c, plan[b]] are sorted(data[c])[sorted(rank_c[plan[b]])],
    where rank_c is the position of each value in the stable sort of cell c. Cells with the same
    rank permutation share one rank-mapped plan, so the work per permutation is one small sort
    of the plan and per cell one gather. Falls back to the direct form when there are too many
    distinct permutations (many repeats, every cell ordered differently)."""
    m, n = data.shape
    order = np.argsort(data, axis=1, kind="stable")
    perms, inverse = np.unique(order, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if len(perms) > 256 and len(perms) * 4 > m:
        return np.median(data[:, plan], axis=2)
    sd = np.take_along_axis(data, order, axis=1)
    out = np.empty((m, plan.shape[0]), dtype=np.float64)
    half = n // 2
    for p, perm in enumerate(perms):
        rows = np.flatnonzero(inverse == p)
        rank = np.empty(n, dtype=np.intp)
        rank[perm] = np.arange(n)
        sp = np.sort(rank[plan], axis=1)
        block = sd[rows]
        if n % 2:
            out[rows] = block[:, sp[:, half]]
        else:
            out[rows] = (block[:, sp[:, half - 1]] + block[:, sp[:, half]]) / 2
    return out


def _by_length(arrays: list) -> dict[int, list[int]]:
    """Indices of the arrays with at least 2 values, grouped by length (one numpy call each)."""
    by_n: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        if len(a) >= 2:
            by_n.setdefault(len(a), []).append(i)
    return by_n


def bootstrap_median_ci_many(values_per_cell: list, n_boot: int = N_BOOT,
                             confidence: float = CONFIDENCE, seed: int | None = None) -> list:
    """bootstrap_median_ci for many cells at once (cells with the same number of values share
    one resampling plan: vectorised, and still a valid interval for each). Cells with fewer than
    2 values get None without any resampling."""
    arrays = [_arr(v) for v in values_per_cell]
    out: list = [None] * len(arrays)
    by_n = _by_length(arrays)
    alpha = (1 - confidence) / 2
    for n, idxs in by_n.items():
        rng = _rng(seed)
        plan = rng.integers(0, n, size=(n_boot, n))
        data = np.stack([arrays[i] for i in idxs])          # cells x n
        meds = _plan_medians(data, plan)                    # cells x n_boot
        qs = np.quantile(meds, [alpha, 1 - alpha], axis=1)  # 2 x cells
        for j, i in enumerate(idxs):
            out[i] = (float(qs[0, j]), float(qs[1, j]))
    return out


@dataclass(frozen=True)
class Ratio:
    """a / b of the medians of per-process values, with its bootstrap interval."""
    ratio: float
    lo: float | None
    hi: float | None
    n_a: int
    n_b: int

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def significant(self) -> bool | None:
        """The interval excludes 1; None when there is no interval (a single process)."""
        if not self.has_ci:
            return None
        return self.lo > 1.0 or self.hi < 1.0

    def text(self, digits: int = 2) -> str:
        if not self.has_ci:
            return f"{self.ratio:.{digits}f}x (single process, no CI)"
        return f"{self.ratio:.{digits}f}x [95% CI {self.lo:.{digits}f}–{self.hi:.{digits}f}]"


def _t_quantile(p: float, df):
    """Student's t quantile (scipy.special.stdtrit; imported on first use: 0.3 s)."""
    from scipy.special import stdtrit
    return stdtrit(df, p)


def welch_log_interval(pairs: list, confidence: float = CONFIDENCE
                       ) -> tuple[float, float] | None:
    """Welch's t interval of the geometric-mean ratio a / b over one or more (a, b) pairs of
    per-process values, taken on their logarithms: exp(L -+ t * se) with L the mean over pairs
    of mean(log a) - mean(log b), se from each side's own variance, and Welch-Satterthwaite's
    degrees of freedom. None when a side has fewer than 2 values or a value is not positive.

    Why beside the bootstrap: with 3 processes a side, the percentile bootstrap of a median is
    the range of the values, so whenever all three of one run happen to beat all three of the
    other (about 1 in 20 per direction for the same distribution) its interval excludes 1:
    it is too narrow at the sizes mlbench runs by default. The t interval widens with the
    spread it sees and the few degrees of freedom it has."""
    k = len(pairs)
    if not k:
        return None
    centre, var, parts = 0.0, 0.0, []
    for a, b in pairs:
        xa, xb = _arr(a), _arr(b)
        if len(xa) < 2 or len(xb) < 2 or (xa <= 0).any() or (xb <= 0).any():
            return None
        la, lb = np.log(xa), np.log(xb)
        centre += float(la.mean() - lb.mean()) / k
        for x in (la, lb):
            v = float(x.var(ddof=1)) / len(x) / k ** 2
            var += v
            parts.append((v, len(x) - 1))
    if var <= 0:
        return math.exp(centre), math.exp(centre)
    df = var ** 2 / sum(v * v / d for v, d in parts if v > 0)
    half = float(_t_quantile(0.5 + confidence / 2, df)) * math.sqrt(var)
    return math.exp(centre - half), math.exp(centre + half)


def _honest(r: Ratio, pairs: list, confidence: float) -> Ratio:
    """r with its bootstrap interval widened to Welch's log-t interval over the same pairs
    (the wider of the two at each end): the one interval every decision of mlbench uses."""
    w = welch_log_interval(pairs, confidence)
    if w is None or not r.has_ci:
        return r
    return Ratio(r.ratio, min(r.lo, w[0]), max(r.hi, w[1]), r.n_a, r.n_b)


def ratio_ci(a, b, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
             seed: int | None = None) -> Ratio | None:
    """Ratio of medians median(a) / median(b), both resampled independently. No interval when
    either side has fewer than 2 processes; None when either side is empty or b's median <= 0."""
    xa, xb = _arr(a), _arr(b)
    if not len(xa) or not len(xb):
        return None
    ma, mb = float(np.median(xa)), float(np.median(xb))
    if mb <= 0 or ma <= 0:
        return None
    if len(xa) < 2 or len(xb) < 2:
        return Ratio(ma / mb, None, None, len(xa), len(xb))
    rng = _rng(seed)
    r = _boot_medians(xa, rng, n_boot) / _boot_medians(xb, rng, n_boot)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(r, [alpha, 1 - alpha])
    return _honest(Ratio(ma / mb, float(lo), float(hi), len(xa), len(xb)), [(xa, xb)],
                   confidence)


_RATIO_CACHE: dict = {}   # (a, b, n_boot, confidence, seed) -> Ratio: the comparison table
_RATIO_CACHE_MAX = 100_000  # and the recommendations ask for many of the same pairs


def ratio_ci_many(pairs: list, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                  seed: int | None = None) -> list:
    """ratio_ci for many (a, b) pairs at once: pairs with the same sizes share one resampling
    plan (vectorised). None where ratio_ci would give None. Intervals are remembered (bounded
    cache keyed by the values), so a pair asked for again costs nothing."""
    out: list = [None] * len(pairs)
    groups: dict[tuple[int, int], list[int]] = {}
    arrs = [(_arr(a), _arr(b)) for a, b in pairs]
    keys: list = [None] * len(pairs)
    for i, (xa, xb) in enumerate(arrs):
        if not len(xa) or not len(xb):
            continue
        ma, mb = median(xa), median(xb)
        if ma <= 0 or mb <= 0:
            continue
        if len(xa) < 2 or len(xb) < 2:
            out[i] = Ratio(ma / mb, None, None, len(xa), len(xb))
            continue
        keys[i] = (tuple(xa.tolist()), tuple(xb.tolist()), n_boot, confidence, seed)
        hit = _RATIO_CACHE.get(keys[i])
        if hit is not None:
            out[i] = hit
        else:
            groups.setdefault((len(xa), len(xb)), []).append(i)
    alpha = (1 - confidence) / 2
    if len(_RATIO_CACHE) > _RATIO_CACHE_MAX:
        _RATIO_CACHE.clear()
    for (na, nb), idxs in groups.items():
        rng = _rng(seed)
        pa, pb = rng.integers(0, na, size=(n_boot, na)), rng.integers(0, nb, size=(n_boot, nb))
        A = np.stack([arrs[i][0] for i in idxs])
        B = np.stack([arrs[i][1] for i in idxs])
        r = _plan_medians(A, pa) / _plan_medians(B, pb)
        qs = np.quantile(r, [alpha, 1 - alpha], axis=1)
        for j, i in enumerate(idxs):
            xa, xb = arrs[i]
            out[i] = _RATIO_CACHE[keys[i]] = _honest(
                Ratio(median(xa) / median(xb), float(qs[0, j]), float(qs[1, j]), na, nb),
                [(xa, xb)], confidence)
    return out


def geomean_ratio_ci(pairs: list, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                     seed: int | None = None) -> Ratio | None:
    """The geometric mean over several (a, b) pairs (one per shared configuration) of the ratio
    of medians a / b, with a percentile-bootstrap interval: each bootstrap replicate resamples
    every pair's processes and takes the geometric mean of the replicate ratios. Pairs of the
    same sizes share one plan per side, as in ratio_ci_many (the same repeat indices: repeat r
    of every cell runs in the same interleaved round, so what a round's machine state did to one
    configuration it did to the others; kept, not averaged away). One pair gives exactly
    ratio_ci_many's interval. n_a / n_b: the fewest processes of any pair's side. None when any
    pair has no ratio; no interval when any side has fewer than 2 processes."""
    return geomean_ratio_ci_many([pairs], n_boot, confidence, seed)[0]


def geomean_ratio_ci_many(pair_lists: list, n_boot: int = N_BOOT,
                          confidence: float = CONFIDENCE, seed: int | None = None,
                          pairs_out: dict | None = None) -> list:
    """geomean_ratio_ci for many lists of pairs at once: every pair of the same sizes, in any
    list, in one vectorised median per side (one plan per size, seeded alone as in
    ratio_ci_many, so an answer never depends on what else is asked). `pairs_out`, when given,
    receives each bootstrapped pair's own Ratio ((tuple(a), tuple(b)) -> Ratio, the interval
    ratio_ci_many gives) from the same replicates, at the cost of one quantile."""
    out: list = [None] * len(pair_lists)
    arrs = [[(_arr(a), _arr(b)) for a, b in pairs] for pairs in pair_lists]
    live: list[int] = []
    heads: dict[int, tuple] = {}
    for i, ps in enumerate(arrs):
        if not ps or any(not len(xa) or not len(xb) for xa, xb in ps):
            continue
        meds = [(median(xa), median(xb)) for xa, xb in ps]
        if any(ma <= 0 or mb <= 0 for ma, mb in meds):
            continue
        point = math.exp(sum(math.log(ma / mb) for ma, mb in meds) / len(meds))
        na, nb = min(len(xa) for xa, _ in ps), min(len(xb) for _, xb in ps)
        if na < 2 or nb < 2:
            out[i] = Ratio(point, None, None, na, nb)
            continue
        live.append(i)
        heads[i] = (point, na, nb)
    if not live:
        return out
    row = {i: k for k, i in enumerate(live)}
    logs = np.zeros((len(live), n_boot))
    groups: dict[tuple[int, int], list[tuple]] = {}
    for i in live:
        for xa, xb in arrs[i]:
            groups.setdefault((len(xa), len(xb)), []).append((row[i], xa, xb))
    for (na, nb), items in groups.items():
        rng = _rng(seed)
        pa, pb = rng.integers(0, na, size=(n_boot, na)), rng.integers(0, nb, size=(n_boot, nb))
        r = (_plan_medians(np.stack([x[1] for x in items]), pa)
             / _plan_medians(np.stack([x[2] for x in items]), pb))
        with np.errstate(divide="ignore"):  # a process at 0 (max QPS 0): log 0 = -inf, kept
            np.add.at(logs, [x[0] for x in items], np.log(r))
        if pairs_out is not None:
            q = np.quantile(r, [(1 - confidence) / 2, (1 + confidence) / 2], axis=1)
            for j, (_, xa, xb) in enumerate(items):
                pairs_out[(tuple(xa.tolist()), tuple(xb.tolist()))] = _honest(Ratio(
                    median(xa) / median(xb), float(q[0, j]), float(q[1, j]), na, nb),
                    [(xa, xb)], confidence)
    counts = np.array([len(arrs[i]) for i in live], dtype=np.float64)[:, None]
    alpha = (1 - confidence) / 2
    qs = np.quantile(np.exp(logs / counts), [alpha, 1 - alpha], axis=1)
    for k, i in enumerate(live):
        point, na, nb = heads[i]
        out[i] = _honest(Ratio(point, float(qs[0, k]), float(qs[1, k]), na, nb), arrs[i],
                         confidence)
    return out


def cv(values) -> float | None:
    """Relative spread between processes: sample standard deviation / mean (pyperf's figure)."""
    a = _arr(values)
    if len(a) < 2 or a.mean() <= 0:
        return None
    return float(a.std(ddof=1) / a.mean())


def cv_many(values_per_cell: list) -> list:
    """cv for many cells at once (cells with the same number of values in one numpy call);
    bit-identical to cv, which reduces each 1-D array the same way."""
    arrays = [_arr(v) for v in values_per_cell]
    out: list = [None] * len(arrays)
    by_n = _by_length(arrays)
    for idxs in by_n.values():
        data = np.stack([arrays[i] for i in idxs])
        mean = data.mean(axis=1)
        sd = data.std(axis=1, ddof=1)
        for j, i in enumerate(idxs):
            if mean[j] > 0:
                out[i] = float(sd[j] / mean[j])
    return out


def repeats_needed(cv_value: float | None, target: float = TARGET_REL_HALFWIDTH,
                   confidence: float = CONFIDENCE) -> int | None:
    """Processes needed for a +-target interval: n = (z * cv / target)^2 (normal approximation
    for the mean; the median needs about 1.25x more for normal data), at least 2."""
    if cv_value is None or not math.isfinite(cv_value):
        return None
    z = _z(confidence)
    return max(2, math.ceil((z * cv_value / target) ** 2))


def _z(confidence: float) -> float:
    from statistics import NormalDist
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def extremes(samples) -> tuple[int, float | None]:
    """(how many raw samples are extreme, the largest sample / median). Extreme: beyond
    Q1 - 3 IQR or Q3 + 3 IQR and at least 10% away from the median."""
    a = _arr(samples)
    if len(a) < 4:
        return 0, None
    q1, med, q3 = np.quantile(a, [0.25, 0.5, 0.75])
    if med <= 0:
        return 0, None
    iqr = q3 - q1
    far = np.abs(a - med) >= EXTREME_MIN_REL * med
    n = int(np.sum(((a > q3 + EXTREME_IQR * iqr) | (a < q1 - EXTREME_IQR * iqr)) & far))
    return n, float(a.max() / med)


def _fmt_s(s: float) -> str:
    """A sample under 1 ms (the only ones `judge_from` names), in µs."""
    return f"{s * 1e6:.3g} µs"


def judge(*, train_r=None, lat_r=None, step_median: float | None = None,
          lat_median: float | None = None, step_extreme: int = 0, step_n: int = 0,
          step_max_rel: float | None = None, lat_extreme: int = 0, lat_n: int = 0,
          lat_max_rel: float | None = None, ok_repeats: int = 0) -> list[str]:
    """Instability warnings of one cell, as sentences (pyperf's checks, per process and across
    processes). train_r / lat_r: per-process training throughput / p50 latency. A single process
    is not a warning here: the cell's ci_basis says "single process" instead."""
    return judge_from(train_cv=cv(train_r), train_k=len(_arr(train_r)), lat_cv=cv(lat_r),
                      lat_k=len(_arr(lat_r)), step_median=step_median, lat_median=lat_median,
                      step_extreme=step_extreme, step_n=step_n, step_max_rel=step_max_rel,
                      lat_extreme=lat_extreme, lat_n=lat_n, lat_max_rel=lat_max_rel)


def judge_from(*, train_cv: float | None, train_k: int, lat_cv: float | None, lat_k: int,
               step_median: float | None = None, lat_median: float | None = None,
               step_extreme: int = 0, step_n: int = 0, step_max_rel: float | None = None,
               lat_extreme: int = 0, lat_n: int = 0, lat_max_rel: float | None = None
               ) -> list[str]:
    """judge with the per-process spreads already computed (cv / cv_many) and the number of
    processes behind each (train_k, lat_k): what aggregate uses for all cells at once."""
    out: list[str] = []
    for what, c, k in (("training throughput", train_cv, train_k),
                       ("inference p50 latency", lat_cv, lat_k)):
        if c is not None and c >= UNSTABLE_CV:
            n = repeats_needed(c)
            out.append(f"unstable {what}: std is {c:.0%} of the mean over {k} "
                       f"processes (>= {UNSTABLE_CV:.0%}); about {n} repeats would give a "
                       f"±{TARGET_REL_HALFWIDTH:.0%} interval")
    far = []
    for what, ext, n, mx in (("step times", step_extreme, step_n, step_max_rel),
                             ("inference latencies", lat_extreme, lat_n, lat_max_rel)):
        if n and ext and (ext > EXTREME_MAX_SHARE * n or (mx or 0) >= EXTREME_FACTOR):
            far.append(f"{ext} of {n} {what}" + (f" (max {mx:.1f}× the median)" if mx else ""))
    if far:
        out.append(f"extreme values beyond Q1/Q3 ± {EXTREME_IQR:g}×IQR: " + "; ".join(far))
    short = [f"{what} {_fmt_s(med)}" for what, med in (("training step", step_median),
                                                       ("inference batch", lat_median))
             if med is not None and 0 < med < SHORT_SAMPLE_S]
    if short:
        out.append("samples too short (median under 1 ms, timer and dispatch overheads weigh "
                   "in; use a larger batch or model): " + ", ".join(short))
    return out


def busy_warnings(machine_before, device_before, device: str | None,
                  own_threads: int = 0) -> list[str]:
    """'Busy machine / busy device' sentences from what the launcher recorded before a cell.
    machine_before: {loadavg_1m, cores_logical, cpu_busy_pct?}; device_before:
    gpu_sampling.device_state. loadavg_1m decays over about a minute, so right after a cell it still
    carries that cell's worker (up to `own_threads` runnable threads, the CPUs a cell is pinned to):
    only the load beyond that counts. cpu_busy_pct (CPU use sampled just before the start, when no
    worker of ours runs) is the sharper figure and wins when recorded."""
    out: list[str] = []
    m = machine_before if isinstance(machine_before, dict) else {}
    busy_pct = m.get("cpu_busy_pct")
    if isinstance(busy_pct, (int, float)) and not isinstance(busy_pct, bool):
        if busy_pct >= BUSY_CPU_PCT:
            out.append(f"busy machine: CPU {busy_pct:.0f}% used just before the cell")
    else:
        load, cores = m.get("loadavg_1m"), m.get("cores_logical")
        if isinstance(load, (int, float)) and isinstance(cores, int) and cores > 0 \
                and load - own_threads > BUSY_LOAD_PER_CORE * cores:
            out.append(f"busy machine: 1-min load average {load:.2f} on {cores} logical cores "
                       "before the cell" + (f" (beyond the {own_threads} threads of our own "
                                            "previous cell)" if own_threads else ""))
    d = device_before if isinstance(device_before, dict) else {}
    if device and device != "cpu" and d:
        others = [p for p in (d.get("processes") or []) if isinstance(p, dict)]
        util = d.get("utilization_gpu_pct")
        if others:
            mem = sum(p.get("used_memory_bytes") or 0 for p in others)
            out.append(f"busy device: {len(others)} other compute process(es) on {device} "
                       f"({mem / 2 ** 20:.0f} MiB) before the cell")
        if isinstance(util, (int, float)) and util >= BUSY_GPU_UTIL_PCT:
            out.append(f"busy device: {device} at {util:.0f}% utilisation before the cell")
    return out
