"""Enough evidence by default: the steady-state minimums (harness, on a fake clock), the
`measurement:` config block (validation, carried in the request), and the thread wait policy
every worker gets."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml

from workerutil import WORKERS

from mlbench.config import schema as cfg
from mlbench.run import launcher, matrix
from mlbench.errors import UserError

sys.path.insert(0, str(WORKERS))
import driver  # noqa: E402
import harness  # noqa: E402


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class DriftingDevice(harness.FrameworkInterface):
    """A virtual device whose step time drifts and jumps (irregular, planted); the clock moves
    only when the host syncs, so every timed figure is the sum of the planted step times."""

    def __init__(self, step_times, predict_s: float = 0.0003):
        super().__init__({})
        self.clock = Clock()
        self.step_times = list(step_times)
        self.predict_s = predict_s
        self.busy_until = 0.0
        self.batches: list[int] = []
        self.n = 0

    def _enqueue(self, work_s: float) -> float:
        self.busy_until = max(self.busy_until, self.clock.now) + work_s
        return self.busy_until

    def train_step(self, batch_index):
        self.batches.append(batch_index)
        work = self.step_times[self.n % len(self.step_times)]
        self.n += 1
        return (1.0 / (1 + batch_index), self._enqueue(work))

    def predict(self, batch_index):
        return (0.0, self._enqueue(self.predict_s))

    def sync(self, value):
        result, ready_at = value
        self.clock.now = max(self.clock.now, ready_at)
        return result


def _planted(n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    base = 0.004 * rng.lognormal(0.0, 0.3, n)  # skewed
    base[::17] *= 6                               # outliers
    return list(base * np.linspace(1.3, 1.0, n))  # drifting warm-up


def test_short_epochs_get_extra_measurement_blocks_until_both_minimums():
    times = _planted(400, 1)
    dev = DriftingDevice(times)
    steps = 30
    rec = harness.TrainRecord(warmup_steps=3, target_s=0.02)
    epoch = dev.train_epoch(0, steps, rec)
    before = rec.metrics()
    assert not rec.enough(1.0, 10)  # one short epoch is too little evidence
    dev.measure_more(steps, rec, min_time_s=1.0, min_blocks=10, max_extra_s=60)
    m = rec.metrics()
    extra = [b for b in m["steady_blocks"] if b.get("extra")]
    assert extra and len(m["steady_blocks"]) >= 10
    assert sum(b["seconds"] for b in m["steady_blocks"]) >= 1.0
    # the block just before the last one was not yet enough: no block more than needed
    assert sum(b["seconds"] for b in m["steady_blocks"][:-1]) < 1.0 \
        or len(m["steady_blocks"]) - 1 < 10
    # the epoch figures stay the epoch's: extra blocks are measurement steps, not an epoch
    assert m["steady_steps"] == before["steady_steps"] == steps - 1 - 3
    assert m["steady_s"] == pytest.approx(before["steady_s"])
    assert m["extra_steady_blocks"] == len(extra)
    assert m["extra_steady_steps"] == sum(b["steps"] for b in extra) == len(extra) * rec.k
    # every extra block is timed on the planted device: the sum of its own steps' times
    # (one untimed synced step first, after evaluate)
    first_extra = steps + 1
    n = first_extra
    for b in extra:
        planted = sum(times[i % len(times)] for i in range(n, n + b["steps"]))
        assert b["seconds"] == pytest.approx(planted)
        n += b["steps"]
    # training batches only: the extra steps wrap around the epoch's batches
    assert max(dev.batches) < steps and dev.batches[steps:steps + 3] == [0, 1, 2]
    assert m["measurement_capped"] is False
    assert epoch[0] == pytest.approx(sum(times[:steps]))


def test_a_long_enough_steady_state_gets_no_extra_blocks():
    dev = DriftingDevice(_planted(50, 2))
    rec = harness.TrainRecord(warmup_steps=3, target_s=0.01)
    dev.train_epoch(0, 400, rec)
    n_blocks = len(rec.blocks)
    assert rec.enough(0.5, 10)
    dev.measure_more(400, rec, min_time_s=0.5, min_blocks=10, max_extra_s=60)
    assert len(rec.blocks) == n_blocks and rec.metrics()["extra_steady_blocks"] == 0


def test_the_extra_measurement_stops_at_its_bound_and_says_so():
    dev = DriftingDevice(_planted(80, 3))
    rec = harness.TrainRecord(warmup_steps=2, target_s=0.02)
    dev.train_epoch(0, 12, rec)
    dev.measure_more(12, rec, min_time_s=100.0, min_blocks=10, max_extra_s=0.3)
    m = rec.metrics()
    spent = sum(b["seconds"] for b in m["steady_blocks"] if b.get("extra"))
    assert m["measurement_capped"] is True
    # it stops at the first block boundary past the bound (plus the one untimed step)
    assert 0.3 - 0.1 <= spent <= 0.3 + max(b["seconds"] for b in m["steady_blocks"])


def test_inference_samples_continue_until_the_minimum_time():
    dev = DriftingDevice([0.003], predict_s=0.0017)
    inf = dev.benchmark_inference(4, 2, iterations=5, min_time_s=0.25)
    per_sample = 0.0017 * inf["loops"]
    expected = max(5, int(np.ceil(0.25 / per_sample - 1e-9)))
    assert len(inf["latencies_s"]) == expected
    assert inf["sampled_s"] >= 0.25 and inf["min_time_reached"] and not inf["capped"]
    few = DriftingDevice([0.003], predict_s=0.0017).benchmark_inference(4, 2, 7)
    assert len(few["latencies_s"]) == 7  # no minimum time: exactly the samples asked for
    capped = DriftingDevice([0.003], predict_s=0.0017).benchmark_inference(
        4, 2, 5, min_time_s=10.0, max_extra_s=0.05)
    assert capped["capped"] and not capped["min_time_reached"]
    assert 5 < len(capped["latencies_s"]) < 10.0 / per_sample


def test_the_request_carries_the_minimums_and_the_worker_reads_them(tmp_path):
    raw = {"frameworks": ["dummy"], "models": ["mlp"], "batch_sizes": [4],
           "measurement": {"min_time_s": 0.75, "min_blocks": 7, "max_extra_s": 12,
                           "on_contention": "retry"}}
    conf = cfg.validate(raw, "c.yaml")
    req = matrix.expand(conf)[0].request
    assert req["measurement"] == {"min_time_s": 0.75, "min_blocks": 7, "max_extra_s": 12.0}
    assert driver.measurement(req) == req["measurement"]
    # the parent's own keys stay out of the request (and out of the fingerprint)
    other = cfg.validate({**raw, "measurement": {**raw["measurement"], "on_contention": "warn",
                                                 "quiet_wait_s": 3}}, "c.yaml")
    assert matrix.expand(other)[0].fingerprint == matrix.expand(conf)[0].fingerprint
    more = cfg.validate({**raw, "measurement": {"min_blocks": 8}}, "c.yaml")
    assert matrix.expand(more)[0].fingerprint != matrix.expand(conf)[0].fingerprint
    # an older request without the block: no minimums beyond the configured epochs
    assert driver.measurement({}) == {"min_time_s": 0.0, "min_blocks": 0, "max_extra_s": 60.0}


def test_defaults_ask_for_a_second_and_ten_blocks():
    m = cfg.validate({"frameworks": ["dummy"], "models": ["mlp"], "batch_sizes": [4]},
                     "c.yaml").measurement
    assert (m.min_time_s, m.min_blocks, m.on_contention) == (1.0, 10, "warn")


@pytest.mark.parametrize("block, key", [
    ({"min_time_s": -1}, "measurement.min_time_s"),
    ({"min_blocks": 0}, "measurement.min_blocks"),
    ({"on_contention": "ignore"}, "measurement.on_contention"),
    ({"max_extra_s": ".inf"}, "measurement.max_extra_s"),
    ({"min_blocks": "many"}, "measurement.min_blocks"),
    ({"quiet_wait_s": -3}, "measurement.quiet_wait_s"),
    ({"min_tme_s": 1}, "measurement.min_tme_s"),
])
def test_bad_measurement_keys_name_the_key(tmp_path, block, key):
    path = tmp_path / "c.yaml"
    raw = {"frameworks": ["dummy"], "models": ["mlp"], "batch_sizes": [4],
           "measurement": block}
    path.write_text(yaml.safe_dump(raw).replace("'.inf'", ".inf"))
    with pytest.raises(UserError) as err:
        cfg.load_config(path)
    assert key in str(err.value)


def test_every_worker_gets_the_passive_wait_policy(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    for device in ("cpu", "cuda:0"):
        assert launcher.device_env(device, 2, 0)["OMP_WAIT_POLICY"] == "passive"
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")  # a user's exported choice is kept
    assert launcher.device_env("cpu", 2, 0)["OMP_WAIT_POLICY"] == "active"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert driver.wait_policy() == {"omp_wait_policy": "passive"}  # in the cell's settings


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_a_real_worker_measures_past_its_epoch_until_the_minimums(tmp_path, framework):
    from workerutil import result_of, run_worker
    meas = {"min_time_s": 0.4, "min_blocks": 12, "max_extra_s": 60}
    r = result_of(run_worker(tmp_path, framework, "mlp", train_samples=256, epochs=1,
                             timed_iterations=5, measurement=meas))
    t, inf = r["train"], r["inference"]
    blocks = t["steady_blocks"]
    extra = [b for b in blocks if b.get("extra")]
    assert len(blocks) >= 12 and sum(b["seconds"] for b in blocks) >= 0.4
    assert extra and t["extra_steady_blocks"] == len(extra)
    assert t["extra_steady_steps"] == sum(b["steps"] for b in extra)
    # the epoch's figures are the epoch's: 256 / 16 steps, minus the first and the warm-up
    assert t["steady_steps"] == 16 - 1 - 1 and len(t["epoch_times_s"]) == 1
    assert len(t["step_times_s"]) == len(blocks)
    assert len(inf["latencies_s"]) >= 5 and inf["sampled_s"] >= 0.4
    assert inf["sampled_s"] == pytest.approx(
        sum(v * inf["loops"] for v in inf["latencies_s"]), rel=1e-6)
    assert r["measurement"] == {**meas, "max_extra_s": 60.0}
