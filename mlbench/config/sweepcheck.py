"""Checks of a whole validated sweep that no single key can make (called by config.validate).

Owns: cell ids unique by construction (a cell id joins the variant's label and the model's
label with '-', and both may contain '-': `dummy-fast` x `m` and `dummy` x `fast-m` would both
be `dummy-fast-m-...`, one result silently replacing the other; such a config is refused naming
both pairs), and exclude rules' `label` naming a model label that exists (a typo would exclude
nothing). Must not import any ML framework.
"""
from __future__ import annotations

import difflib
from typing import Any

from . import catalog
from ..run import selection
from ..errors import UserError


def check(conf: Any, raw: dict, where: str) -> None:
    unique_cell_ids(conf, where)
    exclude_labels_known(conf, raw, where)


def unique_cell_ids(conf: Any, where: str) -> None:
    """Every combination the config selects (mlbench.run.selection) has an id of its own."""
    owner: dict[str, tuple[str, str]] = {}
    for var, model, device, bs, prec in selection.combinations(conf):
        pair = (var.label, model.id_label)
        cid = selection.cell_id(var.label, model.id_label, device, bs, prec)
        first = owner.setdefault(cid, pair)
        if first != pair:
            raise UserError(
                f"two cells would share the id {cid!r}: framework {first[0]!r} with "
                f"model {first[1]!r}, and framework {pair[0]!r} with model {pair[1]!r} (a "
                "'-' in a label joins differently); give one of them another label",
                f"{where}: frameworks, models")


def _catalog_labels() -> set[str]:
    specs = catalog.specs()
    out: set[str] = set()
    for name in specs.MODELS:
        out.add(name)
        out.update(f"{name}.{p}" for p in specs.PRESETS.get(name, ()))
    return out


def exclude_labels_known(conf: Any, raw: dict, where: str) -> None:
    rules = [(i, r.label) for i, r in enumerate(conf.exclude) if r.label is not None]
    if not rules:
        return
    known = {m.id_label for m in conf.models} | _catalog_labels()
    for m in raw.get("models") or ():  # the config's own, also those --models left out
        if isinstance(m, dict):
            known.update(v for v in (m.get("label"), m.get("name")) if isinstance(v, str))
    for i, label in rules:
        if label not in known:
            close = difflib.get_close_matches(label[:200], sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"exclude rule's label {label[:80]!r} is no model's label{hint}; "
                            f"labels here: {', '.join(sorted(m.id_label for m in conf.models))}",
                            f"{where}: exclude[{i}].label")
