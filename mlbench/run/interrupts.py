"""Ctrl-C and SIGTERM during a blocking call into a dependency (ray.init, ray.get, a probe of an
interpreter): the call is interrupted, always.

During a sweep the runner's handlers only set a stop flag (mlbench.run.launcher.Stop) that mlbench's
own loops read; a dependency's loop (Ray's connection retries, an unbounded ray.get) never reads
it, so a signal there would be swallowed. `interruptible(stop)` wraps such a call: a signal that
arrives meanwhile (or arrived just before) raises mlbench.errors.Interrupted, which unwinds through
the runner's cleanup (the executor is closed, run.json and the results are written) to exit 130
(SIGINT) or 143 (SIGTERM). Must not import any ML framework.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ..errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interruptible(stop=None) -> Iterator[None]:
    """Within the block SIGINT/SIGTERM raise Interrupted (and set `stop`, so the runner records
    why); outside the main thread (no handlers there) the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if stop is not None and stop.requested:
        raise Interrupted(stop.signal_name or "SIGINT")

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop is not None:
            stop.requested, stop.signal_name = True, stop.signal_name or name
        raise Interrupted(name)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    global _current
    outer, _current = _current, handler
    try:
        yield
    finally:
        _current = outer
        for s, h in old.items():
            signal.signal(s, h)


_current = None


def reassert() -> None:
    """Install the current block's handlers again: a dependency's native code (Ray's core
    worker, while it connects) may install C-level handlers of its own that bypass Python's;
    call this from the loop that waits on it."""
    if _current is not None and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _current)
