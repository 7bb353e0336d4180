"""The gate's second draw (mlbench/run/gate_draws.py): a framework whose forward agrees but whose
training steps differ is checked on a second draw of weights and batches (seed + 1) and fails
only if it differs there too. A knife-edge of rounding depends on the draw; a different model
(here: another Adam learning rate) differs on every draw; a forward that differs is never
retried.

The planted "pytorch" is the numpy reference worker with its Adam step scaled by 1.5, on the
first draw only (a knife-edge) or on every draw (a different optimizer), run from a copy of
workers/ (MLBENCH_WORKERS_DIR). Numpy processes only: fast.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from cliutil import ROOT, run_inproc, write_config

ADAM = 'self.opt = Adam(self.model.params, spec["learning_rate"],'
ORIGINAL_OUT = "        return np.asarray(output, dtype=np.float32)\n"


def _plant(tmp_path: Path, monkeypatch, when: str | None, off_forward: bool = False) -> None:
    d = tmp_path / "workers"
    shutil.copytree(ROOT / "workers", d, ignore=shutil.ignore_patterns("__pycache__"))
    src = (d / "numpy_worker.py").read_text()
    assert ADAM in src and ORIGINAL_OUT in src, "numpy_worker.py changed: update the plant"
    if when is not None:
        src = src.replace(ADAM, 'self.opt = Adam(self.model.params, spec["learning_rate"] * '
                                f'(1.5 if {when} else 1.0),')
    if off_forward:
        src = src.replace(ORIGINAL_OUT, "        return (np.asarray(output, dtype=np.float64)"
                                        " * 1.01).astype(np.float32)\n")
    (d / "pytorch_worker.py").write_text(src)
    monkeypatch.setenv("MLBENCH_WORKERS_DIR", str(d))


def _gate(tmp_path: Path, capsys) -> tuple[int, dict, str]:
    conf = write_config(tmp_path / "g.yaml", frameworks=["pytorch"], seed=0,
                        models=[{"name": "mlp", "preset": "tiny"}], batch_sizes=[16], threads=1)
    out = tmp_path / "gate"
    rc, text, err = run_inproc(["gate", "-c", str(conf), "--output", str(out)], capsys)
    (row,) = [r for r in json.loads((out / "verify.json").read_text())["rows"]
              if r["framework"] == "pytorch"]
    return rc, row, text + err


def test_a_difference_on_one_draw_only_passes_on_the_second(tmp_path, capsys, monkeypatch):
    _plant(tmp_path, monkeypatch, when='int(self.request["seed"]) == 0')
    rc, row, text = _gate(tmp_path, capsys)
    assert rc == 0 and row["passed"] is True, row
    assert row["reason"].startswith("passed on a second draw (seed 1); on seed 0 only the "
                                    "training steps differed (")
    assert (tmp_path / "gate" / "verify" / "pytorch-cpu-fp32-seed1").is_dir()
    assert (tmp_path / "gate" / "verify" / "numpy-cpu-fp32-seed1").is_dir()  # its reference


def test_a_different_optimizer_fails_on_both_draws(tmp_path, capsys, monkeypatch):
    _plant(tmp_path, monkeypatch, when="True")
    rc, row, text = _gate(tmp_path, capsys)
    assert rc == 1 and row["passed"] is False, row
    assert row["reason"].startswith("outputs differ beyond tolerance; on a second draw (seed 1) "
                                    "too: outputs differ beyond tolerance"), row
    assert row["max_rel_err"] > 1e-3


def test_a_forward_that_differs_gets_no_second_draw(tmp_path, capsys, monkeypatch):
    _plant(tmp_path, monkeypatch, when=None, off_forward=True)
    rc, row, _ = _gate(tmp_path, capsys)
    assert rc == 1 and row["passed"] is False and "second draw" not in row["reason"]
    assert not (tmp_path / "gate" / "verify" / "pytorch-cpu-fp32-seed1").exists()
