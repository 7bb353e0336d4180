"""The equivalence gate's reason when a framework is checked alone: "nothing to compare with",
never "no shared weights" for a user's model whose file gives canonical weights (mlbench/run/gate.py
on stored gate results; no framework)."""
from __future__ import annotations

import numpy as np

from mlbench.run import gate


def _result(tmp_path, fw, weights_hash, expected_params=None):
    path = tmp_path / f"{fw}.npz"
    out = np.asarray([1, 2, 3], np.float32)
    np.savez(path, index=np.arange(out.size), out_before=out, out_after=out + 1)
    return {"status": "ok", "params": {"trainable": 10, "non_trainable": 0},
            "expected_params": expected_params, "weights_hash": weights_hash,
            "batches_hash": "b", "output_dtype": "float32", "output_shape": [out.size],
            "outputs": str(path), "loss_before": 1.0, "train_losses": [0.9, 0.8],
            "loss_after": 0.7}


def test_a_user_model_with_shared_weights_run_alone_has_nothing_to_compare_with(tmp_path):
    got = {"pytorch": _result(tmp_path, "pytorch", "canon")}
    (row,), pairs = gate._judge("user", "mine", "cpu", "fp32", got, None)
    assert row.passed is None and pairs == []
    assert row.reason == "only framework: nothing to compare with"


def test_a_user_model_without_shared_weights_alone_or_beside_others(tmp_path):
    # alone: still nothing to compare with; beside a framework of other weights: unchecked
    (row,), _ = gate._judge("user", "mine", "cpu", "fp32",
                            {"jax": _result(tmp_path, "jax", None)}, None)
    assert row.reason == "only framework: nothing to compare with"
    got = {"jax": _result(tmp_path, "jax", None), "pytorch": _result(tmp_path, "pytorch", "c")}
    rows, _ = gate._judge("user", "mine", "cpu", "fp32", got, None)
    assert {r.framework: r.reason for r in rows} == {"jax": gate.NUMERICS_UNCHECKED,
                                                      "pytorch": gate.NUMERICS_UNCHECKED}


def test_a_built_in_model_alone_has_nothing_to_compare_with(tmp_path):
    params = {"trainable": 10, "non_trainable": 0}
    (row,), _ = gate._judge("vit", "vit.tiny", "cpu", "fp32",
                            {"jax": _result(tmp_path, "jax", "w", params)}, None)
    assert row.passed is None and row.reason == "only framework: nothing to compare with"
