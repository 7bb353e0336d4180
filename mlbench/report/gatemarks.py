"""The equivalence gate's status of every cell, as the report's figures and tables show it.

Owns GateMarks: per cell (framework, model label as shown, device, precision) its status
("pass", "fail", "unchecked"; None when the run has no gate document) and the sentence a reader
sees ("failed the equivalence gate: <reason>", "not checked by the gate", ...), the `gate` and
`gate_text` columns it adds to the per-cell table, and `mark`, which gives every trace of a
figure whose cell failed the gate or was not checked a visible mark (a crossed marker and dotted
line, or a hatched bar outlined in red; hollow-dotted markers or dotted bars), a legend entry of
its own and the sentence in its hover. Hatch patterns on bars mean the gate and nothing else in
the report's figures. The verdicts come from mlbench.analysis.gate_verdicts (read only).
Never imports an ML framework.
"""
from __future__ import annotations

import html

import polars as pl

from ..analysis import hardware
from .figures import Figure, esc

FAILED, UNCHECKED = "failed the gate", "not checked by the gate"
LEGEND = {"fail": FAILED, "unchecked": UNCHECKED}
BAR_PATTERN = {"fail": "x", "unchecked": "."}
FAIL_RED = "#b3261e"


class GateMarks:
    """Status and sentence per cell; built from the per-cell table and the gate's verdicts."""

    def __init__(self, cells: pl.DataFrame, verdicts=None):
        self.ran = verdicts is not None
        reasons = {}
        for r in (verdicts.rows if verdicts is not None else []):
            reasons[(r.framework, r.model_label, r.device, r.precision)] = r.reason
        self.by_key: dict[tuple, tuple[str | None, str]] = {}
        self.by_cell: dict[str, tuple[str | None, str]] = {}
        label = "gate_label" if "gate_label" in cells.columns else "model_label"
        for r in cells.select("cell_id", "framework", "model_label", label, "device",
                              "precision").unique().iter_rows():
            cid, fw, shown, gate_label, dev, prec = r
            mark = self._mark(verdicts, reasons, fw, gate_label, dev, prec)
            self.by_key[(fw, shown, dev, prec)] = mark
            self.by_cell[cid] = mark

    @staticmethod
    def _mark(verdicts, reasons, fw, label, dev, prec) -> tuple[str | None, str]:
        if verdicts is None:
            return None, "gate not run (no verify.json)"
        status = verdicts.status(fw, label, dev, prec)
        reason = reasons.get((fw, label, hardware.base_device(dev), prec))
        if status == "fail":
            return status, f"failed the equivalence gate: {reason or 'numerics disagree'}"
        if status == "unchecked":
            return status, "not checked by the gate" + (f": {reason}" if reason else "")
        return status, "passed the equivalence gate"

    def of(self, framework, model_label, device, precision) -> tuple[str | None, str]:
        return self.by_key.get((framework, model_label, device, precision),
                               (None, "no gate verdict") if self.ran else
                               (None, "gate not run (no verify.json)"))

    def columns(self, cells: pl.DataFrame) -> pl.DataFrame:
        """The per-cell table with `gate` (status) and `gate_text` (the sentence)."""
        marks = [self.by_cell.get(c, (None, "")) for c in cells["cell_id"].to_list()]
        return cells.with_columns(pl.Series("gate", [m[0] for m in marks], dtype=pl.Utf8),
                                  pl.Series("gate_text", [m[1] for m in marks], dtype=pl.Utf8))

    def mark(self, fig: Figure) -> Figure:
        """The figure with every trace of a failed or unchecked cell marked (see the module
        docstring). A trace is one framework in one panel; its panel is read from the panel
        title (grid figures) or the panel selector's key (one-panel-at-a-time figures)."""
        spec = fig.spec
        if fig.id == "params":
            self._mark_params(spec)
        elif "panels" in spec:
            for key, sub in spec["panels"].items():
                self._mark_spec(sub, {"": tuple(key.split(" · "))})
        else:
            titles = [html.unescape(a.get("text", "").removeprefix("<b>").removesuffix("</b>"))
                      for a in spec.get("layout", {}).get("annotations", [])]
            axes = {("" if i == 0 else str(i + 1)): tuple(t.split(" · "))
                    for i, t in enumerate(titles)}
            self._mark_spec(spec, axes)
        return fig

    def _mark_params(self, spec: dict) -> None:
        """Parameter counts: one bar per model and framework over all its devices and
        precisions: marked as failed when any of its cells failed, unchecked when any was."""
        worst: dict[tuple, tuple[str | None, str]] = {}
        rank = {"fail": 2, "unchecked": 1}
        for (fw, model, _, _), m in sorted(self.by_key.items()):
            k = (fw, esc(model))
            if k not in worst or rank.get(m[0], 0) > rank.get(worst[k][0], 0):
                worst[k] = m
        for tr in spec.get("data", []):
            fw = html.unescape(str(tr.get("name", "")))
            marks = [worst.get((fw, x), (None, "")) for x in tr.get("x", [])]
            tr["customdata"] = [[*c, esc(m[1])] for c, m in zip(tr.get("customdata", []), marks)]
            tr["hovertemplate"] = tr["hovertemplate"].replace(
                "<extra>", "<br>%{customdata[1]}<extra>", 1)
            if any(m[0] in LEGEND for m in marks):
                tr.setdefault("marker", {})["pattern"] = {
                    "shape": [BAR_PATTERN.get(m[0], "") for m in marks]}
                tr["marker"]["line"] = {"color": [FAIL_RED if m[0] == "fail" else "rgba(0,0,0,0)"
                                                  for m in marks], "width": 2}

    def _mark_spec(self, spec: dict, panel_of_axis: dict[str, tuple]) -> None:
        shown: set = set()
        for tr in spec.get("data", []):
            fw = (tr.get("meta") or {}).get("framework") if isinstance(tr.get("meta"), dict) \
                else None
            fw = fw or html.unescape(str(tr.get("name", "")))
            panel = panel_of_axis.get(str(tr.get("xaxis", "x"))[1:])
            status, text = self.of(fw, *panel) if panel and len(panel) == 3 else (None, "")
            if text:
                hover = tr.get("hovertemplate", "")
                cut = hover.find("<extra>")
                line = "<br>" + esc(text).replace("%{", "% {")
                tr["hovertemplate"] = hover[:cut] + line + hover[cut:] if cut >= 0 \
                    else hover + line
            if status in LEGEND:
                tr["name"] = f"{tr.get('name', '')} · {LEGEND[status]}"
                tr["legendgroup"] = tr["name"]
                _draw(tr, status)
            if "showlegend" in tr or status in LEGEND:
                tr["showlegend"] = tr["name"] not in shown
            shown.add(tr.get("name"))


def _draw(tr: dict, status: str) -> None:
    marker = tr.setdefault("marker", {})
    if tr.get("type") == "bar":
        pattern = marker.setdefault("pattern", {})
        if not pattern.get("shape"):
            pattern["shape"] = BAR_PATTERN[status]
        if status == "fail":
            marker["line"] = {"color": FAIL_RED, "width": 2}
        return
    if status == "fail":
        # the framework's colour stays (who it is); the crossed marker and dotted line say it failed
        marker["symbol"] = "x-thin-open"
        marker["line"] = {"color": marker.get("color"), "width": 2}
        marker["size"] = 12
        tr.setdefault("line", {})["dash"] = "dot"
    else:
        sym = str(marker.get("symbol") or "circle")
        marker["symbol"] = (sym if sym.endswith("-open") else sym + "-open") + "-dot"
        tr.setdefault("line", {})["dash"] = "dash"
