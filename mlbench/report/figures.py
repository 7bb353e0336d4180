"""The report's plotly figures, built from the per-cell table
(mlbench.results.aggregate.cells_frame).

Owns what is drawn and how: one point per cell (never raw samples, so a 10,000-attempt sweep
stays small), one fixed colour and marker per framework in every figure, panels faceted by
model x device x precision, exact values on hover. Every string from the data is HTML-escaped
before it reaches plotly, because plotly.js renders labels as pseudo-HTML.
Never imports an ML framework.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

import polars as pl

from ..config import catalog

# each framework's fixed colour and marker: its entry of the framework table
COLOURS = {n: f.colour for n, f in catalog.REGISTRY.items() if f.colour}
SYMBOLS = {n: f.symbol for n, f in catalog.REGISTRY.items() if f.symbol}
SPARE = ["#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
NCOLS = 3
MIB = 1024 * 1024


@dataclass(frozen=True)
class Figure:
    id: str
    title: str
    caption: str
    spec: dict  # {"data": [...], "layout": {...}}: what Plotly.newPlot takes


def colour(fw: str, order: list[str], bases: dict[str, str] | None = None) -> str:
    """The framework's fixed colour; a variant of a framework (bases: label -> framework, e.g.
    pytorch-compile -> pytorch) gets a darker or lighter shade of its framework's hue."""
    if fw in COLOURS:
        return COLOURS[fw]
    base = (bases or {}).get(fw)
    if base in COLOURS:
        sibs = [f for f in order if f != base and (bases or {}).get(f) == base]
        return shade(COLOURS[base], sibs.index(fw) if fw in sibs else 0)
    extra = [f for f in order if f not in COLOURS and (bases or {}).get(f) not in COLOURS]
    return SPARE[extra.index(fw) % len(SPARE)] if fw in extra else SPARE[0]


