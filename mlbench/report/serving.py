"""The report's serving figures: p99 latency against offered QPS per competitor (bound drawn),
and an exported runtime's export time against what it saves per query (its break-even).

Owns drawing the server scenario's search (workers/loadgen.py; aggregate's server_trials_r
column: every trial of every process, as JSON text): one panel per model x device x precision,
one line per competitor and batch size (the server's max_batch), the latency bound a dashed red
line in every panel; and `break_even`, the export's cost in batch-1 queries (below). The
verdicts on serving are report.recommend's aspects (single_stream, server); this module only
draws and computes the break-even. Never imports an ML framework.
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
    """The serving figures that have data: the server scenario's, the export break-even."""
    return [f for f in (_server(cells), _break_even_figure(cells)) if f is not None]


def _server(cells: pl.DataFrame) -> Figure | None:
    if "server_trials_r" not in cells.columns:
        return []
    df = cells.filter(pl.col("server_trials_r").list.len() > 0)
    if df.is_empty():
        return None
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
    return Figure("serving", "Serving: p99 latency against offered load",
                   "Scenario server: one-sample queries arrive as a seeded Poisson process at "
                   "the offered rate, served first come first served, batching what has queued "
                   "up to the cell's batch size; latency = completion - arrival (queueing "
                   "included). Each point is one trial of the search for the highest rate whose "
                   "p99 stays within the bound (dashed red), every process's trials pooled. "
                   "Hover: achieved QPS, mean batch served, queries in the trial.",
                   {"data": data, "layout": layout})


KEY = ["model_label", "device", "precision"]


def break_even(cells: pl.DataFrame) -> pl.DataFrame:
    """Per exported runtime (a cell with export_s) of batch size 1, against its source
    framework's batch-size-1 cell of the same model, device and precision (the framework named
    by export_source, as it runs natively): query_s and source_query_s, the mean single-stream
    query time (pooled over processes: N queries cost N x the mean, not N x the median);
    gain_s = source_query_s - query_s, what each query saves; break_even_queries =
    ceil(export_s / gain_s), the queries after which the export (median over processes) has
    paid for itself; null where nothing is saved (gain_s <= 0) or the source was not measured
    (source_query_s null)."""
    cols = ["framework", "source", *KEY, "export_s", "query_s", "source_query_s", "gain_s",
            "break_even_queries"]
    if not {"export_s", "export_source", "ss_mean"} <= set(cells.columns):
        return pl.DataFrame(schema={c: pl.Float64 if c.endswith(("_s", "_queries"))
                                    else pl.Utf8 for c in cols})
    one = cells.filter(pl.col("batch_size") == 1)
    rt = one.filter(pl.col("export_s").is_not_null() & pl.col("ss_mean").is_not_null()).select(
        "framework", pl.col("export_source").alias("source"), *KEY, "export_s",
        pl.col("ss_mean").alias("query_s"))
    src = one.filter(pl.col("ss_mean").is_not_null()).select(
        pl.col("framework").alias("source"), *KEY, pl.col("ss_mean").alias("source_query_s"))
    gain = pl.col("source_query_s") - pl.col("query_s")
    return (rt.join(src, on=["source", *KEY], how="left")
            .with_columns(gain.alias("gain_s"))
            .with_columns(pl.when(pl.col("gain_s") > 0)
                          .then((pl.col("export_s") / pl.col("gain_s")).ceil())
                          .alias("break_even_queries"))
            .select(cols).sort(*KEY, "framework"))


def _break_even_figure(cells: pl.DataFrame) -> Figure | None:
    """One bar per exported runtime and panel: the queries its export needs to pay off (log
    axis); those that never do (slower per query than their source) are named in the caption."""
    be = break_even(cells)
    if be.is_empty():
        return None
    rows = be.to_dicts()
    panels = sorted({tuple(r[k] for k in KEY) for r in rows})
    layout, _ = grid_layout(panels, "queries to pay off the export", "exported runtime")
    fws, bases = sorted({r["framework"] for r in rows}), bases_of(cells)
    data, never = [], []
    for i, p in enumerate(panels):
        sfx = "" if i == 0 else str(i + 1)
        layout[f"yaxis{sfx}"]["type"] = "log"
        for r in (r for r in rows if tuple(r[k] for k in KEY) == p):
            if r["break_even_queries"] is None:
                never.append(_never(r))
                continue
            data.append({
                "type": "bar", "name": esc(r["framework"]), "showlegend": False,
                "meta": {"framework": r["framework"]}, "xaxis": f"x{sfx}", "yaxis": f"y{sfx}",
                "x": [esc(r["framework"])], "y": [r["break_even_queries"]],
                "text": [f"{r['break_even_queries']:,.0f}"], "textposition": "outside",
                "customdata": [[r["export_s"], r["source_query_s"] * 1e3, r["query_s"] * 1e3,
                                r["gain_s"] * 1e3, esc(r["source"])]],
                "marker": {"color": colour(r["framework"], fws, bases)},
                "hovertemplate": "export %{customdata[0]:.3g} s<br>%{customdata[4]}: "
                                 "%{customdata[1]:.4g} ms per query<br>this runtime: "
                                 "%{customdata[2]:.4g} ms (saves %{customdata[3]:.3g} ms)"
                                 f"<br>pays off after %{{y:,.0f}} queries<extra>"
                                 f"{esc(r['framework'])}</extra>"})
    caption = ("Export break-even: an exported runtime's export (and load) time, median over "
               "processes, divided by what it saves per batch-1 query against the framework it "
               "was exported from (mean single-stream query time, pooled over processes), "
               "rounded up: after that many queries the export has paid for itself. Hover: the "
               "export time and both query times.")
    if never:
        caption += " Never pays off: " + "; ".join(never) + "."
    return Figure("serving-export", "Serving: export break-even", caption,
                  {"data": data, "layout": layout})


def _never(r: dict) -> str:
    where = f"{r['framework']} ({r['model_label']}, {r['device']}, {r['precision']})"
    if r["source_query_s"] is None:
        return f"{where}: its source {r['source']} has no batch-1 queries to compare with"
    slower = -r["gain_s"] * 1e3
    return f"{where}: {slower:.3g} ms per query slower than {r['source']}" if slower > 0 \
        else f"{where}: no faster per query than {r['source']}"
