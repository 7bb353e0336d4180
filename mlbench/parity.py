"""The equivalence gate's verdicts as the report and the aggregation read them.

Owns Parity (verify.json's rows keyed by (framework, model_label, device, precision)) and
load_parity (finding and reading verify.json next to a results file). Must not import an ML
framework, polars or plotly; mlbench.verify is imported lazily (only when a verify.json exists).
"""
from __future__ import annotations

import json
from pathlib import Path

from . import hardware


class Parity:
    """The equivalence gate's verdicts (a verify.VerifyReport) keyed the way the report matches
    cells: (framework, model_label, device, precision), model_label being the config's label of
    the model (cells_frame column gate_label, the attempt record's model_label). status():
    "pass", "fail" (the cell's speed must not be ranked against the others) or "unverified"
    (skipped, nothing to compare with, or no row for that cell: comparable, but not backed by a
    parity check)."""

    def __init__(self, report, note: str | None = None):
        self.report = report
        self.note = note
        self._failed = report.failed_cells()
        self._passed = {(r.framework, r.model_label, r.device, r.precision)
                        for r in report.rows if r.passed is True}

    def status(self, framework, model_label, device, precision) -> str:
        # a device labelled with its hardware kind (mlbench.hardware) is judged by the gate of
        # the device it names
        key = (framework, model_label, hardware.base_device(device), precision)
        return "fail" if key in self._failed else "pass" if key in self._passed else "unverified"

    def comparable(self, framework, model_label, device, precision) -> bool:
        return (framework, model_label, hardware.base_device(device), precision) \
            not in self._failed

    @property
    def rows(self) -> list:
        return self.report.rows

    @property
    def n_failed(self) -> int:
        return len(self._failed)


def load_parity(path) -> tuple[Parity | None, str | None]:
    """verify.json of a run directory (or of the directory holding a results file), as
    (Parity, None); (None, None) when there is none; (None, why) when it cannot be read."""
    p = Path(path)
    p = p if p.is_dir() else p.parent
    f = p / "verify.json"
    if not f.is_file():
        return None, None
    try:
        from . import verify
        doc = json.loads(f.read_text())
        note = doc.get("tolerance_note") if isinstance(doc, dict) else None
        return Parity(verify.load(f), note if isinstance(note, str) else None), None
    except Exception as e:  # noqa: BLE001 - any malformed file: the report still renders
        return None, f"{type(e).__name__}: {e}"[:300]
