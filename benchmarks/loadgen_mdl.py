"""The serving load generator (workers/loadgen.py) against M/D/1, and its own cost per query.

Prints, at utilisations 0.3, 0.6 and 0.9 with the dummy worker's fixed service time (a spin of
`--service-ms` on the clock, default 1 ms): M/D/1's predicted mean latency (S + rho S /
(2 (1 - rho))) and p99 (Erlang's waiting-time distribution), the same seeded arrivals'
simulated figures (Lindley's recursion: what this sample path should give), the measured ones,
and how many services another process stretched (over 1.2 S: the worker was descheduled, the
service time was not fixed, the comparison does not hold). Then the generator's own cost per
query: a backlog of queries served by a no-op service (no waiting), span / queries, against the
goal of 2% of a 1 ms service time.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/loadgen_mdl.py [--queries 2000] [--service-ms 1]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from decimal import Decimal, localcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workers"))
import dummy_worker  # noqa: E402
import loadgen  # noqa: E402


def md1_wait_cdf(x: float, rho: float) -> float:
    """P(W <= x S), M/D/1 (Erlang 1909); alternating terms summed in 60-digit Decimal."""
    with localcontext() as ctx:
        ctx.prec = 60
        r, xx = Decimal(repr(rho)), Decimal(repr(x))
        total = sum(((r * (k - xx)) ** k if k else Decimal(1)) / math.factorial(k)
                    * (r * (xx - k)).exp() for k in range(int(math.floor(x)) + 1))
        return float((1 - r) * total)


def md1_p99(rho: float, s: float) -> float:
    lo, hi = 0.0, 100.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(mid, rho) < 0.99 else (lo, mid)
    return s + hi * s


def lindley(arrivals: list[float], s: float) -> list[float]:
    out, free = [], -math.inf
    for a in arrivals:
        free = max(a, free) + s
        out.append(free - a)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--service-ms", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    s = args.service_ms / 1e3
    backend = dummy_worker.FixedService({}, s)
    clock = backend.clock
    print(f"service {s * 1e3:g} ms, {args.queries} queries per utilisation, seed {args.seed}")
    print(f"{'rho':>4} | {'mean ms: M/D/1':>14} {'sim':>7} {'measured':>9} | "
          f"{'p99 ms: M/D/1':>13} {'sim':>7} {'measured':>9} | stretched")
    for rho in (0.3, 0.6, 0.9):
        took: list[float] = []

        def service(_k: int) -> None:
            t0 = clock()
            backend.sync(backend.predict(0))
            took.append(clock() - t0)

        ref = lindley(loadgen.poisson_arrivals(rho / s, args.queries, args.seed), s)
        t = loadgen.trial(service, rho / s, args.queries, args.seed, clock,
                          loadgen.real_wait(clock))
        mean_md1 = s + rho * s / (2 * (1 - rho))
        stretched = sum(d > 1.2 * s for d in took) / len(took)
        print(f"{rho:4.1f} | {mean_md1 * 1e3:14.3f} {sum(ref) / len(ref) * 1e3:7.3f} "
              f"{t['mean_s'] * 1e3:9.3f} | {md1_p99(rho, s) * 1e3:13.3f} "
              f"{loadgen.percentile(ref, 99) * 1e3:7.3f} {t['p99_s'] * 1e3:9.3f} | "
              f"{stretched:.1%}")
    n = 200_000
    run = loadgen.serve(lambda k: None, [0.0] * n, time.perf_counter,
                        loadgen.real_wait(time.perf_counter))
    per_query = run["span_s"] / n
    print(f"load generator's own cost per query (backlog, no-op service): "
          f"{per_query * 1e6:.2f} us = {per_query / 0.001:.2%} of a 1 ms service "
          "(goal: under 2%)")


if __name__ == "__main__":
    main()
