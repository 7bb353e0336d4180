"""A sweep spread over nodes of different hardware kinds (Ray) never compares a cell measured on
one kind with a cell measured on another, and each kind's MFU uses that kind's ceilings."""
import json

import fakestore as fs

from mlbench.results import aggregate, frames
from mlbench.analysis import hardware
from mlbench.report import build_report

H100 = "Xeon | NVIDIA H100 | jax=0.10.2,pytorch=2.13.0"
A100 = "EPYC | NVIDIA A100 | jax=0.10.2,pytorch=2.13.0"


def _on(kind, a):
    return {**a, "placement": {"executor": "ray", "hostname": kind[:4], "node_id": kind[:4],
                               "node_kind": kind}}


def _cell(fw, kind, step, device="cuda:0"):
    return _on(kind, fs.attempt(fw, device=device, step_times=[step] * 10,
                                cid=f"{fw}-mlp-cuda0-bs32-fp32"))


def test_cells_of_two_hardware_kinds_are_not_compared(tmp_path):
    # pytorch ran on an H100 node, jax on an A100 node: no verdict between them
    d = fs.write_store(tmp_path / "r", [_cell("pytorch", H100, 0.01), _cell("jax", A100, 0.02)])
    _, _, att, cells = frames.load_frames(d)
    assert sorted(cells["device"].to_list()) == ["cuda:0@NVIDIA A100", "cuda:0@NVIDIA H100"]
    cmp = aggregate.comparison_frame(cells)
    assert cmp.is_empty() or cmp["train_vs_best"].drop_nulls().to_list() in ([], [1.0])
    page = build_report(d, tmp_path / "o").read_text()
    assert "pytorch over jax" not in page and "jax over pytorch" not in page


def test_cells_of_one_kind_are_compared_and_keep_their_device(tmp_path):
    d = fs.write_store(tmp_path / "r", [_cell("pytorch", H100, 0.01), _cell("jax", H100, 0.02)])
    _, _, _, cells = frames.load_frames(d)
    assert set(cells["device"].to_list()) == {"cuda:0"}
    cmp = aggregate.comparison_frame(cells)
    assert sorted(cmp["train_vs_best"].to_list()) == [1.0, 2.0]


def test_each_kind_gets_its_own_ceilings_for_mfu(tmp_path):
    run = fs.run_doc()
    run["ceilings_by_kind"] = {
        H100: {"result": {"same_as_driver": True}},
        A100: {"result": {"ceilings": {"pytorch": {"cuda:0": {"fp32": 1e12}}}}}}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "ceilings.json").write_text(json.dumps({"entries": {"x": {
        "status": "ok", "framework": "jax", "device": "cuda:0",
        "ceilings": {"fp32": {"best_flops": 4e12}}}}}))
    attempts = [_cell("pytorch", H100, 0.01), _cell("jax", A100, 0.01)]
    latest, ceilings = hardware.split_by_kind(attempts, run, {"jax": {"cuda:0": {"fp32": 4e12}}})
    assert ceilings == {"jax": {"cuda:0@NVIDIA H100": {"fp32": 4e12}},
                        "pytorch": {"cuda:0@NVIDIA A100": {"fp32": 1e12}}}
    assert [a["device"] for a in latest] == ["cuda:0@NVIDIA H100", "cuda:0@NVIDIA A100"]
    # one kind (or a local run): nothing is relabelled
    same = [_cell("pytorch", H100, 0.01), _cell("jax", H100, 0.01)]
    assert hardware.split_by_kind(same, run, {"a": 1}) == (same, {"a": 1})


def test_kind_names_are_unique_and_readable():
    names = hardware.kind_names({H100, A100, "Xeon | NVIDIA H100 | jax=0.9", "Xeon | no GPU | x"})
    assert len(set(names.values())) == 4
    assert names[A100] == "NVIDIA A100" and names["Xeon | no GPU | x"] == "Xeon"
