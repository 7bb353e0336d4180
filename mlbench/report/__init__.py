"""`mlbench report`: one offline HTML page (plus summary.csv and aggregated.parquet) from a run.

Owns the pipeline store.load -> aggregate (both through mlbench.results.frames) -> figures +
recommendations -> render. Rules:
* zero attempts (an empty or non-mlbench file) is a UserError ("no usable cells");
* verify.json next to the results (the equivalence gate) adds the gate table; cells that failed
  it are "not comparable" in the comparison table and cannot win a recommendation;
* a run where nothing succeeded still renders: the failures table is then the content and the
  page says plainly that nothing succeeded; partial runs say what is missing.
Never imports an ML framework.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

__all__ = ["build_report"]


@contextmanager
def _no_cyclic_gc():
    """A report allocates hundreds of thousands of short-lived dicts and lists (records, table
    rows, hover data) and no reference cycles worth collecting; the cyclic collector's passes
    over them cost about a fifth of a 10,000-attempt build. Paused for the build only (plain
    reference counting still frees everything), restored afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_report(results: str | Path, output: str | Path) -> Path:
    """Read a results.json, results.jsonl or run directory; write index.html, summary.csv and
    aggregated.parquet into `output`; return the index.html path."""
    # imported here: mlbench.results.summary reads the verdicts (report.modes) without loading the
    # page's renderer (jinja2, plotly)
    from ..results import aggregate, frames
    from ..analysis import ceiling, decision
    from ..analysis.gate_verdicts import load_verdicts
    from . import modes as modes_mod
    from .figures import build_figures, log_ticks_whole
    from .gatemarks import GateMarks
    from .recommend import recommend
    from .render import render
    from .serving import figures as serving_figures
    with _no_cyclic_gc():
        run, warnings, att, cells = frames.load_frames(results)
        out = Path(output)
        if out.exists() and not out.is_dir():
            raise UserError("report output must be a directory, but a file is in the way",
                            str(out))
        verdicts, gate_error = load_verdicts(results)
        settings = decision.settings_from(run)
        marks = GateMarks(cells, verdicts)
        cells = marks.columns(cells)  # gate, gate_text: every table and figure shows them
        # None unless a framework ran in several modes
        modes = modes_mod.build(cells, verdicts, settings)
        figures = [marks.mark(log_ticks_whole(f)) for f in build_figures(cells)
                   + ([modes.figure] if modes and modes.figure else [])
                   + serving_figures(cells)]
        recs = recommend(cells, verdicts, settings)
        return render(out, str(results), run, att, cells,
                      aggregate.comparison_frame(cells, verdicts),
                      aggregate.failures_frame(att), figures, recs,
                      warnings, ceilings=ceiling.load(results), verdicts=verdicts,
                      gate_error=gate_error, modes=modes, marks=marks,
                      verdict_rows=modes_mod.verdict_rows(recs, modes and modes.verdicts))
