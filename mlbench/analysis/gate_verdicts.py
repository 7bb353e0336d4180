"""The equivalence gate's verdicts: the stored document and how the report looks cells up in it.

Owns GateRow / GateReport (one verdict per (model, device, precision, framework), the pairs
compared, the tolerances per precision) with their JSON document (write, load, render_text), and
GateVerdicts / load_verdicts: the verdicts keyed by (framework, model_label, device, precision),
found next to a results file, as the report and the aggregation read them. mlbench.run.gate runs the
gate and writes this document. Must not import an ML framework, polars or plotly (numpy neither:
the report reads verdicts without running anything).

The document keeps its stored name, `verify.json` (GATE_JSON), and the gate's work folder in a
run directory keeps `verify/`: the run directories users already have hold them, `--archive`,
`--resume` and the Ray driver read them back under that name, and the worker request's mode is
`verify` (protocol: workers/wire.py, shared with workers running in other venvs). Everything else
says "gate".
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import hardware

# The stored name keeps the wire mode's word (see the module docstring).
GATE_JSON = "verify.json"
GATE_WORK_DIR = "verify"  # the gate's per-process folders (requests, stderr logs, samples)
GATE_STEPS = 3
GATE_BATCH = 16
# Each worker saves a fixed, seeded sample of <= 65,536 output values per array (the same
# indices in every framework: workers/gate.py sample_indices) plus whole-tensor statistics
# (max |x|, mean, L2 norm): a gate file stays under ~1 MB even for gpt2-small's logits.
# allclose-style: |a - ref| <= atol + rtol * |ref|, element by element (outputs) or per loss.
TOLERANCES = {
    "fp32": {"rtol": 5e-4, "atol": 1e-4, "loss_rtol": 5e-4, "loss_atol": 1e-4},
    "bf16": {"rtol": 5e-2, "atol": 5e-2, "loss_rtol": 2e-2, "loss_atol": 1e-2},
    "fp16": {"rtol": 1e-2, "atol": 1e-2, "loss_rtol": 5e-3, "loss_atol": 2e-3},
}
TOLERANCE_NOTE = ("outputs pass when |a - ref| <= atol + rtol*|ref| for every value, before and "
                  f"after {GATE_STEPS} Adam steps; losses likewise with loss_atol/loss_rtol; "
                  "max_rel_err is over values with |ref| > atol; bf16/fp16 are compared with "
                  "the fp32 numpy reference where there is one, so their error includes the "
                  "rounding of the low precision")


# The verdict of a user's natively written model: counts, shapes and batches were checked, the
# numbers were not (each framework initialised it its own way). Never shown as passed.
NUMERICS_UNCHECKED = "numerics unchecked (no shared weights)"
# The verdict of a framework that ran alone for a model: nothing to compare its numbers with.
ONLY_FRAMEWORK = "only framework: nothing to compare with"


@dataclass(frozen=True)
class GateRow:
    model: str
    model_label: str
    device: str
    precision: str
    framework: str
    reference: str
    passed: bool | None          # None: skipped, or nothing to compare with
    reason: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    loss_err: float | None = None
    steps_loss_err: float | None = None
    params_equal: bool | None = None
    data_hash_equal: bool | None = None
    params: dict | None = None
    status: str = "ok"


@dataclass
class GateReport:
    rows: list[GateRow]
    pairs: list[dict] = field(default_factory=list)
    tolerances: dict = field(default_factory=lambda: dict(TOLERANCES))
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """No row failed (skipped / uncheckable rows do not fail the gate)."""
        return all(r.passed is not False for r in self.rows)

    def failed(self) -> list[GateRow]:
        return [r for r in self.rows if r.passed is False]

    def failed_cells(self) -> set[tuple[str, str, str, str]]:
        """{(framework, model_label, device, precision)} of the cells that failed the gate."""
        return {(r.framework, r.model_label, r.device, r.precision) for r in self.failed()}

    def comparable(self, framework: str, model_label: str, device: str, precision: str) -> bool:
        """False when that cell failed the gate: its speed must not be ranked against others."""
        return (framework, model_label, device, precision) not in self.failed_cells()

    def to_json(self) -> dict:
        return {"tolerances": self.tolerances, "tolerance_note": TOLERANCE_NOTE,
                "steps": GATE_STEPS, "batch_size": GATE_BATCH, "passed": self.passed,
                "seconds": self.seconds, "rows": [asdict(r) for r in self.rows],
                "pairs": self.pairs}

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / GATE_JSON
        path.parent.mkdir(parents=True, exist_ok=True)
        from ..config.guards import atomic_write_text  # never through a planted link
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))
        return path

    def render_text(self) -> str:
        # columns as wide as their longest entry: "pairwise: jax, tensorflow-xla" is never cut
        cols = [("model", 18, lambda r: r.model_label), ("device", 7, lambda r: r.device),
                ("prec", 5, lambda r: r.precision), ("framework", 11, lambda r: r.framework),
                ("reference", 22, lambda r: r.reference)]
        widths = [max([least, len(name)] + [len(str(get(r))) for r in self.rows])
                  for name, least, get in cols]
        lines = [" ".join(f"{name:<{w}}" for (name, _, _), w in zip(cols, widths))
                 + f" {'max abs':>9} {'max rel':>9} {'loss err':>9}  verdict"]
        for r in self.rows:
            verdict = {True: "pass", False: "FAIL", None: "-"}[r.passed]
            if r.reason:
                verdict += f" ({r.reason})"
            lines.append(" ".join(f"{str(get(r)):<{w}}" for (_, _, get), w in zip(cols, widths))
                         + f" {_fmt(r.max_abs_err)} {_fmt(r.max_rel_err)} "
                         f"{_fmt(max_known(r.loss_err, r.steps_loss_err))}  {verdict}")
        tol = "; ".join(f"{p}: rtol {t['rtol']:g} atol {t['atol']:g} (loss rtol "
                        f"{t['loss_rtol']:g} atol {t['loss_atol']:g})"
                        for p, t in self.tolerances.items())
        lines.append(f"tolerances: {tol}")
        lines.append(checked_text(self.rows))
        return "\n".join(lines)


def checked_text(rows: list[GateRow]) -> str:
    """What the gate checked, in one line: "passed" alone only when every row was compared
    numerically and agreed; otherwise each kind of outcome with the models (and frameworks) it
    covers, e.g. "equivalence gate: numerics unchecked for mine (jax, pytorch: no shared
    weights); only framework for tab (pytorch)"."""
    def listing(group: list[GateRow], why: str = "") -> str:
        by: dict[str, set] = {}
        for r in group:
            by.setdefault(r.model_label or r.model, set()).add(r.framework)
        return ", ".join(f"{m} ({', '.join(sorted(f))}{why})" for m, f in by.items())

    failed = [r for r in rows if r.passed is False]
    passed = [r for r in rows if r.passed is True]
    unchecked = [r for r in rows if r.passed is None and r.reason == NUMERICS_UNCHECKED]
    alone = [r for r in rows if r.passed is None and r.reason == ONLY_FRAMEWORK]
    skipped = [r for r in rows if r.passed is None and r not in unchecked and r not in alone]
    if passed and not (failed or unchecked or alone or skipped):
        return "equivalence gate: passed"
    parts = []
    if failed:
        parts.append(f"FAILED for {len(failed)} cell(s): their speed is not comparable "
                     f"({listing(failed)})")
    if passed:
        parts.append(f"passed for {listing(passed)}")
    elif not failed:
        parts.append("no numbers compared" if rows else "nothing checked")
    if unchecked:
        parts.append(f"numerics unchecked for {listing(unchecked, ': no shared weights')}")
    if alone:
        parts.append(f"only framework for {listing(alone)}")
    if skipped:
        parts.append(f"skipped for {listing(skipped)}")
    return "equivalence gate: " + "; ".join(parts)


