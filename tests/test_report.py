"""The report: aggregation numbers, recommendations, edge-case runs, escaping, output files."""
from __future__ import annotations

import json
import re

import fakestore as fs
import polars as pl
import pytest

from mlbench.results import aggregate
from mlbench.analysis import gate_verdicts
from mlbench.errors import UserError
from mlbench.report import build_report
from mlbench.report.recommend import recommend

XSS = ["<script>window.__pwned=1</script>", '"><img src=x onerror="window.__pwned=1">']


def cells_of(attempts):
    return aggregate.cells_frame(aggregate.attempts_frame(attempts))


def test_aggregation_from_raw_samples():
    steps0 = [0.010, 0.020, 0.030, 0.040]       # median 0.025
    steps1 = [0.050, 0.060]                     # pooled with repeat 0: median 0.035
    lat = [i / 1000 for i in range(1, 101)]     # 1..100 ms
    a = [fs.attempt(batch_size=32, repeat=0, step_times=steps0, latencies=lat,
                    epoch_times=[1.0, 3.0, 2.0]),
         fs.attempt(batch_size=32, repeat=1, step_times=steps1, latencies=lat)]
    att = aggregate.attempts_frame(a)
    assert att["step_median"].to_list() == pytest.approx([0.025, 0.055])
    assert att["train_sps"].to_list() == pytest.approx([32 / 0.025, 32 / 0.055])
    c = cells_of(a).row(0, named=True)
    assert c["repeats"] == 2 and c["ok_repeats"] == 2
    assert c["step_median"] == pytest.approx(0.035)
    assert c["train_sps"] == pytest.approx(32 / 0.035)
    assert sorted(c["train_sps_r"]) == pytest.approx(sorted([32 / 0.025, 32 / 0.055]))
    assert c["train_sps_min"] == pytest.approx(32 / 0.055)
    assert c["lat_median"] == pytest.approx(0.0505)
    assert c["lat_p90"] == pytest.approx(0.0901)   # linear interpolation over 200 samples
    assert c["lat_p99"] == pytest.approx(0.09901)
    # the first epoch (it holds the one-off costs) per repeat, median over repeats
    assert c["epoch_total_s"] == pytest.approx((1.0 + 0.11) / 2)


def test_latest_attempt_wins_and_failed_repeat_excluded():
    a = [fs.attempt(repeat=0, step_times=[1.0]), fs.attempt(repeat=0, step_times=[0.5]),
         fs.attempt(repeat=1, status="oom", reason="OOM")]
    from mlbench.results.store import latest_attempts
    c = cells_of(latest_attempts(a)).row(0, named=True)
    assert c["step_median"] == 0.5 and c["repeats"] == 2 and c["ok_repeats"] == 1
    assert c["failed_statuses"] == "oom"


def test_garbage_fields_become_null():
    a = [{"cell_id": "x", "status": "ok", "batch_size": "32", "metrics": {
        "train": {"step_times_s": ["a", None, 0.1, float("nan"), True]}}}]
    c = cells_of(a).row(0, named=True)
    assert c["batch_size"] is None and c["step_median"] == 0.1 and c["framework"] == "?"


def _pair(fast_reps, slow_reps, model="mlp"):
    out = []
    for fw, reps in (("jax", fast_reps), ("pytorch", slow_reps)):
        for r, s in enumerate(reps):
            out.append(fs.attempt(fw, model=model, repeat=r, step_times=[s] * 10,
                                  latencies=[s / 4] * 10, host_rss=500_000_000))
    return out


def test_recommendation_clear_winner_with_repeats():
    recs = recommend(cells_of(_pair([0.010, 0.0102, 0.0098], [0.015, 0.0152, 0.0148])))
    train = next(r for r in recs if r.aspect == "train")
    assert train.winner == "jax" and train.verdict == "clear"
    assert "1.50x" in train.text and "pytorch" in train.text
    mem = next(r for r in recs if r.aspect == "memory")
    assert mem.verdict == "no-clear-winner"     # identical memory


def test_recommendation_no_clear_winner_within_noise():
    recs = recommend(cells_of(_pair([0.010, 0.012, 0.0085], [0.0105, 0.0125, 0.009])))
    train = next(r for r in recs if r.aspect == "train")
    assert train.winner is None and train.verdict == "no-clear-winner"
    assert "No clear winner" in train.text


