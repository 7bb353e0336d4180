"""Which combinations a config selects: the product of its variants, models, devices, batch
sizes and precisions, less those its `exclude` rules remove.

Owns the meaning of an exclude rule (every field it gives matches; a framework by its canonical
name). Below the config (which refuses a config that selects nothing) and the matrix (which
makes a cell of each combination): it reads a validated Config's fields and imports neither.
Must not import ML frameworks.
"""
from __future__ import annotations

from typing import Any, Iterator

from ..config import catalog


def combinations(config: Any) -> Iterator[tuple[Any, Any, str, int, str]]:
    """(variant, model entry, device, batch size, precision) in the sweep's order."""
    for var in config.variants:
        for model in config.models:
            for device in config.devices:
                for bs in config.batch_sizes:
                    for prec in config.precisions:
                        if not excluded(config, var.framework, model.name, device, bs, prec,
                                        model.id_label):
                            yield var, model, device, bs, prec


def cell_id(framework: str, model_label: str, device: str, batch_size: int,
            precision: str) -> str:
    """A combination's id (the variant's label, the model's label, device, batch, precision)."""
    return f"{framework}-{model_label}-{device.replace(':', '')}-bs{batch_size}-{precision}"


def selects_any(config: Any) -> bool:
    """Whether at least one combination survives the exclude rules."""
    return next(combinations(config), None) is not None


def excluded(config: Any, fw: str, model: str, device: str, bs: int, prec: str,
             label: str | None = None) -> bool:
    values = {"framework": fw, "model": model, "device": device, "batch_size": bs,
              "precision": prec, "label": label or model}
    for rule in config.exclude:
        given = {k: v for k, v in rule.model_dump().items() if v is not None}
        if given and all(values[k] == (catalog.canonical_framework(v) if k == "framework"
                                       else v) for k, v in given.items()):
            return True
    return False
