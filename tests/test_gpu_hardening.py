"""Issue 22 on a CPU, at the seams a GPU node would cross: a faked NVML (identity under an
inherited or a Ray-assigned CUDA_VISIBLE_DEVICES, energy counters, throttle reasons), the
datasheet's peaks by NVML name and the request's tf32 flag, and the energy figures through
the tables, results.json and the page. Each test fails on 0.2's code."""
from __future__ import annotations

import sys

import fakestore as fs
import pytest
from test_gpu import NVMLError, FakeNvml, TWO, nvml  # noqa: F401  (the fixture)

from mlbench.results import aggregate
from mlbench.analysis import ceiling, datasheet, energy
from mlbench.host import gpu
from mlbench.run import launcher, local_executor
from mlbench.results import summary
from mlbench.config.schema import ModelEntry
from mlbench.run.matrix import Cell

THREE = [("0000:01:00.0", "GPU-aaaa1111", "NVIDIA H100 80GB HBM3"),
         ("0000:41:00.0", "GPU-bbbb2222", "NVIDIA H100 80GB HBM3"),
         ("0000:81:00.0", "GPU-cccc3333", "NVIDIA H100 80GB HBM3")]


class EnergyNvml(FakeNvml):
    """FakeNvml with per-GPU power, a total-energy counter that a test advances, power limits,
    throttle reasons, persistence, ECC."""

    def __init__(self, *a, power=None, reasons=0x0, energy_step=None, **kw):
        super().__init__(*a, **kw)
        self.power_by = power or {}
        self.reasons, self.energy_step = reasons, energy_step
        self.energy = {g.uuid: 1_000_000 for g in self.gpus}

    def nvmlDeviceGetPowerUsage(self, h): return self.power_by.get(h.uuid, 300_000)
    def nvmlDeviceGetEnforcedPowerLimit(self, h): return 700_000
    def nvmlDeviceGetCurrentClocksEventReasons(self, h): return self.reasons
    def nvmlDeviceGetPersistenceMode(self, h): return 1
    def nvmlDeviceGetEccMode(self, h): return (1, 1)
    def nvmlSystemGetCudaDriverVersion(self): return 13000

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if self.energy_step is None:
            raise NVMLError("NVML_ERROR_NOT_SUPPORTED")
        self.energy[h.uuid] += self.energy_step
        return self.energy[h.uuid]


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(*args, **kwargs):
        f = EnergyNvml(*args, **kwargs)
        monkeypatch.setattr(gpu, "pynvml", f)
        gpu._init.cache_clear()
        return f
    yield install
    gpu._init.cache_clear()


def _cell(device: str = "cuda:0") -> Cell:
    req = {"cell_id": "dummy-gpu", "framework": "dummy", "device": device, "batch_size": 8,
           "seed": 0, "repeat": 0, "threads": 1, "tf32": True, "protocol": 1,
           "mode": "benchmark", "options": {"sleep_s": 0.25}}
    return Cell("dummy-gpu", "dummy", ModelEntry(name="mlp", preset="tiny"), device, 8, "fp32",
                0, req, "fp", sys.executable, 60)


# --- defect 6: identity ------------------------------------------------------------------

