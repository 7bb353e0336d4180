"""The wire protocol across the boundary, without a framework or a process: what the worker side
writes (harness.emit over workers/wire.py) parses on the parent side (mlbench.run.protocol), every
request mlbench builds is one the worker side reads, and a worker of another protocol version
is told apart from a crash. Also the store's resume index, whatever the order of a record's
keys."""
from __future__ import annotations

import io
import json
import sys

import pytest

from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import harness  # noqa: E402
import wire  # noqa: E402

from mlbench.run import protocol
from mlbench.results import store  # noqa: E402

METRICS = {"params": {"trainable": 10, "non_trainable": 0},
           "train": {"steps_per_epoch": 2, "samples_per_step": 4, "first_step_s": 0.1,
                     "step_times_s": [0.01, 0.02], "epoch_times_s": [0.2],
                     "epoch_losses": [1.5]},
           "eval": {"loss": 1.0, "accuracy": 0.5, "time_s": 0.01, "samples": 8},
           "inference": {"batch_size": 4, "latencies_s": [0.001]},
           "memory": {"peak_device_bytes": None, "host_peak_rss_bytes": 123}}

# every message a worker writes, as the workers write them
SENT = [
    ("hello", dict(pid=42, python="/usr/bin/python3", framework="numpy",
                   python_version="3.11.0", import_s=0.25, cpu_affinity=[0, 1],
                   framework_version="2.0", device_name="cpu")),
    ("progress", dict(phase="train", epoch=0, step=4, steps=8)),
    ("result", dict(metrics=METRICS)),
    ("result", dict(ceilings={"fp32": {"best_flops": 1e9, "median_flops": 9e8},
                              "bf16": {"skip": "numpy has no bf16"}}, threads=1)),
    ("skip", dict(reason="no GPU here", kind="device")),
    ("error", dict(kind="oom", error_type="MemoryError", message="out of memory",
                   traceback="Traceback ...")),
]


@pytest.fixture
def sent_lines(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(harness, "_OUT", out)

    def lines():
        return [line.encode() for line in out.getvalue().splitlines()]
    return lines


@pytest.mark.parametrize("msg_type,fields", SENT, ids=[f"{t}-{i}" for i, (t, _) in
                                                       enumerate(SENT)])
def test_every_message_the_worker_writes_parses_on_the_parent_side(sent_lines, msg_type, fields):
    harness.emit(msg_type, **fields)
    (line,) = sent_lines()
    got = protocol.parse_line(line)
    assert got.noise is None and got.foreign is None
    assert got.message == {"protocol": wire.PROTOCOL, "type": msg_type, **fields}


def test_numpy_values_are_written_as_numbers(sent_lines):
    np = pytest.importorskip("numpy")
    harness.emit("result", metrics={**METRICS, "eval": {"loss": np.float32(0.5),
                                                       "samples": np.int64(8)}})
    got = protocol.parse_line(sent_lines()[0]).message
    assert got["metrics"]["eval"] == {"loss": 0.5, "samples": 8}


def test_both_sides_read_one_definition():
    assert protocol.wire().__file__ == str(WORKERS / "wire.py")
    assert protocol.PROTOCOL == wire.PROTOCOL and protocol.FINAL == wire.FINAL
    with pytest.raises(ValueError, match="no message type"):
        wire.message("results")
    with pytest.raises(ValueError, match="no request kind"):
        wire.request("bench")
    with pytest.raises(ValueError):  # NaN never reaches the stream
        wire.encode(wire.message("progress", loss=float("nan")))


def _requests(tmp_path) -> dict[str, dict]:
    bench = dict(cell_id="numpy-mlp-cpu-bs4-fp32", framework="numpy", model="mlp",
                 model_options={"preset": "tiny"}, device="cpu", batch_size=4, precision="fp32",
                 epochs=1, seed=0, train_samples=16, eval_samples=8, warmup_iterations=1,
                 timed_iterations=2, threads=1, tf32=False, options={}, init="framework",
                 data_path=None, memory_limit_mb=None)
    return {
        "benchmark": protocol.BenchRequest(**bench).to_wire(),
        "count": protocol.BenchRequest(**bench, kind="count").to_wire(),
        "verify": protocol.VerifyRequest(
            cell_id="verify-numpy-cpu-fp32", framework="numpy", device="cpu", precision="fp32",
            seed=0, threads=1, options={}, batch_size=16, verify_steps=3,
            verify_dir=str(tmp_path), models=[{"key": "mlp", "model": "mlp"}],
            memory_limit_mb=None).to_wire(),
        "ceiling": protocol.CeilingRequest(
            framework="numpy", backend="numpy", device="cpu", precisions=["fp32"], size=32,
            iterations=2, threads=1, tf32=False, max_seconds_per_precision=1.0).to_wire(),
    }


def test_every_request_kind_is_built_by_the_parent_and_read_by_the_worker(tmp_path):
    built = _requests(tmp_path)
    assert set(built) == set(wire.REQUESTS)
    for kind, req in built.items():
        assert req["protocol"] == wire.PROTOCOL and req["mode"] == kind
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(req))
        assert harness.read_request(["--request", str(path)]) == req
    assert "user_model" not in built["benchmark"]  # only a user's model carries its hash


