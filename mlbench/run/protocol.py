"""The wire protocol, parent side: typed requests built here only, every worker line parsed here.

Owns the requests mlbench sends (BenchRequest for a cell and `mode: count`, VerifyRequest for the
equivalence gate, CeilingRequest for a matmul ceiling; `to_wire()` is the request file's content)
and reading what a worker writes: `parse_line` turns any bytes into a validated message, noise,
or a message of another protocol version (a clear reason instead of a silent crash). The
definition itself (version, message and request names) is workers/wire.py, loaded from its file
as mlbench.config.catalog loads workers/specs.py: one source both sides read, and the workers never
import mlbench. The message schemas are mlbench.results.records' (pydantic, imported on first
parse). Must not import any ML framework.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from ..config import catalog


@lru_cache(maxsize=1)
def wire() -> ModuleType:
    """workers/wire.py (stdlib only), loaded from its file."""
    path = catalog.workers_dir() / "wire.py"
    spec = importlib.util.spec_from_file_location("_mlbench_worker_wire", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROTOCOL: int = wire().PROTOCOL
FINAL: tuple[str, ...] = wire().FINAL


# --- requests (mlbench -> worker) ----------------------------------------------------------------

@dataclass(frozen=True)
class BenchRequest:
    """One cell: train, evaluate and time inference (`kind` "benchmark"), or only count the
    parameters ("count"). Every field is fingerprinted but cell_id, repeat and timeout."""
    cell_id: str
    framework: str
    model: str
    model_options: dict
    device: str
    batch_size: int
    precision: str
    epochs: int
    seed: int
    train_samples: int
    eval_samples: int
    warmup_iterations: int
    timed_iterations: int
    threads: int
    tf32: bool
    options: dict
    init: str
    data_path: str | None
    memory_limit_mb: int | None
    user_model: dict | None = None  # a user's model file (its hash): only when there is one
    measurement: dict | None = None  # evidence minimums (config.Measurement.wire)
    serving: dict | None = None  # the serving scenarios (ServingSettings.request): when asked
    kind: str = "benchmark"

    def to_wire(self) -> dict:
        body = {k: v for k, v in asdict(self).items() if k != "kind"}
        for optional in ("user_model", "measurement", "serving"):  # absent, not null
            if body[optional] is None:
                del body[optional]
        return wire().request(self.kind, **body)


@dataclass(frozen=True)
class VerifyRequest:
    """The equivalence gate's worker side: several models in one process (workers/gate.py)."""
    cell_id: str
    framework: str
    device: str
    precision: str
    seed: int
    threads: int
    options: dict
    batch_size: int
    verify_steps: int
    verify_dir: str
    models: list[dict]
    memory_limit_mb: int | None
    perturb: str | None = None  # test-only: alter this framework's model on purpose
    tf32: bool = False           # the gate checks the model, not the speed knobs
    repeat: int = 0

    def to_wire(self) -> dict:
        return wire().request(wire().VERIFY, **asdict(self))


@dataclass(frozen=True)
class CeilingRequest:
    """A matmul ceiling (workers/ceiling_worker.py): `backend` is the framework's entry in the
    ceiling worker (catalog.Framework.ceiling)."""
    framework: str
    backend: str | None
    device: str
    precisions: list[str]
    size: int
    iterations: int
    threads: int
    tf32: bool
    max_seconds_per_precision: float
    seed: int = 0

    def to_wire(self) -> dict:
        return wire().request(wire().CEILING, **asdict(self))


# --- messages (worker -> mlbench) ----------------------------------------------------------------

@dataclass
class Parsed:
    """What one line of a worker's stream is: a message (validated; an unusable final message
    is replaced by a protocol error, so the attempt fails with the reason), noise to keep, or a
    message of another protocol version (`foreign`: that version)."""
    message: dict | None = None
    noise: str | None = None
    foreign: int | None = None


def protocol_error(text: str) -> dict:
    return wire().message(wire().ERROR, kind="protocol", error_type="ProtocolError",
                          message=text)


def version_mismatch(version: int) -> str:
    return f"worker speaks protocol {version}, mlbench speaks {PROTOCOL}"


def parse_line(line: bytes) -> Parsed:
    """One line of a worker's protocol stream. Survives any bytes: NaN/Infinity, broken UTF-8,
    absurd nesting, ill-typed fields."""
    if not line.strip():
        return Parsed()
    bad: list[str] = []

    def constant(name: str) -> float:
        bad.append(name)
        return 0.0

    try:
        from ..results import records  # 1e999 or 10**400: out of range like NaN, never stored as is
        msg = json.loads(line, **records.number_hooks(constant))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Parsed(noise=_snip(line))
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        return Parsed(noise=_snip(line))
    kind, version = msg["type"], msg.get("protocol")
    if version != PROTOCOL or isinstance(version, bool):
        if type(version) is int and kind in wire().MESSAGES:
            return Parsed(noise=f"<{kind[:20]} message of protocol {version}>", foreign=version)
        return Parsed(noise=_snip(line))
    if kind not in wire().MESSAGES:
        return Parsed(noise=_snip(line))
    problem = f"{bad[0]} in the worker's {kind} message (not JSON)" if bad else None
    if problem is None and kind == wire().RESULT:
        problem = _result_problem(msg)
    if problem is not None:
        if kind not in FINAL:
            return Parsed(noise=f"<{kind} message dropped: {problem}>")
        return Parsed(message=protocol_error(f"unusable {kind} message: {problem}"))
    if kind == wire().SKIP:
        msg.update({k: _text(msg.get(k)) for k in ("reason", "kind") if msg.get(k) is not None})
        msg.setdefault("reason", None)
    elif kind == wire().ERROR:
        msg.update({k: _text(msg.get(k)) for k in ("kind", "error_type", "message", "traceback")
                    if msg.get(k) is not None})
    elif (problem := _schema_problem(kind, msg)) is not None:
        return Parsed(noise=f"<{kind} message dropped: {problem}>")
    return Parsed(message=msg)


def _snip(line: bytes) -> str:
    return line[:200].decode("utf-8", "replace")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)[:2000]


def _result_problem(msg: dict) -> str | None:
    """Why a result could not be stored and read back, or None: a cell's `metrics`, or a
    ceiling worker's `ceilings`."""
    from pydantic import ValidationError

    from ..results import records
    if "ceilings" in msg and "metrics" not in msg:
        return _schema_problem("result", msg)
    try:
        records.Metrics.model_validate(msg.get("metrics"))
    except ValidationError as exc:
        return f"metrics {records.first_problem(exc)}"
    except RecursionError:
        return "metrics nested too deeply"
    return None


def _schema_problem(kind: str, msg: dict) -> str | None:
    from pydantic import ValidationError

    from ..results import records
    try:
        records.MESSAGE_MODELS[kind].model_validate(msg)
    except ValidationError as exc:
        return records.first_problem(exc)
    except RecursionError:
        return "nested too deeply"
    return None
