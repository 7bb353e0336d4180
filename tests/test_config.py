"""Config validation: good files load; every mistake is exit 2 with one line naming file and key."""
import pytest
import yaml

from cliutil import ROOT, run_inproc, run_subprocess
from mlbench.config import schema as cfg
from mlbench.errors import UserError

GOOD = {"frameworks": ["pytorch"], "models": ["mlp"], "batch_sizes": [8]}


def test_shipped_configs_load():
    for name in ("quick_test.yaml", "benchmark_config.yaml"):
        conf = cfg.load_config(ROOT / "configs" / name)
        assert conf.frameworks and conf.models
    default = cfg.load_config(None)
    assert set(default.frameworks) == {"pytorch", "tensorflow", "jax"}


def test_aliases_and_model_entries(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({**GOOD, "frameworks": ["torch", "tf", "jax"],
                                 "models": ["mlp", {"name": "cnn", "preset": "tiny"}]}))
    conf = cfg.load_config(p)
    assert conf.frameworks == ["pytorch", "tensorflow", "jax"]
    assert [m.id_label for m in conf.models] == ["mlp", "cnn.tiny"]


BAD = [
    ("syntax", "frameworks: [pytorch\nmodels: [mlp]\n", "line"),
    ("unknown key", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\nepoch: 2\n",
     "epoch"),
    ("wrong type", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\nepochs: many\n",
     "epochs"),
    ("zero batch", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [0]\n", "batch_sizes[0]"),
    ("negative batch", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [-4]\n",
     "batch_sizes[0]"),
    ("unknown framework", "frameworks: [pytorc]\nmodels: [mlp]\nbatch_sizes: [8]\n",
     "frameworks"),
    ("unknown model", "frameworks: [pytorch]\nmodels: [mpl]\nbatch_sizes: [8]\n", "models[0]"),
    ("bad device", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\ndevices: [gpu0]\n",
     "devices"),
    ("empty list", "frameworks: []\nmodels: [mlp]\nbatch_sizes: [8]\n", "frameworks"),
    ("bad preset", "frameworks: [pytorch]\nmodels: [{name: cnn, preset: huge}]\n"
     "batch_sizes: [8]\n", "models[0]"),
    ("bad precision", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\n"
     "precisions: [fp8]\n", "precisions"),
]


@pytest.mark.parametrize("name,text,key", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_clear_line(tmp_path, capsys, name, text, key):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    rc, out, err = run_inproc(["run", "--config", str(p), "--no-report"], capsys)
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(p) in lines[0] and key in lines[0], lines[0]
    assert "Traceback" not in err + out


def test_missing_file_and_did_you_mean(tmp_path, capsys):
    rc, _, err = run_inproc(["run", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert rc == 2 and "not found" in err and "nope.yaml" in err
    p = tmp_path / "typo.yaml"
    p.write_text("frameworks: [pytorch]\nmodels: [mlp]\nbatch_size: [8]\n")
    rc, _, err = run_inproc(["run", "--config", str(p)], capsys)
    assert rc == 2 and "did you mean 'batch_sizes'" in err


def test_bad_config_in_a_real_process_has_no_traceback(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [0]\n")
    proc = run_subprocess(["run", "--config", str(p)], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "batch_sizes[0]" in proc.stderr and str(p) in proc.stderr


def test_command_line_values_are_validated(tmp_path, capsys):
    rc, _, err = run_inproc(["run", "--frameworks", "pytorch", "caffe", "--no-report",
                             "--output", str(tmp_path / "r")], capsys)
    assert rc == 2 and "caffe" in err and "command line" in err


def test_yaml_python_tags_are_refused_and_run_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"frameworks: !!python/object/apply:os.system ['touch {marker}']\n"
                 "models: [mlp]\nbatch_sizes: [8]\n")
    rc, _, err = run_inproc(["run", "--config", str(p)], capsys)
    assert rc == 2 and not marker.exists()


def test_invalid_config_object_raises_user_error():
    with pytest.raises(UserError):
        cfg.validate({**GOOD, "repeats": 0}, "x.yaml")
