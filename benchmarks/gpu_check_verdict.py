"""The verdict of the GPU smoke check (benchmarks/gpu_check.sh): reads what the runs wrote and
prints one table plus one line per problem; exits 1 when anything that should have been
measured on the GPU was not. A check that ran no GPU work must never pass.

    python benchmarks/gpu_check_verdict.py --results R.json:N [--results ...] [--uuid-cell
        R.json:GPU-...] [--ceilings C.json --precisions fp32 bf16] [--verify V.json ...]
        [--smi-count N --nvml-count N] [--probe probe.json]

`R.json:N`: a results.json and how many cells its config expands to. Standard library only:
it runs in whatever interpreter the check has, and its tests run on a CPU with fixtures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys


def _load(path: str, problems: list[str]) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: not readable ({type(exc).__name__}: {exc})"[:300])
        return None
    return doc if isinstance(doc, dict) else None


def _row(c: dict) -> str:
    m = c.get("metrics") or {}
    st = (m.get("train") or {}).get("step_times_s") or []
    lat = (m.get("inference") or {}).get("latencies_s") or []
    bs = c.get("batch_size") or 0
    sps = bs / statistics.median(st) if st and statistics.median(st) > 0 else float("nan")
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    mem = (m.get("memory") or {}).get("peak_device_bytes") or 0
    energy = (c.get("energy") or {}).get("train_j_per_step")
    e = f"{energy:9.3f}" if isinstance(energy, (int, float)) else f"{'-':>9s}"
    return (f"{str(c.get('cell_id')):44s} {str(c.get('status')):8s} {sps:10.0f} {p50:8.2f} "
            f"{mem / 2**20:9.0f} {e}")


def check_results(path: str, expected: int, problems: list[str], lines: list[str]) -> list:
    doc = _load(path, problems)
    cells = (doc or {}).get("cells") or []
    if doc is not None and not isinstance(cells, list):
        cells = []
    if len(cells) != expected:
        problems.append(f"{path}: {len(cells)} cell(s) recorded, the config expands to "
                        f"{expected}")
    for c in cells:
        if not isinstance(c, dict):
            continue
        lines.append(_row(c))
        cid, status = c.get("cell_id"), c.get("status")
        if status != "ok":
            problems.append(f"{cid}: {status} ({str(c.get('reason'))[:160]})")
            continue
        if str(c.get("device", "")).startswith("cuda"):
            if not (c.get("placement") or {}).get("gpu_uuid"):
                problems.append(f"{cid}: no GPU UUID in its placement (NVML did not name the "
                                "GPU it ran on)")
            if not c.get("gpu"):
                problems.append(f"{cid}: no NVML samples (memory, utilisation, power)")
    return cells


def check_uuid_cell(path: str, uuid: str, problems: list[str], lines: list[str]) -> None:
    cells = check_results(path, 1, problems, lines)
    got = [(c.get("placement") or {}).get("gpu_uuid") for c in cells if isinstance(c, dict)]
    if got and got[0] != uuid:
        problems.append(f"the cell run under CUDA_VISIBLE_DEVICES={uuid} recorded GPU "
                        f"{got[0]!r}")


def check_ceilings(path: str, precisions: list[str], problems: list[str]) -> None:
    doc = _load(path, problems) or {}
    got: dict[str, float] = {}
    for e in (doc.get("entries") or {}).values():
        if isinstance(e, dict) and e.get("status") == "ok":
            for prec, c in (e.get("ceilings") or {}).items():
                v = c.get("best_flops") if isinstance(c, dict) else None
                if isinstance(v, (int, float)) and v > 0:
                    got[prec] = max(got.get(prec, 0.0), float(v))
    for prec in precisions:
        if prec not in got:
            problems.append(f"ceilings: no framework measured a {prec} ceiling ({path})")


def check_verify(path: str, problems: list[str]) -> None:
    doc = _load(path, problems)
    if doc is not None and doc.get("passed") is not True:
        bad = [r for r in doc.get("rows") or [] if isinstance(r, dict) and not r.get("passed")]
        problems.append(f"equivalence gate did not pass ({len(bad)} row(s) failed; {path})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", action="append", default=[], help="results.json:N")
    ap.add_argument("--uuid-cell", help="results.json:GPU-uuid")
    ap.add_argument("--ceilings")
    ap.add_argument("--precisions", nargs="*", default=[])
    ap.add_argument("--verify", action="append", default=[], help="verify.json (repeatable)")
    ap.add_argument("--smi-count", type=int)
    ap.add_argument("--nvml-count", type=int)
    ap.add_argument("--probe")
    a = ap.parse_args(argv)
    problems: list[str] = []
    lines = [f"{'cell':44s} {'status':8s} {'samples/s':>10s} {'p50 ms':>8s} {'peak MiB':>9s} "
             f"{'J/step':>9s}"]
    if a.smi_count is not None and (a.nvml_count or 0) < a.smi_count:
        problems.append(f"nvidia-smi sees {a.smi_count} GPU(s), NVML {a.nvml_count or 0}: "
                        "mlbench would record no memory, power or UUID")
    if a.probe:
        probe = _load(a.probe, problems) or {}
        problems.extend(f"probe: {p}" for p in probe.get("problems") or [])
    for spec in a.results:
        path, _, n = spec.rpartition(":")
        check_results(path, int(n), problems, lines)
    if a.uuid_cell:
        path, _, uuid = a.uuid_cell.partition(":")
        check_uuid_cell(path, uuid, problems, lines)
    if a.ceilings:
        check_ceilings(a.ceilings, a.precisions, problems)
    for path in a.verify:  # the main sweep's gate, the serving cells' gate
        check_verify(path, problems)
    if not a.results and not a.uuid_cell:
        problems.append("no results to judge")
    print("\n".join(lines))
    for p in problems:
        print(f"FAIL: {p}")
    print(f"gpu check: {'FAIL' if problems else 'PASS'} ({len(problems)} problem(s))")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
