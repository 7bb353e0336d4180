"""The device ceiling: achievable matmul FLOP/s per framework, device and precision, measured in
the same run as the cells, and model FLOPs utilisation (MFU) against it.

Owns running workers/ceiling_worker.py once per (framework, device) in a fresh process, started
by the one spawner (mlbench.launcher: the cell environment, timeout, process-group kill, Ctrl-C;
CPU pinning by the worker), the cache
<run_dir>/ceilings.json (reused while the host, the framework version, the matrix size and the
tf32 setting are unchanged), and the MFU rule: ONE yardstick per device and precision, the best
matmul FLOP/s any framework reached there in the run (yardsticks), so MFU ranks cells exactly as
achieved FLOP/s does; each framework's own ceiling stays a secondary figure. On a known GPU also
the datasheet's dense peak (DATASHEET_TFLOPS, keyed by the NVML device name).
Must not import any ML framework.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from . import catalog, launcher, sysinfo
from .protocol import CeilingRequest
from .store import atomic_write

CEILINGS_JSON = "ceilings.json"
CPU_SIZE, GPU_SIZE = 2048, 8192
ROUNDS = 3  # interleaved rounds per (framework, device); the best round counts


def worker_script() -> Path:
    return catalog.workers_dir() / "ceiling_worker.py"


def _host_key() -> dict:
    h = sysinfo.host()
    return {"hostname": h.get("hostname"), "cpu_model": h.get("cpu_model"),
            "gpus": [g.get("name") for g in h.get("gpus") or []]}


def run_worker(python: str, request: dict, job_dir: Path, timeout_s: float,
               stop: launcher.Stop | None = None,
               launch: launcher.Launch | None = None) -> dict:
    """One ceiling worker process, started like every worker (`launch`: the one spawner,
    mlbench.launcher.launch, unless an executor passes its own): the cell environment, the
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


