"""Typed documents of a run directory besides the attempt record (mlbench.results.attempt):
run.json, ceilings.json, verify.json, and the messages a worker writes (mlbench.run.protocol
validates each line against them; a result's metrics are the attempt's Metrics). Every reader
validates against these, so a hand-edited or damaged file is a warning (a record) or a clear error
(a whole file), never a traceback deep in the report. `check_attempt` is the store's check of one
stored record: upgraded to the current format (mlbench.results.attempt), then validated.

The models check the fields readers rely on and allow the rest (extra="allow"): older and newer
files keep their extra keys. Also owns parsing JSON text defensively (depth bounded, NaN/Infinity
refused). Must not import any ML framework.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import attempt
from .attempt import Hello, Metrics

MAX_DEPTH = 64  # no mlbench file nests deeper than ~8; 100k-deep JSON would blow the C stack
Number = float | int


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# --- the messages a worker writes (workers/wire.py; parsed by mlbench.run.protocol)
# -----------------

class Progress(_Open):
    phase: str | None = None


class Result(_Open):
    """A final answer: `metrics` (a cell, the gate, a count) or `ceilings` (a ceiling worker)."""
    metrics: Metrics | None = None
    ceilings: dict[str, dict[str, Any]] | None = None


class Skip(_Open):
    reason: str | None = None
    kind: str | None = None


class Error(_Open):
    kind: str | None = None
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None


MESSAGE_MODELS: dict[str, type[BaseModel]] = {"hello": Hello, "progress": Progress,
                                               "result": Result, "skip": Skip, "error": Error}


class Session(_Open):
    started_at: str | None = None
    mode: str | None = None


class RunInfo(_Open):
    """run.json."""
    schema_: int | None = Field(None, alias="schema")
    run_id: str | None = None
    mlbench_version: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    sessions: list[Session] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    host: dict[str, Any] | None = None
    frameworks: dict[str, Any] | None = None
    ceilings: dict[str, Any] | None = None


class Ceiling(_Open):
    best_flops: Number | None = None
    median_flops: Number | None = None


class CeilingEntry(_Open):
    framework: str | None = None
    device: str | None = None
    status: str | None = None
    reason: str | None = None
    size: int | None = None
    ceilings: dict[str, Ceiling] | None = None
    hello: dict[str, Any] | None = None


class Ceilings(_Open):
    """ceilings.json."""
    host: dict[str, Any] | None = None
    entries: dict[str, CeilingEntry] = Field(default_factory=dict)


class GateRowRecord(_Open):
    """One row of verify.json (mlbench.analysis.gate_verdicts.GateRow): the types its readers rely
    on."""
    model: str
    model_label: str
    device: str
    precision: str
    framework: str
    reference: str
    passed: bool | None
    reason: str | None = None
    max_abs_err: Number | None = None
    max_rel_err: Number | None = None
    loss_err: Number | None = None
    steps_loss_err: Number | None = None
    params_equal: bool | None = None
    data_hash_equal: bool | None = None
    params: dict[str, Any] | None = None
    status: str = "ok"


class GateDoc(_Open):
    """verify.json, the equivalence gate's document."""
    rows: list[GateRowRecord]
    pairs: list[dict[str, Any]] = Field(default_factory=list)
    tolerances: dict[str, dict[str, Number]] | None = None
    seconds: Number = 0.0
    tolerance_note: str | None = None


