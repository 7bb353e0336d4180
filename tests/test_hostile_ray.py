"""Issue 25, item 1: a Ray address that does not answer is an error naming executor.address in
bounded time, and Ctrl-C / SIGTERM always stop mlbench while Ray connects (Ray retries inside
C++, where no Python handler runs: the connection is waited for from another thread).
Real processes, a real `ray` import: slow."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cliutil import ROOT, write_config

pytestmark = pytest.mark.slow
pytest.importorskip("ray")


def _start(tmp_path: Path, address: str, timeout_s: float | None = None) -> subprocess.Popen:
    c = write_config(tmp_path / "c.yaml", executor={"kind": "ray", "address": address},
                     verify=False, ceiling=False, output_dir=str(tmp_path / "out"))
    patch = (f"from mlbench.run import ray_executor; ray_executor.CONNECT_TIMEOUT_S = {timeout_s}; "
             if timeout_s else "")
    code = (f"import sys; {patch}from mlbench import cli; "
            f"sys.exit(cli.main(['run', '-c', {str(c)!r}, '--no-report']))")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _black_hole():
    """A port that accepts TCP connections and never answers (not a Ray GCS)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv, f"127.0.0.1:{srv.getsockname()[1]}"


def test_a_port_nothing_listens_on_is_an_error_naming_executor_address_at_once(tmp_path):
    t0 = time.monotonic()
    proc = _start(tmp_path, "127.0.0.1:1")
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2 and time.monotonic() - t0 < 30, err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "executor.address" in line and "127.0.0.1:1" in line and "Traceback" not in err


def test_an_address_that_never_answers_is_an_error_in_bounded_time(tmp_path):
    srv, address = _black_hole()
    with srv:
        t0 = time.monotonic()
        proc = _start(tmp_path, address, timeout_s=4)
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 2, err
    assert "did not answer within 4 s" in err and "executor.address" in err
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("sig,rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_mlbench_while_ray_connects(tmp_path, sig, rc):
    srv, address = _black_hole()
    with srv:
        proc = _start(tmp_path, address)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it is connecting (the probe got in)
            srv.settimeout(1)
            try:
                srv.accept()[0].close()
                break
            except socket.timeout:
                continue
        time.sleep(2)  # inside ray.init now
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == rc, err
    assert "Traceback" not in err
