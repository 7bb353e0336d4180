"""The harness' timing of training and inference, on a fake asynchronous device.

The fake backend is pure Python: `train_step`/`predict` only enqueue work on a virtual device
and return at once (as CUDA or JAX dispatch does); the work "completes" only when the host
syncs, which sleeps until the device would be done. So a timing whose sync is not inside the
timed region reports (almost) zero, and these tests fail.
"""
import math
import sys
import time

import pytest

from workerutil import WORKERS

sys.path.insert(0, str(WORKERS))
import harness  # noqa: E402


class Lazy:
    def __init__(self, value, ready_at):
        self.value, self.ready_at = value, ready_at


class FakeAsync(harness.FrameworkInterface):
    """A device that runs one queue: each call adds `work_s` after the previous call's end."""

    def __init__(self, step_s=0.002, predict_s=0.0001, nan_at=None):
        super().__init__({})
        self.step_s, self.predict_s, self.nan_at = step_s, predict_s, nan_at
        self.busy_until = 0.0
        self.events = []  # ("step", i) and ("sync", n values) in host order

    def _enqueue(self, work_s):
        self.busy_until = max(self.busy_until, time.perf_counter()) + work_s
        return self.busy_until

    def train_step(self, batch_index):
        self.events.append(("step", batch_index))
        value = float("nan") if batch_index == self.nan_at else 1.0 / (1 + batch_index)
        return Lazy(value, self._enqueue(self.step_s))

    def predict(self, batch_index):
        return Lazy(0.0, self._enqueue(self.predict_s))

    def _wait(self, lazy):
        left = lazy.ready_at - time.perf_counter()
        if left > 0:
            time.sleep(left)
        return lazy.value

    def sync(self, value):
        self.events.append(("sync", 1))
        return self._wait(value)

    def sync_losses(self, losses):
        self.events.append(("sync", len(losses)))
        return [self._wait(v) for v in losses]


def test_steady_blocks_are_timed_with_their_sync_and_last_the_target():
    be = FakeAsync(step_s=0.002)
    rec = harness.TrainRecord(warmup_steps=5)
    secs, mean_loss = be.train_epoch(0, 120, rec)
    m = rec.metrics()
    assert m["steady_steps"] + 1 + len(m["warmup_step_times_s"]) == 120
    assert len(m["step_times_s"]) == len(m["steady_blocks"]) >= 2
    for block, per_step in zip(m["steady_blocks"], m["step_times_s"]):
        # the device needs step_s per step: a block timed without its final sync would read ~0
        assert block["seconds"] >= block["steps"] * be.step_s * 0.999
        assert per_step == pytest.approx(block["seconds"] / block["steps"])
        assert per_step < 5 * be.step_s  # and the sync is not timed many times over
        assert block["seconds"] >= harness.BLOCK_TARGET_S * 0.999  # K calibrated from warm-up
    assert m["steady_s"] == pytest.approx(sum(b["seconds"] for b in m["steady_blocks"]))
    assert secs >= 120 * be.step_s * 0.999
    assert mean_loss == pytest.approx(sum(1.0 / (1 + i) for i in range(120)) / 120)


def test_block_boundaries_are_the_only_syncs_of_the_steady_state():
    be = FakeAsync(step_s=0.001)
    rec = harness.TrainRecord(warmup_steps=3)
    be.train_epoch(0, 200, rec)
    m = rec.metrics()
    # after the first step and the warm-up (one sync per step), one sync per block, holding
    # exactly the block's steps, and no sync in between
    steady = be.events[2 * (1 + len(m["warmup_step_times_s"])):]
    runs, n = [], 0
    for kind, count in steady:
        if kind == "step":
            n += 1
        else:
            assert count == n
            runs.append(n)
            n = 0
    assert n == 0 and runs == [b["steps"] for b in m["steady_blocks"]]


def test_without_warmup_a_probe_block_calibrates_k():
    be = FakeAsync(step_s=0.002)
    rec = harness.TrainRecord(warmup_steps=0)
    be.train_epoch(0, 80, rec)
    sizes = [b["steps"] for b in rec.metrics()["steady_blocks"]]
    assert sizes[0] == 1 and min(sizes[1:]) >= math.ceil(harness.BLOCK_TARGET_S / 0.01)


def test_nan_in_the_middle_of_a_block_raises_diverged_at_the_block_end():
    be = FakeAsync(step_s=0.0005, nan_at=60)
    rec = harness.TrainRecord(warmup_steps=2)
    with pytest.raises(harness.Diverged, match="step 60"):
        be.train_epoch(0, 400, rec)
    dispatched = [i for kind, i in be.events if kind == "step"]
    # checked once per block: the steps after the NaN in its block were already dispatched
    assert dispatched[-1] > 60 and be.events[-1][0] == "sync"