def read_gate_doc(path: Any) -> dict:
    """verify.json read and validated: the dict as stored; a damaged file (not JSON, a
    directory, wrong types in a row) is a UserError naming it (exit 2), never a traceback."""
    from pathlib import Path

    from ..config import guards
    from ..errors import UserError
    p = Path(path)
    guards.regular_file(p, p.name, guards.MAX_JSON_BYTES)
    try:
        doc = parse_json(p.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read the gate's verdicts: {exc.strerror}", str(p)) from None
    except BadJSON as exc:
        raise UserError(f"the gate's verdicts are not valid JSON ({exc}); delete the file to "
                        "run the gate again", str(p)) from None
    if not isinstance(doc, dict):
        raise UserError("the gate's verdicts are not mlbench output (not a JSON object)", str(p))
    try:
        GateDoc.model_validate(doc)
    except ValidationError as exc:
        raise UserError(f"the gate's verdicts are not mlbench output ({first_problem(exc)}); "
                        "delete the file to run the gate again", str(p)) from None
    except RecursionError:
        raise UserError("the gate's verdicts are nested too deeply", str(p)) from None
    return doc


class BadJSON(ValueError):
    """Text that is not JSON mlbench could have written: syntax, NaN/Infinity, absurd depth."""


def nesting_depth_exceeds(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """True if brackets nest deeper than `limit` (strings skipped), before json.loads recurses."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth, in_str, esc = 0, False, False
    for ch in data:
        if in_str:
            if esc:
                esc = False
            elif ch == 0x5C:  # backslash
                esc = True
            elif ch == 0x22:
                in_str = False
        elif ch == 0x22:
            in_str = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif ch in (0x5D, 0x7D):
            depth -= 1
    return False


# Every number mlbench stores fits a float64 (finite) or an int64: `1e999` parses to infinity
# (then written back as `Infinity`, which no reader accepts) and 10**400 overflows every float
# conversion downstream (report, compare). Refused here, at the one place stored JSON is parsed.
MAX_INT = 2 ** 63 - 1


def number_hooks(bad: Callable[[str], Any]) -> dict:
    """json.loads keyword arguments that hand every out-of-range number's text to `bad` (which
    raises, or returns the value to use instead)."""
    def parse_float(text: str) -> Any:
        value = float(text)
        return value if math.isfinite(value) else bad(text)

    def parse_int(text: str) -> Any:
        if len(text) > 20:  # more digits than any int64: not even converted
            return bad(text[:12] + "…")
        value = int(text)
        return value if -MAX_INT - 1 <= value <= MAX_INT else bad(text)

    return {"parse_float": parse_float, "parse_int": parse_int, "parse_constant": bad}


def _out_of_range(text: str) -> Any:
    if text in ("NaN", "Infinity", "-Infinity"):
        raise BadJSON(f"{text} is not JSON")
    raise BadJSON(f"number {text} is out of range (a float64 or int64)")


def finite_copy(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (a record about to be stored)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_copy(v) for v in value]
    return value


def parse_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity, numbers out of float64/int64 range and nesting
    beyond MAX_DEPTH (BadJSON)."""
    if nesting_depth_exceeds(text):
        raise BadJSON(f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, **number_hooks(_out_of_range))
    except RecursionError:
        raise BadJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise BadJSON("not UTF-8 text") from None
    except BadJSON:
        raise
    except ValueError as exc:
        raise BadJSON(str(exc).split(":")[0]) from None


def is_finite_json(value: Any) -> bool:
    """No NaN or infinity anywhere in `value` (json.dumps(allow_nan=False) would refuse it)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def first_problem(exc: ValidationError) -> str:
    """`<field path>: <what>` of the first validation error, short enough for one line."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "list[",
                                                                          "dict[")))
    msg = err["msg"]
    return f"{loc}: {msg}"[:200] if loc else msg[:200]


def check_attempt(rec: Any) -> dict:
    """The record in the current format (mlbench.results.attempt.upgrade; the stored dict untouched)
    if it is an attempt readers can use; ValueError naming the field else, NewerFormat (a
    ValueError) for a record of a newer mlbench."""
    if not isinstance(rec, dict):
        raise ValueError(f"not an attempt record (a JSON {type(rec).__name__})")
    current = attempt.upgrade(rec)
    try:
        attempt.Attempt.model_validate(current)
    except ValidationError as exc:
        raise ValueError(first_problem(exc)) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return current
