"""Picking your own model like a built-in one: `--models NAME` selects the config's model of that
name (its source and options with it), and `exclude: [{model: NAME, ...}]` leaves its cells out;
a misspelt name is a config error. Fast: the dummy worker, no ML framework."""
from cliutil import by_cell, run_inproc, write_config
from mlbench.config import schema as config
from mlbench.run import matrix

MODEL = '''INPUT = {"kind": "vector", "shape": [8], "num_classes": 3}


def pytorch(width=4):
    raise NotImplementedError
'''


def _conf(tmp_path, **fields):
    (tmp_path / "m.py").write_text(MODEL)
    base = dict(frameworks=["dummy"], batch_sizes=[1, 2], train_samples=16, eval_samples=8,
                verify=False, ceiling=False,
                models=["mlp", {"name": "mine", "source": "m.py", "options": {"width": 6}}])
    return write_config(tmp_path / "c.yaml", **{**base, **fields})


def test_models_on_the_command_line_pick_a_user_model_by_name(tmp_path, capsys):
    conf = _conf(tmp_path)
    c = config.load_config(conf, {"models": ["mine"]})
    assert [(m.name, m.options) for m in c.models] == [("mine", {"width": 6})]
    assert c.models[0].user_model["path"] == str(tmp_path / "m.py")
    rc, out, err = run_inproc(["run", "--config", str(conf), "--models", "mine", "mlp",
                               "--no-report"], capsys)
    assert rc == 0, err
    cells = by_cell(tmp_path / "results").values()
    assert sorted({c["model"] for c in cells}) == ["mine", "mlp"]
    assert len(cells) == 4


def test_a_name_that_is_neither_built_in_nor_in_the_config_is_an_error(tmp_path, capsys):
    rc, out, err = run_inproc(["run", "--config", str(_conf(tmp_path)), "--models", "yours"],
                              capsys)
    assert rc == 2 and err.startswith("error: ") and "unknown model 'yours'" in err
    assert "Traceback" not in err


def test_exclude_rules_name_a_user_model(tmp_path):
    c = config.load_config(_conf(tmp_path, exclude=[{"model": "mine", "batch_size": 2}]))
    kept = sorted((cell.model.name, cell.batch_size) for cell in matrix.expand(c))
    assert kept == [("mine", 1), ("mlp", 1), ("mlp", 2)]


def test_a_misspelt_user_model_in_exclude_is_a_config_error(tmp_path, capsys):
    conf = _conf(tmp_path, exclude=[{"model": "mien"}])
    rc, out, err = run_inproc(["run", "--config", str(conf)], capsys)
    lines = [x for x in err.strip().splitlines() if x]
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: unknown model 'mien' (did you mean 'mine'?); allowed: ")
    assert lines[0].endswith(", mine (" + str(conf) + ": exclude[0].model)")


def test_shared_weights_must_come_with_a_loader_and_loaders_with_weights(tmp_path, capsys):
    for extra, says in [
        ("\n\ndef load_pytorch(model, w):\n    pass\n",
         "has load_pytorch() but no canonical_weights() to load"),
        ("\n\ndef canonical_weights():\n    return {}\n",
         "has canonical_weights() but no loader (define load_pytorch(...))")]:
        conf = _conf(tmp_path)
        (tmp_path / "m.py").write_text(MODEL + extra)
        rc, out, err = run_inproc(["run", "--config", str(conf)], capsys)
        lines = [x for x in err.strip().splitlines() if x]
        assert rc == 2 and len(lines) == 1, err
        assert lines[0] == (f"error: model file {tmp_path / 'm.py'} {says} "
                            f"({conf}: models[1].source)")
