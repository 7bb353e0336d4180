"""The serving load generator (workers/loadgen.py) against queueing theory and a fake clock.

* exact, on a fake clock: per-query latencies of planted irregular arrivals, with and without
  dynamic batching, against a hand-worked schedule and an independent Lindley recursion;
* M/D/1 on a fake clock (many queries): mean latency against S + rho S / (2 (1 - rho)) and p99
  against the M/D/1 waiting-time distribution (Erlang's formula, computed here in Decimal);
* on the real clock with the dummy worker's fixed service time (a spin): measured mean and p99
  against a seeded M/D/1 simulation of the same arrivals, at utilisations 0.3, 0.6 and 0.9.
  Every attempt: the latencies equal the queue rebuilt from each call's measured start and end
  (measured from the scheduled arrival, served in turn, never early), whatever the load. An
  undisturbed attempt (no service stretched past 1.2 ms, no wake-up later than 0.2 ms) is also
  held to theory: mean within 10% + 0.2 ms, p99 within 15% + 0.5 ms.
"""
from __future__ import annotations

import math
import random
from decimal import Decimal, localcontext

import pytest
from workerutil import WORKERS  # noqa: F401  (puts workers/ on sys.path)

import dummy_worker  # noqa: E402
import loadgen  # noqa: E402