def shade(hex_colour: str, k: int) -> str:
    """The k-th shade of a colour: darker, lighter, darker still, lighter still, ..."""
    amount = 0.4 + 0.2 * (k // 2)
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    target = 0 if k % 2 == 0 else 255
    return "#" + "".join(f"{round(c + (target - c) * min(amount, 0.8)):02X}" for c in rgb)


def bases_of(df: pl.DataFrame) -> dict[str, str]:
    """{framework label: the framework it is a variant of} (empty for results without modes)."""
    if "base_framework" not in df.columns:
        return {}
    return dict(df.select("framework", "base_framework").unique().iter_rows())


def symbol(fw: str, bases: dict[str, str]) -> str:
    base = bases.get(fw, fw)
    return SYMBOLS.get(fw) or (SYMBOLS.get(base, "circle") + "-open")


def esc(x) -> str:
    return html.escape(str(x), quote=False)  # plotly shows &quot; literally; < > suffice


def _panels(df: pl.DataFrame) -> list[tuple]:
    return sorted({(r["model_label"], r["device"], r["precision"])
                   for r in df.select("model_label", "device", "precision").iter_rows(named=True)})


LAYOUT = {"template": "plotly_white", "hovermode": "closest", "font": {"size": 12},
          "paper_bgcolor": "white", "plot_bgcolor": "white",
          # the legend right of the panels, from the top of the plot area down: plotly's
          # toolbar (top right, in the top margin) never covers an entry
          "legend": {"orientation": "v", "y": 1, "yanchor": "top", "x": 1.02,
                     "xanchor": "left"}}
PANEL_PX, GAP_PX, TOP_PX, BOTTOM_PX = 260, 80, 60, 50


def grid_layout(panels: list[tuple], y_title: str, x_title: str) -> tuple[dict, int]:
    """A subplot grid as a plain layout dict (plotly's make_subplots is far too slow for big
    sweeps): axes x/x2/..., y/y2/..., one title annotation per panel."""
    ncols = min(NCOLS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    height = TOP_PX + BOTTOM_PX + nrows * PANEL_PX + (nrows - 1) * GAP_PX
    area = height - TOP_PX - BOTTOM_PX
    vgap, hgap = GAP_PX / area, 0.09  # room for every panel's y-axis title
    rh, cw = PANEL_PX / area, (1 - (ncols - 1) * hgap) / ncols
    layout = {**LAYOUT, "height": height, "annotations": [],
              "margin": {"l": 70, "r": 20, "t": TOP_PX, "b": BOTTOM_PX}}
    for i, p in enumerate(panels):
        r, c = divmod(i, ncols)
        x0, y1 = c * (cw + hgap), 1 - r * (rh + vgap)
        sfx = "" if i == 0 else str(i + 1)
        layout[f"xaxis{sfx}"] = {"domain": [x0, min(1, x0 + cw)], "anchor": f"y{sfx}",
                                 "title": {"text": esc(x_title)}, "automargin": True}
        layout[f"yaxis{sfx}"] = {"domain": [max(0, y1 - rh), y1], "anchor": f"x{sfx}",
                                 "automargin": True, "gridcolor": "#eceff3",
                                 "title": {"text": esc(y_title)}}  # every panel: read alone
        layout["annotations"].append({"text": f"<b>{esc(' · '.join(p))}</b>", "showarrow": False,
                                      "x": x0 + cw / 2, "y": y1, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom"})
    return layout, ncols


def _fws(df: pl.DataFrame) -> list[str]:
    return sorted(df["framework"].unique().to_list())


def _r(v):
    """7 significant digits: hover shows 6, the exact values are in aggregated.parquet; keeps a
    10,000-attempt report small."""
    return float(f"{v:.7g}") if isinstance(v, float) else v


def _custom(rows: list[dict], extra: list[str]) -> list[list]:
    return [[r["repeats"], r["ok_repeats"], *[_r(r.get(c)) for c in extra]] for r in rows]


_CUSTOM_REF = re.compile(r"%\{customdata\[(\d+)\]([^}]*)\}")


def _inline_constants(custom: list[list], template: str) -> tuple[list[list], str]:
    """Strings that are the same for every point of a trace (the settings line, the interval
    basis, the warnings of cells without any) go into the trace's hover template once instead
    of into every point's customdata; the other references are renumbered. The hover text is
    unchanged. Strings with a % stay in customdata (plotly would read them as template syntax).
    """
    if not custom:
        return custom, template
    first = custom[0]
    const = {j for j, v in enumerate(first) if isinstance(v, str) and "%" not in v
             and all(r[j] == v for r in custom)}
    if not const:
        return custom, template
    keep = [j for j in range(len(first)) if j not in const]
    new_index = {j: i for i, j in enumerate(keep)}

    def sub(m: re.Match) -> str:
        j = int(m.group(1))
        if j in const:
            if m.group(2):  # a format on a string: leave it to plotly
                return m.group(0)
            return first[j]
        return f"%{{customdata[{new_index[j]}]{m.group(2)}}}"

    formatted = {int(m.group(1)) for m in _CUSTOM_REF.finditer(template) if m.group(2)}
    if formatted & const:  # never happens for string columns; keep it simple if it does
        return custom, template
    return [[r[j] for j in keep] for r in custom], _CUSTOM_REF.sub(sub, template)


def _head(fw: str, panel: tuple) -> str:
    return (f"<b>{esc(fw)}</b> · {esc(' · '.join(map(str, panel)))}<br>"
            "ok repeats: %{customdata[1]} of %{customdata[0]}<br>")


def _faceted(cells: pl.DataFrame, fid: str, title: str, caption: str, series: list[dict],
             y_title: str, kind: str = "line", log_y: bool = False,
             log_format: str = "~s") -> Figure | None:
    """series: dicts with col (y), label, hover (template tail), and optionally dash, scale,
    opacity, pattern, extra (customdata columns), err ((min, max) columns for error bars)."""
    cols = [s["col"] for s in series]
    df = cells.filter(pl.col("ok_repeats") > 0).filter(
        pl.any_horizontal([pl.col(c).is_not_null() for c in cols]))
    if df.is_empty():
        return None
    panels = _panels(df)
    fws = _fws(df)
    bases = bases_of(df)
    batches = sorted({v for v in df["batch_size"].to_list() if v is not None})
    if kind == "line" and len(batches) < 2:
        # a curve against batch size needs two batch sizes: one bar per framework instead
        kind = "bar"
        title = f"{title.split(' against batch size')[0]} at batch size " + \
            ", ".join(map(str, batches))
        caption = ("Drawn as bars: this run measured one batch size, so there is no curve "
                   "against batch size (run two or more batch sizes to see how it scales). "
                   + caption)
    layout, ncols = grid_layout(panels, y_title, "batch size")
    index = {p: i for i, p in enumerate(panels)}
    data, shown = [], set()
    groups: dict[tuple, list[dict]] = {}
    need = ["model_label", "device", "precision", "framework", "batch_size", "repeats",
            "ok_repeats"] + [c for sr in series for c in (sr["col"], *sr.get("extra", ()),
                                                          *sr.get("err", ()),
                                                          *sr.get("base", ()))]
    for r in df.select(list(dict.fromkeys(need))).sort("batch_size").iter_rows(named=True):
        groups.setdefault((r["model_label"], r["device"], r["precision"], r["framework"]),
                          []).append(r)
    for (model, dev, prec, fw), all_rows in sorted(groups.items()):
        i = index[(model, dev, prec)]
        sfx = "" if i == 0 else str(i + 1)
        c = colour(fw, fws, bases)
        for s in series:
            rows = [r for r in all_rows if r[s["col"]] is not None]
            if not rows:
                continue
            sc = s.get("scale", 1)
            name = esc(f"{fw} {s['label']}".strip())
            y = [_r(r[s["col"]] * sc) for r in rows]
            x = [r["batch_size"] for r in rows]
            custom, hover = _inline_constants(
                _custom(rows, s.get("extra", [])),
                _head(fw, (model, dev, prec)) + s["hover"] + "<extra></extra>")
            tr = {"x": x if kind == "line" else [str(v) for v in x], "y": y, "name": name,
                  "meta": {"framework": fw},
                  "legendgroup": name, "showlegend": name not in shown, "xaxis": f"x{sfx}",
                  "yaxis": f"y{sfx}", "customdata": custom, "hovertemplate": hover}
            if s.get("opacity", 1) != 1:  # 1 is plotly's default
                tr["opacity"] = s["opacity"]
            shown.add(name)
            err = s.get("err")
            if err and all(r[err[0]] is not None and r[err[1]] is not None for r in rows):
                # the point (pooled samples) may sit just outside the interval of the
                # per-process medians: never draw a negative bar
                tr["error_y"] = {"type": "data", "symmetric": False, "thickness": 1, "color": c,
                                 "array": [_r(max(0.0, r[err[1]] * sc - v))
                                           for r, v in zip(rows, y)],
                                 "arrayminus": [_r(max(0.0, v - r[err[0]] * sc))
                                                for r, v in zip(rows, y)]}
            if "base" in s:  # stacked: drawn on top of the sum of the `base` columns
                tr["base"] = [_r(sum((r.get(b) or 0.0) for b in s["base"]) * sc) for r in rows]
                tr["offsetgroup"] = esc(fw)
            if kind == "line":
                tr.update(type="scatter", mode="lines+markers",
                          line={"color": c, "dash": s.get("dash", "solid")},
                          marker={"symbol": symbol(fw, bases), "size": 8, "color": c})
            else:
                tr.update(type="bar", offsetgroup=tr.get("offsetgroup", name),
                          marker={"color": c, "pattern": {"shape": s.get("pattern", "")}})
            data.append(tr)
    for i in range(len(panels)):
        sfx = "" if i == 0 else str(i + 1)
        if kind == "line":
            layout[f"xaxis{sfx}"].update(type="log", tickmode="array", tickvals=batches,
                                         title={"text": "batch size (log scale)"})
        else:
            layout[f"xaxis{sfx}"].update(type="category", categoryorder="array",
                                         categoryarray=[str(b) for b in batches])
        if log_y:
            # every tick label a whole number with its prefix: plotly's default labels the
            # ticks between the powers of ten with a bare digit ("2", "5"), units lost
            layout[f"yaxis{sfx}"].update(type="log", tickformat=log_format)
            if c_ := layout[f"yaxis{sfx}"].get("title"):
                c_["text"] = c_["text"] + " (log scale)"
    if kind == "bar":
        layout["barmode"] = "group"
    if len(panels) > MAX_GRID_PANELS:
        return Figure(fid, title, caption, {"panels": _per_panel(panels, data, layout,
                                                                  y_title, kind)})
    return Figure(fid, title, caption, {"data": data, "layout": layout})


def log_ticks_whole(fig: Figure) -> Figure:
    """Every log axis of a figure (also those drawn elsewhere, e.g. the modes section's) labels
    each tick as a whole number: plotly's default writes the ticks between powers of ten as a
    bare digit ("2", "5"), which loses the unit's scale."""
    specs = list((fig.spec.get("panels") or {}).values()) or [fig.spec]
    for spec in specs:
        for key, ax in spec.get("layout", {}).items():
            if key.startswith(("xaxis", "yaxis")) and isinstance(ax, dict) \
                    and ax.get("type") == "log" and "tickformat" not in ax \
                    and ax.get("tickmode") != "array":
                ax["tickformat"] = "~g"
    return fig


MAX_GRID_PANELS = 6  # beyond: one panel at a time, chosen with the page's panel selector


def panel_key(p: tuple) -> str:
    """The selector's name of a panel (model · device · precision), unescaped: it is only
    compared in JavaScript and shown as <option> text, which the template escapes."""
    return " · ".join(map(str, p))


def _per_panel(panels: list[tuple], data: list[dict], layout: dict, y_title: str,
               kind: str) -> dict[str, dict]:
    """The grid split into one single-panel spec per panel, keyed by panel_key: a big sweep's
    page draws only the panel the reader selects instead of 144 panels at once."""
    per: dict[int, list[dict]] = {}
    for tr in data:
        ax = tr["xaxis"][1:]
        per.setdefault(int(ax) - 1 if ax else 0, []).append(tr)
    out = {}
    for i, p in enumerate(panels):
        sfx = "" if i == 0 else str(i + 1)
        lay, _ = grid_layout([p], y_title, "batch size")
        for ax in ("xaxis", "yaxis"):
            src = {k: v for k, v in layout[f"{ax}{sfx}"].items() if k not in ("domain", "anchor")}
            lay[ax] = {**lay[ax], **src}
        if lay["yaxis"].get("type") == "log":
            lay["yaxis"]["title"] = {"text": esc(y_title) + " (log scale)"}
        if kind == "bar":
            lay["barmode"] = "group"
        seen: set = set()
        traces = []
        for tr in per.get(i, []):
            traces.append({**tr, "xaxis": "x", "yaxis": "y", "showlegend": tr["name"] not in seen})
            seen.add(tr["name"])
        out[panel_key(p)] = {"data": traces, "layout": lay}
    return out


def _params(cells: pl.DataFrame) -> Figure | None:
    df = (cells.filter(pl.col("params_trainable").is_not_null())
          .group_by("model_label", "framework").agg(pl.col("params_trainable").max(),
                                                    pl.col("params_total").max())
          .sort("model_label", "framework"))
    if df.is_empty():
        return None
    fws, bases = _fws(df), bases_of(cells)
    data = []
    for fw in fws:
        rows = df.filter(pl.col("framework") == fw).to_dicts()
        data.append({"type": "bar", "x": [esc(r["model_label"]) for r in rows],
                     "y": [r["params_trainable"] for r in rows], "name": esc(fw),
                     "marker": {"color": colour(fw, fws, bases)},
                     "customdata": [[r["params_total"]] for r in rows],
                     "text": [f"{r['params_trainable']:,}" for r in rows],
                     "textposition": "outside",
                     "hovertemplate": "%{x}<br>trainable: %{y:,}<br>total: %{customdata[0]:,}"
                     f"<extra>{esc(fw)}</extra>"})
    layout = {**LAYOUT, "barmode": "group", "height": 380, "yaxis": {"title": {
        "text": "parameters"}}, "margin": {"l": 70, "r": 20, "t": 40, "b": 50}}
    return Figure("params", "Parameter counts", "Trainable parameters of each model as each "
                  "framework builds it; they should agree across frameworks.",
                  {"data": data, "layout": layout})


def _escaped(cells: pl.DataFrame, col: str, name: str) -> pl.DataFrame:
    vals = [esc(v) if v is not None else "–" for v in (
        cells[col].to_list() if col in cells.columns else [None] * cells.height)]
    return cells.with_columns(pl.Series(name, vals, dtype=pl.Utf8))


def build_figures(cells: pl.DataFrame) -> list[Figure]:
    cells = _escaped(_escaped(cells, "settings", "settings_h"), "ci_basis", "ci_basis_h")
    cells = cells.with_columns(pl.col("warnings").list.join("<br>· ").alias("warn_h")
                               if "warnings" in cells.columns else pl.lit("").alias("warn_h"))
    cells = _escaped(cells, "warn_h", "warn_h")
    if "ceiling_framework" in cells.columns:
        cells = _escaped(cells, "ceiling_framework", "ceiling_framework_h")
    else:
        cells = cells.with_columns(pl.lit("–").alias("ceiling_framework_h"))
    for c in ("mfu_own", "mfu_datasheet", "compile_s", "compile_ci_lo", "compile_ci_hi",
              "epoch_steady_s", "epoch_total_s", "warmup_s", "host_working_bytes",
              "nvml_peak_process_bytes", "ceiling_flops_s"):
        if c not in cells.columns:
            cells = cells.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    on_dev = pl.col("device") != "cpu"
    mem = cells.with_columns(pl.when(on_dev).then(pl.col("peak_device_bytes")).alias("dev_mem"),
                             pl.when(on_dev).then(pl.col("nvml_peak_process_bytes"))
                             .alias("nvml_mem"),
                             pl.when(~on_dev).then(pl.col("host_working_bytes"))
                             .alias("host_working_bytes"),
                             pl.when(~on_dev).then(pl.col("host_peak_rss_bytes"))
                             .alias("host_peak_rss_bytes"))
    mem = mem.with_columns((pl.col("host_peak_rss_bytes") / MIB).alias("peak_rss_mib"),
                           (pl.col("host_working_bytes") / MIB).alias("working_mib"))
    rep = ("<br>95% CI: %{customdata[2]:.4s} – %{customdata[3]:.4s} (%{customdata[4]})"
           "<br>repeat range: %{customdata[5]:.4s} – %{customdata[6]:.4s}"
           "<br>achieved: %{customdata[7]:.4s}FLOP/s · MFU %{customdata[8]:.3p} (one "
           "yardstick per device)"
           "<br>settings: %{customdata[9]}<br>warnings: %{customdata[10]}")
    figs = [
        _faceted(cells, "throughput", "Training throughput against batch size",
                 "Samples per second = batch size / median steady-state step time (raw step "
                 "times pooled over ok repeats). Error bars: bootstrap 95% confidence interval "
                 "of the median over the per-process values (none for a single process). "
                 "Hover for the repeat range, achieved FLOP/s, MFU, the cell's numeric "
                 "settings and its warnings.",
                 [dict(col="train_sps", label="", hover="batch %{x}<br>samples/s: %{y:.4s}"
                       + rep, extra=["train_sps_ci_lo", "train_sps_ci_hi", "ci_basis_h",
                                     "train_sps_min", "train_sps_max", "train_flops_s", "mfu",
                                     "settings_h", "warn_h"],
                       err=("train_sps_ci_lo", "train_sps_ci_hi"))], "samples / s",
                 log_y=True),
        _faceted(cells, "mfu", "Model FLOPs utilisation (training), one yardstick per device",
                 "Achieved training FLOP/s (analytic FLOPs of a training step per sample × "
                 "samples/s, the same FLOP count for every framework) divided by ONE yardstick "
                 "per device and precision: the best matmul FLOP/s any framework reached on it "
                 "in this run (see Environment). MFU therefore ranks the cells exactly as "
                 "achieved FLOP/s does. Hover: the efficiency against the framework's own "
                 "ceiling and, on a known GPU, against the datasheet's dense peak.",
                 [dict(col="mfu", label="", scale=100, hover="batch %{x}<br>MFU: %{y:.3g}% of "
                       "%{customdata[3]:.4s}FLOP/s (best ceiling, %{customdata[4]})<br>achieved: "
                       "%{customdata[2]:.4s}FLOP/s<br>vs own ceiling: %{customdata[5]:.3p}"
                       "<br>vs datasheet peak: %{customdata[6]:.3p}<br>settings: "
                       "%{customdata[7]}",
                       extra=["train_flops_s", "ceiling_flops_s", "ceiling_framework_h",
                              "mfu_own", "mfu_datasheet", "settings_h"])],
                 "% of the best ceiling", kind="bar"),
        _faceted(cells, "epoch", "Training time per epoch: steady state, warm-up, first step",
                 "Stacked per framework. Bottom (solid): the steady-state epoch = steps per "
                 "epoch × median steady-state step time; this part is what the ranking and the "
                 "verdict use. Middle (light): the warm-up steps. Top (lightest): the first step "
                 "(trace/compile + one step). Warm-up and first step are one-off costs of the "
                 "first epoch; hover shows the first epoch's measured wall time.",
                 [dict(col="epoch_steady_s", label="steady epoch", hover="batch %{x}<br>"
                       "steady-state epoch: %{customdata[2]:.4s}s<br>first epoch total "
                       "(measured): %{customdata[3]:.4s}s",
                       extra=["epoch_steady_s", "epoch_total_s"], base=[]),
                  dict(col="warmup_s", label="warm-up", opacity=0.55, hover="batch %{x}<br>"
                       "warm-up: %{customdata[2]:.4s}s", extra=["warmup_s"],
                       base=["epoch_steady_s"]),
                  dict(col="first_step_s", label="first step", opacity=0.3,
                       hover="batch %{x}<br>first step: %{customdata[2]:.4s}s",
                       extra=["first_step_s"], base=["epoch_steady_s", "warmup_s"])],
                 "seconds", kind="bar"),
        _faceted(cells, "latency", "Inference latency against batch size",
                 "Percentiles of the per-call latency samples pooled over ok repeats (a sample "
                 "is the mean over `loops` calls when calls are short): solid p50, dashed p90, "
                 "dotted p99. Error bars on p50: bootstrap 95% confidence interval over the "
                 "per-process p50 values.",
                 [dict(col=c, label=p, dash=d, scale=1000, hover=f"batch %{{x}}<br>{p}: "
                       "%{y:.4g} ms<br>settings: %{customdata[2]}", extra=["settings_h"],
                       **({"err": ("lat_p50_ci_lo", "lat_p50_ci_hi")} if p == "p50" else {}))
                  for c, p, d in (("lat_median", "p50", "solid"), ("lat_p90", "p90", "dash"),
                                  ("lat_p99", "p99", "dot"))],
                 "latency (ms)", log_y=True, log_format="~g"),
        _faceted(mem, "memory", "Memory: working memory beside whole-process peak RSS (CPU); "
                 "allocator peak beside NVML's per-process peak (GPU)",
                 "Two figures per cell, side by side, because they can disagree. CPU: the "
                 "working memory (solid) = peak RSS (max of the parent's sampling and the "
                 "worker's ru_maxrss) minus the RSS just before the model is built, i.e. what "
                 "the model, its optimizer and its batches take, libraries and data excluded; it "
                 "is the headline the comparisons use. Beside it (light) the whole-process peak "
                 "RSS, libraries and runtime included: what the machine must have free. A "
                 "framework can use the least working memory and still need the most RAM. GPU: "
                 "the framework allocator's peak device memory (solid, the headline) and "
                 "NVML's per-process figure (light, CUDA context included). Maximum over ok "
                 "repeats.",
                 [dict(col="dev_mem", label="device peak (allocator)", scale=1 / MIB,
                       hover="batch %{x}<br>device peak (allocator): %{y:.4g} MiB"),
                  dict(col="host_working_bytes", label="working memory", scale=1 / MIB,
                       hover="batch %{x}<br>working memory: %{y:.4g} MiB<br>whole-process peak "
                       "RSS: %{customdata[2]:.4g} MiB", extra=["peak_rss_mib"]),
                  dict(col="host_peak_rss_bytes", label="peak RSS (whole process)",
                       scale=1 / MIB, opacity=0.45,
                       hover="batch %{x}<br>whole-process peak RSS: %{y:.4g} MiB<br>working "
                       "memory: %{customdata[2]:.4g} MiB", extra=["working_mib"]),
                  dict(col="nvml_mem", label="NVML per process", scale=1 / MIB, opacity=0.45,
                       hover="batch %{x}<br>NVML per process: %{y:.4g} MiB")],
                 "MiB", kind="bar"),
        _faceted(cells, "accuracy", "Evaluation accuracy",
                 "Accuracy on the held-out synthetic data after training (median over repeats); "
                 "frameworks should agree closely.",
                 [dict(col="accuracy", label="", hover="batch %{x}<br>accuracy: %{y:.4g}")],
                 "accuracy", kind="bar"),
        _faceted(cells, "compile", "Compile time (estimated)",
                 "First training step minus the median steady-state step time (never below 0): "
                 "the cost of tracing, JIT compilation and autotuning. Median over repeats; "
                 "error bars: bootstrap 95% interval over the per-process values.",
                 [dict(col="compile_s", label="", hover="batch %{x}<br>compile: %{y:.4g} s"
                       "<br>first step: %{customdata[2]:.4s}s", extra=["first_step_s"],
                       err=("compile_ci_lo", "compile_ci_hi"))], "seconds", kind="bar"),
        _params(cells),
    ]
    return [f for f in figs if f is not None]
