"""What a run does before its cells: the equivalence gate and the device ceilings.

Owns deciding whether they are needed (a new run, or a resumed one that lacks them), running them
through mlbench.run.gate and mlbench.analysis.ceiling, and saying what they found. Both live in the
run directory (verify.json, ceilings.json) where the report finds them; on a cluster's other nodes
the same in a scratch directory (gate_here, ceilings_here), sent back to the driver. Must not
import any ML framework.
"""
from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ..config import catalog
from ..analysis import ceiling, gate_verdicts, hardware
from . import gate, heartbeat, launcher
from ..host import gpu
from ..config.schema import Config
from .matrix import Cell, resolve_threads

Say = Callable[[str], None]


def real_frameworks(config: Config) -> list[str]:
    """The sweep's ML frameworks (each once, whatever its variants)."""
    return [f for f in config.base_frameworks if f in catalog.FRAMEWORKS]


def gated_variants(config: Config) -> list[str]:
    """The labels the gate checks: every variant of a real framework but the numpy reference
    (a compiled mode runs the gate on its own: it must not change the numerics)."""
    return [v.label for v in config.variants
            if v.framework in catalog.FRAMEWORKS and v.framework != "numpy"]


def run_gate(config: Config, out_dir: Path, say: Say, again: bool,
             stop: launcher.Stop | None = None,
             launch: launcher.Launch | None = None,
             cells: list[Cell] | None = None) -> gate_verdicts.GateReport | None:
    """The equivalence gate for the sweep's models and frameworks (skipped when there is nothing
    to compare). `again`: run it whole and write verify.json anew (a new run, `mlbench gate`).
    Otherwise a run that has verify.json keeps it, and when `cells` are about to be rerun
    (--resume, --failed, --only) the gate rows they depend on run again: every framework of
    each of their (model, device, precision) groups, merged into verify.json in place of that
    group's former rows (gate_verdicts.merge; the other rows stay as stored). A run without
    verify.json gets the whole gate. Its workers start through `launch` (an executor's, else
    the one spawner) and stop with `stop`; a stopped gate returns None and writes nothing."""
    frameworks = gated_variants(config)
    if not config.verify or not frameworks:
        return None
    path = out_dir / gate_verdicts.GATE_JSON
    groups = None
    if path.exists() and not again:
        groups = rerun_groups(config, cells or [])
        if not groups:
            return gate_verdicts.load(path)
        config = _only_groups(config, groups)
    devices = [d for d in config.devices if gpu.device_present(d)]
    if not devices:
        return None
    what = (f"rerunning the rows of {len(groups)} (model, device, precision) group(s) of the "
            "cells to run: " + ", ".join(" ".join(g) for g in sorted(groups)[:6])
            + (" ..." if len(groups) > 6 else "")) if groups else \
        f"{len(config.models)} model(s) x {len(frameworks)} framework(s) on {', '.join(devices)}"
    say(f"equivalence gate: {what} ...")
    report = gate.run(config, out_dir, frameworks=frameworks, devices=devices, stop=stop,
                      launch=heartbeat.watched(launch or launcher.launch, say, _gate_step),
                      write=groups is None)
    if stop is not None and stop.requested:
        return None
    if groups is not None:
        report = gate_verdicts.GateReport(
            rows=[r for r in report.rows if (r.model_label, r.device, r.precision) in groups],
            pairs=[p for p in report.pairs
                   if (p["model_label"], p["device"], p["precision"]) in groups],
            tolerances=report.tolerances, seconds=report.seconds)
        gate_verdicts.merge(out_dir, report, groups)
    failed = report.failed()
    if failed:
        say(f"equivalence gate: {len(failed)} row(s) FAILED; their speed comparisons will be "
            f"marked not comparable (details: {path})")
        for row in failed[:10]:
            say(f"  {row.framework} {row.model_label} {row.device} {row.precision}: {row.reason}")
    say(f"{gate_verdicts.checked_text(report.rows)} ({report.seconds:.1f} s; {path})")
    return report


