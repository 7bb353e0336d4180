"""Branches that decide a figure or a cell's fate and had no test (issue 26, pattern 7).

A literal `flops_per_sample = N` in a user's model file, all the way to MFU; the file's
function; the framework's own count; none. The Ray executor's capacity rules before and after a
node is lost, with fakes in place of a cluster (tests/test_ray_executor.py runs a real one).
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fakestore as fs
from mlbench.results import aggregate
from mlbench.config import usermodel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workers"))
import driver  # noqa: E402
import usermodel as worker_usermodel  # noqa: E402

MODEL = ("INPUT = {'kind': 'vector', 'shape': [8], 'num_classes': 3}\n"
         "{flops}\n"
         "def torch_model(width=4):\n    return None\n")


def _file(tmp_path, flops_line: str) -> str:
    p = tmp_path / f"m{abs(hash(flops_line))}.py"
    p.write_text(MODEL.replace("{flops}", flops_line))
    return str(p)


@pytest.mark.parametrize("line,want", [
    ("flops_per_sample = 12345", 12345), ("flops_per_sample = 0", None),
    ("flops_per_sample = -7", None), ("flops_per_sample = True", None),
    ("flops_per_sample = 1.5e6", None),          # an int only: a float is not a count
    ("def flops_per_sample(width=4):\n    return width * 100", None),   # the worker asks it
    ("", None)])
def test_the_parent_reads_only_a_positive_integer_literal(tmp_path, line, want):
    assert usermodel.inspect(_file(tmp_path, line)).flops_per_sample == want


class _Counting:
    name = "fakefw"

    def __init__(self, result):
        self.result = result

    def count_flops(self):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_user_flops_literal_then_function_then_count_then_unknown(tmp_path):
    literal = {"source": _file(tmp_path, ""), "options": {}, "flops_per_sample": 12345}
    # the file's literal (passed in the spec by the parent) wins over the framework's count
    assert driver.user_flops(_Counting(999), literal) == {"forward": 12345,
                                                         "train_step": 3 * 12345}
    assert literal["flops_source"] == "model file"
    func = {"source": _file(tmp_path, "def flops_per_sample(width=4):\n    return width * 100"),
            "options": {"width": 7}, "flops_per_sample": None}
    assert driver.user_flops(_Counting(999), func) == {"forward": 700, "train_step": 2100}
    none = {"source": _file(tmp_path, ""), "options": {}, "flops_per_sample": None}
    assert driver.user_flops(_Counting(999), dict(none)) == {"forward": 999, "train_step": 2997}
    spec = dict(none)
    assert driver.user_flops(_Counting(RuntimeError("no")), spec) == {"forward": None,
                                                                      "train_step": None}
    assert spec["flops_source"] == "unknown (MFU n/a)"
    spec = dict(none)
    assert driver.user_flops(SimpleNamespace(name="x"), spec)["forward"] is None
    assert worker_usermodel.file_flops(literal) == 12345


def test_a_literal_flops_per_sample_reaches_mfu(tmp_path):
    info = usermodel.inspect(_file(tmp_path, "flops_per_sample = 12345"))
    spec = {"source": info.path, "options": {}, "flops_per_sample": info.flops_per_sample}
    flops = driver.user_flops(_Counting(1), spec)
    steps = [0.011, 0.0093, 0.0124, 0.0101, 0.0188, 0.0097, 0.0105]
    a = fs.attempt("pytorch", batch_size=16, step_times=steps)
    a["metrics"]["flops_per_sample"] = flops
    cells = aggregate.cells_frame(aggregate.attempts_frame([a]),
                                  {"pytorch": {"cpu": {"fp32": 5.0e8}}})
    r = cells.row(0, named=True)
    assert r["mfu"] == pytest.approx(3 * 12345 * 16 / np.median(steps) / 5.0e8)
    assert r["infer_flops_s"] == pytest.approx(12345 * 16 / np.median(fs.LATENCIES))


# --- the Ray executor's capacity, with a fake cluster ------------------------------------------

ray_executor = pytest.importorskip("mlbench.run.ray_executor")


def _node(alive=True, gpus=0, member=True):
    res = {"CPU": 8.0, **({"GPU": float(gpus)} if gpus else {}),
           **({ray_executor.NODE_RESOURCE: 1.0} if member else {})}
    return {"Alive": alive, "Resources": res}


def _cell(i, device):
    return SimpleNamespace(cell_id=f"c{i}-{device}", repeat=0, fingerprint="fp",
                           framework="pytorch", device=device, batch_size=8, precision="fp32",
                           model=SimpleNamespace(name="mlp", id_label="mlp", model_options={}))


@pytest.fixture
def executor(monkeypatch):
    from mlbench.config.schema import ExecutorSettings
    nodes = []
    monkeypatch.setattr(ray_executor.ray, "nodes", lambda: list(nodes))
    return ray_executor.RayExecutor(ExecutorSettings(kind="ray")), nodes


def test_capacity_counts_only_alive_member_nodes_and_whole_gpus(executor):
    ex, nodes = executor
    nodes += [_node(alive=False, gpus=1), _node(member=False, gpus=2), _node(gpus=0)]
    assert ex._read_capacity() == (True, False)
    nodes.append(_node(gpus=1))
    assert ex._read_capacity() == (True, True)
    nodes[:] = [_node(alive=False)]
    assert ex._read_capacity() == (False, False)


def test_a_gpu_cell_is_skipped_before_a_loss_and_failed_after_it(executor):
    ex, nodes = executor
    gpu, cpu = _cell(0, "cuda:0"), _cell(1, "cpu")
    ex._capacity = (True, False)               # a cluster that never had a GPU
    assert ex._cannot_run(gpu) == ("skipped", "device cuda:0: no GPU in the Ray cluster")
    assert ex._cannot_run(cpu) is None
    ex._capacity = (True, True)
    assert ex._cannot_run(gpu) is None
    ex._after_loss, ex._capacity = True, (True, False)   # the GPU node was lost
    assert ex._cannot_run(gpu) == ("failed", "device cuda:0: no GPU left in the Ray cluster")
    assert ex._cannot_run(cpu) is None
    ex._capacity = (False, False)
    for c in (gpu, cpu):
        assert ex._cannot_run(c) == ("failed", "no node left in the Ray cluster declares "
                                               "mlbench_node")
    ex._after_loss = False
    assert ex._cannot_run(cpu) == ("failed", "no node in the Ray cluster declares mlbench_node")


def test_after_a_node_loss_waiting_cells_nobody_can_run_fail_the_others_run(executor, tmp_path,
                                                                          monkeypatch):
    ex, nodes = executor
    nodes += [_node(gpus=1), _node(gpus=0)]
    cells = [_cell(0, "cuda:0"), _cell(1, "cuda:0"), _cell(2, "cpu"), _cell(3, "cuda:0")]
    monkeypatch.setattr(ex, "_connect", lambda: None)
    monkeypatch.setattr(ex, "options", lambda cell: {})
    launched, cancelled = [], []

    class Task:
        def options(self, **kw):
            return self

        def remote(self, cell, d, token):
            launched.append(cell.cell_id)
            return f"gen-{cell.cell_id}"

    ex._task = Task()
    monkeypatch.setattr(ray_executor.ray, "wait",
                        lambda refs, num_returns, timeout: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray_executor.ray, "cancel",
                        lambda gen, force: cancelled.append(gen))

    def advance(gen, flight, stop, on_start, on_message, root):
        if flight.cell is cells[0]:           # cell 0's node (the GPU node) dies under it
            nodes.pop(0)
            return ex._record(flight.cell, "crashed", "node lost", {"node": "n0"}, None, None)
        return ex._record(flight.cell, "ok", None, {"node": "n1"}, None, None)

    monkeypatch.setattr(ex, "_advance", advance)
    out = list(ex.run(cells, lambda c: tmp_path / "cells" / c.cell_id,
                      SimpleNamespace(requested=False), lambda c: None, lambda c, m: None))
    got = {r["cell_id"]: (r["status"], r["reason"]) for r in out}
    assert launched == [c.cell_id for c in cells]          # all four were in flight
    assert got == {"c0-cuda:0": ("crashed", "node lost"),
                   "c1-cuda:0": ("failed", "device cuda:0: no GPU left in the Ray cluster"),
                   "c2-cpu": ("ok", None),
                   "c3-cuda:0": ("failed", "device cuda:0: no GPU left in the Ray cluster")}
    assert cancelled == ["gen-c1-cuda:0", "gen-c3-cuda:0"]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_a_node_share_fits_exactly_n_cells(n):
    share = ray_executor._share(n)
    assert round(n * share, 4) <= 1.0 < round((n + 1) * share, 4)


# --- what the user reads when a record or a side file is damaged -------------------------------

def test_samples_of_the_wrong_type_are_dropped_not_counted():
    from mlbench.results import summary
    good = fs.irregular(fs.STEP_TIMES)
    # a bool is not 1.0 s, a string or None is not a sample, a negative time is impossible
    dirty = good[:5] + [True, "0.5", None, -0.01] + good[5:]
    a = fs.attempt(step_times=dirty, epoch_times=[sum(good)])
    (s,) = summary.summaries(aggregate.cells_frame(aggregate.attempts_frame([a])))
    assert s["step_time_s"]["p50"] == pytest.approx(np.median(good))
    assert s["step_time_s"]["p99"] == pytest.approx(np.percentile(good, 99))
    assert s["train_samples_per_s"]["median"] == pytest.approx(32 / np.median(good))


def test_a_damaged_ceilings_file_costs_the_summaries_never_the_results(tmp_path):
    from mlbench.results import summary
    recs = [fs.attempt("pytorch"), fs.attempt("jax")]
    (tmp_path / "ceilings.json").write_text("{not json")
    (tmp_path / "run.json").write_text("[]")   # not an object: read as absent
    out = summary.annotate(recs, tmp_path)
    assert "summaries" not in out and out["summaries_error"].startswith("UserError")
    (tmp_path / "ceilings.json").unlink()
    out = summary.annotate(recs, tmp_path)
    assert "summaries_error" not in out
    assert {s["framework"] for s in out["summaries"]} == {"pytorch", "jax"}
    assert all(s["mfu"]["value"] is None for s in out["summaries"])   # no ceiling, no MFU


def test_nested_settings_are_flattened_into_the_label():
    assert aggregate.settings_label({"threads": 4, "compile": {"mode": "max-autotune",
                                                               "dynamic": False},
                                     "devices": [0, 1], "tf32": None}) == \
        "compile.dynamic=false, compile.mode=max-autotune, threads=4"


def test_too_short_is_judged_on_a_steady_block_not_on_one_step():
    # 0.3 ms steps in blocks of 10 (3 ms): each sample lasts 3 ms, not too short; a record
    # without its blocks (older format) is judged on the step itself, and is
    steps = [0.0003 * f for f in (1.0, 0.97, 1.05, 1.02, 0.99, 1.1, 0.98)]
    a = fs.attempt(step_times=steps)
    a["metrics"]["train"]["steady_blocks"] = [{"steps": 10, "seconds": 10 * s} for s in steps]
    old = fs.attempt(step_times=steps, cid="old")

    def short(rec):
        (r,) = aggregate.cells_frame(aggregate.attempts_frame([rec])).iter_rows(named=True)
        return [w for w in r["warnings"] if "too short" in w]
    assert short(a) == [] and len(short(old)) == 1
    row = aggregate.flatten(0, a)
    assert row["block_median_s"] == pytest.approx(10 * np.median(steps))


def test_the_last_epoch_loss_of_an_older_record_is_read_from_epoch_losses():
    a = fs.attempt(epoch_times=[0.5, 0.4, 0.45])   # epoch_losses 1, 1/2, 1/3; no means
    assert "epoch_loss_means" not in a["metrics"]["train"]
    (r,) = aggregate.cells_frame(aggregate.attempts_frame([a])).iter_rows(named=True)
    assert r["train_loss_mean_last_epoch"] == pytest.approx(1 / 3)


def test_a_sample_exactly_ten_percent_from_the_median_counts_as_extreme():
    # median 10, fences within 0.05 of it: 11 is beyond the fence and exactly 10% away (the
    # rule is "at least 10%"): 1 of 7 extreme (> 5%) warns; 10.9 (9%) would not be extreme
    base = [9.99, 10.0, 10.0, 10.0, 10.01, 9.995]

    def extreme(v):
        rec = fs.attempt(step_times=base + [v], epoch_times=[sum(base) + v])
        (r,) = aggregate.cells_frame(aggregate.attempts_frame([rec])).iter_rows(named=True)
        return [w for w in r["warnings"] if "extreme" in w and "step times" in w]
    assert len(extreme(11.0)) == 1 and extreme(10.9) == []
