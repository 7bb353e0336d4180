"""A worker and mlbench of different protocol versions: both sides stop at once with a reason
naming both versions (the parent does not wait for a foreign worker's whole run; a worker does
not run a request it may misread). Framework-free: fake workers and the stdlib ceiling worker."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from workerutil import WORKERS, worker_env

from mlbench.run import launcher, protocol


def _job(script: Path, timeout_s: float) -> launcher.Job:
    return launcher.Job(script, sys.executable, {"protocol": protocol.PROTOCOL,
                                                 "mode": "benchmark"}, "dummy", "cpu", 1,
                        timeout_s)


def test_a_foreign_worker_is_stopped_at_its_first_message_not_waited_for(tmp_path):
    # a worker of protocol 99 that would run for a minute: its messages cannot be read, so
    # mlbench kills it when the first one arrives and names both versions
    script = tmp_path / "foreign.py"
    script.write_text(textwrap.dedent("""
        import json, time
        print(json.dumps({"protocol": 99, "type": "hello", "pid": 1}), flush=True)
        time.sleep(60)
        print(json.dumps({"protocol": 99, "type": "result", "metrics": {}}), flush=True)
    """))
    t0 = time.monotonic()
    rec = launcher.launch(_job(script, timeout_s=40), tmp_path, launcher.Stop())
    assert time.monotonic() - t0 < 15
    assert rec["status"] == "crashed"
    assert rec["reason"] == f"worker speaks protocol 99, mlbench speaks {protocol.PROTOCOL}"


def _run(script: str, request: dict, tmp_path: Path) -> list[dict]:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    proc = subprocess.run([sys.executable, str(WORKERS / script), "--request", str(path)],
                          capture_output=True, text=True, timeout=60, env=worker_env())
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_a_worker_refuses_a_request_of_another_protocol_version(tmp_path):
    # numpy worker (harness.main) and the ceiling worker: one error naming both versions, and
    # nothing run (no hello: the framework was never imported, no cell measured)
    bench = {"protocol": protocol.PROTOCOL + 1, "mode": "benchmark", "framework": "numpy",
             "model": "mlp", "model_options": {"preset": "tiny"}, "cell_id": "x", "repeat": 0,
             "device": "cpu", "threads": 1, "seed": 0}
    ceiling = {"protocol": protocol.PROTOCOL + 1, "mode": "ceiling", "framework": "numpy",
               "backend": "numpy", "device": "cpu", "precisions": ["fp32"], "size": 64,
               "iterations": 1, "threads": 1, "tf32": False, "max_seconds_per_precision": 1}
    for script, request in (("numpy_worker.py", bench), ("ceiling_worker.py", ceiling)):
        msgs = _run(script, request, tmp_path)
        assert [m["type"] for m in msgs] == ["error"], (script, msgs)
        assert msgs[0]["kind"] == "protocol"
        assert msgs[0]["message"] == (f"the request speaks protocol {protocol.PROTOCOL + 1}, "
                                      f"this worker speaks {protocol.PROTOCOL}")


def test_a_request_of_this_version_runs(tmp_path):
    # the check above refuses only another version: the same ceiling request at this version runs
    ceiling = {"protocol": protocol.PROTOCOL, "mode": "ceiling", "framework": "numpy",
               "backend": "numpy", "device": "cpu", "precisions": ["fp32"], "size": 64,
               "iterations": 1, "threads": 1, "tf32": False, "max_seconds_per_precision": 1}
    msgs = _run("ceiling_worker.py", ceiling, tmp_path)
    assert msgs[0]["type"] == "hello" and msgs[-1]["type"] in ("result", "skip"), msgs
