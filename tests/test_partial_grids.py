"""Partial sweeps, as real runs often are: a framework that skips a precision, a resumed subset,
two frameworks, repeats that failed. The run order (mlbench.run.order) is checked against orders
traced by hand from interleave's documented rules; the per-cell summaries of a partial grid
against numpy on the ok repeats' raw samples."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

import fakestore as fs
from mlbench.results import aggregate, summary
from mlbench.run import order


def cell(fw, group, repeat=0):
    """A stand-in for matrix.Cell: what interleave reads (group = (model, batch, precision))."""
    model, bs, prec = group
    return SimpleNamespace(framework=fw, model=SimpleNamespace(id_label=model), device="cpu",
                           batch_size=bs, precision=prec, repeat=repeat,
                           cell_id=f"{fw}-{model}-bs{bs}-{prec}", key=(f"{fw}-{model}-bs{bs}-"
                                                                        f"{prec}", repeat))


G = [("mlp", 8, "fp32"), ("mlp", 8, "bf16"), ("mlp", 16, "fp32"), ("mlp", 16, "bf16")]


def run_of(cells):
    return [(c.framework, G.index((c.model.id_label, c.batch_size, c.precision)), c.repeat)
            for c in order.interleave(cells)]


def test_a_framework_that_skips_a_precision():
    # tensorflow has no bf16 cells: groups 1 and 3 hold two frameworks
    cells = [cell(fw, g) for g in G for fw in ("pytorch", "tensorflow", "jax")
             if not (fw == "tensorflow" and g[2] == "bf16")]
    got = run_of(cells)
    # g0 opens with pytorch; g1 cannot open with jax (it just ran): pytorch again; g2: pytorch
    # opening a third time would put it 3 ahead of jax, so tensorflow; g3: jax (never opened)
    assert got == [("pytorch", 0, 0), ("tensorflow", 0, 0), ("jax", 0, 0),
                   ("pytorch", 1, 0), ("jax", 1, 0),
                   ("tensorflow", 2, 0), ("jax", 2, 0), ("pytorch", 2, 0),
                   ("jax", 3, 0), ("pytorch", 3, 0)]
    fws = [f for f, _, _ in got]
    assert all(a != b for a, b in zip(fws, fws[1:]))      # never the same framework twice


def test_two_frameworks_alternate_ab_ab_ba_ba():
    cells = [cell(fw, g) for g in G for fw in ("pytorch", "jax")]
    firsts = [f for (f, _, _), i in zip(run_of(cells), itertools.count()) if i % 2 == 0]
    assert firsts == ["pytorch", "pytorch", "jax", "jax"]
    assert [f for f, _, _ in run_of(cells)] == ["pytorch", "jax"] * 2 + ["jax", "pytorch"] * 2


def test_two_frameworks_one_missing_from_a_group():
    # jax skips bf16 at batch 8: a group of one; the balance of openers still holds
    cells = [cell(fw, g) for g in G for fw in ("pytorch", "jax") if (fw, g) != ("jax", G[1])]
    got = run_of(cells)
    assert got == [("pytorch", 0, 0), ("jax", 0, 0), ("pytorch", 1, 0),
                   ("jax", 2, 0), ("pytorch", 2, 0), ("jax", 3, 0), ("pytorch", 3, 0)]


def test_a_resumed_subset_starts_where_it_stopped():
    # repeat 0 has only jax's group-1 cell left; repeat 1 is whole (groups 1 and 0, as given)
    cells = ([cell("jax", G[1], 0)] + [cell(fw, G[1], 1) for fw in ("pytorch", "tensorflow", "jax")]
             + [cell(fw, G[0], 1) for fw in ("pytorch", "tensorflow", "jax")])
    got = run_of(cells)
    # jax is first seen, so the rotation is jax, pytorch, tensorflow; group 1 was seen first
    assert got == [("jax", 1, 0), ("pytorch", 1, 1), ("tensorflow", 1, 1), ("jax", 1, 1),
                   ("tensorflow", 0, 1), ("jax", 0, 1), ("pytorch", 0, 1)]
    assert order.as_record(order.interleave(cells))[0] == ["jax-mlp-bs8-bf16", 0]


@pytest.mark.parametrize("n_groups", [5, 9])
def test_opening_counts_stay_within_two_on_partial_grids(n_groups):
    rng = np.random.default_rng(n_groups)
    groups = [("m", b, "fp32") for b in range(n_groups)]
    fws = ["pytorch", "tensorflow", "jax"]
    cells = [cell(fw, g) for g in groups for fw in fws if rng.random() > 0.3 or fw == "jax"]
    ran = order.interleave(cells)
    opened = {fw: 0 for fw in fws}
    seen = set()
    for c in ran:
        g = (c.model.id_label, c.batch_size, c.precision)
        if g not in seen:
            seen.add(g)
            opened[c.framework] += 1
            assert max(opened.values()) - min(opened.values()) <= 2, opened
    # each group's cells run together, groups in first-seen order
    gs = [(c.model.id_label, c.batch_size, c.precision) for c in ran]
    assert [k for k, _ in itertools.groupby(gs)] == sorted(set(gs), key=groups.index)


# --- summaries of a partial grid --------------------------------------------------------------

def _steps(rng, scale):
    x = scale * rng.lognormal(0, 0.07, size=12)
    x[3] *= 1.8
    return [float(v) for v in x]


def test_summaries_of_a_partial_grid_with_failed_repeats():
    rng = np.random.default_rng(3)
    steps = {r: _steps(rng, 0.01 * (1 + 0.1 * r)) for r in range(3)}
    recs = [fs.attempt("pytorch", repeat=r, step_times=steps[r]) for r in range(3)]
    recs.append(fs.attempt("jax", repeat=0, step_times=_steps(rng, 0.008)))
    recs.append(fs.attempt("jax", repeat=1, status="oom", reason="oom: out of memory"))
    recs[1] = fs.attempt("pytorch", repeat=1, status="timeout", reason="timeout")  # 2 of 3 ok
    recs.append(fs.attempt("tensorflow", status="failed", reason="failed: boom"))  # none ok
    # jax and tensorflow skipped bf16; pytorch ran it once
    bf = _steps(rng, 0.006)
    recs.append(fs.attempt("pytorch", precision="bf16", step_times=bf))
    for i, r in enumerate(recs, 1):
        r["order"] = i
    by = {(s["framework"], s["precision"]): s
          for s in summary.summaries(aggregate.cells_frame(aggregate.attempts_frame(recs)))}
    assert set(by) == {("pytorch", "fp32"), ("jax", "fp32"), ("tensorflow", "fp32"),
                       ("pytorch", "bf16")}
    pt = by[("pytorch", "fp32")]
    assert (pt["repeats"], pt["ok_repeats"]) == (3, 2)
    ok = [steps[0], steps[2]]                       # the timed-out repeat contributes nothing
    pooled = np.concatenate(ok)
    assert pt["train_samples_per_s"]["median"] == pytest.approx(32 / np.median(pooled))
    assert pt["step_time_s"]["p90"] == pytest.approx(np.percentile(pooled, 90))
    # two processes: every bootstrap median is one value or their mean, so 95% = their range
    per = sorted(32 / np.median(s) for s in ok)
    ci = pt["train_samples_per_s"]
    assert (ci["ci_low"], ci["ci_high"]) == (pytest.approx(per[0]), pytest.approx(per[1]))
    assert pt["ci_basis"] == "bootstrap over 2 processes"
    jx = by[("jax", "fp32")]
    assert (jx["repeats"], jx["ok_repeats"], jx["ci_basis"]) == (2, 1, "single process")
    assert jx["train_samples_per_s"]["ci_low"] is None
    tf = by[("tensorflow", "fp32")]
    assert (tf["ok_repeats"], tf["ci_basis"]) == (0, None)
    assert tf["train_samples_per_s"]["median"] is None and tf["step_time_s"]["p50"] is None
    assert by[("pytorch", "bf16")]["step_time_s"]["p50"] == pytest.approx(np.median(bf))


def test_four_frameworks_ties_go_to_the_next_after_the_previous_opener():
    fws = ["pytorch", "tensorflow", "jax", "numpy"]
    present = {0: fws, 1: ["pytorch", "tensorflow", "numpy"], 2: fws,
               3: ["pytorch", "jax", "numpy"], 4: ["tensorflow", "jax", "numpy"],
               5: ["pytorch", "jax", "numpy"]}
    cells = [cell(fw, ("m", b, "fp32")) for b, names in present.items() for fw in names]
    ran = order.interleave(cells)
    openers = [next(c.framework for c in ran if c.batch_size == b) for b in present]
    # g5: numpy just ran, pytorch and jax opened once each: the tie goes to the framework after
    # g4's opener (tensorflow) in the rotation, jax, not to pytorch (which wraps around)
    assert openers == ["pytorch", "tensorflow", "jax", "numpy", "tensorflow", "jax"]
