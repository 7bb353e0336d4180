"""The worker side's timing on a fake clock (FrameworkInterface.clock injected): exact figures,
no sleeping. The fake device runs its queue only in virtual time: dispatching a step costs the
host nothing, and the clock moves only when the host syncs. So a block timed without its sync
would read 0 s, a step counted twice or lost shows in the totals, and every figure is exact."""
from __future__ import annotations

import sys

import pytest

from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import harness  # noqa: E402


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class VirtualDevice(harness.FrameworkInterface):
    def __init__(self, step_s: float, predict_s: float):
        super().__init__({})
        self.clock = Clock()
        self.step_s, self.predict_s = step_s, predict_s
        self.busy_until = 0.0
        self.steps: list[int] = []

    def _enqueue(self, work_s: float) -> float:
        self.busy_until = max(self.busy_until, self.clock.now) + work_s
        return self.busy_until

    def train_step(self, batch_index):
        self.steps.append(batch_index)
        return (1.0, self._enqueue(self.step_s))

    def predict(self, batch_index):
        return (0.0, self._enqueue(self.predict_s))

    def sync(self, value):
        result, ready_at = value
        self.clock.now = max(self.clock.now, ready_at)  # the host waits for the device
        return result


def test_training_blocks_include_their_sync_and_count_every_step():
    dev = VirtualDevice(step_s=0.01, predict_s=0.001)
    rec = harness.TrainRecord(warmup_steps=3, target_s=0.05)
    epochs = [dev.train_epoch(e, 40, rec) for e in range(2)]
    assert dev.steps == list(range(40)) * 2  # every batch once per epoch, in order
    m = rec.metrics()
    assert m["first_step_s"] == pytest.approx(0.01)
    assert m["warmup_step_times_s"] == pytest.approx([0.01] * 3)
    assert rec.k == 5  # 0.05 s blocks of 0.01 s steps, calibrated from the warm-up
    assert 1 + 3 + m["steady_steps"] == 80
    for block in m["steady_blocks"]:
        # dispatch is free on this device: without the sync in the block the time would be 0
        assert block["seconds"] == pytest.approx(block["steps"] * 0.01)
        assert block["steps"] >= rec.k
    assert m["step_times_s"] == pytest.approx([0.01] * len(m["steady_blocks"]))
    assert sum(secs for secs, _ in epochs) == pytest.approx(80 * 0.01)
    assert epochs[0][1] == pytest.approx(1.0)  # the mean loss of the epoch


def test_inference_samples_time_their_calls_and_syncs():
    dev = VirtualDevice(step_s=0.01, predict_s=0.0002)
    inf = dev.benchmark_inference(n_batches=4, warmup=2, iterations=6)
    loops = harness.calibrate_loops(0.0002)
    assert loops > 1 and inf["loops"] == loops
    assert inf["warmup_s"] == pytest.approx(2 * 0.0002)
    assert inf["latencies_s"] == pytest.approx([0.0002] * 6)  # per call, the sync included
    slow = VirtualDevice(step_s=0.01, predict_s=0.004)
    assert slow.benchmark_inference(2, 1, 3)["loops"] == 1  # a long call is timed alone