@pytest.mark.parametrize("version", [0, 2, 99])
def test_a_message_of_another_protocol_version_is_recognised(version):
    line = json.dumps({"protocol": version, "type": "result", "metrics": METRICS}).encode()
    got = protocol.parse_line(line)
    assert got.message is None and got.foreign == version
    assert protocol.version_mismatch(version) == \
        f"worker speaks protocol {version}, mlbench speaks {wire.PROTOCOL}"


@pytest.mark.parametrize("line", [b'{"protocol": "1", "type": "result"}',
                                  b'{"protocol": true, "type": "hello"}',
                                  b'{"protocol": 1, "type": "shout"}',
                                  b'{"type": "hello"}', b"hello world"])
def test_lines_that_are_no_message_are_noise_not_another_version(line):
    got = protocol.parse_line(line)
    assert got.message is None and got.foreign is None and got.noise


def test_an_unusable_final_message_becomes_a_protocol_error():
    got = protocol.parse_line(b'{"protocol": 1, "type": "result", "metrics": {"eval": '
                              b'{"loss": NaN}}}')
    assert got.message["type"] == "error" and got.message["kind"] == "protocol"
    assert "NaN" in got.message["message"]
    missing = protocol.parse_line(b'{"protocol": 1, "type": "result"}').message
    assert missing["type"] == "error" and "metrics" in missing["message"]
    hello = protocol.parse_line(b'{"protocol": 1, "type": "hello", "pid": "one"}')
    assert hello.message is None and "pid" in hello.noise  # a bad hello is only noise


# --- the store's resume index does not depend on how a record's keys are ordered -----------

def _record(cell_id: str, repeat: int, status: str, **extra) -> dict:
    return {"status": status, "metrics": None, "reason": None, "repeat": repeat,
            "framework": "numpy", "cell_id": cell_id, **extra}


def test_resume_index_reads_records_whose_keys_come_in_any_order(tmp_path):
    s = store.Store(tmp_path)
    s.append(_record("a", 0, "failed"))
    s.append({"metrics": None, "cell_id": "b", "status": "ok", "repeat": 1})
    s.append(_record("a", 0, "ok", note="latest"))
    # another writer's line, keys in yet another order, and a legacy line (run_id first)
    with open(tmp_path / store.RESULTS_JSONL, "a") as fh:
        fh.write(json.dumps({"repeat": 0, "status": "skipped", "cell_id": "c", "order": 9})
                 + "\n")
        fh.write(json.dumps({"run_id": "r1", "cell_id": "d", "repeat": 2, "status": "ok",
                             "order": 10}) + "\n")
    for line in (tmp_path / store.RESULTS_JSONL).read_bytes().splitlines()[:3]:
        assert store._HEAD.match(line)  # what the store wrote itself: the fast path
    index = store.scan_latest(tmp_path / store.RESULTS_JSONL)
    assert index.count == 5
    assert {k: v["status"] for k, v in index.latest.items()} == {
        ("a", 0): "ok", ("b", 1): "ok", ("c", 0): "skipped", ("d", 2): "ok"}
    assert index.latest[("a", 0)]["note"] == "latest"
    assert index.latest == {store.attempt_key(a): a for a in
                            store.latest_attempts(store.read_jsonl(
                                tmp_path / store.RESULTS_JSONL)[0])}


@pytest.mark.parametrize("text,oom", [
    ("CUDA out of memory. Tried to allocate 2.00 GiB", True),
    ("ResourceExhaustedError: OOM when allocating tensor", True),
    ("failed to map segment from shared object", True),
    ("cannot allocate memory", True),
    ("CUDNN_STATUS_BAD_PARAM", False),
    ("shape mismatch: (3, 4) vs (4, 3)", False),
])
def test_worker_and_parent_agree_on_what_out_of_memory_looks_like(text, oom):
    from mlbench.run import launcher
    assert harness.is_oom(RuntimeError(text)) is oom
    assert launcher.is_oom_text(text) is oom
