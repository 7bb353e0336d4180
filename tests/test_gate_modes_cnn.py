"""configs/modes.yaml's cnn passes the equivalence gate in tensorflow (tf.function, no XLA),
tensorflow-xla and jax: on the shipped seed, tensorflow without XLA differs from the others after
the Adam steps only (one ReLU input of the cnn lies within fp32 rounding of zero: see
mlbench/run/gate_draws.py), and the second draw shows it computes the same model. Real frameworks:
about a minute on an idle machine."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cliutil import ROOT, run_inproc


@pytest.mark.framework
def test_the_shipped_modes_config_passes_the_gate_for_tensorflow_and_jax(tmp_path, capsys):
    out = tmp_path / "gate"
    rc, text, err = run_inproc(["gate", "-c", str(ROOT / "configs" / "modes.yaml"), "--models",
                                "cnn", "--frameworks", "tensorflow", "jax", "-o", str(out)],
                               capsys)
    rows = {r["framework"]: r for r in json.loads((Path(out) / "verify.json").read_text())["rows"]}
    assert set(rows) == {"tensorflow", "tensorflow-xla", "jax"}
    assert all(r["passed"] is True for r in rows.values()), text + err
    assert rc == 0
    # the forward agreed on the first draw: whatever differed was the training steps alone
    for r in rows.values():
        assert r["reason"] is None or r["reason"].startswith("passed on a second draw"), r
