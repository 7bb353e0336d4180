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


# --- irregular work: the statistic the harness calibrates from must be the documented one ------

class Irregular(VirtualDevice):
    """Each call's device time from a schedule (call number -> seconds): a compile-heavy first
    step, warm-up steps that decay, steady steps with a drift and outliers."""

    def __init__(self, step_times, predict_times):
        super().__init__(0.0, 0.0)
        self.step_times, self.predict_times = list(step_times), list(predict_times)
        self.n_steps = self.n_predicts = 0

    def train_step(self, batch_index):
        self.steps.append(batch_index)
        self.n_steps += 1
        return (1.0 + batch_index, self._enqueue(self.step_times[self.n_steps - 1]))

    def predict(self, batch_index):
        self.n_predicts += 1
        return (0.0, self._enqueue(self.predict_times[self.n_predicts - 1]))


FIRST = 0.47
# median 0.0113 -> K = ceil(0.05 / 0.0113) = 5; the first (0.031) would give 2, the mean
# (0.01556) 4, the last (0.0094) or the fastest 6
WARM = [0.031, 0.0172, 0.0113, 0.0088, 0.0094]


def _steady(n, seed=5):
    import random
    rng = random.Random(seed)
    return [0.01 * rng.lognormvariate(0, 0.1) * (1 + 0.004 * i) * (2.5 if i % 11 == 7 else 1)
            for i in range(n)]


def test_k_is_calibrated_from_the_median_warm_up_step_and_blocks_sum_their_steps():
    steady = _steady(34)
    dev = Irregular([FIRST, *WARM, *steady], [])
    rec = harness.TrainRecord(warmup_steps=5, target_s=0.05)
    secs, mean_loss = dev.train_epoch(0, 40, rec)
    m = rec.metrics()
    assert m["first_step_s"] == pytest.approx(FIRST)
    assert m["warmup_step_times_s"] == pytest.approx(WARM)
    assert m["warmup_s"] == pytest.approx(sum(WARM))
    assert rec.k == 5
    # 34 steady steps in near-equal blocks of >= 5: 34 -> 6 blocks of 6,6,6,6,5,5 (as
    # next_block documents: floor(n / K) blocks, none a short remainder)
    sizes = [b["steps"] for b in m["steady_blocks"]]
    assert sizes == [6, 6, 6, 6, 5, 5]
    starts = [sum(sizes[:j]) for j in range(len(sizes))]
    want = [sum(steady[s:s + n]) for s, n in zip(starts, sizes)]
    assert [b["seconds"] for b in m["steady_blocks"]] == pytest.approx(want)
    assert m["step_times_s"] == pytest.approx([w / n for w, n in zip(want, sizes)])
    assert m["steady_s"] == pytest.approx(sum(steady))
    assert secs == pytest.approx(FIRST + sum(WARM) + sum(steady))
    assert mean_loss == pytest.approx(sum(1.0 + i for i in range(40)) / 40)


def test_inference_loops_are_calibrated_from_the_fastest_warm_call_after_the_first():
    # warm-up calls: a compile (20 ms), then 0.4, 0.13, 0.6 ms: the fastest after the first,
    # 0.13 ms, needs 16 calls to last MIN_SAMPLE_S (the median 0.4 ms would give 8, the first 1)
    warm = [0.02, 0.0004, 0.00013, 0.0006]
    import random
    rng = random.Random(2)
    calls = [0.00012 * rng.lognormvariate(0, 0.2) for _ in range(16 * 6)]
    dev = Irregular([], warm + calls)
    inf = dev.benchmark_inference(n_batches=4, warmup=4, iterations=5)
    assert inf["loops"] == 16
    assert inf["warmup_s"] == pytest.approx(sum(warm))
    # the first 16 calls are the untimed probe (it lasted over LOOP_BELOW_S: no recalibration)
    assert sum(calls[:16]) >= 0.001 and inf["calibration_probes"] == 1
    want = [sum(calls[(i + 1) * 16:(i + 2) * 16]) / 16 for i in range(5)]
    assert inf["latencies_s"] == pytest.approx(want)


def test_an_epoch_shorter_than_the_warm_up_runs_each_batch_once():
    # 3 batches, 5 warm-up steps wanted: the warm-up continues into the next epoch, never past
    # the last batch of this one
    dev = Irregular([FIRST, *WARM, *_steady(10)], [])
    rec = harness.TrainRecord(warmup_steps=5, target_s=0.05)
    dev.train_epoch(0, 3, rec)
    assert dev.steps == [0, 1, 2] and rec.metrics()["steady_steps"] == 0
    dev.train_epoch(1, 5, rec)
    assert dev.steps == [0, 1, 2, 0, 1, 2, 3, 4]
    assert rec.metrics()["warmup_step_times_s"] == pytest.approx(WARM)


def test_progress_messages_are_one_json_line_each(monkeypatch):
    import io
    import json
    out = io.StringIO()
    monkeypatch.setattr(harness, "_OUT", out)
    dev = Irregular([FIRST, *WARM, *_steady(60)], [])
    dev.train_epoch(0, 40, harness.TrainRecord(warmup_steps=5, target_s=0.05))
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) > 2
    msgs = [json.loads(line) for line in lines[:-1]]
    assert {m["type"] for m in msgs} == {"progress"}
    # after 6 synced steps the steady state opens (one message at step 6: the parent's
    # contention meter starts there); blocks of 6,6,6,6,5,5 end at 12, 18, 24, 30, 35, 40: a
    # progress message at the first block end past each quarter of the epoch (10, 20, 30, 40)
    assert [m["step"] for m in msgs] == [6, 12, 24, 30, 40]
    assert {m["phase"] for m in msgs} == {"train_steady"}
    assert {m["steps"] for m in msgs} == {40}
