"""The report's plotly figures, built from the per-cell table (mlbench.aggregate.cells_frame).

Owns what is drawn and how: one point per cell (never raw samples, so a 10,000-attempt sweep
stays small), one fixed colour and marker per framework in every figure, panels faceted by
model x device x precision, exact values on hover. Every string from the data is HTML-escaped
before it reaches plotly, because plotly.js renders labels as pseudo-HTML.
Never imports an ML framework.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

COLOURS = {"pytorch": "#D55E00", "tensorflow": "#0072B2", "jax": "#009E73", "numpy": "#7F7F7F"}
SYMBOLS = {"pytorch": "circle", "tensorflow": "square", "jax": "diamond", "numpy": "x"}
SPARE = ["#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
NCOLS = 3
MIB = 1024 * 1024


@dataclass(frozen=True)
class Figure:
    id: str
    title: str
    caption: str
    fig: go.Figure


def colour(fw: str, order: list[str]) -> str:
    if fw in COLOURS:
        return COLOURS[fw]
    extra = [f for f in order if f not in COLOURS]
    return SPARE[extra.index(fw) % len(SPARE)] if fw in extra else SPARE[0]


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def _panels(df: pl.DataFrame) -> list[tuple]:
    return sorted({(r["model_label"], r["device"], r["precision"])
                   for r in df.select("model_label", "device", "precision").iter_rows(named=True)})


def _grid(panels: list[tuple], title: str, y_title: str, x_title: str):
    ncols = min(NCOLS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols,
                        subplot_titles=[esc(" · ".join(p)) for p in panels],
                        horizontal_spacing=0.07, vertical_spacing=min(0.12, 0.5 / nrows))
    fig.update_layout(title=esc(title), template="plotly_white", height=140 + 270 * nrows,
                      margin=dict(l=60, r=20, t=90, b=50), hovermode="closest",
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left",
                                  yref="container", title=None))
    fig.update_yaxes(title_text=esc(y_title), col=1)
    fig.update_xaxes(title_text=esc(x_title), row=nrows)
    return fig, ncols


def _pos(i: int, ncols: int) -> tuple[int, int]:
    return i // ncols + 1, i % ncols + 1


def _fws(df: pl.DataFrame) -> list[str]:
    return sorted(df["framework"].unique().to_list())


def _custom(rows: list[dict], extra: list[str]) -> list[list]:
    return [[esc(r["cell_id"]), r["repeats"], r["ok_repeats"], *[r.get(c) for c in extra]]
            for r in rows]


HEAD = "<b>%{customdata[0]}</b><br>ok repeats: %{customdata[2]} of %{customdata[1]}<br>"


def _faceted(cells: pl.DataFrame, fid: str, title: str, caption: str, series: list[dict],
             y_title: str, kind: str = "line", log_y: bool = False) -> Figure | None:
    """series: dicts with col (y), label, dash, opacity, hover (template tail), extra (customdata
    columns), err (min, max) columns or None, devices (None = all, or 'accelerator')."""
    cols = [s["col"] for s in series]
    df = cells.filter(pl.col("ok_repeats") > 0).filter(
        pl.any_horizontal([pl.col(c).is_not_null() for c in cols]))
    if df.is_empty():
        return None
    panels = _panels(df)
    fws = _fws(df)
    fig, ncols = _grid(panels, title, y_title, "batch size")
    shown: set[str] = set()
    for i, (model, dev, prec) in enumerate(panels):
        row, col = _pos(i, ncols)
        sub = df.filter((pl.col("model_label") == model) & (pl.col("device") == dev)
                        & (pl.col("precision") == prec)).sort("batch_size")
        for fw in fws:
            for s in series:
                rows = [r for r in sub.filter(pl.col("framework") == fw).iter_rows(named=True)
                        if r[s["col"]] is not None]
                if not rows:
                    continue
                name = esc(f"{fw} {s['label']}".strip())
                x = [r["batch_size"] for r in rows]
                y = [r[s["col"]] * s.get("scale", 1) for r in rows]
                common = dict(x=x, y=y, name=name, legendgroup=name,
                              showlegend=name not in shown, opacity=s.get("opacity", 1),
                              customdata=_custom(rows, s.get("extra", [])),
                              hovertemplate=HEAD + s["hover"] + f"<extra>{esc(fw)}</extra>")
                shown.add(name)
                err = s.get("err")
                if err and all(r[err[0]] is not None for r in rows):
                    sc = s.get("scale", 1)
                    common["error_y"] = dict(
                        type="data", symmetric=False, thickness=1,
                        array=[r[err[1]] * sc - v for r, v in zip(rows, y)],
                        arrayminus=[v - r[err[0]] * sc for r, v in zip(rows, y)])
                c = colour(fw, fws)
                if kind == "line":
                    tr = go.Scatter(mode="lines+markers", line=dict(color=c, dash=s.get(
                        "dash", "solid")), marker=dict(symbol=SYMBOLS.get(fw, "circle"),
                                                       size=8, color=c), **common)
                else:
                    common["x"] = [str(v) for v in x]
                    tr = go.Bar(marker=dict(color=c, pattern=dict(shape=s.get("pattern", ""))),
                                **common)
                fig.add_trace(tr, row=row, col=col)
    if kind == "line":
        fig.update_xaxes(type="log", tickmode="array",
                         tickvals=sorted({v for v in df["batch_size"].to_list() if v}))
    else:
        fig.update_layout(barmode="group")
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=[
            str(v) for v in sorted({v for v in df["batch_size"].to_list() if v is not None})])
    if log_y:
        fig.update_yaxes(type="log")
    return Figure(fid, title, caption, fig)


def _params(cells: pl.DataFrame) -> Figure | None:
    df = (cells.filter(pl.col("params_trainable").is_not_null())
          .group_by("model_label", "framework").agg(pl.col("params_trainable").max(),
                                                    pl.col("params_total").max())
          .sort("model_label", "framework"))
    if df.is_empty():
        return None
    fws = _fws(df)
    fig = go.Figure()
    for fw in fws:
        rows = df.filter(pl.col("framework") == fw).to_dicts()
        fig.add_bar(x=[esc(r["model_label"]) for r in rows],
                    y=[r["params_trainable"] for r in rows], name=esc(fw),
                    marker_color=colour(fw, fws),
                    customdata=[[r["params_total"]] for r in rows],
                    hovertemplate="%{x}<br>trainable: %{y:,}<br>total: %{customdata[0]:,}"
                    f"<extra>{esc(fw)}</extra>")
    fig.update_layout(title="Trainable parameters per model", template="plotly_white",
                      barmode="group", height=380, yaxis_title="parameters",
                      margin=dict(l=60, r=20, t=70, b=50))
    return Figure("params", "Parameter counts", "Trainable parameters of each model as each "
                  "framework builds it; they should agree across frameworks.", fig)


def build_figures(cells: pl.DataFrame) -> list[Figure]:
    mem = cells.with_columns((pl.when(pl.col("device") != "cpu")
                              .then(pl.col("peak_device_bytes"))).alias("dev_mem"))
    rep = "<br>repeat range: %{customdata[3]:.6g} – %{customdata[4]:.6g}"
    figs = [
        _faceted(cells, "throughput", "Training throughput against batch size",
                 "Samples per second = batch size / median steady-state step time (raw step "
                 "times pooled over ok repeats). Error bars: range of the per-repeat values.",
                 [dict(col="train_sps", label="", hover="batch %{x}<br>samples/s: %{y:.6g}"
                       + rep, extra=["train_sps_min", "train_sps_max"],
                       err=("train_sps_min", "train_sps_max"))], "samples / s", log_y=True),
        _faceted(cells, "epoch", "Training time per epoch",
                 "Median epoch wall time over epochs and repeats (includes data feeding).",
                 [dict(col="epoch_time_s", label="", hover="batch %{x}<br>epoch: %{y:.6g} s")],
                 "seconds per epoch", kind="bar"),
        _faceted(cells, "latency", "Inference latency against batch size",
                 "Percentiles of the raw per-batch latencies pooled over ok repeats: solid p50, "
                 "dashed p90, dotted p99.",
                 [dict(col=c, label=p, dash=d, scale=1000, hover=f"batch %{{x}}<br>{p}: "
                       "%{y:.6g} ms") for c, p, d in (("lat_median", "p50", "solid"),
                                                      ("lat_p90", "p90", "dash"),
                                                      ("lat_p99", "p99", "dot"))],
                 "latency (ms)", log_y=True),
        _faceted(mem, "memory", "Peak memory",
                 "Solid: peak device memory (accelerators only). Hatched: peak host RSS of the "
                 "worker process. Maximum over ok repeats.",
                 [dict(col="dev_mem", label="device", scale=1 / MIB, hover="batch %{x}<br>"
                       "device peak: %{y:.6g} MiB"),
                  dict(col="host_peak_rss_bytes", label="host", scale=1 / MIB, pattern="/",
                       opacity=0.6, hover="batch %{x}<br>host RSS peak: %{y:.6g} MiB")],
                 "MiB", kind="bar"),
        _faceted(cells, "accuracy", "Evaluation accuracy",
                 "Accuracy on the held-out synthetic data after training (median over repeats); "
                 "frameworks should agree closely.",
                 [dict(col="accuracy", label="", hover="batch %{x}<br>accuracy: %{y:.6g}")],
                 "accuracy", kind="bar"),
        _faceted(cells, "compile", "First step (compile / trace) time",
                 "Time of the first training step, which includes graph tracing, JIT compilation "
                 "and autotuning (median over repeats).",
                 [dict(col="first_step_s", label="", hover="batch %{x}<br>first step: "
                       "%{y:.6g} s")], "seconds", kind="bar"),
        _params(cells),
    ]
    return [f for f in figs if f is not None]