def test_blocks_do_not_straddle_epochs_and_the_record_spans_them():
    be = FakeAsync(step_s=0.001)
    rec = harness.TrainRecord(warmup_steps=4)
    for epoch in range(2):
        be.train_epoch(epoch, 70, rec)
    m = rec.metrics()
    assert m["steady_steps"] == 2 * 70 - 1 - 4
    ends, total = set(), 1 + 4
    for b in m["steady_blocks"]:
        total += b["steps"]
        ends.add(total)
    assert 70 in ends  # one block ends exactly where epoch 0 ends


def test_short_inference_calls_are_timed_in_synced_inner_loops():
    be = FakeAsync(predict_s=0.0001)
    inf = be.benchmark_inference(n_batches=4, warmup=3, iterations=6)
    assert inf["loops"] > 1 and inf["loops"] & (inf["loops"] - 1) == 0  # a power of two
    assert inf["min_sample_s"] == harness.MIN_SAMPLE_S
    assert len(inf["latencies_s"]) == 6
    for lat in inf["latencies_s"]:
        # per-call mean of a sample: at least the device time, so the sample waited for it
        assert be.predict_s * 0.999 <= lat < be.predict_s * 50


def test_long_inference_calls_are_timed_one_by_one():
    be = FakeAsync(predict_s=0.003)
    inf = be.benchmark_inference(n_batches=2, warmup=2, iterations=3)
    assert inf["loops"] == 1
    assert all(lat >= be.predict_s * 0.999 for lat in inf["latencies_s"])


def test_calibrate_loops_reaches_the_minimum_sample():
    for call in (1e-6, 3e-5, 0.0004, 0.0009):
        loops = harness.calibrate_loops(call)
        assert loops * call >= harness.MIN_SAMPLE_S > (loops // 2) * call
    assert harness.calibrate_loops(harness.LOOP_BELOW_S) == 1


class WarmsUpSlowly(FakeAsync):
    """Batch-1 calls that take `warm_s` for the first `slow_calls` (dispatch caches filling, as
    a JAX mlp's did: 250 µs warm, 34 µs steady) and `predict_s` after."""

    def __init__(self, warm_s, slow_calls, predict_s):
        super().__init__(predict_s=predict_s)
        self.warm_s, self.slow_calls, self.calls = warm_s, slow_calls, 0

    def predict(self, batch_index):
        self.calls += 1
        return Lazy(0.0, self._enqueue(self.warm_s if self.calls <= self.slow_calls
                                       else self.predict_s))


def test_loops_are_recalibrated_when_the_steady_state_is_faster_than_the_warm_up():
    be = WarmsUpSlowly(warm_s=0.00025, slow_calls=3, predict_s=0.00003)
    inf = be.benchmark_inference(n_batches=4, warmup=3, iterations=5)
    # from the warm-up alone: 8 loops, 240 µs samples, too short for the clock; the probes
    # recalibrate from the steady per-call time (30 µs plus the fake's own overhead per call)
    assert harness.calibrate_loops(0.00025) == 8
    assert inf["loops"] > 8 and inf["loops"] & (inf["loops"] - 1) == 0
    assert inf["calibration_probes"] >= 2 and len(inf["latencies_s"]) == 5
    for lat in inf["latencies_s"]:   # the probes are not kept: every sample is steady
        assert 0.00003 * 0.999 <= lat < 0.00003 * 3
        assert lat * inf["loops"] >= harness.LOOP_BELOW_S


def test_a_call_just_under_the_loop_threshold_is_looped_after_all():
    """Warm-up calls of 1.2 ms (one call a sample) and steady ones of 0.7 ms: a one-call sample
    would be under LOOP_BELOW_S, so the probe loops it (4 calls: 2.8 ms)."""
    be = WarmsUpSlowly(warm_s=0.0012, slow_calls=3, predict_s=0.0007)
    inf = be.benchmark_inference(n_batches=2, warmup=3, iterations=3)
    assert inf["loops"] == 4 and inf["calibration_probes"] == 2
    assert all(0.0007 * 0.999 <= lat < 0.0007 * 2 for lat in inf["latencies_s"])


def test_calls_as_fast_warm_as_steady_need_one_probe():
    be = FakeAsync(predict_s=0.0001)
    inf = be.benchmark_inference(n_batches=4, warmup=3, iterations=4)
    assert inf["calibration_probes"] == 1 and inf["loops"] > 1
    assert all(lat * inf["loops"] >= harness.LOOP_BELOW_S for lat in inf["latencies_s"])
