"""A cell that failed the equivalence gate, or that the gate did not check, carries that status
everywhere the report shows it: every figure (a visible mark, a legend entry of its own, the
gate's sentence in the hover) and every table (a gate column). Planted: a fake run with four
competitors on one model, and a verify.json in which tensorflow and the pytorch-compile variant
fail, jax is unchecked (a user-style "numerics unchecked" row) and pytorch passes."""
from __future__ import annotations

import json
import random
import re

import fakestore as fs
import pytest

from mlbench.report import build_report

REASON = {"tensorflow": "outputs differ: max abs 6.71e-04 > 1.0e-04 + 5e-04*|ref|",
          "pytorch-compile": "builder error: compile backend missing"}
UNCHECKED_REASON = "numerics unchecked (no shared weights)"
STATUS = {"pytorch": "pass", "jax": "unchecked", "tensorflow": "fail", "pytorch-compile": "fail"}


def _row(fw, passed, reason=None):
    return {"model": "mlp", "model_label": "mlp", "device": "cpu", "precision": "fp32",
            "framework": fw, "reference": "numpy", "passed": passed, "reason": reason,
            "max_abs_err": 6.71e-4 if passed is False else 2e-7, "max_rel_err": 1e-3,
            "loss_err": 1e-7, "steps_loss_err": 1e-6, "params_equal": True,
            "data_hash_equal": True, "params": None, "status": "ok"}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gatemarks")
    rng = random.Random(7)
    attempts = []
    speed = {"pytorch": 0.011, "pytorch-compile": 0.008, "tensorflow": 0.007, "jax": 0.009}
    for fw, base in speed.items():
        for bs in (32, 64):
            for rep in range(2):
                # skewed, drifting samples with an outlier: not constant
                st = [base * bs / 32 * (1 + 0.3 * (i < 3)) * rng.lognormvariate(0, 0.08)
                      for i in range(40)] + [base * 6]
                a = fs.attempt(fw, batch_size=bs, repeat=rep, step_times=st,
                               latencies=[base / 3 * rng.lognormvariate(0, 0.2)
                                          for _ in range(20)],
                               first_step=base * (400 if fw == "pytorch-compile" else 30),
                               host_rss=int(6e8 * (2 if fw == "tensorflow" else 1)) + bs * 10**6,
                               accuracy=rng.uniform(0.7, 0.9))
                a["metrics"]["memory"]["host_baseline_rss_bytes"] = int(4e8)
                if fw == "pytorch-compile":
                    a.update(base_framework="pytorch", mode="compile",
                             mode_settings={"mode": "default"})
                attempts.append(a)
    attempts.append(fs.attempt("tensorflow", batch_size=128, status="oom", reason="OOM"))
    run = fs.write_store(tmp / "r", attempts,
                         fs.run_doc(frameworks=("pytorch", "tensorflow", "jax")))
    rows = [_row("pytorch", True), _row("jax", None, UNCHECKED_REASON),
            _row("tensorflow", False, REASON["tensorflow"]),
            _row("pytorch-compile", False, REASON["pytorch-compile"])]
    (run / "verify.json").write_text(json.dumps(
        {"tolerances": {}, "steps": 3, "batch_size": 16, "passed": False, "seconds": 1.0,
         "rows": rows, "pairs": []}))
    return build_report(run, tmp / "o").read_text()


def _figures(html: str) -> dict[str, list[dict]]:
    out = {}
    for fid, spec in re.findall(r'id="fig-([\w-]+)" class="figure"></div>\s*<script>'
                                r'\(function\(\)\{var s=(.*?);if\(s\.panels\)', html):
        s = json.loads(spec)
        out[fid] = [t for p in s["panels"].values() for t in p["data"]] if "panels" in s \
            else s["data"]
    return out


def _expected_hover(fw: str) -> str:
    return {"fail": f"failed the equivalence gate: {REASON.get(fw)}",
            "unchecked": f"not checked by the gate: {UNCHECKED_REASON}",
            "pass": "passed the equivalence gate"}[STATUS[fw]]


def test_every_figure_marks_failed_and_unchecked_cells(page):
    figs = _figures(page)
    assert {"throughput", "latency", "memory", "epoch", "accuracy", "compile", "params",
            "compile-cost"} <= set(figs), sorted(figs)
    for fid, traces in figs.items():
        seen = set()
        for tr in traces:
            fw = tr["name"].split(" ")[0]
            status = STATUS[fw]
            seen.add(fw)
            hover = tr["hovertemplate"] + json.dumps(tr.get("customdata"))
            assert _expected_hover(fw).replace("<", "&lt;").replace(">", "&gt;") in hover, \
                (fid, fw, tr["hovertemplate"])
            marker = tr.get("marker", {})
            if status == "fail":
                if fid != "params":  # params: one bar per model over all its cells
                    assert "failed the gate" in tr["name"], (fid, tr["name"])
                if tr["type"] == "bar":
                    shapes = marker["pattern"]["shape"]
                    assert "x" in shapes or marker["line"]["color"] in ("#b3261e",
                                                                         ["#b3261e"]), fid
                else:
                    assert "x" in marker["symbol"] and tr["line"]["dash"] == "dot", fid
            elif status == "unchecked":
                if fid != "params":
                    assert "not checked by the gate" in tr["name"], (fid, tr["name"])
                if tr["type"] == "bar":
                    assert marker["pattern"]["shape"] in (".", ["."]), fid
                else:
                    assert marker["symbol"].endswith("-open-dot"), fid
            else:
                assert "gate" not in tr["name"] and "x" not in str(
                    marker.get("pattern", {}).get("shape", "")), (fid, tr["name"])
        assert "tensorflow" in seen or fid == "compile-cost", fid
    # a legend entry of their own: the marked name is shown in the legend once
    thr = figs["throughput"]
    shown = [t["name"] for t in thr if t.get("showlegend")]
    assert any("tensorflow" in n and "failed the gate" in n for n in shown)
    assert any(n.startswith("jax") and "not checked" in n for n in shown)


def _rows(html: str, table_id: str) -> list[str]:
    if f'<template id="{table_id}-rows">' in html:
        body = html.split(f'<template id="{table_id}-rows">', 1)[1].split("</template>", 1)[0]
    else:
        body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [r for r in body.split("<tr")[1:] if r.strip()]


@pytest.mark.parametrize("table,template", [("cmp-table", "cmp"), ("summary-table", "summary"),
                                            ("modes-table", None),
                                            ("failures-table", "failures"),
                                            ("warnings-table", "warnings"),
                                            ("settings-table", "settings")])
def test_every_table_has_the_gate_status(page, table, template):
    rows = _rows(page, template or table)
    assert rows, table
    assert any("failed the equivalence gate: " in r for r in rows), table
    head = page.split(f'id="{table}"', 1)[1].split("</thead>", 1)[0]
    assert "<th>gate</th>" in head, table
    for fw in STATUS:
        mine = [r for r in rows if re.search(rf">{re.escape(fw)}(<| |-bs|-mlp)", r)
                and not re.search(rf">{re.escape(fw)}-compile", r)]
        if table == "failures-table" and fw != "tensorflow":
            continue  # only tensorflow has a failed attempt
        if table == "warnings-table" and not mine:
            continue  # a framework whose cells raised no warning has no row there
        assert mine, (table, fw)
        for r in mine:
            want = _expected_hover(fw).replace("<", "&lt;").replace(">", "&gt;")
            assert want in r, (table, fw, r[:400])
