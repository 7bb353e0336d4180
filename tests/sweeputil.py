"""Keep real sweeps in the tests cheap where their figures are not what a test checks.

`small_ceilings()`: the device ceilings of an in-process `mlbench run` measured for real but
small (a 256-matrix, one round, 0.5 s per precision instead of 2048, three rounds and 5 s): the
tests that use it read the ceilings' structure (an entry per framework, FLOP/s > 0, an MFU), not
their figures. tests/test_ceiling.py checks the real rounds and the reuse.
"""
from __future__ import annotations

import contextlib
import functools

import pytest

SMALL_CEILING = {"size": 256, "rounds": 1, "max_seconds_per_precision": 0.5}


@contextlib.contextmanager
def small_ceilings():
    from mlbench.analysis import ceiling
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ceiling, "measure_ceilings",
                   functools.partial(ceiling.measure_ceilings, **SMALL_CEILING))
        yield
