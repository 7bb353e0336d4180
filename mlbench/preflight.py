"""What a run does before its cells: the equivalence gate and the device ceilings.

Owns deciding whether they are needed (a new run, or a resumed one that lacks them), running them
through mlbench.gate and mlbench.ceiling, and saying what they found. Both live in the run
directory (verify.json, ceilings.json) where the report finds them. Must not import any ML
framework.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from . import catalog, ceiling, gate, gate_verdicts, gpu, heartbeat, launcher
from .config import Config
from .matrix import resolve_threads

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
             launch: launcher.Launch | None = None) -> gate_verdicts.GateReport | None:
    """The equivalence gate for the sweep's models and frameworks (skipped when already done for
    this run and `again` is false, or when there is nothing to compare). Its workers start
    through `launch` (an executor's, else the one spawner) and stop with `stop`; a stopped
    gate returns None."""
    frameworks = gated_variants(config)
    if not config.verify or not frameworks:
        return None
    path = out_dir / gate_verdicts.GATE_JSON
    if path.exists() and not again:
        return gate_verdicts.load(path)
    devices = [d for d in config.devices if gpu.device_present(d)]
    if not devices:
        return None
    say(f"equivalence gate: {len(config.models)} model(s) x {len(frameworks)} framework(s) "
        f"on {', '.join(devices)} ...")
    report = gate.run(config, out_dir, frameworks=frameworks, devices=devices, stop=stop,
                      launch=heartbeat.watched(launch or launcher.launch, say, _gate_step))
    if stop is not None and stop.requested:
        return None
    failed = report.failed()
    if failed:
        say(f"equivalence gate: {len(failed)} row(s) FAILED; their speed comparisons will be "
            f"marked not comparable (details: {path})")
        for row in failed[:10]:
            say(f"  {row.framework} {row.model_label} {row.device} {row.precision}: {row.reason}")
    else:
        say(f"equivalence gate: passed in {report.seconds:.1f} s ({path})")
    return report


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
