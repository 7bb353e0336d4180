"""ceilings.json: the stored device ceilings of a run, and when they may be reused.

Owns the file's reading (validated by records.Ceilings; a damaged one is a UserError, or, for
the sweep's own cache, measured again), its cache key (the host: hostname, CPU model, GPU names,
NVIDIA driver and the CUDA version the driver supports, so a driver update measures again; per
entry: the framework version, matrix size, tf32 setting and rounds), and the views the rest of
mlbench reads: best_flops ({framework: {device: {precision: FLOP/s}}}) and the report's table.
Must not import any ML framework.
"""
from __future__ import annotations

from pathlib import Path

from ..host import gpu_sampling, sysinfo

CEILINGS_JSON = "ceilings.json"


def host_key() -> dict:
    h = sysinfo.host()
    return {"hostname": h.get("hostname"), "cpu_model": h.get("cpu_model"),
            "gpus": [g.get("name") for g in h.get("gpus") or []], **gpu_versions()}


def gpu_versions() -> dict:
    """The driver and CUDA version (NVML) in the cache key; none on a host without NVML, so a
    CPU host's key is what it always was."""
    v = gpu_sampling.versions()
    return {k: v[k] for k in ("driver", "cuda_driver") if v.get(k)}


def entry_reusable(entry: dict, version: str | None, size: int, tf32: bool,
                    precisions: list[str], rounds: int) -> bool:
    return (isinstance(entry, dict) and entry.get("status") == "ok"
            and entry.get("version_key") == version and entry.get("size") == size
            and entry.get("tf32") == tf32 and int(entry.get("rounds") or 1) >= rounds
            and all(p in (entry.get("ceilings") or {}) for p in precisions))


def load(run_dir, cache: bool = False) -> dict | None:
    """ceilings.json of a run directory (or of the directory holding a results file), validated
    (records.Ceilings). None when there is none; a damaged one is a UserError (exit 2), or,
    with `cache` (the sweep reusing its own measurements), None: it is measured again."""
    from pydantic import ValidationError

    from ..config import guards
    from ..results import records
    from ..errors import UserError
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


