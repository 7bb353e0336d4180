"""The per-cell figures a user reads: epoch time decomposed, compile estimate, one MFU yardstick,
working memory, latest fingerprint only, user-data models kept apart. Planted numbers, known
answers."""
from __future__ import annotations

import statistics

import fakestore as fs
import pytest

from mlbench.results import aggregate
from mlbench.analysis import ceiling


def cells_of(attempts, ceilings=None):
    return aggregate.cells_frame(aggregate.attempts_frame(attempts), ceilings)


BLOCKS = ((20, 0.21), (17, 0.16), (25, 0.29))   # 10.5, 9.41, 11.6 ms per step: median 10.5
STEADY = statistics.median(s / n for n, s in BLOCKS)


def new_wire(a: dict, *, first=0.74, warm=(0.02, 0.015), blocks=BLOCKS,
             baseline=None, loss_means=None) -> dict:
    """Turn a fakestore attempt into the new worker wire format (issue 9)."""
    t = a["metrics"]["train"]
    t.update(first_step_s=first, warmup_step_times_s=list(warm), warmup_s=sum(warm),
             steady_blocks=[{"steps": n, "seconds": s} for n, s in blocks],
             step_times_s=[s / n for n, s in blocks], steps_per_epoch=50)
    if loss_means is not None:
        t.pop("epoch_losses", None)
        t["epoch_loss_means"] = loss_means
    if baseline is not None:
        a["metrics"]["memory"]["host_baseline_rss_bytes"] = baseline
    return a


def test_epoch_time_decomposed_and_compile_estimated():
    a = new_wire(fs.attempt(epoch_times=[1.5]), loss_means=[0.9, 0.4])
    c = cells_of([a]).row(0, named=True)
    assert c["first_step_s"] == pytest.approx(0.74)
    assert c["warmup_s"] == pytest.approx(0.035)
    assert c["epoch_steady_s"] == pytest.approx(50 * STEADY)    # steps/epoch x median step
    assert c["epoch_total_s"] == pytest.approx(1.5)
    assert c["compile_s"] == pytest.approx(0.74 - STEADY)
    assert c["train_loss_mean_last_epoch"] == pytest.approx(0.4)
    # a first step faster than a warm step (no compile) is 0, never negative
    fast = new_wire(fs.attempt(), first=0.001)
    assert cells_of([fast]).row(0, named=True)["compile_s"] == 0.0


def test_cpu_memory_headline_is_working_memory_named():
    a = new_wire(fs.attempt(host_rss=700_000_000), baseline=650_000_000)
    a["host_peak_rss_bytes"] = 720_000_000   # the parent's sampled peak is higher: it wins
    c = cells_of([a]).row(0, named=True)
    assert c["host_peak_rss_bytes"] == 720_000_000
    assert c["mem_bytes"] == 70_000_000 and c["mem_figure"] == "working"
    assert "working memory" in c["mem_figure_text"]
    old = cells_of([fs.attempt(host_rss=500_000_000)]).row(0, named=True)
    assert old["mem_figure"] == "host_peak" and old["mem_bytes"] == 500_000_000


def test_device_memory_headline_names_its_source():
    # the allocator's peak when the framework reports one; NVML's per-process peak (CUDA context
    # included) only where it does not, and then named so; the allocator column never holds it
    alloc = fs.attempt(device="cuda:0", peak_device=3_000_000_000)
    alloc["gpu"]["nvml_peak_process_bytes"] = 3_500_000_000
    c = cells_of([alloc]).row(0, named=True)
    assert c["mem_bytes"] == 3_000_000_000 and c["mem_figure"] == "device_peak"
    nvml_only = fs.attempt(device="cuda:0", peak_device=None)
    nvml_only["gpu"]["nvml_peak_process_bytes"] = 2_000_000_000
    row = aggregate.flatten(0, nvml_only)
    assert row["peak_device_bytes"] is None and row["nvml_peak_process_bytes"] == 2_000_000_000
    c = cells_of([nvml_only]).row(0, named=True)
    assert c["mem_bytes"] == 2_000_000_000 and c["mem_figure"] == "device_process_peak"
    assert "NVML" in c["mem_figure_text"]


