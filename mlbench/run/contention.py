"""Contention: how much of the machine other processes used while a cell ran, phase by phase.

Owns the parent's per-phase accounting (PhaseMeter: the launcher feeds it the worker's progress
messages and samples it with the memory sampler), the `contended: ...` warning sentences made
from an attempt record, the documented thresholds, and waiting for a quiet machine before a
retried cell (`on_contention: retry`).

"Other" CPU time of a phase = system-wide busy CPU time (psutil.cpu_times: user, nice, system,
irq, softirq, steal; steal is CPU the hypervisor gave to other guests, contention too) minus the
CPU time of the cell's process tree (the worker, its children, reaped children included) minus
mlbench's own process (the parent that measures), over the phase's wall time: "other cores
used". A cell pinned to `k` of `n` logical CPUs leaves `n - k` spare: only other use beyond the
spare cores competes with the cell for its own. Phases are the worker's progress messages
(workers/driver.py and workers/harness.py): data, build, train (first step, warm-up),
train_steady (the timed blocks), evaluate, inference (warm-up, calibration), inference_steady
(the timed samples); a phase entered twice (more steady blocks after `evaluate`) accumulates.
Must not import any ML framework.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import psutil

# A steady phase is contended when other processes used at least this many cores beyond the
# cores the cell leaves spare. A quarter core is far above a quiet machine's background (about
# 0.02 core here) and below what stalls spin-waiting thread pools (the issue saw a 21x slowdown
# of PyTorch's OpenMP threads beside one busy process).
CONTENDED_CORES = 0.25
# A steady phase shorter than this is not judged on CPU time: clock ticks (10 ms) dominate.
MIN_JUDGED_WALL_S = 0.2
# Second signal: the steady-state median step time this many times the warm-up steps' median
# (warm-up steps are synced one by one, so they are never faster than the steady blocks' steps
# on a quiet machine; their median needs MIN_WARMUP_STEPS steps).
SLOWDOWN_FACTOR = 3.0
MIN_WARMUP_STEPS = 3
# on_contention: retry waits (at most QUIET_WAIT_S) until others use fewer than QUIET_CORES
# beyond the spare ones over a QUIET_WINDOW_S window, then reruns the cell once.
QUIET_CORES = CONTENDED_CORES
QUIET_WINDOW_S = 1.0
QUIET_WAIT_S = 30.0
STEADY = {"train_steady": "the steady state of training",
          "inference_steady": "the timed inference"}
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def busy_cpu_s() -> float:
    """System-wide busy CPU seconds since boot (guest time is already inside user)."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in BUSY_FIELDS)


def own_cpu_s() -> float:
    """mlbench's own CPU seconds (this process, all its threads; not its children)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


class TreeCpu:
    """CPU seconds of a process tree. Every process ever seen keeps its last reading, so a
    child that exits between samples is not lost (its time would otherwise read as another
    process's); a child reaped by a live parent is then counted in both (erring towards less
    "other" time: a missed contention, never a false alarm)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.seen: dict[int, float] = {}
        try:
            self.root = psutil.Process(pid)
        except psutil.Error:
            self.root = None

    def total(self) -> float:
        if self.root is not None:
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                self.seen[p.pid] = max(self.seen.get(p.pid, 0.0), t.user + t.system
                                       + t.children_user + t.children_system)
        return sum(self.seen.values())


class PhaseMeter:
    """Per-phase wall time and other processes' CPU time of one worker's run.

    `see(msg)` at every protocol message (a progress message opens its phase, a final message
    closes the last one), `sample()` every sampling period (keeps the tree's readings fresh),
    `summary()` at the end. The readers are injectable for tests."""

    def __init__(self, pid: int, clock: Callable[[], float] = time.monotonic,
                 busy: Callable[[], float] = busy_cpu_s, own: Callable[[], float] = own_cpu_s,
                 tree: Callable[[], float] | None = None, cores: int | None = None):
        self.clock, self.busy, self.own = clock, busy, own
        self.tree = tree or TreeCpu(pid).total
        self.cores = cores or psutil.cpu_count() or os.cpu_count() or 1
        self.phases: dict[str, dict] = {}
        self.current: str | None = "startup"
        self.mark = self._read()

    def _read(self) -> tuple[float, float]:
        """(wall clock, other CPU seconds so far): busy minus the tree's minus our own."""
        return self.clock(), self.busy() - self.tree() - self.own()

    def _close(self) -> None:
        now = self._read()
        if self.current is not None:
            p = self.phases.setdefault(self.current, {"wall_s": 0.0, "other_cpu_s": 0.0})
            p["wall_s"] += now[0] - self.mark[0]
            p["other_cpu_s"] += max(0.0, now[1] - self.mark[1])
        self.mark = now

    def phase(self, name: str) -> None:
        if name != self.current:
            self._close()
            self.current = name

    def see(self, msg: dict) -> None:
        if msg.get("type") == "progress" and isinstance(msg.get("phase"), str):
            self.phase(msg["phase"])
        elif msg.get("type") in ("result", "skip", "error") and self.current is not None:
            self._close()
            self.current = None

    def sample(self) -> None:
        self.tree()

    def summary(self, cell_cores: int | None) -> dict:
        """{phase: {wall_s, other_cpu_s, other_cores, cores_available, cell_cores}}."""
        if self.current is not None:
            self._close()
            self.current = None
        return {name: {"wall_s": p["wall_s"], "other_cpu_s": p["other_cpu_s"],
                       "other_cores": p["other_cpu_s"] / p["wall_s"] if p["wall_s"] > 0 else 0.0,
                       "cores_available": self.cores, "cell_cores": cell_cores}
                for name, p in self.phases.items()}


