"""Energy per GPU cell, measured by the parent: joules per training step, per 1,000 training
samples and per inference call.

Owns reading NVML's total-energy counter (mlbench.host.gpu_sampling.energy_mj: Volta and newer) at
the worker's phase boundaries, which arrive as protocol messages through the launcher (`Meter.wrap`
taps the on_message the launcher hands its line reader), and turning the readings into figures:

- training: from the first progress message after the first report of epoch 0 (compile and the
  first steps are over) to `evaluate`: steps covered = all steps - the step that message names;
- inference: from `inference` to the final `result` message; calls = warm-up calls + timed
  iterations x loops (the worker's own counts, from its result).

Where the counter is missing (older GPUs, a driver that does not expose it) the power samples the
ProcessSampler polled (`power_at`) are integrated instead (trapezoid, >= 2 samples in the window);
else the figure is None with the reason. A counter that did not advance or went backwards is a
warning, never a figure (NVML and its users have seen "power is 0"). The counter is the whole
device's: another process on the GPU is counted too (the cell's busy warning says so).
Must not import any ML framework.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..host import gpu_sampling

COUNTER, POLLING = "nvml_energy_counter", "power_polling"


class Meter:
    """Phase-boundary energy readings for one worker process on one GPU (sampler.handle)."""

    def __init__(self, sampler: Any, read: Callable = gpu_sampling.energy_mj,
                 clock: Callable[[], float] = time.monotonic):
        self.sampler = sampler
        self.read, self.clock = read, clock
        self.marks: list[dict] = []
        self.result: dict | None = None

    def wrap(self, on_message: Callable[[dict], None]) -> Callable[[dict], None]:
        """on_message with a reading taken at each phase boundary before it is passed on."""
        def tap(msg: dict) -> None:
            self.mark(msg)
            on_message(msg)
        return tap

    def mark(self, msg: dict) -> None:
        if getattr(self.sampler, "handle", None) is None or not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "progress" and msg.get("phase") in ("train", "evaluate", "inference"):
            phase = msg["phase"]
        elif kind == "progress" and msg.get("phase") == "train_steady" and not msg.get("extra"):
            # the steady state of an epoch (its first mark opens it); the extra measurement
            # blocks after `evaluate` are outside the epochs' training energy
            phase = "train"
        elif kind == "result":
            phase, self.result = "end", msg.get("metrics") if isinstance(
                msg.get("metrics"), dict) else None
        else:
            return
        mj, why = self.read(self.sampler.handle)
        self.marks.append({"phase": phase, "t": self.clock(), "mj": mj, "why": why,
                           **{k: _count(msg.get(k)) for k in ("epoch", "step", "steps")}})

    # ----------------------------------------------------------------- figures

    def _joules(self, a: dict, b: dict, what: str, warnings: list[str]) -> tuple[float | None,
                                                                                   str | None]:
        """(joules between marks a and b, source) or (None, None) with a warning or a reason."""
        if isinstance(a["mj"], int) and isinstance(b["mj"], int):
            d = b["mj"] - a["mj"]
            if d <= 0:
                how = "did not advance" if d == 0 else "went backwards"
                warnings.append(f"{what}: NVML's energy counter {how} ({a['mj']} -> "
                                f"{b['mj']} mJ): no energy figure")
                return None, None
            return d / 1000.0, COUNTER
        pts = [(t, w) for t, w in getattr(self.sampler, "power_at", []) if a["t"] <= t <= b["t"]]
        if len(pts) < 2:
            self.why = (f"no energy counter ({a['why'] or b['why']}) and {len(pts)} power "
                        "sample(s) in the phase")
            return None, None
        if any(w <= 0 for _, w in pts):
            warnings.append(f"{what}: NVML reported {min(w for _, w in pts)} W: no energy figure")
            return None, None
        joules = sum((t2 - t1) * (w1 + w2) / 2 for (t1, w1), (t2, w2) in zip(pts, pts[1:]))
        return joules, POLLING

    def summary(self) -> dict | None:
        """The cell's energy fields (None for a CPU cell or a GPU NVML cannot see). Never
        raises: odd figures in a worker's messages leave the energy unknown, with the reason."""
        if getattr(self.sampler, "handle", None) is None:
            return None
        try:
            return self._summary()
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            return {"source": None, **{k: None for k in FIELDS}, "warnings": None,
                    "note": f"energy not computed: {type(exc).__name__}: {exc}"[:300]}

    def _summary(self) -> dict:
        self.why: str | None = None
        warnings: list[str] = []
        out: dict[str, Any] = {"source": None, "train_joules": None, "train_steps": None,
                               "train_j_per_step": None, "train_j_per_ksample": None,
                               "infer_joules": None, "infer_calls": None,
                               "infer_j_per_call": None, "infer_j_per_ksample": None}
        metrics = self.result or {}
        train, inf = metrics.get("train") or {}, metrics.get("inference") or {}
        bs = train.get("samples_per_step") or inf.get("batch_size")
        by = {}
        for m in self.marks:
            by.setdefault(m["phase"], []).append(m)
        trains = by.get("train", [])
        if trains and by.get("evaluate"):
            steady = [m for m in trains if (m["step"] or 0) > 0] or trains[:1]
            start, end = steady[0], by["evaluate"][0]
            per_epoch = max((m["steps"] or 0) for m in trains)
            epochs = max((m["epoch"] or 0) for m in trains) + 1
            steps = per_epoch * epochs - ((start["epoch"] or 0) * per_epoch + (start["step"] or 0))
            j, src = self._joules(start, end, "training", warnings)
            if j is not None and steps > 0:
                out.update(source=src, train_joules=j, train_steps=steps,
                           train_j_per_step=j / steps)
                if isinstance(bs, (int, float)) and bs > 0:
                    out["train_j_per_ksample"] = j / steps / bs * 1000.0
        if by.get("inference") and by.get("end"):
            lat = inf.get("latencies_s") or []
            calls = max(int(inf.get("warmup_iterations") or 0), 2) + \
                len(lat) * int(inf.get("loops") or 1)
            j, src = self._joules(by["inference"][0], by["end"][0], "inference", warnings)
            if j is not None and lat:
                out.update(source=out["source"] or src, infer_joules=j, infer_calls=calls,
                           infer_j_per_call=j / calls)
                if isinstance(bs, (int, float)) and bs > 0:
                    out["infer_j_per_ksample"] = j / calls / bs * 1000.0
        out["warnings"] = warnings or None
        out["note"] = None if out["source"] else (self.why or "no phase boundaries seen")
        return out


