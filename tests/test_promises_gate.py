"""The equivalence gate catches a framework that runs another model: pinned through `mlbench
verify` (its exit code and verify.json), with a planted framework.

The planted "pytorch" is the numpy reference worker with one deliberate difference (outputs off by
a known amount, one parameter more, a non-trainable buffer), run from a copy of workers/
(MLBENCH_WORKERS_DIR). Only one framework is gated, so pairwise agreement cannot hide a wrong
verdict: the mlp must be judged against the numpy reference, and by the tolerance of its
precision. Two numpy processes per gate run: fast.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cliutil import ROOT, run_inproc, write_config

ORIGINAL_OUT = "        return np.asarray(output, dtype=np.float32)\n"
ORIGINAL_COUNT = ('        return {"trainable": int(sum(p.size for p in self.model.params)), '
                  '"non_trainable": 0}\n')
ORIGINAL_FP32_ONLY = '        if r["precision"] != "fp32":\n'
ORIGINAL_BATCH = "        return self._batch(split, index)\n"
# unit roundoff of each precision: the gate must accept a framework that rounds like that
ROUNDOFF = {"fp32": 2.0 ** -24, "bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
# ... and reject an error far beyond what its arithmetic gives (a wrong model): relative and
# absolute, so it holds for outputs of any size
REJECT = {"fp32": 0.01, "bf16": 0.25, "fp16": 0.05}


def _plant(tmp_path: Path, monkeypatch, rel: float = 0.0, abs_: float = 0.0,
           trainable_extra: int = 0, non_trainable: int = 0, other_batches: bool = False) -> None:
    d = tmp_path / "workers"
    shutil.copytree(ROOT / "workers", d, ignore=shutil.ignore_patterns("__pycache__"))
    src = (d / "numpy_worker.py").read_text()
    for original in (ORIGINAL_OUT, ORIGINAL_COUNT, ORIGINAL_FP32_ONLY, ORIGINAL_BATCH):
        assert original in src, "numpy_worker.py changed: update the planted framework"
    src = src.replace(ORIGINAL_OUT, "        out = np.asarray(output, dtype=np.float64)\n"
                      f"        return (out + {rel!r} * np.abs(out) + {abs_!r})"
                      ".astype(np.float32)\n")
    src = src.replace(ORIGINAL_COUNT, "        return {\"trainable\": int(sum(p.size for p in "
                      f"self.model.params)) + {trainable_extra}, "
                      f"\"non_trainable\": {non_trainable}}}\n")
    src = src.replace(ORIGINAL_FP32_ONLY, "        if False:\n")  # runs 'bf16' in fp32 math
    if other_batches:   # what it reports having been fed differs from the canonical data
        src = src.replace(ORIGINAL_BATCH, "        x, y = self._batch(split, index)\n"
                          "        return x[::-1], y[::-1]\n")
    (d / "pytorch_worker.py").write_text(src)
    monkeypatch.setenv("MLBENCH_WORKERS_DIR", str(d))


def _gate(tmp_path: Path, capsys, precision: str = "fp32") -> tuple[int, dict, str]:
    conf = write_config(tmp_path / "g.yaml", frameworks=["pytorch"],
                        models=[{"name": "mlp", "preset": "tiny"}], batch_sizes=[16], threads=1,
                        precisions=[precision])
    out = tmp_path / "gate"
    rc, text, err = run_inproc(["verify", "-c", str(conf), "--output", str(out)], capsys)
    doc = json.loads((out / "verify.json").read_text())
    rows = [r for r in doc["rows"] if r["framework"] == "pytorch"]
    assert len(rows) == 1, doc
    return rc, rows[0], text + err


def test_a_faithful_framework_passes_against_the_numpy_reference(tmp_path, capsys, monkeypatch):
    _plant(tmp_path, monkeypatch)
    rc, row, text = _gate(tmp_path, capsys)
    assert row["reference"] == "numpy" and row["passed"] is True, row
    assert row["params_equal"] is True and row["data_hash_equal"] is True
    assert rc == 0 and "equivalence gate: passed" in text


def test_outputs_off_by_one_percent_fail_the_mlp_against_numpy(tmp_path, capsys, monkeypatch):
    _plant(tmp_path, monkeypatch, rel=0.01)
    rc, row, text = _gate(tmp_path, capsys)
    assert row["reference"] == "numpy" and row["passed"] is False, row
    assert "outputs differ" in row["reason"]
    assert row["max_rel_err"] == pytest.approx(0.01, rel=0.05)   # measured against numpy
    assert rc == 1 and "FAILED" in text


@pytest.mark.parametrize("extra,non_trainable", [(1, 0), (0, 3)],
                         ids=["one-trainable-more", "non-trainable-differs"])
def test_different_parameter_counts_fail_the_gate(tmp_path, capsys, monkeypatch, extra,
                                                  non_trainable):
    _plant(tmp_path, monkeypatch, trainable_extra=extra, non_trainable=non_trainable)
    rc, row, _ = _gate(tmp_path, capsys)
    assert row["passed"] is False and row["params_equal"] is False, row
    assert "parameters" in row["reason"]
    assert row["params"] == {"trainable": row["params"]["trainable"],
                             "non_trainable": non_trainable}
    assert rc == 1


@pytest.mark.slow  # a second or more: a real sweep, process or scan
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_accepts_its_rounding_and_rejects_more(tmp_path, capsys, monkeypatch,
                                                              precision):
    # the rounding of the precision itself (twice its unit roundoff) must pass ...
    _plant(tmp_path, monkeypatch, rel=2 * ROUNDOFF[precision])
    rc, row, _ = _gate(tmp_path, capsys, precision)
    assert row["passed"] is True and rc == 0, row
    # ... an error three times the published tolerance must not ...
    from mlbench.analysis.gate_verdicts import TOLERANCES
    tol = TOLERANCES[precision]
    _plant(tmp_path / "b", monkeypatch, rel=3 * tol["rtol"], abs_=3 * tol["atol"])
    rc, row, _ = _gate(tmp_path / "b", capsys, precision)
    assert row["passed"] is False and rc == 1, row
    # ... nor a wrong model, whatever the table says
    _plant(tmp_path / "c", monkeypatch, rel=REJECT[precision], abs_=REJECT[precision])
    rc, row, _ = _gate(tmp_path / "c", capsys, precision)
    assert row["passed"] is False and rc == 1, row


def test_low_precision_is_not_judged_by_the_fp32_tolerance(tmp_path, capsys, monkeypatch):
    # a 1 % error: far beyond fp32 rounding, well within what bf16 arithmetic gives
    for precision, passes in (("fp32", False), ("bf16", True)):
        where = tmp_path / precision
        _plant(where, monkeypatch, rel=0.01)
        rc, row, _ = _gate(where, capsys, precision)
        assert row["passed"] is passes, (precision, row)


def test_a_framework_fed_other_batches_fails_the_gate(tmp_path, capsys, monkeypatch):
    _plant(tmp_path, monkeypatch, other_batches=True)
    rc, row, _ = _gate(tmp_path, capsys)
    assert row["passed"] is False and row["data_hash_equal"] is False, row
    assert "batches" in row["reason"] and rc == 1