def _entry_reusable(entry: dict, version: str | None, size: int, tf32: bool,
                    precisions: list[str], rounds: int) -> bool:
    return (isinstance(entry, dict) and entry.get("status") == "ok"
            and entry.get("version_key") == version and entry.get("size") == size
            and entry.get("tf32") == tf32 and int(entry.get("rounds") or 1) >= rounds
            and all(p in (entry.get("ceilings") or {}) for p in precisions))


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
                     max_seconds_per_precision: float = 5.0, rounds: int = ROUNDS,
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
    host = _host_key()
    doc = load(run_dir, cache=True) or {}
    if doc.get("host") != host:
        doc = {}
    doc = {"schema": 1, "host": host, "entries": doc.get("entries") or {}}
    threads = int(threads or 0) or (os.cpu_count() or 1)
    rounds = max(1, int(rounds))
    work = run_dir / "ceilings"
    work.mkdir(exist_ok=True)
    todo: list[tuple[str, str, str, str | None, int]] = []
    for fw in frameworks:
        python = (python_for or {}).get(fw) or sys.executable
        version = sysinfo.framework_version(fw, python)
        for dev in devices:
            n = int(size or (CPU_SIZE if dev == "cpu" else GPU_SIZE))
            if not _entry_reusable(doc["entries"].get(f"{fw}|{dev}"), version, n, bool(tf32),
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


def load(run_dir, cache: bool = False) -> dict | None:
    """ceilings.json of a run directory (or of the directory holding a results file), validated
    (records.Ceilings). None when there is none; a damaged one is a UserError (exit 2), or,
    with `cache` (the sweep reusing its own measurements), None: it is measured again."""
    from pydantic import ValidationError

    from . import guards, records
    from .errors import UserError
    p = Path(run_dir)
    p = p if p.is_dir() else p.parent
    f = p / CEILINGS_JSON
    if not (f.exists() or f.is_symlink()):
        return None
    try:
        guards.regular_file(f, CEILINGS_JSON, guards.MAX_CONFIG_BYTES)
        try:
            doc = records.parse_json(f.read_bytes())
        except (OSError, records.BadJSON) as exc:
            raise UserError(f"ceilings.json is not valid JSON ({exc})", str(f)) from None
        if not isinstance(doc, dict):
            raise UserError("ceilings.json is not mlbench output (not a JSON object)", str(f))
        try:
            records.Ceilings.model_validate(doc)
        except ValidationError as exc:
            raise UserError(f"ceilings.json is not mlbench output ({records.first_problem(exc)})"
                            "; delete it to measure again", str(f)) from None
    except UserError:
        if cache:
            return None
        raise
    return doc


def best_flops(doc: dict | None) -> dict:
    """{framework: {device: {precision: best FLOP/s}}} from a ceilings.json document."""
    out: dict = {}
    for e in ((doc or {}).get("entries") or {}).values():
        if not isinstance(e, dict) or e.get("status") != "ok":
            continue
        for prec, c in (e.get("ceilings") or {}).items():
            v = c.get("best_flops") if isinstance(c, dict) else None
            if isinstance(v, (int, float)) and v > 0:
                out.setdefault(e.get("framework"), {}).setdefault(e.get("device"), {})[prec] = v
    return out


def table(doc: dict | None) -> list[dict]:
    """Rows for the report's environment table: one per (device, precision), each framework's
    best and median FLOP/s or skip reason, and the best of all frameworks."""
    rows: dict[tuple, dict] = {}
    for e in ((doc or {}).get("entries") or {}).values():
        if not isinstance(e, dict):
            continue
        fw, dev = e.get("framework"), e.get("device")
        if e.get("status") != "ok":
            for prec in (e.get("ceilings") or {"–": None}):
                r = rows.setdefault((dev, prec), {"device": dev, "precision": prec, "per": {}})
                r["per"][fw] = {"skip": f"{e.get('status')}: {e.get('reason')}"}
            continue
        for prec, c in (e.get("ceilings") or {}).items():
            r = rows.setdefault((dev, prec), {"device": dev, "precision": prec, "per": {}})
            r["per"][fw] = {**(c if isinstance(c, dict) else {}),
                            "version": (e.get("hello") or {}).get("framework_version")}
    out = []
    for (dev, prec), r in sorted(rows.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        vals = [(v.get("best_flops"), fw) for fw, v in r["per"].items()
                if isinstance(v.get("best_flops"), (int, float))]
        r["best"], r["best_framework"] = max(vals) if vals else (None, None)
        out.append(r)
    return out


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


# Dense (no structured sparsity) peak TFLOP/s from NVIDIA's public datasheets: H100/H200
# ("NVIDIA H100 Tensor Core GPU" and "NVIDIA H200" datasheets, SXM and PCIe columns; the sheets
# print sparse figures for tensor cores, halved here), A100 ("NVIDIA A100 Tensor Core GPU"
# datasheet, same peaks for 40 GB / 80 GB, SXM and PCIe), L4 and A10 product datasheets, the Ada
# whitepaper for the RTX 4090 (FP16/BF16 with FP32 accumulate), V100 and T4 datasheets.
# fp32 = plain FP32 (CUDA cores), tf32 = TF32 tensor cores (fp32 cells run with tf32 enabled).
# Matched in order on the lower-cased NVML name: the first pattern whose words all occur wins.
DATASHEET_TFLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("h200",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (("h100", "nvl"), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (("h100", "pcie"), {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (("h100",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (("a100",), {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (("l40s",), {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    (("l4",), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (("a10",), {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (("rtx", "4090"), {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    (("v100",), {"fp32": 15.7, "fp16": 125.0}),
    (("t4",), {"fp32": 8.1, "fp16": 65.0}),
]


def datasheet_flops(device_name: str | None, precision: str | None,
                    settings: str | None = None) -> float | None:
    """The datasheet's dense peak FLOP/s for a GPU by its NVML name (e.g. "NVIDIA H100 80GB
    HBM3") at a cell's precision; fp32 cells whose settings say tf32=True use the TF32 peak.
    None for an unknown device or precision. Words match whole tokens ("a10" is not "a100")."""
    if not isinstance(device_name, str) or not isinstance(precision, str):
        return None
    import re
    tokens = set(re.split(r"[^a-z0-9]+", device_name.lower()))
    prec = precision.lower()
    if prec == "fp32" and isinstance(settings, str) and re.search(r"tf32=True", settings):
        prec = "tf32"
    for words, peaks in DATASHEET_TFLOPS:
        if all(w in tokens for w in words):
            v = peaks.get(prec)
            return v * 1e12 if v else None
    return None


def describe_host() -> str:
    return f"{platform.node()} ({sysinfo.cpu_model()})"
