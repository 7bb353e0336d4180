"""The page's energy figure: joules per 1,000 training samples and per 1,000 inferred samples,
per GPU cell, from NVML's energy counter (mlbench.analysis.energy); cells with no figure are left
out and the caption says how many.

Owns only this figure (render appends it to the page's figures). Never imports an ML framework.
"""
from __future__ import annotations

import polars as pl

from .figures import LAYOUT, Figure, bases_of, colour, esc

COLUMNS = (("train_j_per_ksample", "training"), ("infer_j_per_ksample", "inference"))


def figures(cells: pl.DataFrame) -> list[Figure]:
    """[the energy figure] when any cell has an energy figure, else []."""
    if "train_j_per_ksample" not in cells.columns:
        return []
    cols = [c for c, _ in COLUMNS if c in cells.columns]
    df = cells.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cols)).sort(
        "model_label", "precision", "framework")
    if df.is_empty():
        return []
    fws, bases = sorted(df["framework"].unique().to_list()), bases_of(cells)
    data = []
    for col, phase in COLUMNS:
        if col not in df.columns:
            continue
        for fw in fws:
            rows = df.filter(pl.col("framework") == fw).to_dicts()
            data.append({
                "type": "bar", "name": esc(f"{fw} {phase}"),
                "x": [esc(f"{r['model_label']} {r['precision']} bs{r['batch_size']}")
                      for r in rows],
                "y": [r[col] for r in rows], "marker": {"color": colour(fw, fws, bases),
                                                       "pattern": {"shape": "" if phase ==
                                                                   "training" else "/"}},
                "hovertemplate": f"%{{x}}<br>{phase}: %{{y:.4s}} J per 1,000 samples"
                                 f"<extra>{esc(fw)}</extra>"})
    layout = {**LAYOUT, "barmode": "group", "height": 420,
              "yaxis": {"title": {"text": "joules per 1,000 samples (lower is better)"}},
              "margin": {"l": 70, "r": 20, "t": 40, "b": 90}}
    left_out = cells.filter(pl.col("device") != "cpu").height - df.height
    caption = ("Energy per 1,000 samples: NVML's total-energy counter of the whole GPU read by "
               "mlbench at the worker's phase boundaries (training: steady-state steps after "
               "the first progress report; inference: the inference phase's calls, warm-up "
               "included), or the polled power integrated where the GPU has no counter. "
               "Another process on the same GPU is counted too (see the cell's warnings).")
    if left_out > 0:
        caption += f" {left_out} GPU cell(s) without an energy figure are left out."
    return [Figure("energy", "Energy per 1,000 samples", caption,
                   {"data": data, "layout": layout})]
