"""Your own model in a sweep of several frameworks when the file lacks one framework's function:
that framework's cells are skipped with the reason (or left out by `exclude`) and the others
run; an error remains only when no framework of the sweep has a function, and then it names
every missing one. `--models` suggests your own models too; `--only` takes a cell id without the
options hash of its model's label."""
from __future__ import annotations

import pytest

import workerutil  # noqa: F401 - puts workers/ on sys.path
from cliutil import by_cell, run_inproc, write_config
from mlbench.config import schema as config
from mlbench.run import matrix

ONLY_PYTORCH = '''INPUT = {"kind": "vector", "shape": [8], "num_classes": 3}


def pytorch(width=4):
    import torch
    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 3))
'''


def _conf(tmp_path, source=ONLY_PYTORCH, **fields):
    (tmp_path / "m.py").write_text(source)
    base = dict(frameworks=["pytorch", "jax"], batch_sizes=[4], train_samples=16,
                eval_samples=8, ceiling=False, timed_iterations=3, warmup_iterations=1,
                models=[{"name": "mine", "source": "m.py", "options": {"width": 6}}])
    return write_config(tmp_path / "c.yaml", **{**base, **fields})


def test_a_file_without_one_frameworks_function_is_a_valid_sweep(tmp_path):
    c = config.load_config(_conf(tmp_path))
    assert sorted({cell.framework for cell in matrix.expand(c)}) == ["jax", "pytorch"]
    # or its cells are left out by an exclude rule
    c = config.load_config(_conf(tmp_path, exclude=[{"model": "mine", "framework": "jax"}]))
    assert {cell.framework for cell in matrix.expand(c)} == {"pytorch"}


def test_with_no_function_for_any_framework_the_error_names_every_missing_one(tmp_path,
                                                                              capsys):
    conf = _conf(tmp_path, ONLY_PYTORCH.replace("def pytorch(", "def keras("),
                 frameworks=["pytorch", "jax", "tensorflow"])
    rc, _, err = run_inproc(["run", "--config", str(conf)], capsys)
    lines = [x for x in err.splitlines() if x]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for fn in ("pytorch", "jax", "tensorflow"):
        assert f"no {fn}() for framework {fn}" in lines[0]
    assert "(it has: keras())" in lines[0] and "models[0].source" in lines[0]


def test_the_worker_skips_a_framework_the_file_does_not_define(tmp_path):
    import harness
    import usermodel
    (tmp_path / "m.py").write_text(ONLY_PYTORCH)
    spec = {"source": str(tmp_path / "m.py"), "options": {}}
    with pytest.raises(harness.SkipCell) as got:
        usermodel.build(spec, "jax", object, "a flax module")
    assert str(got.value) == f"no jax() in the model file {tmp_path / 'm.py'}"


def test_models_suggests_your_own_models(tmp_path, capsys):
    rc, _, err = run_inproc(["run", "--config", str(_conf(tmp_path, frameworks=["dummy"])),
                             "--models", "mien"], capsys)
    assert rc == 2 and err.startswith("error: unknown model 'mien' (did you mean 'mine'?)")
    assert "allowed: mlp, cnn" in err and ", mine (command line: models)" in err


def test_only_takes_the_id_without_the_options_hash(tmp_path, capsys):
    conf = _conf(tmp_path, frameworks=["dummy"], batch_sizes=[4, 8], verify=False)
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    ids = sorted(by_cell(out))
    assert len(ids) == 2 and all(i.startswith("dummy-mine.") for i in ids)  # hashed labels
    rc, _, err = run_inproc(["run", "--output", str(out), "--only", "dummy-mine-cpu-bs8-fp32",
                             "--no-report"], capsys)
    assert rc == 0, err
    assert "keeping 1 cell(s) already done; 1 to run" in err
    assert [i for i in ids if i.endswith("-bs8-fp32")][0] in err  # the cell that ran


@pytest.mark.framework
def test_a_two_framework_sweep_skips_the_framework_the_file_lacks(tmp_path, capsys):
    out = tmp_path / "results"
    rc, _, err = run_inproc(["run", "--config", str(_conf(tmp_path)), "--no-report"], capsys)
    cells = by_cell(out)
    status = {c["framework"]: (c["status"], c.get("reason")) for c in cells.values()}
    assert status["pytorch"][0] == "ok", err
    assert status["jax"] == ("skipped", f"no jax() in the model file {tmp_path / 'm.py'}")
    assert rc == 0, err