class FakeClock:
    """Time moves only when the service runs or the generator waits."""

    def __init__(self, start: float = 100.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def wait(self, until: float) -> None:
        self.t = max(self.t, until)


def lindley(arrivals: list[float], service_s: float) -> list[float]:
    """Per-query latency of a FIFO single server with a fixed service time (no batching)."""
    out, free = [], -math.inf
    for a in arrivals:
        start = max(a, free)
        free = start + service_s
        out.append(free - a)
    return out


def md1_mean(rho: float, s: float) -> float:
    return s + rho * s / (2 * (1 - rho))


def md1_wait_cdf(x: float, rho: float) -> float:
    """P(W <= x S) for M/D/1 (Erlang): (1 - rho) sum_{k<=x} (rho (k - x))^k / k! e^{rho (x - k)}.
    Alternating terms of huge size: summed in 60-digit Decimal."""
    with localcontext() as ctx:
        ctx.prec = 60
        r, xx = Decimal(repr(rho)), Decimal(repr(x))
        total = Decimal(0)
        for k in range(int(math.floor(x)) + 1):
            power = (r * (k - xx)) ** k if k else Decimal(1)  # Decimal refuses 0 ** 0
            total += power / math.factorial(k) * (r * (xx - k)).exp()
        return float((1 - r) * total)


def md1_p99(rho: float, s: float) -> float:
    """The 99th percentile of M/D/1 latency (wait + service), by bisection on the CDF."""
    lo, hi = 0.0, 100.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(mid, rho) < 0.99 else (lo, mid)
    return s + hi * s


def test_arrivals_are_the_seeded_poisson_process():
    arr = loadgen.poisson_arrivals(250.0, 4000, seed=7)
    rng = random.Random(7)
    t, mine = 0.0, []
    for _ in range(4000):
        t += rng.expovariate(250.0)
        mine.append(t)
    assert arr == mine
    gaps = [b - a for a, b in zip([0.0] + arr, arr)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 250.0, rel=0.05)
    assert loadgen.poisson_arrivals(250.0, 50, seed=8) != arr[:50]


def test_fifo_latency_on_a_fake_clock_is_lindleys_exactly():
    rng = random.Random(3)  # bursts and gaps: queueing and idle periods both happen
    arrivals, t = [], 0.0
    for i in range(300):
        t += rng.choice([0.0001, 0.0002, 0.004]) * (1 + rng.random())
        arrivals.append(t)
    clock, s = FakeClock(), 0.0011
    calls = []

    def service(k):
        calls.append(k)
        clock.t += s

    out = loadgen.serve(service, arrivals, clock, clock.wait, max_batch=1)
    assert out["latencies_s"] == pytest.approx(lindley(arrivals, s), abs=1e-9)
    assert calls == [1] * 300 and out["batches"] == calls
    assert min(out["latencies_s"]) == pytest.approx(s)  # some arrive at an idle server
    assert max(out["latencies_s"]) > 5 * s              # and some wait behind a burst


def test_dynamic_batching_on_a_fake_clock_hand_worked():
    # service(k) = 1 ms + 0.5 ms per query; max_batch 2. Worked by hand:
    # t=0: q0 alone -> done 1.5 ms; then q1..q3 queued: q1+q2 -> done 3.5 ms; q3 -> done 5.0;
    # q4 arrives at 5.0 -> done 6.5.
    arrivals = [0.0, 0.0002, 0.0003, 0.0004, 0.0050]
    clock = FakeClock()
    out = loadgen.serve(lambda k: setattr(clock, "t", clock.t + 0.001 + 0.0005 * k), arrivals,
                        clock, clock.wait, max_batch=2)
    assert out["batches"] == [1, 2, 1, 1]
    assert out["latencies_s"] == pytest.approx([0.0015, 0.0033, 0.0032, 0.0046, 0.0015],
                                               abs=1e-9)
    assert out["span_s"] == pytest.approx(0.0065)


@pytest.mark.parametrize("rho, rel_mean, rel_p99", [(0.3, 0.02, 0.03), (0.6, 0.03, 0.05),
                                                    (0.9, 0.08, 0.10)])
def test_md1_on_a_fake_clock_matches_queueing_theory(rho, rel_mean, rel_p99):
    s, clock = 0.001, FakeClock()
    t = loadgen.trial(lambda k: setattr(clock, "t", clock.t + s), rho / s, 200_000, 11, clock,
                      clock.wait)
    assert t["mean_s"] == pytest.approx(md1_mean(rho, s), rel=rel_mean)
    assert t["p99_s"] == pytest.approx(md1_p99(rho, s), rel=rel_p99)
    assert t["achieved_qps"] == pytest.approx(rho / s, rel=0.02)


def test_md1_reference_itself():
    """The Erlang CDF used above: rho -> 0 gives no wait; at the mean it is below 1."""
    assert md1_wait_cdf(0.0, 0.5) == pytest.approx(0.5)  # P(W = 0) = 1 - rho
    assert md1_p99(0.01, 1.0) == pytest.approx(1.0, abs=0.01)
    assert 0.5 < md1_wait_cdf(md1_mean(0.9, 1.0) - 1, 0.9) < 0.9


def replay(due: list[float], calls: list[tuple[float, float]], read: list[float],
           latencies: list[float]) -> None:
    """Hold the generator's latencies to what happened on the clock: query i is served by the
    i-th call (t0, t1), not before it is due nor before the previous call ended; its latency is
    a clock reading taken after its call returned and before the next began, minus the time it
    was *due* (not the time the server got round to it: that would hide the queueing delay)."""
    readings = set(read)
    for i, (d, (t0, t1)) in enumerate(zip(due, calls)):
        assert t0 >= d and (i == 0 or t0 >= calls[i - 1][1]), f"query {i} served early"
        done = d + latencies[i]
        nxt = calls[i + 1][0] if i + 1 < len(calls) else math.inf
        assert t1 <= done <= nxt, f"query {i}: completion read outside its call"
        assert any(abs(done - r) < 1e-9 for r in readings if t1 <= r <= nxt), i


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_md1_on_the_real_clock_with_the_dummy_service(rho):
    """On the real clock another process may stretch a service or a wake-up (CI shares its two
    cores), so the measured latencies are checked against the queue rebuilt from what each call
    really took (exact to the timer's cost, whatever the load); and against M/D/1 theory itself
    whenever the attempt ran undisturbed (every service within 20% of 1 ms, every wake-up within
    0.2 ms), as it does on a quiet machine."""
    s, n, seed = 0.001, 500, 5
    backend = dummy_worker.FixedService({}, s)
    clock = backend.clock
    arrivals = loadgen.poisson_arrivals(rho / s, n, seed)
    ref = lindley(arrivals, s)
    want_mean, want_p99 = sum(ref) / n, loadgen.percentile(ref, 99)
    seen = []
    for _ in range(3):
        calls, late = [], []
        wait = loadgen.real_wait(clock)

        def timed_wait(until):
            wait(until)
            late.append(clock() - until)

        def service(k):
            assert k == 1
            t0 = clock()
            backend.sync(backend.predict(0))
            calls.append((t0, clock()))

        read = []

        def reading():
            read.append(clock())
            return read[-1]

        out = loadgen.serve(service, arrivals, reading, timed_wait, max_batch=1)
        lat = out["latencies_s"]
        assert len(calls) == n and out["batches"] == [1] * n
        assert all(b - a >= s for a, b in calls)  # the spin never ends early
        replay([read[0] + a for a in arrivals], calls, read, lat)  # read[0]: the start
        assert min(late) >= 0  # the wait never returns early
        quiet = max(b - a for a, b in calls) <= 1.2 * s and max(late) <= 2e-4
        mean, p99 = sum(lat) / n, loadgen.percentile(lat, 99)
        seen.append((round(mean, 5), round(p99, 5), "quiet" if quiet else "disturbed"))
        if quiet:
            assert abs(mean - want_mean) <= 0.10 * want_mean + 0.0002, seen
            assert abs(p99 - want_p99) <= 0.15 * want_p99 + 0.0005, seen
            break
    print(f"rho {rho}: M/D/1 mean {want_mean:.5f} p99 {want_p99:.5f}; attempts {seen}")


def test_search_finds_the_highest_rate_within_the_bound_on_a_fake_clock():
    s, bound = 0.002, 0.010
    clock = FakeClock()
    offered = []

    def run_trial(rate):
        offered.append(rate)
        return loadgen.trial(lambda k: setattr(clock, "t", clock.t + s), rate, 10_000,
                             len(offered), clock, clock.wait)

    out = loadgen.search(run_trial, 1 / s, bound, max_trials=6, budget_s=1e9, clock=clock)
    trials = out["trials"]
    assert [t["offered_qps"] for t in trials] == offered and len(trials) == 6
    assert all(t["within_bound"] == (t["p99_s"] <= bound) for t in trials)
    passing = [t["offered_qps"] for t in trials if t["within_bound"]]
    failing = [t["offered_qps"] for t in trials if not t["within_bound"]]
    assert out["max_offered_qps"] == max(passing) < min(failing)
    best = next(t for t in trials if t["offered_qps"] == max(passing))
    assert out["max_qps"] == best["achieved_qps"] and out["latency_bound_ms"] == 10.0
    # theory: the rate whose M/D/1 p99 equals the bound lies between the best passing and the
    # lowest failing rate tried (10,000 queries per trial: p99 within a few %)
    lo, hi = 0.0, 1.0
    for _ in range(12):  # p99 grows with rho: bisect for the rho whose p99 is the bound
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_p99(mid, s) <= bound else (lo, mid)
    rho_star = lo
    assert max(passing) * s <= rho_star + 0.04 and min(failing) * s >= rho_star - 0.04


def test_search_stops_at_its_budget_and_reports_none_when_nothing_passes():
    clock = FakeClock()

    def run_trial(rate):
        clock.t += 4.0  # each trial lasts 4 s
        return {"offered_qps": rate, "achieved_qps": rate, "p99_s": 1.0}

    out = loadgen.search(run_trial, 1000.0, 0.010, max_trials=10, budget_s=10.0, clock=clock)
    assert len(out["trials"]) == 3  # started at 0, 4 and 8 s; none at 12 s
    assert [t["offered_qps"] for t in out["trials"]] == [500.0, 250.0, 125.0]
    assert out["max_qps"] is None and out["p99_at_max_s"] is None


def test_percentile_is_numpys_linear():
    np = pytest.importorskip("numpy")
    xs = [random.Random(1).lognormvariate(0, 1) for _ in range(37)]
    for q in (0, 50, 90, 99, 100):
        assert loadgen.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


class _Backend(dummy_worker.FixedService):
    def __init__(self, service_s):
        super().__init__({}, service_s)
        self.predicted = []

    def predict(self, batch_index):
        self.predicted.append(batch_index)
        return super().predict(batch_index)


def test_run_scenarios_single_stream_only_at_batch_one_server_batches_up_to_the_cell():
    serving = {"scenarios": ["offline", "single_stream", "server"],
               "single_stream": {"queries": 7},
               "server": {"latency_bound_ms": 50, "trial_s": 0.05, "min_queries": 20,
                          "max_trials": 2, "budget_s": 5}}
    b = _Backend(0.0005)
    out = loadgen.run_scenarios(b, {"batch_size": 1, "serving": serving, "seed": 3}, 4,
                                {"latencies_s": [0.0005, 0.0009, 0.0004]})
    assert len(out["single_stream"]["latencies_s"]) == 7
    assert out["server"]["max_batch"] == 1 and out["server"]["service_s"] == 0.0005
    assert len(out["server"]["trials"]) == 2
    assert set(b.predicted) == {0, 1, 2, 3}  # served from the cell's eval batches, cycling
    b4 = _Backend(0.0005)
    out4 = loadgen.run_scenarios(b4, {"batch_size": 4, "serving": serving, "seed": 3}, 2,
                                 {"latencies_s": [0.001]})
    assert "single_stream" not in out4 and out4["server"]["max_batch"] == 4
    # capacity 4 / 1 ms: the first trial offers half of it
    assert out4["server"]["trials"][0]["offered_qps"] == pytest.approx(2000.0)
    assert loadgen.run_scenarios(b4, {"batch_size": 4}, 2, {"latencies_s": [0.001]}) is None
