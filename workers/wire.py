"""The wire protocol between mlbench and its workers: ONE definition both sides read.

Owns the protocol version, the names of the message types a worker writes (one JSON object per
line on its claimed stdout) and of the request kinds it is started with (the request file), the
helpers that build them and write a message line, the check that a request speaks this version
(request_mismatch), and what out-of-memory looks like. The workers import this module; mlbench
loads this very file by path (mlbench/run/protocol.py), so the two sides never disagree and a worker
still never imports mlbench (it may run in another virtualenv).

A message: {"protocol": PROTOCOL, "type": <one of MESSAGES>, ...fields}; the last one a worker
writes is a final one (result, skip or error). A request: {"protocol": PROTOCOL, "mode": <one of
REQUESTS>, ...fields}; a benchmark request may carry `measurement` ({min_time_s, min_blocks,
max_extra_s}: the evidence minimums, workers/driver.py `measurement`). A worker's progress
phases are data, build, train, train_steady, evaluate, inference, inference_steady: the parent
accounts other processes' CPU use per phase (mlbench/run/contention.py). Must import only the
standard library.
"""
from __future__ import annotations

import json
from typing import Any

PROTOCOL = 1

# message types (worker -> mlbench)
HELLO, PROGRESS, RESULT, SKIP, ERROR = "hello", "progress", "result", "skip", "error"
MESSAGES = (HELLO, PROGRESS, RESULT, SKIP, ERROR)
FINAL = (RESULT, SKIP, ERROR)  # one of these ends a worker's answer

# request kinds (mlbench -> worker): the `mode` of a request file
BENCH, VERIFY, COUNT, CEILING = "benchmark", "verify", "count", "ceiling"
REQUESTS = (BENCH, VERIFY, COUNT, CEILING)


# What out-of-memory looks like in an exception or a stderr tail, in every spelling: host
# MemoryError, CUDA/XLA/TF allocator messages, cuBLAS/cuDNN allocation or workspace failures, a
# shared library that cannot be mapped under memory_limit_mb. The worker classifies its own
# exceptions with it (error kind "oom"), mlbench a crash's stderr tail: one list for both.
OOM_MARKERS = ("memoryerror", "out of memory", "resource exhausted", "resource_exhausted",
               "resourceexhausted", "failed to allocate", "memory allocation still failed",
               "cannot allocate memory", "failed to map segment", "cublas_status_alloc_failed",
               "cudnn_status_alloc_failed", "cudnn_status_not_enough_workspace")


def is_oom_text(text: str) -> bool:
    low = text.lower()
    return any(m in low for m in OOM_MARKERS)


def message(msg_type: str, **fields: Any) -> dict:
    """A message of `msg_type` (ValueError for a type the protocol does not have)."""
    if msg_type not in MESSAGES:
        raise ValueError(f"no message type {msg_type!r} in protocol {PROTOCOL}")
    return {"protocol": PROTOCOL, "type": msg_type, **fields}


def encode(msg: dict) -> str:
    """One message as its line (no newline): strict JSON (NaN/Infinity refused: ValueError);
    numpy scalars and arrays become numbers and lists without importing numpy."""
    return json.dumps(msg, allow_nan=False, default=_json_default)


def request(kind: str, **fields: Any) -> dict:
    """A request of `kind` (ValueError for a kind the protocol does not have)."""
    if kind not in REQUESTS:
        raise ValueError(f"no request kind {kind!r} in protocol {PROTOCOL}")
    return {"protocol": PROTOCOL, "mode": kind, **fields}


def request_mismatch(req: dict) -> str | None:
    """Why a worker must not run `req` (a request of another protocol version), else None: it
    answers with an error at once instead of running a cell it may misread."""
    version = req.get("protocol") if isinstance(req, dict) else None
    if version == PROTOCOL:
        return None
    return f"the request speaks protocol {version}, this worker speaks {PROTOCOL}"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
