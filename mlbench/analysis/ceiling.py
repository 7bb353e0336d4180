"""The device ceiling: achievable matmul FLOP/s per framework, device and precision, measured in
the same run as the cells, and model FLOPs utilisation (MFU) against it.

Owns running workers/ceiling_worker.py once per (framework, device) in a fresh process, started
by the one spawner (mlbench.run.launcher: the cell environment, timeout, process-group kill, Ctrl-C;
CPU pinning by the worker), rounds interleaved across frameworks, and the MFU rule: ONE yardstick
per device and precision, the best matmul FLOP/s any framework reached there in the run
(yardsticks), so MFU ranks cells exactly as achieved FLOP/s does; each framework's own ceiling
stays a secondary figure. Storage (ceilings.json, its cache key) is mlbench.analysis.ceiling_store;
the datasheet's dense peaks are mlbench.analysis.datasheet (both re-exported here for callers).
Must not import any ML framework.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from ..config import catalog
from ..run import launcher
from ..host import sysinfo
# re-exported: callers read ceilings.json and the datasheet through mlbench.analysis.ceiling
from .ceiling_store import CEILINGS_JSON, best_flops, entry_reusable, host_key  # noqa: F401
from .ceiling_store import load, table  # noqa: F401
from .datasheet import PEAK_TFLOPS as DATASHEET_TFLOPS, datasheet_flops  # noqa: F401
from ..run.protocol import CeilingRequest
from ..results.atomic import atomic_write

CPU_SIZE, GPU_SIZE = 2048, 8192
# interleaved rounds per (framework, device); the best round counts. MLBENCH_CEILING_ROUNDS
# lowers it where time is short (the GPU smoke check: one round per precision)
ROUNDS = 3


def default_rounds() -> int:
    v = os.environ.get("MLBENCH_CEILING_ROUNDS", "")
    return int(v) if v.isdigit() and int(v) > 0 else ROUNDS


def worker_script() -> Path:
    return catalog.workers_dir() / "ceiling_worker.py"


def run_worker(python: str, request: dict, job_dir: Path, timeout_s: float,
               stop: launcher.Stop | None = None,
               launch: launcher.Launch | None = None) -> dict:
    """One ceiling worker process, started like every worker (`launch`: the one spawner,
    mlbench.run.launcher.launch, unless an executor passes its own): the cell environment, the
    timeout, the process-group kill, Ctrl-C. Returns {"status": ok|skipped|failed|oom|timeout|
    crashed|interrupted, "reason", "hello", and the result message's fields when ok}."""
    job_dir.mkdir(parents=True, exist_ok=True)
    job = launcher.Job(worker_script(), python, request, request["framework"],
                       request["device"], int(request["threads"]), timeout_s)
    rec = (launch or launcher.launch)(job, job_dir, stop or launcher.Stop())
    final = rec.get("final") or {}
    out = {"status": rec["status"], "reason": rec.get("reason"), "hello": rec.get("hello"),
           "stderr_log": rec.get("stderr_log")}
    if rec["status"] == "ok":
        out.update({k: v for k, v in final.items() if k not in ("protocol", "type")})
    return out


def _best_of_rounds(results: list[dict]) -> dict:
    """One entry from a (framework, device)'s rounds: per precision the round with the best
    FLOP/s, with every round's best kept (`round_best_flops`); a precision skipped in every
    round keeps its reason. Status ok when any round measured; else the last round's."""
    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        return {**{k: v for k, v in results[-1].items() if k != "round"},
                "rounds": len(results)}
    ceilings: dict = {}
    for prec in {p for r in ok for p in (r.get("ceilings") or {})}:
        got = [r["ceilings"][prec] for r in ok if isinstance(r.get("ceilings", {}).get(prec), dict)]
        timed = [c for c in got if isinstance(c.get("best_flops"), (int, float))]
        if not timed:
            ceilings[prec] = got[-1]
            continue
        best = max(timed, key=lambda c: c["best_flops"])
        ceilings[prec] = {**best, "round_best_flops": [c["best_flops"] for c in timed],
                          "round_median_flops": [c.get("median_flops") for c in timed]}
    last = {k: v for k, v in ok[-1].items() if k != "round"}
    return {**last, "ceilings": ceilings, "rounds": len(results),
            "rounds_ok": len(ok)}


def measure_ceilings(run_dir, frameworks, devices, precisions, python_for: dict | None = None,
                     threads: int = 0, timeout_s: float = 300.0, size: int | None = None,
                     iterations: int = 10, tf32: bool = False,
                     max_seconds_per_precision: float = 5.0, rounds: int | None = None,
                     stop: launcher.Stop | None = None,
               launch: launcher.Launch | None = None) -> dict:
    """Measure (or reuse from <run_dir>/ceilings.json) the matmul ceiling of every framework on
    every device at every precision. Returns {framework: {device: {precision: best FLOP/s}}}
    (precisions skipped by the framework, and failed measurements, are absent). The full record,
    with medians, sizes, skip reasons and versions, is in ceilings.json.

    Robust to ordering and to a busy moment: `rounds` rounds, each a fresh worker process per
    (framework, device), interleaved across frameworks (round r starts with the framework after
    the one that started round r-1, so none is always first or always last), best of the rounds
    per framework. `stop` (Ctrl-C) ends the measuring; what was stopped is not reused."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CEILINGS_JSON
    host = host_key()
    doc = load(run_dir, cache=True) or {}
    if doc.get("host") != host:
        doc = {}
    doc = {"schema": 1, "host": host, "entries": doc.get("entries") or {}}
    threads = int(threads or 0) or (os.cpu_count() or 1)
    rounds = max(1, int(rounds if rounds is not None else default_rounds()))
    work = run_dir / "ceilings"
    work.mkdir(exist_ok=True)
    todo: list[tuple[str, str, str, str | None, int]] = []
    for fw in frameworks:
        python = (python_for or {}).get(fw) or sys.executable
        version = sysinfo.framework_version(fw, python)
        for dev in devices:
            n = int(size or (CPU_SIZE if dev == "cpu" else GPU_SIZE))
            if not entry_reusable(doc["entries"].get(f"{fw}|{dev}"), version, n, bool(tf32),
                                   precisions, rounds):
                todo.append((fw, dev, python, version, n))
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(rounds):
        shift = r % len(todo) if todo else 0
        for fw, dev, python, version, n in todo[shift:] + todo[:shift]:
            if results.get((fw, dev)) and results[(fw, dev)][-1].get("status") not in ("ok",):
                continue  # skipped or broken: another round would say the same
            entry = catalog.REGISTRY.get(fw)
            request = CeilingRequest(
                framework=fw, backend=entry.ceiling if entry else None, device=dev,
                precisions=list(precisions), size=n, iterations=iterations, threads=threads,
                tf32=bool(tf32), max_seconds_per_precision=max_seconds_per_precision).to_wire()
            tag = f"{fw}-{dev.replace(':', '')}-r{r}"
            res = run_worker(python, request, work / tag, timeout_s, stop, launch)
            results.setdefault((fw, dev), []).append({**res, "round": r})
    for fw, dev, python, version, n in todo:
        doc["entries"][f"{fw}|{dev}"] = {"framework": fw, "device": dev, "size": n,
                                         "tf32": bool(tf32), "version_key": version,
                                         "python": python,
                                         **_best_of_rounds(results[(fw, dev)])}
    if todo or not path.exists():
        atomic_write(path, json.dumps(doc, indent=1, default=str))
    return best_flops(doc)


def yardsticks(best: dict) -> dict[tuple[str, str], tuple[float, str]]:
    """{(device, precision): (best FLOP/s of any framework, that framework)} from best_flops'
    {framework: {device: {precision: FLOP/s}}}: the one MFU yardstick per device and precision.
    Ties go to the framework name first in alphabetical order (deterministic)."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for fw, devs in sorted((best or {}).items(), key=lambda kv: str(kv[0])):
        for dev, precs in (devs if isinstance(devs, dict) else {}).items():
            for prec, v in (precs if isinstance(precs, dict) else {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    if (dev, prec) not in out or v > out[(dev, prec)][0]:
                        out[(dev, prec)] = (float(v), fw)
    return out


def mfu(achieved_flops: float | None, framework: str, device: str, precision: str,
        ceilings: dict) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the device's yardstick (the best ceiling
    any framework reached on that device and precision); `framework` is not used for the
    yardstick (kept for callers)."""
    y = yardsticks(ceilings).get((device, precision))
    if achieved_flops is None or not y:
        return None
    return achieved_flops / y[0]


def describe_host() -> str:
    return f"{platform.node()} ({sysinfo.cpu_model()})"
