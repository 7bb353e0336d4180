"""The serving scenarios end to end through `mlbench run` with the dummy worker: the request,
results.json (summaries[].single_stream, summaries[].server, the schema), the verdict's serving
aspects and the report's figure; the config's checks. Values are recomputed here from the raw
attempt records (numpy percentiles of the pooled latencies, medians over processes)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cliutil import run_inproc, write_config
from mlbench.results import frames, summary
from mlbench.run import matrix
from mlbench.config.schema import load_config
from mlbench.report.serving import figures as serving_figures

SERVING = {"latency_bound_ms": 20, "single_stream_queries": 15, "trial_s": 0.05,
           "min_queries": 100, "max_trials": 2, "budget_s": 5}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serving")
    cfg = write_config(tmp / "c.yaml", frameworks=[
        "dummy", {"framework": "dummy", "label": "dummy-slow", "options": {"service_s": 0.0015}}],
        batch_sizes=[1, 3], repeats=2, scenarios=["offline", "single_stream", "server"],
        serving=SERVING, verify=False, ceiling=False)
    rc, _, _ = run_inproc(["run", "--config", str(cfg), "--output", str(tmp / "r"),
                           "--no-report"])
    assert rc == 0
    return tmp / "r"


def _doc(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_results_json_carries_the_scenarios_recomputed_from_the_raw_records(run):
    doc = _doc(run)
    summary.validate(doc)
    cells = {}
    for a in doc["cells"]:
        cells.setdefault(a["cell_id"], []).append(a)
    by_id = {s["cell_id"]: s for s in doc["summaries"]}
    assert len(by_id) == 4
    for cid, atts in cells.items():
        s, bs = by_id[cid], atts[0]["batch_size"]
        serving = [a["metrics"]["serving"] for a in atts]
        if bs == 1:
            pooled = np.concatenate([x["single_stream"]["latencies_s"] for x in serving])
            assert len(pooled) == 2 * SERVING["single_stream_queries"]
            for q, key in ((50, "p50"), (90, "p90"), (99, "p99")):
                assert s["single_stream"]["latency_s"][key] == pytest.approx(
                    np.percentile(pooled, q))
        else:  # batch-1 latency is measured in the cells of batch size 1 only
            assert s["single_stream"] is None and all("single_stream" not in x for x in serving)
        server = s["server"]
        # a process where no rate met the bound served 0 QPS within it: it counts
        per = [x["server"]["max_qps"] or 0.0 for x in serving]
        assert server["max_qps"] == pytest.approx(float(np.median(per)))
        assert server["processes"] == 2
        assert server["met_bound"] == sum(x["server"]["max_qps"] is not None for x in serving)
        assert server["latency_bound_ms"] == SERVING["latency_bound_ms"]
        mine = sorted((t["offered_qps"], t["p99_s"]) for x in serving for t in x["server"]["trials"])
        assert sorted((t["offered_qps"], t["p99_s"]) for t in server["trials"]) == mine
        assert len(mine) == 2 * SERVING["max_trials"]
        assert all(t["within_bound"] == (t["p99_s"] <= 0.020) for t in server["trials"])
        # the server batches up to the cell's batch size, never beyond
        assert all(x["server"]["max_batch"] == bs for x in serving)
        assert all(1 <= t["mean_batch"] <= bs for t in server["trials"])


def test_first_server_trial_offers_half_the_capacity_of_the_fixed_service(run):
    slow = [a for a in _doc(run)["cells"] if a["cell_id"].startswith("dummy-slow")
            and a["batch_size"] == 3]
    for a in slow:
        server = a["metrics"]["serving"]["server"]
        # capacity = max batch / service time (the median offline call: the dummy's fixed
        # 1.5 ms spin, or more on a busy machine)
        assert 0.0015 <= server["service_s"] < 0.05
        assert server["trials"][0]["offered_qps"] == pytest.approx(3 / server["service_s"] / 2)


def test_verdict_has_the_serving_questions(run):
    qs = {v["question"]: v for v in _doc(run)["verdicts"]}
    assert "lowest single-stream latency" in qs
    assert "most server QPS within the latency bound" in qs
    ss = qs["lowest single-stream latency"]
    assert ss["figure"] == "single-stream p90 latency"
    # two processes per cell: below the rule's minimum of three, so no winner, said so
    assert ss["winner"] is None and ss["leader"] in ("dummy", "dummy-slow")


def test_the_figure_draws_every_trial_and_the_bound(run):
    _, _, _, cells = frames.load_frames(run)
    (fig,) = serving_figures(cells)
    traces = fig.spec["data"]
    assert {t["name"] for t in traces} == {f"{fw} · max batch {b}" for fw in ("dummy",
                                           "dummy-slow") for b in (1, 3)}
    doc = _doc(run)
    for t in traces:
        fw, b = t["meta"]["framework"], int(t["name"].rsplit(" ", 1)[1])
        want = sorted(tr["offered_qps"] for a in doc["cells"] if a["framework"] == fw
                      and a["batch_size"] == b for tr in a["metrics"]["serving"]["server"]["trials"])
        assert t["x"] == want and t["x"] == sorted(t["x"])
    (bound,) = fig.spec["layout"]["shapes"]
    assert bound["y0"] == bound["y1"] == SERVING["latency_bound_ms"]


def test_offline_only_requests_are_unchanged(tmp_path):
    """No `serving` key in an offline-only request: its fingerprint is what it was before
    scenarios existed (a stored run resumes), and no figure or serving verdict appears."""
    plain = load_config(str(write_config(tmp_path / "a.yaml")))
    served = load_config(str(write_config(tmp_path / "b.yaml", scenarios=["server"])))
    a, b = matrix.expand(plain), matrix.expand(served)
    assert all("serving" not in c.request for c in a)
    assert all(c.request["serving"]["scenarios"] == ["server"] for c in b)
    assert b[0].request["serving"]["server"]["latency_bound_ms"] == 10.0
    assert a[0].fingerprint != b[0].fingerprint


def test_single_stream_needs_batch_size_one(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", batch_sizes=[4, 8], scenarios=["single_stream"])
    rc, out, err = run_inproc(["run", "--config", str(cfg), "--no-report"], capsys)
    lines = [x for x in (out + err).splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1
    assert lines[0].startswith("error: ") and "batch size 1" in lines[0]
    assert "scenarios" in lines[0] and "c.yaml" in lines[0]


def test_unknown_scenario_is_refused(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", scenarios=["offline", "multistream"])
    rc, out, err = run_inproc(["run", "--config", str(cfg), "--no-report"], capsys)
    assert rc == 2 and "scenarios" in (out + err) and "Traceback" not in out + err


def test_export_time_is_summarised_apart(run):
    """An exported runtime's export time (inference.export_s): the median over processes in
    summaries[].export_s; null for a framework that exports nothing."""
    cells = _doc(run)["cells"]
    planted = {0: 1.3, 1: 4.1}
    for a in cells:
        if a["cell_id"].startswith("dummy-slow") and a["batch_size"] == 1:
            a["metrics"]["inference"]["export_s"] = planted[a["repeat"]]
    out = summary.annotate(cells, run)
    by = {s["cell_id"]: s for s in out["summaries"]}
    slow = next(k for k in by if k.startswith("dummy-slow") and "bs1" in k)
    assert by[slow]["export_s"] == pytest.approx(float(np.median(list(planted.values()))))
    assert all(s["export_s"] is None for k, s in by.items() if k != slow)


@pytest.mark.parametrize("options, words", [({"provider": "trt"}, "provider"),
                                            ({"source": "tensorflow"}, "source")])
def test_runtime_options_are_checked_when_the_config_is_read(tmp_path, capsys, options, words):
    cfg = write_config(tmp_path / "c.yaml", frameworks=[
        {"framework": "onnxruntime", "label": "ort-x", "options": options}])
    rc, out, err = run_inproc(["run", "--config", str(cfg), "--no-report"], capsys)
    lines = [x for x in (out + err).splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert words in lines[0] and "c.yaml" in lines[0]


def test_runtime_with_its_own_provider_is_accepted(tmp_path):
    cfg = load_config(str(write_config(tmp_path / "c.yaml", frameworks=[
        {"framework": "onnxruntime", "label": "ort-trt", "options": {"provider": "tensorrt"}},
        "openvino"])))
    assert [(v.label, v.framework) for v in cfg.variants] == [("ort-trt", "onnxruntime"),
                                                              ("openvino", "openvino")]
    cells = matrix.expand(cfg)
    assert {c.request["options"].get("provider") for c in cells} == {"tensorrt", None}


@pytest.mark.parametrize("name, labels", [
    ("serving.yaml", ["pytorch", "tensorflow", "jax", "ort-from-torch", "openvino"]),
    ("gpu_check_serving.yaml", ["pytorch", "ort-cuda", "ort-tensorrt"])])
def test_the_shipped_serving_configs(name, labels):
    cfg = load_config(str(Path(__file__).resolve().parent.parent / "configs" / name))
    assert [v.label for v in cfg.variants] == labels
    cells = matrix.expand(cfg)
    assert all(set(c.request["serving"]["scenarios"]) == {"offline", "single_stream", "server"}
               for c in cells)
    assert 1 in cfg.batch_sizes  # single_stream's cells