def test_recommendation_single_measurement_never_wins():
    recs = recommend(cells_of(_pair([0.010], [0.020])))
    train = next(r for r in recs if r.aspect == "train")
    assert train.winner is None and train.verdict == "no-clear-winner"
    assert train.leader == "jax" and train.runner_up == "pytorch"
    assert train.ratio == pytest.approx(2.0) and train.lo is None
    assert "cannot tell: single process" in train.text


def test_recommendation_single_framework():
    recs = recommend(cells_of([fs.attempt("jax")]))
    assert all(r.verdict == "nothing-to-compare" and "only jax" in r.text for r in recs)


def test_full_report_files(tmp_path):
    run = fs.write_store(tmp_path / "run", fs.sweep(120, steps=20, latencies=10))
    index = build_report(run, tmp_path / "out")
    assert index == tmp_path / "out" / "index.html"
    html = index.read_text()
    assert html.count("Plotly.newPlot(") == 7
    assert html.count("Plotly=") + html.count("plotly.js v") >= 1
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=', html), "nothing external"
    csv = pl.read_csv(tmp_path / "out" / "summary.csv")
    parquet = pl.read_parquet(tmp_path / "out" / "aggregated.parquet")
    assert csv.height == parquet.height == 120 and "train_sps" in csv.columns
    # the same report from results.json and from the .jsonl file
    doc = {"schema": 1, "run": json.loads((run / "run.json").read_text()),
           "cells": [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    build_report(tmp_path / "results.json", tmp_path / "out2")
    build_report(run / "results.jsonl", tmp_path / "out3")
    assert pl.read_csv(tmp_path / "out2" / "summary.csv").equals(csv)


def test_failures_only_run_renders(tmp_path):
    a = [fs.attempt("pytorch", status="oom", reason="CUDA out of memory",
                    stderr_tail="RuntimeError: CUDA out of memory"),
         fs.attempt("jax", status="skipped", reason="jax is not installed")]
    html = build_report(fs.write_store(tmp_path / "r", a), tmp_path / "o").read_text()
    assert "Nothing succeeded" in html and "CUDA out of memory" in html
    assert "jax is not installed" in html and "mlbench run --output results --only" in html
    assert "Plotly.newPlot(" not in html and "plotly.js" not in html.lower()[:2000]


def test_partial_single_cell_run_says_what_is_missing(tmp_path):
    run = fs.run_doc()
    del run["ended_at"]
    html = build_report(fs.write_store(tmp_path / "r", [fs.attempt("pytorch")], run),
                        tmp_path / "o").read_text()
    assert "no end time" in html and "Only one cell" in html
    assert "No successful results for tensorflow" in html and "Only one framework" in html


def test_zero_attempts_and_not_mlbench_output(tmp_path):
    empty = fs.write_store(tmp_path / "e", [])
    with pytest.raises(UserError, match="no usable cells"):
        build_report(empty, tmp_path / "o")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"hello": 1}\nnot json\n')
    with pytest.raises(UserError, match="not mlbench output"):
        build_report(junk, tmp_path / "o")
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(UserError, match="not an mlbench results file"):
        build_report(other, tmp_path / "o")
    with pytest.raises(UserError, match="not found"):
        build_report(tmp_path / "missing.json", tmp_path / "o")


def test_malformed_records_do_not_crash(tmp_path, capsys):
    bad = [1, "x", {"cell_id": "c", "status": "ok", "repeat": "zero", "metrics": []}]
    doc = {"schema": 1, "run": None, "cells": bad}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    # nothing usable: one clear error, not a traceback
    with pytest.raises(UserError, match="no line is an attempt record"):
        build_report(tmp_path / "results.json", tmp_path / "o")
    # the bad records are skipped with a warning naming each; the good one is reported
    doc["cells"] = bad + [fs.attempt("pytorch")]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    html = build_report(tmp_path / "results.json", tmp_path / "o").read_text()
    assert "No run record was found" in html
    err = capsys.readouterr().err
    assert "cells[0]" in err and "cells[2]" in err and "cells[3]" not in err
    assert "cells[2]: skipped (repeat" in html  # and the page says what was left out


def test_torn_last_line_is_tolerated(tmp_path):
    d = fs.write_store(tmp_path / "r", [fs.attempt("pytorch"), fs.attempt("jax")])
    with open(d / "results.jsonl", "a") as fh:
        fh.write('{"cell_id": "torn-cell", "status": "o')
    html = build_report(d, tmp_path / "o").read_text()
    assert "torn last line" in html and "torn-cell" not in html


def test_strings_from_the_data_are_escaped(tmp_path):
    a = [fs.attempt(fw, model=f"mlp{XSS[0]}", device=f"cpu{XSS[1]}", cid=f"{fw}{XSS[0]}")
         for fw in ("pytorch", "jax")]
    a.append(fs.attempt("tensorflow", status="failed", reason=XSS[0], stderr_tail=XSS[1],
                        cid=f"tf{XSS[1]}"))
    run = fs.run_doc(note=XSS[0])
    run["host"]["cpu_model"] = XSS[1]
    html = build_report(fs.write_store(tmp_path / "r", a, run), tmp_path / "o").read_text()
    assert "window.__pwned" in html                    # the strings are shown ...
    for s in XSS:
        assert s not in html                           # ... but never verbatim
    assert "<img src=x" not in html
    body = html.split("</head>", 1)[1]
    # every <script> in the body is one of ours: the figure calls, the panel selector or the
    # table helper
    for script in re.findall(r"<script>(.*?)</script>", body, re.S):
        assert script.startswith(("(function(){var s=", "\n/* Plain table helpers",
                                  "window.__panelFigs=[];", "(function(){var sel="))
        if script.startswith("(function(){var s="):
            assert "<" not in script                   # figure JSON has every < escaped


def test_intervals_warnings_and_flops_per_cell(tmp_path):
    a = _pair([0.010, 0.0102, 0.0098], [0.015, 0.0125, 0.018])   # pytorch unstable (~18 %)
    c = {r["framework"]: r for r in cells_of(a).iter_rows(named=True)}
    jax, torch = c["jax"], c["pytorch"]
    assert jax["train_sps_ci_lo"] <= 32 / 0.010 <= jax["train_sps_ci_hi"]
    assert jax["ci_basis"] == "bootstrap over 3 processes" and jax["warnings"] == []
    assert any("unstable training throughput" in w for w in torch["warnings"])
    assert torch["repeats_needed"] > 3 and torch["train_sps_cv"] > 0.1
    assert jax["train_flops_s"] == pytest.approx(3000 * 32 / 0.010)
    assert jax["infer_flops_s"] == pytest.approx(1000 * 32 / 0.0025)
    assert jax["settings"] == "threads=8" and jax["mfu"] is None   # no ceilings given
    single = cells_of([fs.attempt("jax")]).row(0, named=True)
    assert single["ci_basis"] == "single process" and single["train_sps_ci_lo"] is None
    cmp = aggregate.comparison_frame(cells_of(a)).filter(pl.col("framework") == "pytorch")
    r = cmp.row(0, named=True)
    # 1.5x slower in every process, but pytorch's 3 processes spread 18%: Welch's t on the logs
    # (about 2 degrees of freedom) reaches below 1, where the bootstrap alone (the range) did not
    assert r["train_vs_best"] == pytest.approx(1.5)
    assert r["train_vs_best_lo"] < 1 < 1.5 < r["train_vs_best_hi"] and not r["train_vs_best_sig"]
    html = build_report(fs.write_store(tmp_path / "r", a), tmp_path / "o").read_text()
    assert "unstable training throughput" in html and "within noise" in html
    assert "threads=8" in html and "Device ceiling" in html


def test_recommendation_states_ratio_interval():
    recs = recommend(cells_of(_pair([0.010, 0.0102, 0.0098], [0.015, 0.0152, 0.0148])))
    train = next(r for r in recs if r.aspect == "train")
    assert train.interval_kind == "95% CI of the ratio"
    assert f"{train.lo:.2f}-{train.hi:.2f}]" in train.text and train.lo > 1.05
    recs = recommend(cells_of(_pair([0.010, 0.012, 0.0085], [0.0105, 0.0125, 0.009])))
    train = next(r for r in recs if r.aspect == "train")
    assert "No clear winner" in train.text and "margin" in train.text
    assert train.leader == "jax" and f"[{train.lo:.2f}-{train.hi:.2f}]" in train.text


def test_figure_hover_keeps_constant_strings_once_per_trace(tmp_path):
    """Settings (the same for every point of a trace) go into the hover template once, not into
    each point's customdata; the figure JSON stays script-safe."""
    from mlbench.report.figures import build_figures
    from mlbench.report.render import figure_json
    a = _pair([0.010, 0.0102, 0.0098], [0.015, 0.0152, 0.0148])
    for rec in a:
        rec["metrics"]["settings"] = {"threads": 8, "matmul_precision": "high <fast>"}
    figs = {f.id: f for f in build_figures(cells_of(a))}
    tr = figs["throughput"].spec["data"][0]
    assert "settings: matmul_precision=high &lt;fast&gt;, threads=8<br>" in tr["hovertemplate"]
    assert not any("threads=8" in str(v) for row in tr["customdata"] for v in row)
    assert "bootstrap over 3 processes" in tr["hovertemplate"]
    refs = [int(i) for i in re.findall(r"customdata\[(\d+)\]", tr["hovertemplate"])]
    assert max(refs) == len(tr["customdata"][0]) - 1      # renumbered, nothing dangling
    text = figure_json(figs["throughput"])
    assert "<" not in text and json.loads(text)["data"][0] == tr


# --- the equivalence gate (verify.json) ---------------------------------------------------------

def _verify_row(fw, passed, reason=None, label="mlp", device="cpu", precision="fp32", **kw):
    return {"model": "mlp", "model_label": label, "device": device, "precision": precision,
            "framework": fw, "reference": "numpy" if passed is not None else "-",
            "passed": passed, "reason": reason,
            "max_abs_err": kw.get("abs", 1.5e-6), "max_rel_err": kw.get("rel", 3.25e-5),
            "loss_err": kw.get("loss", 2e-7), "steps_loss_err": kw.get("steps", 4e-7),
            "params_equal": kw.get("params_equal", True), "data_hash_equal": True,
            "params": {"trainable": 10_000, "non_trainable": 0}, "status": "ok"}


def _write_verify(run_dir, rows):
    doc = {"tolerances": {"fp32": {"rtol": 5e-4, "atol": 1e-4, "loss_rtol": 5e-4,
                                   "loss_atol": 1e-4}},
           "tolerance_note": "outputs pass when |a - ref| <= atol + rtol*|ref|",
           "steps": 3, "batch_size": 16, "passed": all(r["passed"] is not False for r in rows),
           "seconds": 1.0, "rows": rows, "pairs": []}
    (run_dir / "verify.json").write_text(json.dumps(doc))


def _three(label=None):
    """jax fastest (clearly), then pytorch, then tensorflow; 3 repeats each. `label`: the
    records' model_label (the config's label, which verify.json uses)."""
    out = []
    for fw, s in (("jax", 0.010), ("pytorch", 0.015), ("tensorflow", 0.020)):
        for r, k in enumerate((1.0, 1.02, 0.98)):
            out.append(fs.attempt(fw, repeat=r, step_times=[s * k] * 10,
                                  latencies=[s * k / 4] * 10, host_rss=500_000_000))
            if label:
                out[-1]["model_label"] = label
    return out


def test_gate_table_rendered_from_verify_json(tmp_path):
    run = fs.write_store(tmp_path / "r", _three())
    _write_verify(run, [_verify_row("jax", True), _verify_row("pytorch", True),
                        _verify_row("tensorflow", None, "skipped: <no GPU>", abs=None, rel=None,
                                    loss=None, steps=None, params_equal=None)])
    html = build_report(run, tmp_path / "o").read_text()
    assert "<h2>Equivalence gate</h2>" in html and 'id="gate-table"' in html
    assert '<a href="#gate">Equivalence gate</a>' in html
    table = html.split('id="gate-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 4                       # header + 3 rows
    assert "1.50e-06" in table and "3.25e-05" in table and "4.00e-07" in table
    assert '"verdict pass">pass' in table and '"verdict skip">skip' in table
    assert "skipped: &lt;no GPU&gt;" in table and "<no GPU>" not in html   # escaped
    assert "numpy" in table and "yes" in table
    assert "atol + rtol*|ref|" in html                    # the tolerances note
    assert "equivalence gate was not run" not in html
    assert "not comparable" not in html.split('id="cmp-rows"', 1)[1].split("</template>")[0]
    # tensorflow was not checked: comparable, flagged as such
    assert '<span class="badge">not checked by the gate</span>' in html
    assert "Not checked by the equivalence gate: tensorflow (fp32)" in html


def test_failed_gate_is_not_comparable_and_cannot_win(tmp_path):
    a = _three(label="mlp.wide")      # matched by the records' model_label, not the display one
    run = fs.write_store(tmp_path / "r", a)
    _write_verify(run, [_verify_row("jax", False, "outputs differ beyond tolerance",
                                    abs=0.3, rel=0.2, label="mlp.wide"),
                        _verify_row("pytorch", True, label="mlp.wide"),
                        _verify_row("tensorflow", True, label="mlp.wide")])
    verdicts, err = gate_verdicts.load_verdicts(run)
    assert err is None and verdicts.status("jax", "mlp.wide", "cpu", "fp32") == "fail"
    assert not verdicts.comparable("jax", "mlp.wide", "cpu", "fp32")
    assert verdicts.comparable("pytorch", "mlp.wide", "cpu", "fp32")
    assert verdicts.comparable("jax", "mlp.wide", "cpu", "bf16")
    cells = cells_of(a)
    cmp = {r["framework"]: r for r in aggregate.comparison_frame(cells, verdicts).to_dicts()}
    assert cmp["jax"]["gate"] == "fail" and cmp["jax"]["train_vs_best"] is None
    assert cmp["jax"]["train_vs_best_lo"] is None and cmp["jax"]["mem_vs_best"] is None
    assert cmp["pytorch"]["train_vs_best"] == 1.0         # best of the comparable ones
    assert cmp["tensorflow"]["train_vs_best"] == pytest.approx(4 / 3)
    # without the gate jax would win
    plain = {r.aspect: r for r in recommend(cells)}
    assert plain["train"].winner == "jax"
    recs = {r.aspect: r for r in recommend(cells, verdicts)}
    assert recs["train"].winner == "pytorch"
    assert "jax" not in recs["train"].text and recs["train"].leader != "jax"
    assert all("failed the equivalence gate" in " ".join(r.details)
               and "jax (fp32)" in " ".join(r.details) for r in recs.values())
    html = build_report(run, tmp_path / "o").read_text()
    body = html.split('id="cmp-rows"', 1)[1].split("</template>", 1)[0]  # paged rows
    jax_row = next(tr for tr in body.split("<tr") if "</span>jax" in tr)
    assert "not comparable (failed the gate)" in jax_row and "×" not in jax_row
    assert '<span class="badge">failed the gate</span>' in jax_row
    assert 'class="best"' not in jax_row and 'class="not-comparable"' in jax_row
    best_row = next(tr for tr in body.split("<tr") if 'class="best"' in tr)
    assert "</span>pytorch" in best_row
    assert "failed the equivalence gate" in html and '"verdict fail">fail' in html
    assert "outputs differ beyond tolerance" in html


def test_failed_gate_other_precision_still_comparable():
    verdicts = gate_verdicts.GateVerdicts(gate_verdicts.GateReport(rows=[gate_verdicts.GateRow(
        model="mlp", model_label="mlp", device="cpu", precision="bf16", framework="jax",
        reference="numpy", passed=False, reason="x")]))
    cells = cells_of(_three())
    assert recommend(cells, verdicts)[0].winner == "jax"   # fp32 cells were not failed
    cmp = aggregate.comparison_frame(cells, verdicts).to_dicts()
    assert {r["gate"] for r in cmp} == {"unchecked"}


def test_missing_or_broken_verify_json_gives_the_note(tmp_path):
    run = fs.write_store(tmp_path / "r", _three())
    html = build_report(run, tmp_path / "o").read_text()
    assert "equivalence gate was not run" in html
    assert "speed comparisons are not backed by the gate" in html
    assert 'id="gate"' not in html and "not checked by the gate" not in html
    (run / "verify.json").write_text('{"rows": [{"bogus": 1}]}')
    html = build_report(run, tmp_path / "o2").read_text()
    assert "verify.json could not be read" in html and 'id="gate"' not in html


def test_gate_strings_are_escaped(tmp_path):
    a = [fs.attempt(fw, model=f"mlp{XSS[0]}") for fw in ("pytorch", "jax")]
    for x in a:
        x["model_label"] = f"mlp{XSS[0]}"
    run = fs.write_store(tmp_path / "r", a)
    _write_verify(run, [_verify_row("jax", False, XSS[1], label=f"mlp{XSS[0]}"),
                        _verify_row(f"pytorch{XSS[0]}", True, label=XSS[1])])
    html = build_report(run, tmp_path / "o").read_text()
    assert 'id="gate-table"' in html
    for s in XSS:
        assert s not in html


def _planted(fast_step=0.010, slow_step=0.015, fast_lat=0.002, slow_lat=0.003):
    """pytorch is planted 1.5x faster than jax in training and latency, 3 processes each, with
    a little noise between processes and none that any warning would flag."""
    out = []
    for fw, st, lt in (("pytorch", fast_step, fast_lat), ("jax", slow_step, slow_lat)):
        for r, k in enumerate((1.0, 1.01, 0.99)):
            out.append(fs.attempt(fw, repeat=r, step_times=[st * k] * 20,
                                  latencies=[lt * k] * 20, first_step=0.5 if fw == "jax" else 2.0))
    return out


def test_verdict_names_the_planted_winner_with_its_interval_around_the_ratio(tmp_path):
    recs = {r.aspect: r for r in recommend(cells_of(_planted()))}
    for aspect in ("train", "latency"):
        r = recs[aspect]
        assert r.winner == "pytorch" and r.runner_up == "jax" and r.verdict == "clear"
        assert r.ratio == pytest.approx(1.5, rel=0.02)
        assert r.lo <= r.ratio <= r.hi and r.lo > 1
        assert "jax " not in r.text.split(":")[0]          # the slower is never the subject
    # compile: jax's first step is planted 4x shorter: jax wins compile, never pytorch
    assert recs["compile"].winner in ("jax", None) and recs["compile"].winner != "pytorch"
    html = build_report(fs.write_store(tmp_path / "run", _planted()), tmp_path / "out") \
        .read_text()
    verdict = html[html.index('id="verdict"'):html.index('id="recommendations"')]
    row = re.search(r"fastest to train<br><span class=\"badge\">[^<]*</span></td>"
                    r"<td><b>(\w+)</b> over (\w+)</td>"
                    r"<td class=\"n\">([\d.]+)x \[([\d.]+)-([\d.]+)\]</td>", verdict)
    assert row, verdict[:2000]
    assert row.group(1) == "pytorch" and row.group(2) == "jax"
    ratio, lo, hi = map(float, row.group(3, 4, 5))
    assert lo <= ratio <= hi, "interval printed inverted or not around the ratio"
    assert ratio == pytest.approx(1.5, abs=0.02)


def test_a_warning_that_voids_the_samples_blocks_the_winner_and_is_quoted():
    # 0.4 ms steps, one step per sample: "samples too short" voids the training comparison
    recs = {r.aspect: r for r in recommend(cells_of(_planted(fast_step=0.0004,
                                                             slow_step=0.0006)))}
    r = recs["train"]
    assert r.winner is None and r.verdict == "no-clear-winner"
    assert "too short" in r.text and any("too short" in w for w in r.warnings)
    assert recs["latency"].winner == "pytorch"   # latency samples are fine: still a winner


def test_epoch_chart_stacks_first_step_and_warmup_on_the_steady_epoch():
    from mlbench.report.figures import build_figures
    a = fs.attempt(step_times=[0.01] * 10, first_step=0.7)
    t = a["metrics"]["train"]
    t.update(warmup_s=0.05, steps_per_epoch=40)
    fig = next(f for f in build_figures(cells_of([a])) if f.id == "epoch")
    by = {tr["name"].split(" ", 1)[1]: tr for tr in fig.spec["data"]}
    steady, warm, first = by["steady epoch"], by["warm-up"], by["first step"]
    assert steady["y"] == [pytest.approx(0.4)] and steady["base"] == [0.0]
    assert warm["y"] == [pytest.approx(0.05)] and warm["base"] == [pytest.approx(0.4)]
    assert first["y"] == [pytest.approx(0.7)] and first["base"] == [pytest.approx(0.45)]
    assert steady["offsetgroup"] == warm["offsetgroup"] == first["offsetgroup"]  # one stack
    assert "steady" in fig.caption and "ranking" in fig.caption


def test_numbers_use_si_prefixes_never_e_notation(tmp_path):
    from mlbench.report.render import si
    assert (si(5681), si(31110), si(0.00042, "s"), si(1.2345e11, "FLOP/s")) == \
        ("5.681 k", "31.11 k", "420 µs", "123.5 GFLOP/s")
    html = build_report(fs.write_store(tmp_path / "r", fs.sweep(60, steps=10, latencies=5)),
                        tmp_path / "o").read_text()
    rows = html.split('id="summary-rows"', 1)[1].split("</template>", 1)[0]
    assert not re.search(r"\d[eE][+-]\d", rows)
    assert re.search(r"<td>\d{2},\d{3}<td>", rows)   # parameter counts as whole numbers
