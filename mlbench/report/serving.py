"""The report's serving figure: p99 latency against offered QPS, per competitor, bound drawn.

Owns drawing the server scenario's search (workers/loadgen.py; aggregate's server_trials_r
column: every trial of every process, as JSON text): one panel per model x device x precision,
one line per competitor and batch size (the server's max_batch), the latency bound a dashed red
line in every panel. The verdicts on serving are report.recommend's aspects (single_stream,
server); this module only draws. Never imports an ML framework.
"""
from __future__ import annotations

import json

import polars as pl

from .figures import Figure, bases_of, colour, esc, grid_layout, symbol

BOUND_RED = "#D62728"


def _trials(row: dict) -> list[dict]:
    """Every trial of a cells_frame row, sorted by offered rate."""
    out = [t for text in row.get("server_trials_r") or [] for t in json.loads(text)]
    return sorted(out, key=lambda t: t["offered_qps"])


def figures(cells: pl.DataFrame) -> list[Figure]:
    """The serving figure, or nothing when no cell ran the server scenario."""
    if "server_trials_r" not in cells.columns:
        return []
    df = cells.filter(pl.col("server_trials_r").list.len() > 0)
    if df.is_empty():
        return []
    rows = df.sort("framework", "batch_size").to_dicts()
    panels = sorted({(r["model_label"], r["device"], r["precision"]) for r in rows})
    layout, _ = grid_layout(panels, "p99 latency (ms)", "offered queries / s")
    fws, bases = sorted({r["framework"] for r in rows}), bases_of(cells)
    data, shapes, seen = [], [], set()
    for i, p in enumerate(panels):
        sfx = "" if i == 0 else str(i + 1)
        layout[f"yaxis{sfx}"]["type"] = "log"
        bound = None
        for r in (r for r in rows if (r["model_label"], r["device"], r["precision"]) == p):
            trials = _trials(r)
            bound = bound or r.get("server_bound_ms")
            name = f"{r['framework']} · max batch {r['batch_size']}"
            data.append({
                "type": "scatter", "mode": "lines+markers", "name": esc(name),
                "legendgroup": esc(name), "showlegend": name not in seen,
                "meta": {"framework": r["framework"]}, "xaxis": f"x{sfx}", "yaxis": f"y{sfx}",
                "x": [t["offered_qps"] for t in trials], "y": [t["p99_s"] * 1e3 for t in trials],
                "customdata": [[t["achieved_qps"], t["mean_batch"], t["queries"]]
                               for t in trials],
                "marker": {"color": colour(r["framework"], fws, bases),
                           "symbol": symbol(r["framework"], bases), "size": 8},
                "line": {"color": colour(r["framework"], fws, bases), "width": 1.5},
                "hovertemplate": "offered %{x:.4g} q/s<br>p99: %{y:.4g} ms<br>achieved "
                                 "%{customdata[0]:.4g} q/s<br>mean batch %{customdata[1]:.3g}"
                                 f" · %{{customdata[2]}} queries<extra>{esc(name)}</extra>"})
            seen.add(name)
        if bound:
            shapes.append({"type": "line", "xref": f"x{sfx} domain", "x0": 0, "x1": 1,
                           "yref": f"y{sfx}", "y0": bound, "y1": bound,
                           "line": {"color": BOUND_RED, "dash": "dash", "width": 1.5}})
            layout["annotations"].append({
                "text": f"bound {bound:.4g} ms", "showarrow": False, "xref": f"x{sfx} domain",
                "x": 0, "xanchor": "left", "yref": f"y{sfx}", "y": bound, "yanchor": "bottom",
                "font": {"color": BOUND_RED, "size": 11}})
    layout["shapes"] = shapes
    return [Figure("serving", "Serving: p99 latency against offered load",
                   "Scenario server: one-sample queries arrive as a seeded Poisson process at "
                   "the offered rate, served first come first served, batching what has queued "
                   "up to the cell's batch size; latency = completion - arrival (queueing "
                   "included). Each point is one trial of the search for the highest rate whose "
                   "p99 stays within the bound (dashed red), every process's trials pooled. "
                   "Hover: achieved QPS, mean batch served, queries in the trial.",
                   {"data": data, "layout": layout})]
