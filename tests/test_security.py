"""No way in: YAML is data only, no shell or pickle or eval anywhere, names cannot escape the run
directory."""
import re
from pathlib import Path

import pytest

from cliutil import ROOT, by_cell, dummy_config, run_inproc
from mlbench.config import schema as cfg
from mlbench.errors import UserError
from mlbench.results.store import Store

GOOD = "models: [mlp]\nbatch_sizes: [8]\n"
TAGS = ["!!python/object/apply:os.system ['touch {m}']",
        "!!python/object/new:os.system ['touch {m}']",
        "!!python/object:os.system {{cmd: 'touch {m}'}}",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object/apply:subprocess.call [['touch', '{m}']]"]


@pytest.mark.parametrize("tag", TAGS)
def test_python_yaml_tags_are_refused_and_run_nothing(tmp_path, capsys, tag):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text("frameworks: " + tag.format(m=marker) + "\n" + GOOD)
    rc, out, err = run_inproc(["run", "--config", str(p), "--no-report"], capsys)
    assert rc == 2 and not marker.exists()
    assert err.startswith("error: ") and str(p) in err and "Traceback" not in out + err


FORBIDDEN = {
    "a shell": r"shell\s*=\s*True",
    "pickle": r"\b(c?[Pp]ickle|dill|marshal|shelve)\b",
    "allow_pickle": r"allow_pickle\s*=\s*True",
    "eval": r"(?<![\w.])eval\s*\(",
    "exec": r"(?<![\w.])exec\s*\(",
    "yaml.load": r"\byaml\.(load|load_all|unsafe_load|full_load)\s*\(",
    "UnsafeLoader": r"\b(Unsafe|Full)?Loader\s*=\s*yaml\.(Unsafe|Full)?Loader\b",
    "os.system": r"\bos\.(system|popen)\s*\(",
    "__import__": r"\b__import__\s*\(",
    "torch.load": r"\btorch\.load\s*\(",
}


def _code_lines(path: Path):
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]  # comments may speak of what the code never does
        if code.strip():
            yield i, code


def test_no_shell_pickle_eval_or_unsafe_yaml_in_the_sources():
    files = sorted((ROOT / "mlbench").rglob("*.py")) + sorted((ROOT / "workers").rglob("*.py"))
    assert len(files) > 10
    found = [f"{f.relative_to(ROOT)}:{i}: {what}: {code.strip()}"
             for f in files for i, code in _code_lines(f)
             for what, rx in FORBIDDEN.items() if re.search(rx, code)]
    assert not found, "\n".join(found)


def test_the_forbidden_patterns_do_match_and_spare_method_names():
    hits = lambda s: [w for w, rx in FORBIDDEN.items() if re.search(rx, s)]  # noqa: E731
    assert hits("subprocess.run(cmd, shell=True)") == ["a shell"]
    assert hits("import pickle") == ["pickle"]
    assert hits("x = eval(text)") == ["eval"] and hits("exec(code)") == ["exec"]
    assert hits("yaml.load(f)") == ["yaml.load"]
    assert not hits("model.eval()") and not hits("jax.eval_shape(f, x)")
    assert not hits("self._eval(p)") and not hits("spec.loader.exec_module(m)")
    assert not hits("yaml.safe_load(f)") and not hits("np.load(p, allow_pickle=False)")


@pytest.mark.parametrize("label", ["../x", "/etc", "a/b", "..", ".", "", "x\n", "a\\b",
                                   "-rf", "~root"])
def test_model_labels_cannot_become_paths(label):
    raw = {"frameworks": ["pytorch"], "batch_sizes": [8], "models": [{"name": "mlp",
                                                                       "label": label}]}
    with pytest.raises(UserError) as exc:
        cfg.validate(raw, "c.yaml")
    assert "models[0].label" in str(exc.value)


@pytest.mark.parametrize("cell_id", ["../x", "../../etc", "/etc", "a/../../x", "..", ".", "",
                                     "a/b"])
def test_store_refuses_cell_ids_that_escape(tmp_path, cell_id):
    with pytest.raises(UserError):
        Store(tmp_path).cell_dir(cell_id)
    assert not (tmp_path.parent / "x").exists() and not (tmp_path / "x").exists()


def test_store_refuses_a_cell_directory_that_is_a_link_elsewhere(tmp_path):
    (tmp_path / "cells").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cells" / "dummy-mlp-cpu-bs1-fp32").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError):
        Store(tmp_path).cell_dir("dummy-mlp-cpu-bs1-fp32")


def test_every_cell_id_is_one_plain_path_component():
    conf = cfg.validate({"frameworks": ["torch", "jax"], "devices": ["cpu", "cuda:12"],
                         "batch_sizes": [1, 999999], "precisions": ["fp32", "BF16"],
                         "train_samples": 2_000_000,
                         "models": ["mlp", {"name": "cnn", "label": "a..b"},
                                    {"name": "cnn", "preset": "tiny",
                                     "options": {"num_classes": 7}}]}, "c.yaml")
    from mlbench.run.matrix import expand
    ids = {c.cell_id for c in expand(conf)}
    assert len(ids) == 2 * 3 * 2 * 2 * 2
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", i) and ".." != i for i in ids)


def test_no_shell_between_mlbench_and_the_worker(tmp_path, capsys):
    """An output directory full of shell syntax is just a name: the worker runs from an argv
    list, and command.txt quotes it."""
    marker = tmp_path / "pwned"
    out = tmp_path / f"r; touch {marker}; $(touch {marker}) `touch {marker}`"
    conf = dummy_config(tmp_path)
    rc, _, err = run_inproc(["run", "--config", str(conf), "--output", str(out),
                             "--batch-sizes", "1", "--no-report"], capsys)
    assert rc == 0, err
    assert by_cell(out)["dummy-mlp-cpu-bs1-fp32"]["status"] == "ok"
    assert not marker.exists()
    import shlex
    line = (out / "cells" / "dummy-mlp-cpu-bs1-fp32" / "command.txt").read_text()
    assert str(out) in " ".join(shlex.split(line))
