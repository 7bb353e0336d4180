"""The serving load generator (MLPerf LoadGen's `server` scenario), run inside the worker.

Owns: seeded Poisson arrivals, serving them FIFO on a real (or fake) clock with optional dynamic
batching, the per-query latencies (completion - scheduled arrival: queueing included), one
trial's figures, and the search for the highest offered rate whose p99 stays within a bound.
Pure: it is given the service function, the clock and the wait, so a test drives it on a fake
clock exactly, and a worker drives it on the real one with no IPC in the timed path.
Standard library only (workers/ never import mlbench, numpy is not needed here).
"""
from __future__ import annotations

import math
import random
import time
from typing import Callable

# Sleep until this long before an arrival, then spin: time.sleep overshoots by ~50-100 us, which
# would otherwise be counted as latency of a query that arrives at an idle server.
SPIN_S = 0.0003


def poisson_arrivals(rate_qps: float, n: int, seed: int) -> list[float]:
    """`n` arrival times (seconds from the start) of a Poisson process of `rate_qps`, seeded."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate_qps)
        out.append(t)
    return out


def real_wait(clock: Callable[[], float]) -> Callable[[float], None]:
    """A wait-until on `clock`: sleep most of the way, spin the rest."""
    def wait(until: float) -> None:
        left = until - clock()
        if left > SPIN_S:
            time.sleep(left - SPIN_S)
        while clock() < until:
            pass
    return wait


def serve(service: Callable[[int], None], arrivals: list[float], clock: Callable[[], float],
          wait: Callable[[float], None], max_batch: int = 1) -> dict:
    """Serve `arrivals` (offsets from now) FIFO: whenever the server is free it takes every
    query that has arrived, up to `max_batch`, and calls `service(k)` once for them (returning
    when they are complete); idle, it waits for the next arrival. Returns the per-query
    latencies (completion - arrival), the batch sizes served, and the span."""
    n = len(arrivals)
    start = clock()
    due = [start + a for a in arrivals]
    latencies: list[float] = [0.0] * n
    batches: list[int] = []
    i = 0
    while i < n:
        now = clock()
        if due[i] > now:
            wait(due[i])
            now = clock()
        j = i + 1
        while j < n and j - i < max_batch and due[j] <= now:
            j += 1
        service(j - i)
        done = clock()
        for q in range(i, j):
            latencies[q] = done - due[q]
        batches.append(j - i)
        i = j
    end = clock()
    return {"latencies_s": latencies, "batches": batches, "span_s": end - start}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation (numpy's default method)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def trial(service: Callable[[int], None], rate_qps: float, queries: int, seed: int,
          clock: Callable[[], float], wait: Callable[[float], None], max_batch: int = 1) -> dict:
    """One trial at an offered rate: its p50/p90/p99 and mean latency and achieved QPS."""
    run = serve(service, poisson_arrivals(rate_qps, queries, seed), clock, wait, max_batch)
    lat = run["latencies_s"]
    return {"offered_qps": rate_qps, "achieved_qps": len(lat) / run["span_s"],
            "queries": len(lat), "mean_s": sum(lat) / len(lat),
            "p50_s": percentile(lat, 50), "p90_s": percentile(lat, 90),
            "p99_s": percentile(lat, 99), "mean_batch": len(lat) / len(run["batches"])}


def search(run_trial: Callable[[float], dict], capacity_qps: float, bound_s: float,
           max_trials: int, budget_s: float, clock: Callable[[], float]) -> dict:
    """The highest offered rate whose p99 is within `bound_s`: a first trial at half the
    estimated capacity, then bisection between the best passing and the lowest failing rate
    (the capacity itself until one fails; halving downwards while none passes). At most
    `max_trials` trials, and none started after `budget_s`. Every trial is kept."""
    trials: list[dict] = []
    lo, hi = 0.0, capacity_qps
    rate = capacity_qps / 2
    t0 = clock()
    while len(trials) < max_trials and clock() - t0 < budget_s:
        t = run_trial(rate)
        t["within_bound"] = t["p99_s"] <= bound_s
        trials.append(t)
        if t["within_bound"]:
            lo = rate
        else:
            hi = rate
        rate = (lo + hi) / 2
    passing = [t for t in trials if t["within_bound"]]
    best = max(passing, key=lambda t: t["offered_qps"]) if passing else None
    return {"max_qps": best["achieved_qps"] if best else None,
            "max_offered_qps": best["offered_qps"] if best else None,
            "p99_at_max_s": best["p99_s"] if best else None,
            "latency_bound_ms": bound_s * 1e3, "trials": trials}


def run_server(service: Callable[[int], None], service_s: float, settings: dict,
               seed: int, clock: Callable[[], float] = time.perf_counter,
               wait: Callable[[float], None] | None = None) -> dict:
    """The server scenario for a worker: `service_s` (one call's measured time) estimates the
    capacity, max_batch / service_s; each trial offers max(min_queries, rate x trial_s) queries.
    `settings`: latency_bound_ms, max_batch, trial_s, min_queries, max_trials, budget_s."""
    wait = wait or real_wait(clock)
    max_batch = int(settings.get("max_batch", 1))
    bound_s = float(settings["latency_bound_ms"]) / 1e3
    trial_s = float(settings.get("trial_s", 1.0))
    min_q = int(settings.get("min_queries", 300))
    count = [0]

    def run_trial(rate: float) -> dict:
        count[0] += 1
        n = max(min_q, int(rate * trial_s))
        return trial(service, rate, n, seed * 1000 + count[0], clock, wait, max_batch)

    out = search(run_trial, max_batch / max(service_s, 1e-9), bound_s,
                 int(settings.get("max_trials", 6)), float(settings.get("budget_s", 30.0)),
                 clock)
    out["max_batch"] = max_batch
    out["service_s"] = service_s
    return out


def run_scenarios(backend, request: dict, n_batches: int, offline: dict) -> dict | None:
    """The serving scenarios a request asks for (`request["serving"]`), after the offline
    inference benchmark of the same cell (`offline`: its result), on `backend`'s primitives:
    * single_stream (cells of batch size 1 only): `queries` one after the other, each timed
      by the harness' calibrated inference samples (benchmark_inference, no warm-up: the
      offline phase warmed up);
    * server: dynamic batching up to the cell's batch size; a batch of k <= batch size queued
      queries is served by one forward pass at the cell's compiled batch size (padded, as a
      static-shape engine serves it), so its service time is the offline per-call time.
    None when the request has no serving scenario."""
    serving = request.get("serving")
    if not serving:
        return None
    scenarios = serving.get("scenarios") or ()
    bs = int(request["batch_size"])
    out: dict = {}
    if "single_stream" in scenarios and bs == 1:
        ss = backend.benchmark_inference(n_batches, 0, int(serving["single_stream"]["queries"]))
        out["single_stream"] = {"latencies_s": ss["latencies_s"], "loops": ss["loops"]}
    if "server" in scenarios:
        served = [0]

        def service(_k: int) -> None:
            backend.sync(backend.predict(served[0] % n_batches))
            served[0] += 1

        out["server"] = run_server(service, percentile(offline["latencies_s"], 50),
                                   {**serving["server"], "max_batch": bs},
                                   int(request.get("seed", 0)), clock=backend.clock)
    return out or None