def adopt_gate_rows(by_kind: dict, out_dir: Path, config: Config,
                    cells: list[Cell] | None) -> bool:
    """A rerun on a cluster whose driver runs no cells: the first node kind's verdicts for the
    groups of `cells` merged into the run's verify.json (the other rows kept, as run_gate does
    here; nothing rerun: the file stays as it is). False when there is nothing to merge into
    (a new run, no verify.json yet): the caller then adopts the kind's whole document."""
    path = out_dir / gate_verdicts.GATE_JSON
    if cells is None or not path.exists():
        return False
    groups = rerun_groups(config, cells)
    for kind in sorted(by_kind) if groups else ():
        doc = (by_kind[kind].get("result") or {}).get("gate")
        if isinstance(doc, dict) and isinstance(doc.get("rows"), list):
            report = gate_verdicts.GateReport(
                rows=[gate_verdicts.GateRow(**r) for r in doc["rows"]],
                pairs=list(doc.get("pairs") or []), seconds=float(doc.get("seconds") or 0.0))
            gate_verdicts.merge(out_dir, report, groups)
            break
    return True


def rerun_groups(config: Config, cells: list[Cell]) -> set[tuple[str, str, str]]:
    """The gate's (model_label, device, precision) groups that `cells` depend on (those of a
    gated framework, on a device the gate runs on)."""
    gated = set(gated_variants(config))
    return {(c.model.id_label, hardware.base_device(c.device), c.precision)
            for c in cells if c.competitor in gated}


def _only_groups(config: Config, groups: set[tuple[str, str, str]]) -> Config:
    """The config narrowed to the models, devices and precisions of `groups` (the gate runs
    their cross product; merge keeps only the groups asked for)."""
    labels = {g[0] for g in groups}
    return config.model_copy(update={
        "models": [m for m in config.models if m.id_label in labels],
        "devices": [d for d in config.devices if d in {g[1] for g in groups}],
        "precisions": [p for p in config.precisions if p in {g[2] for g in groups}]})


def measure(config: Config, out_dir: Path, say: Say, stop: launcher.Stop | None = None,
            launch: launcher.Launch | None = None) -> dict | None:
    """The matmul ceiling of every framework on every present device at every precision
    (started through `launch`, stopped by `stop`, as the gate)."""
    frameworks = real_frameworks(config)
    devices = [d for d in config.devices if gpu.device_present(d)]
    if not config.ceiling or not frameworks or not devices:
        return None
    pythons = {}
    for fw in frameworks:
        s = config.framework_settings.get(fw)
        pythons[fw] = s.python if s is not None and s.python else sys.executable
    say("device ceilings (large matrix products) ...")
    return ceiling.measure_ceilings(out_dir, frameworks, devices, config.precisions,
                                    python_for=pythons, threads=resolve_threads(config),
                                    timeout_s=min(config.timeout_s, 600), tf32=config.tf32,
                                    stop=stop, launch=heartbeat.watched(
                                        launch or launcher.launch, say, _ceiling_step))


# On another node of a cluster, by the executor's on_each_kind (once per node kind): the gate and
# the ceilings where the cells run, in a scratch directory, their documents sent back whole.

def ceilings_here(config: Config, driver_host: str | None) -> dict:
    """The device ceilings of this node, returned whole (ceilings.json) to the driver. On the
    driver's own host they are the run's `ceilings` already: not measured twice (`driver_host`
    None: the driver runs no cells, every kind measures)."""
    if platform.node() == driver_host:
        return {"same_as_driver": True, "hostname": driver_host}
    with tempfile.TemporaryDirectory(prefix="mlbench-ceilings-") as d:
        best = measure(config, Path(d), lambda text: None)
        return {"ceilings": best, "doc": ceiling.load(Path(d)), "hostname": platform.node()}


def gate_here(config: Config, driver_host: str | None) -> dict:
    """The equivalence gate on this node (once per framework environment and device kind); its
    verdicts document back to the driver. The driver's own host ran it already."""
    if platform.node() == driver_host:
        return {"same_as_driver": True, "hostname": driver_host}
    with tempfile.TemporaryDirectory(prefix="mlbench-gate-") as d:
        report = run_gate(config, Path(d), lambda text: None, again=True)
        return {"gate": None if report is None else report.to_json(),
                "passed": None if report is None else report.passed,
                "hostname": platform.node()}


def _gate_step(job, job_dir) -> str:
    """What one gate worker checks: its framework, device, precision and models."""
    req = job.request if isinstance(job.request, dict) else {}
    models = ", ".join(str(m.get("key") or m.get("model")) for m in req.get("models") or []
                       if isinstance(m, dict))
    return (f"equivalence gate: {Path(job_dir).name.removeprefix('gate-')}"
            + (f" ({models})" if models else ""))


def _ceiling_step(job, job_dir) -> str:
    """One ceiling worker: its round (the work folder's -r<N>) and framework on device."""
    fw_dev, _, r = Path(job_dir).name.rpartition("-r")
    return f"device ceilings: round {int(r) + 1 if r.isdigit() else r}, {fw_dev}"
