"""results.json carries every figure the report shows, in a published, validated shape.

Promises: a real run (the numpy worker through the CLI, with repeats) writes results.json whose
top-level `summaries` hold one entry per cell_id (all repeats together) with the report's figures
and validate against the pydantic models the shipped JSON Schema is generated from; with a single
process the intervals are null, not absent; the shipped schema file is exactly what the models
generate; `mlbench schema` prints it.
"""
from __future__ import annotations

import json

import pydantic
import pytest

from cliutil import run_inproc, write_config
from sweeputil import small_ceilings
from mlbench.results import summary


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "r"
    conf = write_config(out.parent / "c.yaml", frameworks=["numpy"], batch_sizes=[16],
                        models=[{"name": "mlp", "preset": "tiny"}], train_samples=256,
                        eval_samples=64, warmup_iterations=2, timed_iterations=10, repeats=2,
                        output_dir=str(out), timeout_s=300)
    with small_ceilings():  # a real ceiling (the summaries' MFU), measured small
        rc, _, _ = run_inproc(["run", "--config", str(conf), "--no-report"])
    assert rc == 0
    return out


def test_real_results_json_validates_and_carries_summaries(run_dir):
    doc = json.loads((run_dir / "results.json").read_text())
    parsed = summary.validate(doc)
    cells = {a["cell_id"] for a in doc["cells"]}
    assert {s["cell_id"] for s in doc["summaries"]} == cells
    assert len(doc["summaries"]) == len(cells)  # all repeats of a cell in one summary
    s = doc["summaries"][0]
    assert s["repeats"] == 2 and s["ok_repeats"] == 2
    sps = s["train_samples_per_s"]
    assert sps["ci_low"] <= sps["ci_high"] and sps["median"] > 0
    st = s["step_time_s"]
    assert 0 < st["p50"] <= st["p90"] <= st["p99"]
    assert s["epoch_time_s"]["total"] > 0 and s["epoch_time_s"]["first_step"] > 0
    assert s["latency_s"]["p50"] > 0 and s["achieved_flops"]["train"] > 0
    # one RSS figure per meaning, each named; the CPU headline is the working memory when the
    # worker records its baseline, else the whole-process peak
    mem = s["memory"]
    assert mem["headline_figure"] in ("working", "host_peak") and mem["host_peak_rss_bytes"] > 0
    assert s["mfu"]["value"] > 0  # from the run's own measured ceiling
    assert parsed.summaries[0].cell_id == s["cell_id"]


def test_single_process_intervals_are_null_not_absent(tmp_path):
    import fakestore as fs
    from mlbench.results import aggregate
    cells = aggregate.cells_frame(aggregate.attempts_frame([fs.attempt()]))
    s = summary.summaries(cells)[0]
    assert "ci_low" in s["train_samples_per_s"] and s["train_samples_per_s"]["ci_low"] is None
    assert s["compile_s"]["ci_high"] is None and s["ci_basis"] == "single process"
    bad = {"schema": 1, "run": {}, "cells": [], "summaries": [{**s, "memory": {}}]}
    with pytest.raises(pydantic.ValidationError):
        summary.validate(bad)


def test_shipped_schema_is_generated_and_printed(capsys):
    assert summary.SCHEMA_FILE.read_text() == summary.schema_text(), \
        "stale schema: run python -m mlbench.results.summary"
    rc, out, _ = run_inproc(["schema"], capsys)
    assert rc == 0 and json.loads(out) == summary.json_schema()
    assert "summaries" in json.loads(out)["properties"]