def merge(out_dir: Path, report: GateReport, groups: set[tuple[str, str, str]]) -> GateReport:
    """Put the rerun `report`'s verdicts for `groups` ({(model_label, device, precision)}) into
    the run's verify.json, in place of that group's former rows and pairs; every other row and
    pair stays as stored (the same JSON, byte for byte). A group's rows are judged together
    (pairwise, against the same reference), so a group is replaced whole. The stored document
    is read raw, not through GateRow, so a row written by another mlbench keeps its fields."""
    path = Path(out_dir) / GATE_JSON
    doc = json.loads(path.read_text())

    def key(d: dict) -> tuple:
        return (d.get("model_label") or d.get("model"), d.get("device"), d.get("precision"))

    fresh = report.to_json()
    for part in ("rows", "pairs"):
        new: dict[tuple, list] = {}
        for d in fresh[part]:
            if key(d) in groups:
                new.setdefault(key(d), []).append(d)
        out, placed = [], set()
        for d in doc.get(part, []):
            k = key(d)
            if k not in groups:
                out.append(d)
            elif k not in placed:  # the group's new verdicts where its old ones were
                out += new.get(k, [])
                placed.add(k)
        for k, ds in new.items():
            if k not in placed:
                out += ds
        doc[part] = out
    doc["passed"] = all(r.get("passed") is not False for r in doc["rows"])
    doc["seconds"] = float(doc.get("seconds") or 0.0) + report.seconds
    from ..config.guards import atomic_write_text
    atomic_write_text(path, json.dumps(doc, indent=1))  # never through a planted link
    return load(path)