def test_one_mfu_yardstick_ranks_like_achieved_flops():
    # torch's own ceiling is low, jax's high: per-own-ceiling MFU would rank torch first
    ceil = {"pytorch": {"cpu": {"fp32": 1.0e9}}, "jax": {"cpu": {"fp32": 4.0e9}}}
    att = [fs.attempt("pytorch", step_times=fs.irregular(fs.STEP_TIMES)),
           fs.attempt("jax", step_times=fs.irregular(fs.STEP_TIMES, 0.8))]  # jax: more FLOP/s
    c = {r["framework"]: r for r in cells_of(att, ceil).iter_rows(named=True)}
    assert c["jax"]["train_flops_s"] > c["pytorch"]["train_flops_s"]
    assert c["jax"]["mfu"] > c["pytorch"]["mfu"]
    assert c["pytorch"]["mfu_own"] > c["jax"]["mfu_own"]   # the secondary column differs
    for fw, scale in (("pytorch", 1.0), ("jax", 0.8)):
        r = c[fw]
        assert r["ceiling_flops_s"] == 4.0e9 and r["ceiling_framework"] == "jax"
        # 3000 FLOPs per training sample x batch 32 / the median step time (the raw samples)
        want = 3000 * 32 / statistics.median(fs.irregular(fs.STEP_TIMES, scale))
        assert r["mfu"] == pytest.approx(want / 4.0e9)


def test_datasheet_peak_by_nvml_name():
    assert ceiling.datasheet_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert ceiling.datasheet_flops("NVIDIA A10", "fp16") == pytest.approx(125e12)
    assert ceiling.datasheet_flops("NVIDIA A100-SXM4-40GB", "fp32", tf32=True) == \
        pytest.approx(156e12)
    assert ceiling.datasheet_flops("Fake GPU", "bf16") is None


def test_repeats_under_an_older_fingerprint_are_not_pooled(tmp_path):
    old = fs.attempt(repeat=0, step_times=fs.irregular(fs.STEP_TIMES, 100), order=1)
    new = fs.attempt(repeat=1, step_times=fs.irregular(fs.STEP_TIMES), order=2)
    new["fingerprint"] = "fp-new"
    c = cells_of([old, new]).row(0, named=True)
    assert c["repeats"] == 1 and c["stale_repeats"] == 1
    assert c["step_median"] == pytest.approx(statistics.median(fs.STEP_TIMES))
    from mlbench.report import build_report
    html = build_report(fs.write_store(tmp_path / "r", [old, new]), tmp_path / "o").read_text()
    assert "latest fingerprint" in html and "1 attempt(s) of 1 cell(s)" in html


def test_user_data_model_is_not_ranked_against_the_synthetic_one():
    syn = [fs.attempt(fw) for fw in ("pytorch", "jax")]
    mine = [fs.attempt(fw, cid=f"{fw}-mine") for fw in ("pytorch", "jax")]
    for a in mine:
        a["model_label"] = "mine"
    cells = cells_of(syn + mine)
    assert cells["model_label"].n_unique() == 2
    cmp = aggregate.comparison_frame(cells)
    for _, g in cmp.group_by("model_label"):
        assert g.height == 2


def test_model_label_names_the_preset_once():
    row = aggregate.flatten(0, {"model": "vit", "model_label": "vit.tiny",
                                "model_options": {"preset": "tiny", "patch_size": 4}})
    assert row["model_label"] == "vit.tiny (patch_size=4)"
    row = aggregate.flatten(0, {"model": "vit", "model_label": "vit.tiny",
                                "model_options": {"preset": "tiny"}})
    assert row["model_label"] == "vit.tiny"
    row = aggregate.flatten(0, {"model": "cnn", "model_label": "mine",
                                "model_options": {"preset": "tiny"}})
    assert row["model_label"] == "mine (preset=tiny)"
