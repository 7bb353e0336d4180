"""Cells measured on different hardware are never compared with each other.

A Ray sweep over nodes of several kinds (CPU model, GPU models, framework versions; see
ray_executor.node_kind) records each attempt's `placement.node_kind`. When a run holds more
than one kind, every attempt's device becomes `<device>@<kind>` (e.g. `cuda:0@NVIDIA H100`), so
the report, its verdict and `compare` group, rank and chart only cells of one hardware kind, and
say which; each kind's MFU uses the ceilings measured on that kind (run.json
`ceilings_by_kind`). A local run, or a cluster of one kind, is left exactly as it is.
Must not import any ML framework.
"""
from __future__ import annotations

from typing import Any


def kind_of(attempt: dict) -> str | None:
    placement = attempt.get("placement")
    kind = placement.get("node_kind") if isinstance(placement, dict) else None
    return kind if isinstance(kind, str) and kind not in ("", "local") else None


def kind_names(kinds: set[str]) -> dict[str, str]:
    """A short, unique, readable name per kind: its GPU models, else its CPU model."""
    names: dict[str, str] = {}
    for k in sorted(kinds):
        cpu, _, rest = k.partition(" | ")
        gpus = rest.partition(" | ")[0]
        name = (gpus if gpus and gpus != "no GPU" else cpu).strip()[:40] or "node"
        while name in names.values():
            name += "'"
        names[k] = name
    return names


def split_by_kind(attempts: list[dict], run: dict | None,
                  ceilings: dict[str, Any]) -> tuple[list[dict], dict[str, Any]]:
    """(attempts with devices labelled by hardware kind, ceilings keyed the same way) when the
    attempts ran on two or more kinds; otherwise the inputs unchanged."""
    kinds = {k for k in map(kind_of, attempts) if k is not None}
    if len(kinds) < 2:
        return attempts, ceilings
    names = kind_names(kinds)
    out = [{**a, "device": f"{a.get('device')}@{names[k]}"} if (k := kind_of(a)) else a
           for a in attempts]
    by_kind = (run or {}).get("ceilings_by_kind")
    labelled: dict[str, Any] = {}
    for kind, entry in (by_kind.items() if isinstance(by_kind, dict) else ()):
        result = entry.get("result") if isinstance(entry, dict) else None
        if kind not in names or not isinstance(result, dict):
            continue
        best = ceilings if result.get("same_as_driver") else result.get("ceilings")
        for fw, devs in (best or {}).items():
            for dev, precs in (devs or {}).items() if isinstance(devs, dict) else ():
                labelled.setdefault(fw, {})[f"{dev}@{names[kind]}"] = precs
    return out, labelled


def base_device(device: str) -> str:
    """The device a label names, without its hardware kind (`cuda:0@H100` -> `cuda:0`)."""
    return device.split("@", 1)[0]