def load(path: Path) -> GateReport:
    """Read a gate document (verify.json) back (the report and the run use this)."""
    from ..results.records import read_gate_doc  # validated: a damaged file is a clear exit 2
    data = read_gate_doc(path)
    return GateReport(rows=[GateRow(**{k: v for k, v in r.items() if k in _ROW_FIELDS})
                            for r in data["rows"]], pairs=data.get("pairs", []),
                      tolerances=data.get("tolerances") or dict(TOLERANCES),
                      seconds=data.get("seconds", 0.0))


_ROW_FIELDS = {f.name for f in fields(GateRow)}


def max_known(*values):
    """The largest of the values that are not None (None when none is known)."""
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _fmt(v) -> str:
    return f"{v:9.2e}" if v is not None else f"{'-':>9}"


# ----------------------------------------------------------------------------------------------

class GateVerdicts:
    """The equivalence gate's verdicts (a GateReport) keyed the way the report matches cells:
    (framework, model_label, device, precision), model_label being the config's label of the
    model (cells_frame column gate_label, the attempt record's model_label). status(): "pass",
    "fail" (the cell's speed must not be ranked against the others) or "unchecked" (skipped,
    nothing to compare with, or no row for that cell: comparable, but the gate did not check
    it)."""

    def __init__(self, report: GateReport, note: str | None = None):
        self.report = report
        self.note = note
        self._failed = report.failed_cells()
        self._passed = {(r.framework, r.model_label, r.device, r.precision)
                        for r in report.rows if r.passed is True}

    def status(self, framework, model_label, device, precision) -> str:
        # a device labelled with its hardware kind (mlbench.analysis.hardware) is judged by the gate
        # of the device it names
        key = (framework, model_label, hardware.base_device(device), precision)
        return "fail" if key in self._failed else "pass" if key in self._passed else "unchecked"

    def comparable(self, framework, model_label, device, precision) -> bool:
        return (framework, model_label, hardware.base_device(device), precision) \
            not in self._failed

    @property
    def rows(self) -> list:
        return self.report.rows

    @property
    def n_failed(self) -> int:
        return len(self._failed)


def load_verdicts(path) -> tuple[GateVerdicts | None, str | None]:
    """The gate document (verify.json) of a run directory (or of the directory holding a results
    file), as (GateVerdicts, None); (None, None) when there is none; (None, why) when it cannot
    be read."""
    p = Path(path)
    p = p if p.is_dir() else p.parent
    f = p / GATE_JSON
    if not f.is_file():
        return None, None
    try:
        doc = json.loads(f.read_text())
        note = doc.get("tolerance_note") if isinstance(doc, dict) else None
        return GateVerdicts(load(f), note if isinstance(note, str) else None), None
    except Exception as e:  # noqa: BLE001 - any malformed file: the report still renders
        return None, f"{type(e).__name__}: {e}"[:300]
