"""mlbench/report/recommend.py, the evidence around a verdict (the mutants mutmut left alive
there, see benchmarks/mutation_tool.py; the planted data and helpers: test_recommend_mutants.py):
compile asked of compiled modes only, the eager frameworks' overhead apart; warnings of the two
compared frameworks only, each figure voided by its own samples' warnings and by machine- and
device-level ones; the CPU memory detail; gate listings; which questions are asked, in which
order; the banner. Expected values come from numpy on the planted irregular samples.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import fakestore as fs
from test_decision import KS, _boot, _frame
from test_recommend_mutants import (PLAN, SS_P90, THIRD, _all_aspects, _attempts, _by, _expect,
                                    _grid_attempts, _per_process, _put, _steps)
from mlbench.analysis import decision, gate_verdicts, stats
from mlbench.report import recommend as rmod
from mlbench.report.recommend import recommend


# pytorch's overhead (the median process's: 12.1048 - 8.08 ms) is 4.0248 ms, on the edge of
# three significant digits: a slip in the scale to ms shows
EAGER = {"pytorch": (0.008, (0.0121048, 0.0139, 0.0117)),
         "numpy": (0.002, (0.0031, 0.0027, 0.0035))}


def test_compile_leaves_out_eager_and_zero_compile_times():
    a = _attempts({"jax": PLAN["jax"], "tensorflow": PLAN["tensorflow"],
                   **{fw: (step, 0.002, firsts, PLAN["jax"][3])
                      for fw, (step, firsts) in EAGER.items()}})
    # tensorflow's first steps as short as its median step: nothing to compile (0 s)
    for x in a:
        if x["framework"] == "tensorflow":
            x["metrics"]["train"]["first_step_s"] = 0.9 * min(x["metrics"]["train"]
                                                                ["step_times_s"])
    # first step - median step, per process; the median over the processes; by name
    note = "eager: no compilation: " + ", ".join(
        "{} (first-step overhead {:.3g} ms)".format(fw, 1e3 * float(np.median(
            [f - np.median(_steps(EAGER[fw][0], k)) for f, k in zip(EAGER[fw][1], KS)])))
        for fw in ("numpy", "pytorch")) + "."
    why = "only jax has compile time (first step - median step) results"
    cells = _frame(a)
    for frame in (cells, cells.reverse()):              # the 0 s cells first or last
        rec = _by(recommend(frame), "compile")
        assert rec.text == f"Nothing to compare: {why}. {note}" and rec.reason == why
    # only eager cells: no compiled mode at all
    eager = _frame([x for x in a if x["framework"] in EAGER])
    rec = _by(recommend(eager), "compile")
    assert rec.text == f"Nothing to compare: no compiled mode was measured. {note}"
    # compiled modes measured without a compile time: said so, eager cells or not
    for frame in (cells, cells.filter(pl.col("framework").is_in(["jax", "tensorflow"]))):
        compiled = pl.col("framework").is_in(["jax", "tensorflow"])
        blank = frame.with_columns(*(pl.when(compiled).then(None).otherwise(pl.col(c)).alias(c)
                                     for c in ("compile_s", "compile_r")))
        rec = _by(recommend(blank), "compile")
        assert rec.reason == "no compile time (first step - median step) results"


def test_which_modes_compile():
    assert not rmod.compiles({"framework": "numpy"})
    assert not rmod.compiles({"base_framework": "numpy", "framework": "numpy-ref"})
    assert not rmod.compiles({"framework": "pytorch", "mode_settings": ""})
    assert not rmod.compiles({"framework": "pytorch", "mode_settings": "compile=False"})
    assert not rmod.compiles({"framework": "pytorch-eager", "base_framework": "pytorch",
                              "mode_settings": "threads=4"})
    assert rmod.compiles({"framework": "pytorch-compile", "base_framework": "pytorch",
                          "mode_settings": "compile=True, mode=max-autotune"})
    assert rmod.compiles({"framework": "tensorflow", "mode_settings": ""})
    assert rmod.compiles({"framework": "jax"})


def test_a_process_with_no_compile_time_is_left_out_of_the_interval():
    a = _attempts()
    jax = [x for x in a if x["framework"] == "jax"]
    # one jax process's first step no longer than its median step: 0 s, no positive value
    jax[1]["metrics"]["train"]["first_step_s"] = min(jax[1]["metrics"]["train"]["step_times_s"])
    rec = _by(recommend(_frame(a)), "compile")
    assert rec.winner is None and rec.leader == "jax"
    assert rec.reason == "cannot tell: only 2 processes on one side (at least 3 needed)"
    comp = [p - float(np.median(_steps(0.010, k))) for p, k in zip(PLAN["jax"][2], KS)]
    tf = [p - float(np.median(_steps(0.0135, k))) for p, k in zip(PLAN["tensorflow"][2], KS)]
    r, lo, hi = _boot([([comp[0], comp[2]], tf)])
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx((1 / r, 1 / hi, 1 / lo))


# --- warnings: the two compared frameworks' own, machine- and device-level ones void ----------
EAGER_NOTE = "eager: no compilation: pytorch (first-step overhead {:.3g} ms).".format(1e3 * float(
    np.median([f - np.median(_steps(THIRD[0], k)) for f, k in zip(THIRD[2], KS)])))


def _three_frameworks():
    return _frame(_attempts({**PLAN, "pytorch": THIRD}))


def _warn(cells, fw, text, col="warn_all"):
    return cells.with_columns(pl.when(pl.col("framework") == fw)
                              .then(pl.col(col).list.concat(pl.lit([text])))
                              .otherwise(pl.col(col)).alias(col))


def test_a_third_frameworks_voiding_warning_voids_nothing():
    cells = _warn(_three_frameworks(), "pytorch", VOIDING["busy machine"])
    rec = _by(recommend(cells), "train")
    assert (rec.winner, rec.runner_up) == ("jax", "tensorflow")
    assert rec.details[1] == "Also measured: pytorch."
    assert not any(w.startswith("pytorch") for w in rec.warnings)


VOIDING = {"busy machine": "busy machine: other processes used 55% of the CPU",
           "busy device": "busy device: another process held 1.0 GiB on cuda:0",
           "samples too short": "samples too short: median step 0.4 ms"}


@pytest.mark.parametrize("kind", sorted(VOIDING))
@pytest.mark.parametrize("fw", ["jax", "tensorflow"])
def test_a_machine_or_device_warning_on_either_side_voids_the_winner(kind, fw):
    cells = _warn(_three_frameworks(), fw, VOIDING[kind])
    recs = recommend(cells)
    for aspect in ("train", "latency", "memory", "compile"):
        rec = _by(recs, aspect)
        assert rec.winner is None and rec.reason == f"cannot tell: voided by {kind}", aspect
        assert f"{fw} (bs32 fp32): {VOIDING[kind]}" in rec.warnings
        assert rec.text.startswith(f"No clear winner: {rec.leader} leads {rec.runner_up} by ")
        assert rec.text.endswith(f"; cannot tell: voided by {kind}." + (
            f" {EAGER_NOTE}" if aspect == "compile" else ""))


@pytest.mark.parametrize("column, voided", [
    ("warn_train", {"train", "energy"}),
    ("warn_latency", {"latency", "single_stream", "server"})])
def test_each_figure_is_voided_by_the_warnings_about_its_own_samples(column, voided):
    cells = _warn(_all_aspects(), "tensorflow", VOIDING["samples too short"], column)
    recs = recommend(cells)
    for rec in recs:
        if rec.aspect in voided:
            assert rec.reason == "cannot tell: voided by samples too short", rec.aspect
        else:
            assert rec.verdict == "clear", rec.aspect


def test_warnings_are_named_by_framework_and_configuration_once_each():
    cells = _frame(_grid_attempts())
    note = "unstable: spread between processes 21%"       # not voiding
    cells = _warn(_warn(cells, "tensorflow", note), "tensorflow", note, "warn_train")
    rec = _by(recommend(cells), "train")
    assert rec.winner == "jax"
    mine = [w for w in rec.warnings if note in w]
    assert mine == [f"tensorflow ({c}): {note}" for c in ("bs32 bf16", "bs32 fp32", "bs64 fp32")]


# --- memory ------------------------------------------------------------------------------------
def _mib(x):
    return f"{x / 2 ** 20:.0f} MiB"


def test_cpu_memory_detail_compares_whole_process_peaks_and_gpu_has_none():
    recs = recommend(_all_aspects())
    rec = _by(recs, "memory")
    tf, jax = max(PLAN["tensorflow"][3]), max(PLAN["jax"][3])   # the cells' peak: the max
    assert rec.details[1:] == (f"Whole-process peak RSS agrees: tensorflow {_mib(tf)}, "
                               f"jax {_mib(jax)}.",)
    assert rec.unit == "peak host RSS (whole process, libraries included: this store has " \
                       "no baseline)"
    gpu = []
    for x in _attempts():
        x = fs.attempt(x["framework"], device="cuda:0", repeat=x["repeat"],
                       step_times=x["metrics"]["train"]["step_times_s"],
                       peak_device=int(x["host_peak_rss_bytes"] / 3))
        gpu.append(x)
    rec = _by(recommend(_frame(gpu)), "memory")
    assert rec.winner == "tensorflow" and rec.details == ("Configurations: bs32 fp32.",)
    assert (rec.ratio, rec.lo, rec.hi) == pytest.approx(_expect(
        [int(v / 3) for v in PLAN["tensorflow"][3]], [int(v / 3) for v in PLAN["jax"][3]],
        False))


def test_equal_peaks_agree_and_the_figures_of_the_cells_name_the_memory():
    a = _attempts()
    for x in a:   # the same 1000 MiB peak; tensorflow's working memory 100 MiB, jax's 200
        mib = 2 ** 20 * (1 + 0.013 * x["repeat"])
        x["host_peak_rss_bytes"] = x["metrics"]["memory"]["host_peak_rss_bytes"] = 1000 * 2 ** 20
        x["metrics"]["memory"]["host_baseline_rss_bytes"] = int(
            1000 * 2 ** 20 - (100 if x["framework"] == "tensorflow" else 200) * mib)
    cells = _frame(a)
    rec = _by(recommend(cells), "memory")
    assert rec.winner == "tensorflow"
    assert rec.details[1] == "Whole-process peak RSS agrees: tensorflow 1000 MiB, jax 1000 MiB."
    # a process that peaks higher though it works in less: said, with both peaks and the ratio
    for x in a:
        if x["framework"] == "tensorflow":
            x["host_peak_rss_bytes"] = x["metrics"]["memory"]["host_peak_rss_bytes"] = int(
                (1450 + 17 * x["repeat"]) * 2 ** 20)
            x["metrics"]["memory"]["host_baseline_rss_bytes"] = int(
                (1350 + 17 * x["repeat"]) * 2 ** 20 - 0.013 * x["repeat"] * 2 ** 20)
    rec = _by(recommend(_frame(a)), "memory")
    tf_peak = 1450 + 17 * 2                             # the cell's peak: its processes' max
    assert rec.winner == "tensorflow" and rec.details[1] == (
        f"Whole-process peak RSS disagrees: tensorflow {tf_peak} MiB against jax 1000 MiB "
        f"({tf_peak / 1000:.2f}x tensorflow's higher): tensorflow needs less working memory but "
        "its process as a whole peaks higher (runtime and libraries).")
    # without one side's peak there is nothing to set beside the working memory
    no_peak = _put(cells, "host_peak_rss_bytes", {"tensorflow": 1000 * 2 ** 20}, pl.Int64)
    assert _by(recommend(no_peak), "memory").details == ("Configurations: bs32 fp32.",)
    named = _put(cells, "mem_figure_text", {"jax": "B figure", "tensorflow": "A figure"}, pl.Utf8)
    assert _by(recommend(named), "memory").unit == "A figure / B figure"
    unnamed = _put(cells, "mem_figure_text", {}, pl.Utf8)
    rec = _by(recommend(unnamed), "memory")
    assert rec.unit == "memory" and rec.record()["figure"] == "memory"


# --- the equivalence gate, what is asked, in which order ------------------------------------------
def test_gate_failures_are_left_out_and_listed_with_the_unchecked_ones():
    cells = _put(_frame(_grid_attempts()), "gate_label", {"jax": "mlp.wide",
                 "tensorflow": "mlp.wide", "pytorch": "mlp.wide"}, pl.Utf8)
    row = dict(model="mlp", model_label="mlp.wide", device="cpu", reference="numpy")
    gate = gate_verdicts.GateVerdicts(gate_verdicts.GateReport(rows=[
        gate_verdicts.GateRow(**row, precision="fp32", framework="jax", passed=False),
        gate_verdicts.GateRow(**row, precision="bf16", framework="jax", passed=False),
        gate_verdicts.GateRow(**row, precision="fp32", framework="tensorflow", passed=True)]))
    recs = recommend(cells, gate)
    assert {r.aspect for r in recs} == {"train", "compile", "latency", "memory"}
    gate_lines = ("Not comparable (failed the equivalence gate), left out: jax (bf16, fp32).",
                  "Not checked by the equivalence gate: pytorch (fp32); tensorflow (bf16).")
    for rec in recs:
        assert rec.details[-2:] == gate_lines, rec.aspect
        assert "jax" not in rec.text and "jax" not in (rec.leader, rec.runner_up)
    train = _by(recs, "train")
    assert (train.leader, train.runner_up) == ("tensorflow", "pytorch")
    assert train.details[0] == "Configurations: bs32 fp32."
    # the gate is looked up by the config's label of the model, not the model's name
    by_name = gate_verdicts.GateVerdicts(gate_verdicts.GateReport(rows=[
        gate_verdicts.GateRow(**{**row, "model_label": "mlp"}, precision=p, framework="jax",
                              passed=False) for p in ("fp32", "bf16")]))
    assert _by(recommend(cells, by_name), "train").leader == "jax"
    # a cell without the config's label is looked up by the model's name
    unlabelled = _put(cells, "gate_label", {}, pl.Utf8)
    assert _by(recommend(unlabelled, by_name), "train").leader == "tensorflow"


def test_a_model_whose_cells_all_failed_is_not_asked_about():
    a = _attempts() + [fs.attempt(fw, model="cnn", status="oom", reason="OOM")
                       for fw in ("jax", "tensorflow")]
    recs = recommend(_frame(a))
    assert {r.model for r in recs} == {"mlp.small"}
    assert [r.aspect for r in recs] == ["train", "compile", "latency", "memory"]


def test_serving_aspects_only_where_their_scenario_was_measured():
    cells = _frame(_attempts())
    for name, values, dtype in _per_process(SS_P90, "ss_p90").values():
        cells = _put(cells, name, values, dtype)
    recs = recommend(cells)
    assert [r.aspect for r in recs] == ["train", "compile", "latency", "memory",
                                        "single_stream"]
    assert _by(recs, "single_stream").winner == "jax"


def test_a_figure_measured_in_one_cell_is_asked_and_says_who_alone_has_it():
    cells = _frame(_attempts())
    for col, unit in (("train_j_per_ksample", "training energy (J per 1,000 samples)"),
                      ("ss_p90", "single-stream p90 latency"),
                      ("server_max_qps", "server QPS with p99 within the latency bound")):
        one = cells
        for name, values, dtype in _per_process({"jax": [41.0, 44.5, 39.8]}, col).values():
            one = _put(one, name, values, dtype)
        rec = recommend(one)[-1]
        assert rec.unit == unit and rec.reason == f"only jax has {unit} results"


def test_recommendations_per_model_in_label_order():
    a = _attempts() + [dict(x, model="cnn", model_label="cnn.small", cell_id=x["cell_id"] + "c")
                       for x in _attempts()]
    for x in a[len(a) // 2:]:
        x["model_label"] = "cnn.small"
    recs = recommend(_frame(a).reverse())
    assert [r.model for r in recs] == ["cnn.small"] * 4 + ["mlp.small"] * 4


def test_banner_states_the_rule_the_voiding_kinds_and_the_advice():
    assert rmod.BANNER == (f"{decision.RULE} Voiding warnings: contended, busy machine, busy "
                           "device, samples too short. Over several configurations (batch size, "
                           "precision): the geometric mean over those both frameworks measured. "
                           f"Advice: {stats.REPEATS_ADVICE}.")