def test_local_placement_records_the_inherited_gpus_uuid(fake, monkeypatch):
    fake(THREE)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # cuda:0 is GPU 2, not the first GPU
    assert local_executor.local_placement(_cell())["gpu_uuid"] == "GPU-cccc3333"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    assert local_executor.local_placement(_cell())["gpu_uuid"] == "GPU-bbbb2222"


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_a_ray_cell_on_gpu_2_is_sampled_on_gpu_2(fake, monkeypatch, tmp_path):
    # Ray hands the task CUDA_VISIBLE_DEVICES=2 and assigns GPU "2": the worker and NVML must
    # both mean the physical GPU 2 (its power is 0.5 kW here, the others 0.3)
    fake(THREE, power={"GPU-cccc3333": 500_000}, reasons=0x4 | 0x40 | 0x1, energy_step=2_000)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    rec = launcher.run_cell(_cell(), tmp_path, launcher.Stop(), assigned_gpu="2")
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["hello"]["visible_devices"] == "2"
    assert rec["gpu"] is not None and rec["gpu"]["power_w_mean"] == pytest.approx(500.0)
    assert rec["device_before"]["power_w"] == pytest.approx(500.0)
    # the state before and after the cell: limits, persistence, ECC, throttling seen
    for state in (rec["device_before"], rec["device_after"]):
        assert state["power_limit_w"] == 700.0 and state["persistence_mode"] == 1
        assert state["ecc_mode"] == 1
        assert state["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    # idle (0x1) is not throttling; the power cap is recorded, heat is also warned about
    assert rec["gpu"]["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    (warning,) = energy.warnings(rec)
    assert "hw_thermal_slowdown" in warning and "sw_power_cap" not in warning
    rec["gpu"]["throttle_reasons"] = ["sw_power_cap"]  # a GPU at its power limit: no warning
    assert energy.warnings(rec) == []


# --- defect 5: the datasheet -----------------------------------------------------------

@pytest.mark.parametrize("name,prec,tf32,tflops", [
    ("NVIDIA H200 NVL", "bf16", False, 835.5), ("NVIDIA H200 NVL", "fp32", True, 417.5),
    ("NVIDIA H200 NVL", "fp32", False, 60.0), ("NVIDIA H200", "bf16", False, 989.4),
    ("Tesla V100-PCIE-16GB", "fp32", False, 14.0), ("Tesla V100-PCIE-32GB", "fp16", False, 112),
    ("Tesla V100-SXM2-16GB", "fp32", False, 15.7), ("Tesla V100S-PCIE-32GB", "fp32", False, 16.4),
    ("NVIDIA GH200 480GB", "bf16", False, 989.4), ("NVIDIA B200", "bf16", False, 2250.0),
    ("NVIDIA B200", "fp32", True, 1100.0), ("NVIDIA H100 80GB HBM3", "fp32", True, 494.7)])
def test_datasheet_peaks_by_nvml_name(name, prec, tf32, tflops):
    assert ceiling.datasheet_flops(name, prec, tf32) == pytest.approx(tflops * 1e12)


def test_a_mig_slice_has_no_datasheet_peak_and_says_why():
    flops, why = datasheet.peak("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "bf16")
    assert flops is None and "MIG" in why
    assert datasheet.peak("NVIDIA Fake 9000", "bf16")[1].endswith("not in mlbench's datasheet table")


def test_jax_fp32_cell_with_tf32_is_measured_against_the_tf32_peak():
    # JAX records tf32_requested; 0.2 looked for the label "tf32=True" and used the fp32 peak
    a = fs.attempt("jax", device="cuda:0", step_times=[0.010, 0.012, 0.011, 0.030, 0.010])
    a["hello"]["device_name"] = "NVIDIA H100 80GB HBM3"
    a["metrics"]["settings"] = {"tf32_requested": True, "matmul_precision": "tensorfloat32"}
    a["tf32"] = True
    c = aggregate.cells_frame(aggregate.attempts_frame([a])).row(0, named=True)
    assert c["datasheet_flops_s"] == pytest.approx(494.7e12)
    assert c["mfu_datasheet"] == pytest.approx(c["train_flops_s"] / 494.7e12)
    a.pop("tf32")  # an older record: the worker's own setting still counts
    c = aggregate.cells_frame(aggregate.attempts_frame([a])).row(0, named=True)
    assert c["datasheet_flops_s"] == pytest.approx(494.7e12)


# --- energy ----------------------------------------------------------------------------

class _Sampler:
    def __init__(self, power_at=()):
        self.handle, self.power_at = object(), list(power_at)


def _drive(meter, marks, result):
    """Feed the meter the worker's messages; `marks`: (message, counter mJ, time s)."""
    for msg, mj, t in marks:
        meter.read = lambda h, mj=mj: (mj, None) if mj is not None else (None, "NotSupported")
        meter.clock = lambda t=t: t
        meter.mark(msg)
    meter.read, meter.clock = (lambda h: (None, "gone")), (lambda: 99.0)
    meter.mark({"type": "result", "metrics": result})
    return meter.summary()


RESULT = {"train": {"samples_per_step": 32},
          "inference": {"warmup_iterations": 5, "latencies_s": [0.01] * 20, "loops": 2}}


def test_energy_per_step_sample_and_inference_from_the_counter():
    m = energy.Meter(_Sampler())
    # 2 epochs of 100 steps; the first report after compile is epoch 0 step 12
    marks = [({"type": "progress", "phase": "train", "epoch": 0, "step": 0, "steps": 100},
              1_000_000, 1.0),
             ({"type": "progress", "phase": "train", "epoch": 0, "step": 12, "steps": 100},
              1_900_000, 3.0),
             ({"type": "progress", "phase": "train", "epoch": 1, "step": 0, "steps": 100},
              9_000_000, 20.0),
             ({"type": "progress", "phase": "evaluate"}, 19_500_000, 40.0),
             ({"type": "progress", "phase": "inference"}, 19_800_000, 41.0)]
    e = _drive(m, marks, RESULT)
    steps = 200 - 12
    joules = (19_500_000 - 1_900_000) / 1000
    assert e["source"] == energy.COUNTER and e["train_steps"] == steps
    assert e["train_j_per_step"] == pytest.approx(joules / steps)
    assert e["train_j_per_ksample"] == pytest.approx(joules / steps / 32 * 1000)
    # the counter could not be read at the end and no power was polled: no inference figure
    assert e["infer_j_per_call"] is None and e["infer_calls"] is None


def test_inference_energy_and_a_counter_that_does_not_advance_is_a_warning():
    m = energy.Meter(_Sampler())
    marks = [({"type": "progress", "phase": "train", "epoch": 0, "step": 0, "steps": 50},
              5_000, 0.0),
             ({"type": "progress", "phase": "evaluate"}, 5_000, 2.0),  # stuck counter
             ({"type": "progress", "phase": "inference"}, 5_000, 3.0)]
    meter_result = dict(RESULT)
    # the result message's reading comes from the last mark's reader: make it advance
    for msg, mj, t in marks:
        m.read, m.clock = (lambda h, mj=mj: (mj, None)), (lambda t=t: t)
        m.mark(msg)
    m.read, m.clock = (lambda h: (5_000 + 90_000, None)), (lambda: 4.0)
    m.mark({"type": "result", "metrics": meter_result})
    e = m.summary()
    assert e["train_j_per_step"] is None
    assert any("did not advance" in w for w in e["warnings"])
    calls = 5 + 20 * 2
    assert e["infer_j_per_call"] == pytest.approx(90.0 / calls)
    assert e["infer_j_per_ksample"] == pytest.approx(90.0 / calls / 32 * 1000)


def test_without_a_counter_power_samples_are_integrated_and_zero_watts_is_no_figure():
    pts = [(0.0, 100.0), (1.0, 300.0), (2.5, 200.0), (4.0, 250.0)]
    m = energy.Meter(_Sampler(pts))
    marks = [({"type": "progress", "phase": "train", "epoch": 0, "step": 0, "steps": 10},
              None, 0.0),
             ({"type": "progress", "phase": "evaluate"}, None, 4.0)]
    e = _drive(m, marks, RESULT)
    trapezoid = (100 + 300) / 2 * 1.0 + (300 + 200) / 2 * 1.5 + (200 + 250) / 2 * 1.5
    assert e["source"] == energy.POLLING
    assert e["train_j_per_step"] == pytest.approx(trapezoid / 10)
    zero = energy.Meter(_Sampler([(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]))
    e = _drive(zero, [(marks[0][0], None, 0.0), (marks[1][0], None, 2.0)], RESULT)
    assert e["train_j_per_step"] is None and any("0.0 W" in w for w in e["warnings"])
    none = energy.Meter(_Sampler([(0.5, 200.0)]))
    e = _drive(none, [(marks[0][0], None, 0.0), (marks[1][0], None, 2.0)], RESULT)
    assert e["source"] is None and "1 power sample" in e["note"]


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_energy_reaches_results_json_summaries_and_the_page(fake, tmp_path):
    # a real worker process under a faked NVML: the counter advances 2.5 J per reading
    fake(TWO, energy_step=2_500)
    (tmp_path / "cells").mkdir()
    rec = launcher.run_cell(_cell(), tmp_path / "cells", launcher.Stop())
    assert rec["status"] == "ok", rec.get("reason")
    e = rec["energy"]
    inf = rec["metrics"]["inference"]  # the calls the worker made: warm-up (at least 2), then
    calls = max(2, inf["warmup_iterations"]) + len(inf["latencies_s"]) * inf["loops"]  # samples
    assert calls > 2 + len(inf["latencies_s"])  # several loops per sample: loops do count
    assert e["source"] == energy.COUNTER and e["infer_calls"] == calls
    assert e["infer_j_per_call"] == pytest.approx(2.5 / calls)
    # planted training figures (the dummy reports no steps) for the tables and the page
    att = [rec, {**rec, "repeat": 1}]
    att[0]["energy"] = {**e, "train_j_per_step": 3.0, "train_j_per_ksample": 375.0}
    att[1]["energy"] = {**e, "train_j_per_step": 5.0, "train_j_per_ksample": 625.0}
    att[0]["gpu"]["throttle_reasons"] = ["hw_thermal_slowdown"]
    att[1]["energy"]["warnings"] = ["inference: NVML's energy counter did not advance"]
    cells = aggregate.cells_frame(aggregate.attempts_frame(att))
    row = cells.row(0, named=True)
    assert row["train_j_per_ksample"] == pytest.approx(500.0)  # the median of the repeats
    assert any("throttled" in w for w in row["warnings"])
    s = summary.summaries(cells)[0]
    assert s["energy"]["train_j_per_ksample"] == pytest.approx(500.0)
    assert s["energy"]["power_limit_w"] == 700.0
    assert s["energy"]["throttle_reasons"] == "hw_thermal_slowdown"
    assert "did not advance" in s["energy"]["note"]
    assert not any("did not advance" in w for w in row["warnings"])  # no speed warning
    summary.CellSummary.model_validate(s)
    from mlbench.report.energy import figures
    fig = figures(cells)[0]
    ys = [y for tr in fig.spec["data"] for y in tr["y"]]
    assert pytest.approx(500.0) in ys and fig.id == "energy"
    assert figures(cells.with_columns(train_j_per_ksample=None, infer_j_per_ksample=None)) == []


def test_ceilings_cache_key_holds_driver_and_cuda(fake):
    fake(TWO)
    key = ceiling.host_key()
    assert key["driver"] == "580.65" and key["cuda_driver"] == "13.0"


def test_odd_progress_fields_never_break_the_launcher():
    m = energy.Meter(_Sampler())
    marks = [({"type": "progress", "phase": "train", "epoch": "x", "step": True, "steps": -3},
              1_000, 0.0),
             ({"type": "progress", "phase": "evaluate"}, 9_000, 1.0),
             ({"type": "progress", "phase": "inference"}, 9_500, 2.0)]
    e = _drive(m, marks, {"train": {"samples_per_step": "lots"},
                          "inference": {"latencies_s": [0.1], "loops": "many"}})
    assert e["train_j_per_step"] is None and e["infer_j_per_call"] is None
    assert e["note"].startswith("energy not computed: ValueError")


def test_the_page_draws_energy_for_gpu_cells(tmp_path):
    from mlbench.report import build_report
    att = []
    for fw, jks in (("pytorch", 412.5), ("jax", 365.0)):
        a = fs.attempt(fw, device="cuda:0", step_times=[0.0101, 0.0097, 0.0142, 0.0099])
        a["energy"] = {"source": energy.COUNTER, "train_j_per_step": jks * 32 / 1000,
                       "train_j_per_ksample": jks, "infer_j_per_call": 0.9,
                       "infer_j_per_ksample": 0.9 / 32 * 1000}
        att.append(a)
    cpu = fs.attempt("numpy", device="cpu")  # no energy figure: not drawn
    run = fs.write_store(tmp_path / "run", att + [cpu])
    page = build_report(run, tmp_path / "out").read_text()
    assert 'id="fig-energy"' in page and "Energy per 1,000 samples" in page
    assert "412.5" in page and "365" in page
    none = fs.write_store(tmp_path / "cpu", [cpu])
    assert 'id="fig-energy"' not in build_report(none, tmp_path / "out2").read_text()


def test_a_mig_cell_has_no_datasheet_mfu_and_its_summary_says_why():
    a = fs.attempt("pytorch", device="cuda:0", step_times=[0.020, 0.021, 0.019, 0.035])
    a["hello"]["device_name"] = "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    cells = aggregate.cells_frame(aggregate.attempts_frame([a]))
    s = summary.summaries(cells)[0]
    assert s["mfu"]["datasheet_flops_s"] is None and s["mfu"]["vs_datasheet"] is None
    assert "MIG slice" in s["mfu"]["datasheet_note"]
    whole = dict(a, hello={**a["hello"], "device_name": "NVIDIA H100 80GB HBM3"})
    s = summary.summaries(aggregate.cells_frame(aggregate.attempts_frame([whole])))[0]
    assert s["mfu"]["datasheet_flops_s"] == pytest.approx(67.0e12)  # fp32, no TF32 asked
    assert s["mfu"]["datasheet_note"] is None
