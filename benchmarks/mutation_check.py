"""Mutation check: do the tests notice the quiet bugs that would make mlbench publish wrong numbers?

A curated set of small, realistic bugs (mutants), each: the file, the exact original snippet, its
replacement, a one-line description and the fast tests related to it. One mutant at a time is
applied to a scratch COPY of the repository (never the working tree: shutil.copytree into a
temporary directory, without .git/.venv), and the related tests run there (PYTHONPATH pointing
at the copy) under a per-mutant timeout. A mutant is

  killed          the related tests fail (pytest exit 1, or 2 when the mutant cannot even be
                  imported), or time out;
  survived        they pass: a bug no test notices;
  not applicable  its snippet is not in the file any more (the code moved): counted apart;
  error           a selected test does not exist, or pytest could not run (exit 3, 4, 5).

Survivors are explained below (`equivalent=`: the change cannot alter behaviour, and why; or
`guarded_by=`: the test that guards it lives on another branch). The kill rate is over the
applicable mutants; the rate without the equivalent ones is printed too.

    python benchmarks/mutation_check.py                 # all mutants, one at a time
    python benchmarks/mutation_check.py --list          # the mutants, and whether each applies
    python benchmarks/mutation_check.py --only gate-self-compare --only store-no-fsync
    python benchmarks/mutation_check.py --baseline      # without the tests/test_promises_* files
    python benchmarks/mutation_check.py --jobs 2        # mutants in parallel (a quiet machine)

A mutant that reads `not applicable` has lost its code to a move: retarget it to where that
code lives now (the same semantic bug), never drop it (issue 11 moved 16; all were retargeted,
and the restructured code got mutants of its own).

`--baseline` deselects the test files added for issue 15, so the same mutant set measures the
suite before and after them. Never imports an ML framework itself.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEW_TESTS = "tests/test_promises_"   # the files issue 15 added (left out by --baseline)
_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", ".pytest_cache",
                                   "*.egg-info", ".mypy_cache", ".ruff_cache")
TOP_ONLY = {"results", "reports"}   # run outputs at the top; mlbench/results/ is a package


def IGNORE(folder: str, names: list[str]) -> set[str]:
    """What the scratch copy leaves out: caches anywhere, run outputs at the top only."""
    top = TOP_ONLY & set(names) if Path(folder).resolve() == ROOT else set()
    return set(_ANYWHERE(folder, names)) | top

R = "tests/test_promises_run.py::"
G = "tests/test_promises_gate.py::"
P = "tests/test_promises_report.py::"
F = "tests/test_promises_frameworks.py::"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    what: str
    tests: tuple[str, ...]
    equivalent: str | None = None   # why this change cannot alter behaviour
    guarded_by: str | None = None   # the test that kills it lives on another branch


M = Mutant
MUTANTS: list[Mutant] = [
    # --- launcher: environment, classification, sampling -------------------------------------
    M("launcher-tf-double-threads", "mlbench/run/launcher.py",
      "    env.update(catalog.framework_env(job.framework))\n",
      "    env.update(catalog.framework_env(job.framework))\n"
      "    if job.framework == 'tensorflow':\n"
      "        env.update({var: str(2 * job.threads) for var in THREAD_VARS})\n",
      "one framework given twice the threads",
      (R + "test_every_framework_gets_the_same_cpu_set_and_thread_knobs",
       "tests/test_launcher_unit.py", "tests/test_faults.py")),
    M("launcher-cpu-cell-sees-gpu", "mlbench/run/launcher.py",
      '"CUDA_VISIBLE_DEVICES": gpu.cuda_visible_value(device) if cuda else "",',
      '"CUDA_VISIBLE_DEVICES": gpu.cuda_visible_value(device) if cuda else "0",',
      "a CPU cell can see GPU 0",
      (R + "test_every_framework_gets_the_same_cpu_set_and_thread_knobs",
       "tests/test_launcher_unit.py", "tests/test_faults.py",
       "tests/test_security.py::test_no_shell_between_mlbench_and_the_worker")),
    M("launcher-sigkill-ok", "mlbench/run/launcher.py",
      '            status, reason = "crashed", f"killed by {sig} before its final protocol '
      'message"',
      '            status, reason = ("ok" if sig == "SIGKILL" else "crashed"), '
      'f"killed by {sig} before its final protocol message"',
      "a SIGKILLed worker recorded ok",
      (R + "test_sigkilled_worker_is_crashed_never_ok", "tests/test_faults.py")),
    M("launcher-no-diverged-reason", "mlbench/run/launcher.py",
      '        prefix = "diverged: " if kind == "diverged" else f"{final.get(\'error_type\', '
      '\'Error\')}: "',
      '        prefix = f"{final.get(\'error_type\', \'Error\')}: "',
      "a diverged loss reported as a plain error",
      (R + "test_a_diverging_loss_is_failed_with_diverged", "tests/test_faults.py",
       "tests/test_numpy_worker.py")),
    M("launcher-oom-as-failed", "mlbench/run/launcher.py",
      '        status = "oom" if oom else "failed"',
      '        status = "failed"',
      "an out-of-memory error recorded as failed",
      ("tests/test_faults.py", "tests/test_protocol.py")),
    M("launcher-timeout-as-crash", "mlbench/run/launcher.py",
      "    elif timed_out:\n",
      "    elif False:\n",
      "a worker past its wall limit not recorded as timeout",
      ("tests/test_faults.py::test_hang_past_timeout_kills_the_whole_process_group",)),
    M("launcher-no-rss-sampling", "mlbench/run/launcher.py",
      "                watch.peak_rss = max(watch.peak_rss, _tree_rss(ps, watch.seen))",
      "                watch.peak_rss = max(watch.peak_rss, 0)",
      "the parent never samples the worker's memory (ru_maxrss alone)",
      (R + "test_host_memory_is_sampled_by_the_parent_over_the_whole_process_tree",
       "tests/test_faults.py")),
    M("launcher-rss-without-children", "mlbench/run/launcher.py",
      "                total += child.memory_info().rss",
      "                pass",
      "the worker's children left out of its memory",
      (R + "test_host_memory_is_sampled_by_the_parent_over_the_whole_process_tree",
       "tests/test_faults.py")),
    M("launcher-kill-pid-not-group", "mlbench/run/launcher.py",
      "            os.killpg(pgid, sig)",
      "            os.kill(proc.pid, sig)",
      "a timeout kills the worker but not its grandchildren",
      ("tests/test_faults.py::test_hang_past_timeout_kills_the_whole_process_group",
       "tests/test_launcher_unit.py::"
       "test_timeout_kills_the_whole_process_group_grandchild_included")),
    # --- store --------------------------------------------------------------------------------
    M("store-no-fsync", "mlbench/results/store.py",
      "                _write_all(fd, line)\n                os.fsync(fd)\n",
      "                _write_all(fd, line)\n",
      "the fsync on append removed",
      (R + "test_every_appended_attempt_is_fsynced", "tests/test_resume.py")),
    M("store-first-attempt-wins", "mlbench/results/store.py",
      "        latest.pop(key, None)\n        latest[key] = a\n",
      "        latest.setdefault(key, a)\n",
      "the first attempt of a cell wins, not the latest",
      ("tests/test_resume.py",
       "tests/test_report.py::test_latest_attempt_wins_and_failed_repeat_excluded")),
    M("store-csv-throughput-from-latency", "mlbench/results/store.py",
      '"train_samples_per_s": f["samples_per_step"] / step if step else None,',
      '"train_samples_per_s": f["samples_per_step"] / lat if lat else None,',
      "the CSV's throughput column computed from latencies",
      (P + "test_csv_throughput_is_batch_over_median_step_time", "tests/test_resume.py",
       "tests/test_report.py::test_full_report_files")),
    M("store-torn-line-fatal", "mlbench/results/store.py",
      "    except ValueError as exc:  # BadJSON included\n",
      "    except (TypeError, UnicodeDecodeError) as exc:  # BadJSON included\n",
      "a torn last line makes the store unreadable",
      ("tests/test_resume.py::test_reader_skips_a_torn_last_line",
       "tests/test_report.py::test_torn_last_line_is_tolerated")),
    # --- runner: resume and archive -----------------------------------------------------------
    M("runner-failed-counts-as-done", "mlbench/run/runner.py",
      'DONE = ("ok", "skipped")',
      'DONE = ("ok", "skipped", "failed", "oom", "crashed")',
      "failed/oom/crashed cells treated as done by --resume",
      (R + "test_resume_reruns_every_unfinished_status_and_nothing_done", "tests/test_resume.py")),
    M("runner-interrupted-counts-as-done", "mlbench/run/runner.py",
      'DONE = ("ok", "skipped")',
      'DONE = ("ok", "skipped", "interrupted", "timeout")',
      "interrupted/timed-out cells treated as done by --resume",
      (R + "test_resume_reruns_every_unfinished_status_and_nothing_done", "tests/test_resume.py")),
    M("runner-resume-ignores-fingerprint", "mlbench/run/runner.py",
      '                                         and latest[c.key].get("fingerprint") == '
      'c.fingerprint)]',
      "                                         )]",
      "a cell whose request changed is not re-run by --resume",
      (R + "test_resume_reruns_a_cell_whose_model_options_changed", "tests/test_resume.py")),
    M("runner-archive-keeps-gate", "mlbench/run/runner.py",
      '                 gate_verdicts.GATE_JSON, gate_verdicts.GATE_WORK_DIR):',
      '                 gate_verdicts.GATE_WORK_DIR):',
      "--archive leaves the earlier run's gate verdicts (verify.json) in place",
      (R + "test_archive_moves_the_earlier_gate_result_aside", "tests/test_resume.py")),
    M("runner-failed-exit-0", "mlbench/run/runner.py",
      '        return 1 if any(a["status"] in FAILED for a in self.latest) else 0',
      "        return 0",
      "a run with failed cells exits 0",
      ("tests/test_faults.py",)),
    # --- matrix -------------------------------------------------------------------------------
    M("matrix-exclude-ignored", "mlbench/run/selection.py",
      "                        if not excluded(config, var.framework,",
      "                        if True or not excluded(config, var.framework,",
      "exclude: rules ignored",
      (R + "test_exclude_rules_remove_exactly_the_matching_cells", "tests/test_config.py")),
    M("matrix-exclude-any-key", "mlbench/run/selection.py",
      "        if given and all(values[k]",
      "        if given and any(values[k]",
      "an exclude rule matches when any one of its keys matches",
      (R + "test_exclude_rules_remove_exactly_the_matching_cells", "tests/test_config.py")),
    M("matrix-model-options-not-fingerprinted", "mlbench/run/matrix.py",
      '_NOT_FINGERPRINTED = ("cell_id", "repeat", "timeout_s")',
      '_NOT_FINGERPRINTED = ("cell_id", "repeat", "timeout_s", "model_options")',
      "changed model options do not change the fingerprint",
      (R + "test_resume_reruns_a_cell_whose_model_options_changed", "tests/test_resume.py")),
    M("matrix-jax-double-threads", "mlbench/run/matrix.py",
      "timed_iterations=config.timed_iterations, threads=threads,",
      'timed_iterations=config.timed_iterations, threads=threads * (2 if fw == "jax" else 1),',
      "one framework's request asks for twice the threads",
      (R + "test_every_framework_gets_the_same_cpu_set_and_thread_knobs", "tests/test_resume.py",
       "tests/test_faults.py")),
    # --- config -------------------------------------------------------------------------------
    M("config-gate-off-by-default", "mlbench/config/schema.py",
      '    verify: bool = Field(True, description="run the equivalence gate before the cells")',
      '    verify: bool = Field(False, description="run the equivalence gate before the cells")',
      "the equivalence gate off unless asked for",
      (R + "test_gate_and_ceilings_run_by_default", "tests/test_config.py")),
    M("config-typos-ignored", "mlbench/config/schema.py",
      '    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)',
      '    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)',
      "a misspelt config key silently ignored",
      ("tests/test_config.py",)),
    # --- the equivalence gate -----------------------------------------------------------------
    M("gate-self-compare", "mlbench/run/gate.py",
      '        verdicts = {fw: ("numpy", _compare(r, ref, tol)) for fw, r in ok.items()}',
      '        verdicts = {fw: ("numpy", _compare(r, r, tol)) for fw, r in ok.items()}',
      "the mlp compared with itself instead of the numpy reference",
      (G + "test_outputs_off_by_one_percent_fail_the_mlp_against_numpy",
       G + "test_each_precision_accepts_its_rounding_and_rejects_more")),
    M("gate-params-forced-equal", "mlbench/run/gate.py",
      '        params_equal = r["params"] == want',
      "        params_equal = True",
      "parameter counts forced equal",
      (G + "test_different_parameter_counts_fail_the_gate",)),
    M("gate-non-trainable-ignored", "mlbench/run/gate.py",
      '        params_equal = r["params"] == want',
      '        params_equal = r["params"]["trainable"] == want["trainable"]',
      "non-trainable parameter counts ignored",
      (G + "test_different_parameter_counts_fail_the_gate",)),
    M("gate-fp32-tolerance-everywhere", "mlbench/run/gate.py",
      "    tol = TOLERANCES[precision]\n",
      '    tol = TOLERANCES["fp32"]\n',
      "bf16/fp16 judged by the fp32 tolerance",
      (G + "test_low_precision_is_not_judged_by_the_fp32_tolerance",
       G + "test_each_precision_accepts_its_rounding_and_rejects_more")),
    M("gate-bf16-tolerance-10x", "mlbench/analysis/gate_verdicts.py",
      '    "bf16": {"rtol": 5e-2, "atol": 5e-2,',
      '    "bf16": {"rtol": 5e-1, "atol": 5e-1,',
      "the bf16 tolerance ten times looser",
      (G + "test_each_precision_accepts_its_rounding_and_rejects_more",)),
    M("gate-fp16-tolerance-10x", "mlbench/analysis/gate_verdicts.py",
      '    "fp16": {"rtol": 1e-2, "atol": 1e-2,',
      '    "fp16": {"rtol": 1e-1, "atol": 1e-1,',
      "the fp16 tolerance ten times looser",
      (G + "test_each_precision_accepts_its_rounding_and_rejects_more",)),
    M("gate-data-hash-ignored", "mlbench/run/gate.py",
      '        data_equal = r["batches_hash"] == want_hash',
      "        data_equal = True",
      "a framework fed other batches passes",
      (G + "test_a_framework_fed_other_batches_fails_the_gate",)),
    M("gate-nonfinite-check-dropped", "mlbench/run/gate.py",
      "        ok &= bool(np.all(np.isfinite(x)))\n",
      "",
      "the explicit non-finite check of the outputs removed",
      (G + "test_outputs_off_by_one_percent_fail_the_mlp_against_numpy",),
      equivalent="a NaN or inf output already fails the line above: |nan - r| <= tol is False "
                 "and |inf - r| is inf; the check only restates it"),
    M("cli-gate-exit-0", "mlbench/cli.py",
      "    raise typer.Exit(0 if report.passed else 1)",
      "    raise typer.Exit(0)",
      "`mlbench gate` exits 0 on a mismatch",
      ("tests/test_gate_cli.py",
       G + "test_outputs_off_by_one_percent_fail_the_mlp_against_numpy")),
    M("cli-compare-exit-0", "mlbench/cli.py",
      "    raise typer.Exit(2 if result.nothing_compared else 1 if result.regressed else 0)",
      "    raise typer.Exit(0)",
      "`mlbench compare` exits 0 on a regression",
      (P + "test_compare_exits_1_on_a_regression_and_0_without", "tests/test_compare.py")),
    M("preflight-gate-ignores-no-gate", "mlbench/run/preflight.py",
      "    if not config.verify or not frameworks:",
      "    if not frameworks:",
      "--no-gate still runs the gate",
      (R + "test_no_verify_and_no_ceiling_really_skip", "tests/test_resume.py")),
    M("preflight-ceiling-ignores-no-ceiling", "mlbench/run/preflight.py",
      "    if not config.ceiling or not frameworks or not devices:",
      "    if not frameworks or not devices:",
      "--no-ceiling still measures the ceilings",
      (R + "test_no_verify_and_no_ceiling_really_skip", "tests/test_resume.py")),
    # --- stats --------------------------------------------------------------------------------
    M("stats-ratio-interval-swapped", "mlbench/analysis/stats.py",
      "                Ratio(median(xa) / median(xb), float(qs[0, j]), float(qs[1, j]), na, nb),",
      "                Ratio(median(xa) / median(xb), float(qs[1, j]), float(qs[0, j]), na, nb),",
      "the ratio interval's bounds swapped (high-low)",
      (P + "test_the_ratio_interval_is_low_high_around_the_ratio", "tests/test_stats.py",
       "tests/test_report.py::test_recommendation_states_ratio_interval")),
    M("stats-bootstrap-one-sided", "mlbench/analysis/stats.py",
      "        qs = np.quantile(meds, [alpha, 1 - alpha], axis=1)  # 2 x cells",
      "        qs = np.quantile(meds, [alpha, 0.5], axis=1)  # 2 x cells",
      "the interval's upper bound is the bootstrap median",
      ("tests/test_stats.py", "tests/test_report.py::test_intervals_warnings_and_flops_per_cell")),
    # --- aggregate ----------------------------------------------------------------------------
    M("aggregate-attempt-throughput-from-latency", "mlbench/results/aggregate.py",
      '            .with_columns((pl.col("samples_per_step") / pl.col("step_median"))'
      '.alias("train_sps"),',
      '            .with_columns((pl.col("samples_per_step") / pl.col("lat_median"))'
      '.alias("train_sps"),',
      "per-attempt throughput computed from latencies",
      (P + "test_the_planted_winner_wins_every_aspect",
       P + "test_the_ratio_interval_is_low_high_around_the_ratio",
       "tests/test_report.py::test_intervals_warnings_and_flops_per_cell")),
    M("aggregate-cell-throughput-from-latency", "mlbench/results/aggregate.py",
      '        (pl.col("samples_per_step") / pl.col("step_median")).alias("train_sps"),',
      '        (pl.col("samples_per_step") / pl.col("lat_median")).alias("train_sps"),',
      "per-cell throughput (summary) computed from latencies",
      (P + "test_report_summary_throughput_matches_the_raw_samples",
       "tests/test_report.py::test_aggregation_from_raw_samples")),
    M("aggregate-cpu-memory-is-device", "mlbench/results/aggregate.py",
      '           .otherwise(pl.col("host_peak_rss_bytes")))',
      '           .otherwise(pl.col("peak_device_bytes")))',
      "a CPU cell's memory read from the (absent) device memory",
      (P + "test_the_planted_winner_wins_every_aspect", "tests/test_report.py")),
    # --- report -------------------------------------------------------------------------------
    M("recommend-slowest-wins", "mlbench/report/recommend.py",
      "    ranked = sorted(scores, key=lambda fw: (_geomean(scores[fw]), fw))",
      "    ranked = sorted(scores, key=lambda fw: (-_geomean(scores[fw]), fw))",
      "the slowest framework named the winner",
      (P + "test_the_planted_winner_wins_every_aspect",
       "tests/test_report.py::test_recommendation_clear_winner_with_repeats")),
    M("recommend-latency-higher-wins", "mlbench/report/recommend.py",
      '    Aspect("latency", "serves with the lowest latency", "lat_median", "lat_p50_r", False,',
      '    Aspect("latency", "serves with the lowest latency", "lat_median", "lat_p50_r", True,',
      "the highest latency named lowest-latency winner",
      (P + "test_the_planted_winner_wins_every_aspect",
       "tests/test_report.py::test_recommendation_clear_winner_with_repeats")),
    M("decision-interval-inverted", "mlbench/analysis/decision.py",
      "            None if r.hi is None else 1 / r.hi, None if r.lo is None else 1 / r.lo)",
      "            None if r.lo is None else 1 / r.lo, None if r.hi is None else 1 / r.hi)",
      "the interval of a flipped ratio printed high-low (\"1.50x [1.62-1.41]\")",
      ("tests/test_decision.py::test_interval_beyond_the_margin_names_the_winner_either_way_round",
       P + "test_the_ratio_interval_is_low_high_around_the_ratio")),
    M("decision-interval-high-low", "mlbench/analysis/decision.py",
      '    return f"{d.ratio:.2f}x [{d.ci_low:.2f}-{d.ci_high:.2f}]"',
      '    return f"{d.ratio:.2f}x [{d.ci_high:.2f}-{d.ci_low:.2f}]"',
      "the interval printed high-low",
      (P + "test_the_ratio_interval_is_low_high_around_the_ratio",
       "tests/test_report.py::test_recommendation_states_ratio_interval")),
    M("decision-two-processes-win", "mlbench/analysis/decision.py",
      "    if n < settings.min_processes:",
      "    if n < 2:",
      "a winner from two processes per side",
      ("tests/test_decision.py::test_too_few_processes_never_give_a_winner",)),
    M("decision-no-voiding", "mlbench/analysis/decision.py",
      "    if void:",
      "    if False:",
      "a contended or busy cell still gives a winner",
      ("tests/test_decision.py", "tests/test_compare.py::test_contended_side_cannot_tell")),
    M("render-settings-unescaped", "mlbench/report/template.html.j2",
      "<td><code>{{ r.settings|fmt('s') }}</code>",
      "<td><code>{{ r.settings|safe }}</code>",
      "one field (a cell's settings) rendered without escaping",
      (P + "test_every_string_of_a_real_record_is_escaped",
       "tests/test_report.py::test_strings_from_the_data_are_escaped")),
    M("render-stderr-unescaped", "mlbench/report/template.html.j2",
      "<pre>{{ f.stderr_tail }}</pre>",
      "<pre>{{ f.stderr_tail|safe }}</pre>",
      "a failure's stderr rendered without escaping",
      (P + "test_every_string_of_a_real_record_is_escaped",
       "tests/test_report.py::test_strings_from_the_data_are_escaped")),
    M("render-figure-json-unescaped", "mlbench/report/render.py",
      '    return (text.replace("<", "\\\\u003c").replace',
      '    return (text.replace("<", "<").replace',
      "figure JSON can close its <script> element",
      (P + "test_every_string_of_a_real_record_is_escaped",
       "tests/test_report.py::test_strings_from_the_data_are_escaped")),
    # --- harness (shared worker runtime) ------------------------------------------------------
    M("harness-no-divergence-check", "workers/harness.py",
      '        if v != v or v in (float("inf"), float("-inf")):',
      "        if False:",
      "the NaN/inf divergence check removed",
      ("tests/test_harness_timing.py::"
       "test_nan_in_the_middle_of_a_block_raises_diverged_at_the_block_end",
       R + "test_a_diverging_loss_is_failed_with_diverged", "tests/test_numpy_worker.py",
       "tests/test_faults.py")),
    M("harness-pin-one-cpu-more", "workers/harness.py",
      "    if threads < len(allowed):\n        os.sched_setaffinity(0, allowed[:threads])\n"
      "    return sorted(os.sched_getaffinity(0))",
      "    if threads < len(allowed):\n        os.sched_setaffinity(0, allowed[:threads + 1])\n"
      "    return sorted(os.sched_getaffinity(0))",
      "workers pinned to one CPU more than their thread count",
      (R + "test_every_framework_gets_the_same_cpu_set_and_thread_knobs",
       "tests/test_numpy_worker.py")),
    M("harness-no-cpu-pinning", "workers/harness.py",
      "        affinity = pin_cpu_threads(request)\n        t0 = time.perf_counter()",
      "        affinity = sorted(os.sched_getaffinity(0))\n        t0 = time.perf_counter()",
      "no CPU pinning for any framework",
      (F + "test_every_framework_runs_on_the_same_cpus_with_the_same_threads",
       "tests/test_numpy_worker.py")),
    M("harness-sync-outside-timing", "workers/harness.py",
      "            values = self.sync_losses(pending)  # the sync belongs to the block's time\n"
      "            rec.add_block(size, clock() - t0)\n",
      "            rec.add_block(size, clock() - t0)\n"
      "            values = self.sync_losses(pending)\n",
      "the device sync moved out of the timed region (steady-state blocks)",
      ("tests/test_worker_clock.py",
       "tests/test_harness_timing.py::test_steady_blocks_are_timed_with_their_sync_and_last_the_target")),
    M("pytorch-double-threads", "workers/pytorch_worker.py",
      "            torch.set_num_threads(threads)",
      "            torch.set_num_threads(2 * threads)",
      "pytorch given twice the threads",
      (F + "test_every_framework_runs_on_the_same_cpus_with_the_same_threads",
       "tests/test_pytorch_worker.py::test_tiny_model_trains_evaluates_serves_and_learns")),
    M("pytorch-bf16-always-skipped", "workers/pytorch_worker.py",
      '        elif self.precision != "fp32":\n            self._probe_cpu_autocast()',
      '        elif self.precision != "fp32":\n            raise SkipCell("mixed precision '
      'skipped")',
      "pytorch mixed precision always skipped on the CPU",
      (F + "test_bf16_really_runs_on_the_cpu",
       "tests/test_pytorch_worker.py::test_mixed_precision_on_cpu_runs_or_skips_with_a_reason")),
    M("pytorch-bf16-runs-fp32", "workers/pytorch_worker.py",
      '        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16,',
      '        self.amp_dtype = {"fp32": None, "bf16": None,',
      "pytorch 'bf16' silently computed in fp32",
      (F + "test_bf16_really_runs_on_the_cpu",
       "tests/test_pytorch_worker.py::test_mixed_precision_on_cpu_runs_or_skips_with_a_reason")),
    M("tensorflow-double-threads", "workers/tensorflow_worker.py",
      "            tf.config.threading.set_intra_op_parallelism_threads(threads)",
      "            tf.config.threading.set_intra_op_parallelism_threads(2 * threads)",
      "tensorflow given twice the threads",
      (F + "test_every_framework_runs_on_the_same_cpus_with_the_same_threads",
       "tests/test_tensorflow_worker.py::test_tiny_model_trains_evaluates_and_serves")),
    M("jax-pin-two-cpus", "workers/jax_worker.py",
      "    affinity = harness.pin_cpu_threads(request)",
      '    affinity = harness.pin_cpu_threads({**request, "threads": 2 * threads})',
      "jax pinned to twice its CPUs",
      (F + "test_every_framework_runs_on_the_same_cpus_with_the_same_threads",),
      equivalent="harness.main pins every CPU cell to `threads` CPUs before the worker's "
                 "import_framework runs, so the jax worker's own pin sees exactly that many "
                 "allowed CPUs and cannot widen the set; it is a second, redundant pin"),
    M("numpy-no-bias-correction", "workers/numpy_worker.py",
      "        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t",
      "        c1, c2 = 1.0, 1.0",
      "the numpy reference's Adam without bias correction",
      ("tests/test_numpy_worker.py",
       F + "test_pytorch_agrees_with_the_numpy_reference_but_is_not_it")),
    M("numpy-relu-leaks", "workers/numpy_worker.py",
      "                h = np.maximum(h, 0.0)",
      "                h = np.maximum(h, 0.01 * h)",
      "the numpy reference's ReLU leaks",
      ("tests/test_numpy_worker.py",
       F + "test_pytorch_agrees_with_the_numpy_reference_but_is_not_it")),
    # --- the code of the issue-11 restructuring (protocol, launcher, models, builders, CLI) ---
    M("protocol-foreign-version-accepted", "mlbench/run/protocol.py",
      "    if version != PROTOCOL or isinstance(version, bool):\n",
      "    if False:\n",
      "the parent reads a message of another protocol version as its own",
      ("tests/test_protocol.py::test_a_message_of_another_protocol_version_is_recognised",
       "tests/test_protocol_mismatch.py",
       "tests/test_launcher_unit.py::test_a_worker_of_another_protocol_version_gets_that_reason")),
    M("worker-runs-foreign-request", "workers/harness.py",
      "        if mismatch is not None:\n",
      "        if False:\n",
      "a worker runs a request of another protocol version (may misread it)",
      ("tests/test_protocol_mismatch.py",)),
    M("launcher-kill-stops-at-worker", "mlbench/run/launcher.py",
      "            continue\n        if not _group_alive(pgid):\n            return\n",
      "            continue\n        return\n",
      "a timeout kill stops once the worker is gone, leaving its group's stragglers running",
      ("tests/test_launcher_unit.py::"
       "test_timeout_kills_the_whole_process_group_grandchild_included",
       "tests/test_launcher_unit.py::"
       "test_timeout_kill_goes_on_to_sigkill_while_the_group_holds_a_straggler",
       "tests/test_faults.py::test_hang_past_timeout_kills_the_whole_process_group",
       "tests/test_mutant_guards.py")),
    M("launcher-framework-env-dropped", "mlbench/run/launcher.py",
      "    env.update(catalog.framework_env(job.framework))\n",
      "",
      "the framework table's own variables (e.g. KERAS_BACKEND) not given to its worker",
      ("tests/test_launcher_unit.py::test_the_framework_table_gives_each_worker_its_environment",)),
    M("models-mlp-flops-halved", "workers/models/mlp.py",
      "    return sum(2 * a * b for a, b in zip(dims, dims[1:]))",
      "    return sum(a * b for a, b in zip(dims, dims[1:]))",
      "the mlp module's FLOPs off by a factor of two (MFU and FLOP/s halved)",
      ("tests/test_models.py", "tests/test_mutant_guards.py")),
    M("models-vit-flops-no-patch-embedding", "workers/models/vit.py",
      "    return 2 * n * p * p * c * d + spec[\"n_layers\"]",
      "    return spec[\"n_layers\"]",
      "the vit module's FLOPs leave out the patch embedding",
      ("tests/test_models.py", "tests/test_mutant_guards.py")),
    M("pytorch-vit-builds-transformer", "workers/pytorch_worker.py",
      '            "lstm": build_lstm, "vit": build_vit}',
      '            "lstm": build_lstm, "vit": build_transformer}',
      "the pytorch BUILDERS table maps vit to the transformer builder",
      ("tests/test_models.py",
       "tests/test_pytorch_worker.py::test_every_preset_counts_like_the_spec")),
    M("keras-canonical-transposed", "workers/keras_models.py",
      "        variable.assign(params[name])\n",
      "        w = params[name]\n"
      "        variable.assign(w.T if w.ndim == 2 and w.shape[0] == w.shape[1] else w)\n",
      "the Keras builder loads square canonical kernels transposed (shapes still fit)",
      ("tests/test_keras_models.py::test_keras_builders_match_native_pytorch_on_every_backend",)),
    M("cli-verify-alias-inverted", "mlbench/cli.py",
      '"verify": gate if gate is not None else verify,',
      '"verify": gate if gate is not None else (None if verify is None else not verify),',
      "--no-verify (the former name of --no-gate) runs the gate, --verify skips it",
      ("tests/test_gate_cli.py",)),
    M("store-head-order-swapped", "mlbench/results/store.py",
      '        record = {"cell_id": record.get("cell_id"), "repeat": record.get("repeat", 0),',
      '        record = {"repeat": record.get("repeat", 0), "cell_id": record.get("cell_id"),',
      "the store writes the resume head in another order (resume parses every line in full)",
      ("tests/test_protocol.py::test_resume_index_reads_records_whose_keys_come_in_any_order",
       "tests/test_resume.py", "tests/test_mutant_guards.py")),
    M("harness-synced-step-sync-outside", "workers/harness.py",
      "            loss = float(self.sync(self.train_step(i)))\n"
      "            rec.add_synced_step(clock() - t0)\n",
      "            loss = self.train_step(i)\n"
      "            rec.add_synced_step(clock() - t0)\n"
      "            loss = float(self.sync(loss))\n",
      "the first/warm-up steps timed without their device sync",
      ("tests/test_worker_clock.py", "tests/test_harness_timing.py")),
    M("harness-inference-sync-outside", "workers/harness.py",
      "            for out in outs:\n                self.sync(out)\n"
      "            sample_s = clock() - t0\n",
      "            sample_s = clock() - t0\n"
      "            for out in outs:\n                self.sync(out)\n",
      "inference latencies timed without the sync of their outputs",
      ("tests/test_worker_clock.py", "tests/test_harness_timing.py")),
    # --- issue 26: the patterns an independent audit found (wrong statistic, partial grids,
    # calibration from the wrong sample, untested branches) -----------------------------------
    M("harness-k-from-first-warmup", "workers/harness.py",
      "            self.k = self._calibrate(statistics.median(self.warmup))",
      "            self.k = self._calibrate(self.warmup[0])",
      "K calibrated from the first (slowest) warm-up step instead of their median",
      ("tests/test_worker_clock.py",)),
    M("harness-loops-from-first-warm", "workers/harness.py",
      "        loops = calibrate_loops(min(warm[1:] or warm))",
      "        loops = calibrate_loops(warm[0])",
      "inference loops calibrated from the first (compiling) warm-up call",
      ("tests/test_worker_clock.py",)),
    M("aggregate-p90-nearest", "mlbench/results/aggregate.py",
      '            v.quantile(0.9, interpolation="linear").alias(f"{prefix}_p90"),',
      '            v.quantile(0.9, interpolation="nearest").alias(f"{prefix}_p90"),',
      "the p90 of step times and latencies by another percentile method than documented",
      ("tests/test_summary_values.py",)),
    M("aggregate-steady-epoch-from-p90", "mlbench/results/aggregate.py",
      '                          (pl.col("steps_per_epoch") * pl.col("step_median"))',
      '                          (pl.col("steps_per_epoch") * pl.col("step_p90"))',
      "the steady epoch time from the p90 step instead of the median",
      ("tests/test_summary_values.py", "tests/test_summary.py")),
    M("aggregate-memory-max-over-repeats", "mlbench/results/aggregate.py",
      '        pl.when(pl.col("mem_r").list.len() > 0).then(pl.col("mem_r").list.median())',
      '        pl.when(pl.col("mem_r").list.len() > 0).then(pl.col("mem_r").list.max())',
      "the headline memory the worst repeat's instead of the median over repeats",
      ("tests/test_summary_values.py",)),
    M("summary-throughput-interval-swapped", "mlbench/results/summary.py",
      '                                         ci_low=_f(g("train_sps_ci_lo")),',
      '                                         ci_low=_f(g("train_sps_ci_hi")),',
      "results.json's throughput interval reads its upper bound as the lower",
      ("tests/test_summary_values.py",)),
    M("order-rotation-tiebreak-divides", "mlbench/run/order.py",
      "                    opened[first], (rank[first] - prev_first - 1) % len(rank))",
      "                    opened[first], (rank[first] - prev_first - 1) / len(rank))",
      "the opener's tie-break no longer wraps round the rotation (partial grids)",
      ("tests/test_partial_grids.py", "tests/test_order.py")),
    M("ray-lost-gpu-skips", "mlbench/run/ray_executor.py",
      '            return ("failed" if self._after_loss else "skipped"), \\',
      '            return ("skipped" if self._after_loss else "failed"), \\',
      "after a node loss a GPU cell with no GPU left is skipped, not failed",
      ("tests/test_untested_branches.py",)),
    M("usermodel-bool-flops", "mlbench/config/usermodel.py",
      "            flops = f if isinstance(f, int) and not isinstance(f, bool) and f > 0 else None",
      "            flops = f if isinstance(f, int) and f > 0 else None",
      "`flops_per_sample = True` in a model file read as 1 FLOP per sample",
      ("tests/test_untested_branches.py",)),
    M("stats-median-upper-middle", "mlbench/analysis/stats.py",
      "    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2",
      "    return s[n // 2]",
      "the one median takes the upper middle value of an even count",
      ("tests/test_stats.py",)),
]


def applies(m: Mutant, root: Path = ROOT) -> str:
    """'yes', 'not applicable' (snippet gone) or 'ambiguous' (more than one place)."""
    try:
        text = (root / m.file).read_text()
    except OSError:
        return "not applicable"
    n = text.count(m.old)
    return "yes" if n == 1 else "not applicable" if n == 0 else "ambiguous"


def missing_tests(m: Mutant, root: Path = ROOT) -> list[str]:
    """Selected tests that do not exist (a renamed test would otherwise read as a kill)."""
    out = []
    for t in m.tests:
        path, _, name = t.partition("::")
        try:
            text = (root / path).read_text()
        except OSError:
            out.append(t)
            continue
        if name and f"def {name}(" not in text:
            out.append(t)
    return out


def selection(m: Mutant, baseline: bool) -> list[str]:
    return [t for t in m.tests if not (baseline and t.startswith(NEW_TESTS))]


def run_one(m: Mutant, baseline: bool, timeout: float, python: str) -> tuple[str, float, str]:
    t0 = time.monotonic()
    state = applies(m)
    if state != "yes":
        return state, 0.0, ""
    if missing_tests(m):
        return "error", 0.0, "no such test: " + ", ".join(missing_tests(m))
    tests = selection(m, baseline)
    if not tests:
        return "survived", 0.0, "no related test"
    with tempfile.TemporaryDirectory(prefix=f"mut-{m.name}-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        target = copy / m.file
        target.write_text(target.read_text().replace(m.old, m.new, 1))
        env = {k: v for k, v in os.environ.items() if k not in ("MLBENCH_WORKERS_DIR",)}
        env["PYTHONPATH"] = str(copy)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # the session's shared real sweep (tests/conftest.py) at the mlp only: the selected
        # tests read only its mlp cells and gate rows
        env["MLBENCH_TEST_SWEEP"] = "mlp"
        try:
            proc = subprocess.run([python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   "-W", "ignore::pytest.PytestUnknownMarkWarning", *tests],
                                  cwd=copy, env=env, capture_output=True, text=True,
                                  timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            return "killed", time.monotonic() - t0, "timeout"
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode == 0:
        return "survived", time.monotonic() - t0, tail
    if proc.returncode in (3, 4, 5):   # internal error, usage error, nothing collected
        return "error", time.monotonic() - t0, f"pytest exit {proc.returncode}: " + tail
    return "killed", time.monotonic() - t0, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run just this mutant (repeat)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--baseline", action="store_true",
                    help=f"leave out the {NEW_TESTS}* files (the suite before issue 15)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants at once (default 1)")
    ap.add_argument("--timeout", type=float, default=420, help="seconds per mutant")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    args = ap.parse_args(argv)

    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names), "mutant names must be unique"
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only) - set(names)
    if unknown:
        print(f"error: unknown mutant(s) {', '.join(sorted(unknown))} (--only)", file=sys.stderr)
        return 2
    if args.list:
        for m in MUTANTS:
            gone = missing_tests(m)
            print(f"{m.name:<42} {applies(m):<15} {m.file:<32} {m.what}"
                  + (f"  [no such test: {', '.join(gone)}]" if gone else ""))
        return 0

    t0 = time.monotonic()
    base = f" (baseline: without {NEW_TESTS}*)" if args.baseline else ""
    print(f"{len(chosen)} mutant(s){base}"
          f", {args.jobs} at a time, {args.timeout:g} s each at most", flush=True)
    results: dict[str, tuple[str, float, str]] = {}

    def job(m: Mutant):
        res = run_one(m, args.baseline, args.timeout, args.python)
        print(f"{res[0]:<15} {res[1]:6.1f} s  {m.name:<42} {m.what}"
              + (f"  [{res[2]}]" if res[0] != "killed" and res[2] else ""), flush=True)
        return m.name, res

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, res in pool.map(job, chosen):
            results[name] = res

    by = {m.name: m for m in chosen}
    killed = [n for n, r in results.items() if r[0] == "killed"]
    survived = [n for n, r in results.items() if r[0] == "survived"]
    errors = [n for n, r in results.items() if r[0] == "error"]
    na = [n for n, r in results.items() if r[0] in ("not applicable", "ambiguous")]
    applicable = len(killed) + len(survived) + len(errors)
    equivalent = [n for n in survived if by[n].equivalent]
    print()
    print(f"killed {len(killed)} / {applicable} applicable"
          f" = {100 * len(killed) / applicable if applicable else 0:.0f}%"
          f"; without the {len(equivalent)} equivalent:"
          f" {100 * len(killed) / max(1, applicable - len(equivalent)):.0f}%"
          f"; not applicable {len(na)}; errors {len(errors)}")
    if survived:
        print("survivors:")
        for n in survived:
            m = by[n]
            why = (f"equivalent: {m.equivalent}" if m.equivalent else
                   f"guarded elsewhere: {m.guarded_by}" if m.guarded_by else "NOT EXPLAINED")
            print(f"  {n}: {m.what} -- {why}")
    for n in na:
        where = "gone" if results[n][0] == "not applicable" else "not unique"
        print(f"  {n}: {results[n][0]} ({by[n].file}: snippet {where})")
    print(f"wall time {time.monotonic() - t0:.0f} s")
    unexplained = [n for n in survived if not (by[n].equivalent or by[n].guarded_by)]
    return 1 if unexplained or errors else 0


if __name__ == "__main__":
    sys.exit(main())