# Throttling that makes a cell's figures the machine's fault: heat, a hardware slowdown, the
# power brake. The software power cap (sw_power_cap) is how a GPU under full load normally runs
# at its power limit: recorded (throttle_reasons), not warned about, or every busy GPU cell
# would carry the warning.
WARN_REASONS = ("hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                "hw_power_brake_slowdown")


def throttle_warning(sampled: dict | None) -> str | None:
    """A warning when the GPU throttled while the cell ran (NVML reasons seen by the sampler)."""
    reasons = [r for r in (sampled or {}).get("throttle_reasons") or [] if r in WARN_REASONS]
    if not reasons:
        return None
    return (f"the GPU throttled while the cell ran ({', '.join(reasons)}): its clocks were "
            "held down for part of the run")


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


# ---------------------------------------------------------------- the tables' view of a record

# The per-cell energy columns of the attempt and cell frames (medians over repeats);
# train_j_per_ksample is what "least energy per sample" ranks on.
FIELDS = ("train_j_per_step", "train_j_per_ksample", "infer_j_per_call", "infer_j_per_ksample")


def fields(record: dict) -> dict:
    """An attempt record's energy figures (None where there is none)."""
    e = record.get("energy") if isinstance(record.get("energy"), dict) else {}
    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    g = record.get("gpu") if isinstance(record.get("gpu"), dict) else {}
    before = record.get("device_before") if isinstance(record.get("device_before"), dict) else {}
    reasons = g.get("throttle_reasons")
    notes = [str(w) for w in e.get("warnings") or [] if isinstance(w, str)]
    if not notes and isinstance(e.get("note"), str):
        notes = [e["note"]]
    return {**{k: float(e[k]) if ok(e.get(k)) else None for k in FIELDS},
            "energy_note": "; ".join(notes)[:500] or None,
            "throttle_reasons": ", ".join(map(str, reasons)) if isinstance(reasons, list)
            and reasons else None,
            "power_limit_w": float(before["power_limit_w"]) if ok(before.get("power_limit_w"))
            else None}


def warnings(record: dict) -> list[str]:
    """The attempt's throttling warning (it joins the cell's warnings). An energy reading that
    gave no figure is no warning about the speed figures: it is the cell's `energy_note`."""
    g = record.get("gpu") if isinstance(record.get("gpu"), dict) else None
    t = throttle_warning(g)
    return [t] if t else []