def cell_cores(hello: dict | None, threads: int, cores: int) -> int:
    """The CPUs the cell may use: its pinned set (CPU cells), else its thread count."""
    aff = (hello or {}).get("cpu_affinity")
    if isinstance(aff, list) and aff:
        return len(aff)
    return max(1, min(threads or cores, cores))


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def excess_cores(phase: dict) -> float | None:
    """Other cores used beyond the spare ones in one phase's figures (None: not judged)."""
    other, wall = _num(phase.get("other_cores")), _num(phase.get("wall_s"))
    avail = _num(phase.get("cores_available"))
    if other is None or wall is None or avail is None or wall < MIN_JUDGED_WALL_S:
        return None
    mine = _num(phase.get("cell_cores")) or avail
    return other - max(0.0, avail - mine)


def cpu_warnings(contention) -> list[str]:
    """One sentence for the steady phases of one attempt that shared the machine."""
    if not isinstance(contention, dict):
        return []
    hit = []
    for name, what in STEADY.items():
        p = contention.get(name)
        excess = excess_cores(p) if isinstance(p, dict) else None
        if excess is not None and excess >= CONTENDED_CORES:
            hit.append((p, what))
    if not hit:
        return []
    (p, what), rest = hit[0], hit[1:]
    avail, mine = int(p["cores_available"]), _num(p.get("cell_cores"))
    spare = f" (the cell was pinned to {mine:.0f})" if mine and mine < avail else ""
    more = "".join(f", {q['other_cores']:.1f} during {w}" for q, w in rest)
    return [f"contended: other processes used {p['other_cores']:.1f} of {avail} cores during "
            f"{what}{more}{spare}"]


def slowdown_warning(train) -> list[str]:
    """The steady state far slower than the warm-up: something took the cores mid-cell."""
    if not isinstance(train, dict):
        return []
    warm = [v for v in map(_num, train.get("warmup_step_times_s") or []) if v and v > 0]
    steady = [v for v in map(_num, train.get("step_times_s") or []) if v and v > 0]
    if len(warm) < MIN_WARMUP_STEPS or not steady:
        return []
    w, s = statistics.median(warm), statistics.median(steady)
    if s < SLOWDOWN_FACTOR * w:
        return []
    return [f"contended: steady-state steps took {s / w:.1f}x the warm-up steps' median "
            f"({s * 1e3:.3g} ms vs {w * 1e3:.3g} ms)"]


def gpu_warnings(gpu, device) -> list[str]:
    g = gpu if isinstance(gpu, dict) else {}
    others = g.get("other_processes")
    if isinstance(others, list) and others:
        return [f"contended: {len(others)} other compute process(es) on {device} while the "
                "cell ran"]
    return []


def warnings(record: dict) -> list[str]:
    """Every `contended: ...` sentence of one attempt record, tagged with its repeat."""
    if not isinstance(record, dict) or record.get("status") != "ok":
        return []
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    out = (cpu_warnings(record.get("contention")) + slowdown_warning(metrics.get("train"))
           + gpu_warnings(record.get("gpu"), record.get("device")))
    rep = record.get("repeat")
    tag = f" (repeat {rep})" if isinstance(rep, int) and not isinstance(rep, bool) else ""
    return [w + tag for w in out]


def is_contended(record: dict) -> bool:
    return bool(warnings(record))


def wait_for_quiet(cell_cores_: int, bound_s: float = QUIET_WAIT_S,
                   window_s: float = QUIET_WINDOW_S) -> tuple[bool, float, float]:
    """Wait until other processes use fewer than QUIET_CORES beyond the cores a cell of
    `cell_cores_` leaves spare, over one window; at most `bound_s`. (quiet, waited s, last
    other cores): a retry that found no quiet still runs, and its record says so."""
    cores = psutil.cpu_count() or 1
    spare = max(0, cores - cell_cores_)
    t0 = time.monotonic()
    other = 0.0
    while True:
        b0, o0, w0 = busy_cpu_s(), own_cpu_s(), time.monotonic()
        time.sleep(window_s)
        other = max(0.0, (busy_cpu_s() - b0) - (own_cpu_s() - o0)) / (time.monotonic() - w0)
        waited = time.monotonic() - t0
        if other - spare < QUIET_CORES:
            return True, waited, other
        if waited >= bound_s:
            return False, waited, other
