"""A run directory read into polars tables, for the report and `mlbench compare`.

Owns `load_frames`: the store's attempts (mlbench.results.store.load), the unusable ones left out,
the latest per cell, then the aggregation's tables (mlbench.results.aggregate.frames) with the run's
measured ceilings. Above both the store and the aggregation, so neither imports the other's way
back. Never imports an ML framework.
"""
from __future__ import annotations

import polars as pl

from . import aggregate, store
from ..analysis import ceiling
from ..errors import UserError


def load_frames(path) -> tuple[dict, list[str], pl.DataFrame, pl.DataFrame]:
    """store.load + validation + attempts_frame(latest) + cells_frame, for report and compare.
    Zero attempts is a UserError: an empty run, or a file that is not mlbench output."""
    loaded = store.load(path)
    attempts = [a if isinstance(a.get("repeat", 0), int) else {**a, "repeat": 0}
                for a in loaded.attempts
                if isinstance(a, dict) and "cell_id" in a and "status" in a]
    if not attempts:
        what = ("not mlbench output: no line is an attempt record" if loaded.warnings
                else "no usable cells: the results contain no attempts")
        raise UserError(what, str(path))
    run = loaded.run if isinstance(loaded.run, dict) else {}
    att, cells = aggregate.frames(store.latest_attempts(attempts), run,
                                  ceiling.best_flops(ceiling.load(path)))
    return run, loaded.warnings, att, cells
