"""Your own model (`models: [{name, source: file.py}]`): config-time errors (fast, no framework),
the fingerprint, and the two examples of configs/examples run for real through `mlbench run`
(native in three frameworks; one Keras 3 model on three backends): counts, gate verdicts,
report; and run-time failures of a broken builder."""
import json
from pathlib import Path

import pytest
import yaml

from cliutil import ROOT, by_cell, run_inproc, write_config
from mlbench.config import schema as config
from mlbench.run import matrix

EXAMPLES = ROOT / "configs" / "examples"
GOOD = '''INPUT = {"kind": "vector", "shape": [8], "num_classes": 3}


def pytorch(width=4):
    import torch.nn as nn
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))


def jax(width=4, **extra):
    raise NotImplementedError


def keras(width=4):
    raise NotImplementedError
'''


def _conf(tmp_path: Path, text: str | None = GOOD, frameworks=("pytorch",), name="m.py",
          source=None, **model) -> Path:
    if text is not None:
        (tmp_path / name).write_text(text)
    return write_config(tmp_path / "c.yaml", frameworks=list(frameworks), batch_sizes=[4],
                        train_samples=64, eval_samples=16,
                        models=[{"name": "mine", "source": source or name, **model}])


def _error(tmp_path, capsys, conf) -> str:
    rc, out, err = run_inproc(["run", "--config", str(conf)], capsys)
    assert rc == 2, (out, err)
    lines = [x for x in err.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- config-time errors: one line, exit 2, naming the file and the key -----------------------

def test_missing_file(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(tmp_path, None, name="nope.py"))
    assert "nope.py" in line and "not found" in line and "models[0].source" in line


def test_syntax_error_names_file_and_line(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(tmp_path, "INPUT = {}\n\ndef pytorch(:\n    pass\n"))
    assert "syntax error" in line and "m.py, line 3" in line and "models[0].source" in line


def test_no_input(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(tmp_path, "def pytorch():\n    pass\n"))
    assert "defines no INPUT" in line and "m.py" in line


def test_input_of_unknown_kind(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(
        tmp_path, 'INPUT = {"kind": "audio", "shape": [8]}\ndef pytorch():\n    pass\n'))
    assert "kind 'audio'" in line and "image, vector, tokens" in line


def test_input_must_be_a_literal(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(
        tmp_path, 'N = 3\nINPUT = {"kind": "vector", "shape": [8], "num_classes": N}\n'
                  'def pytorch():\n    pass\n'))
    assert "must be a literal" in line and "line 2" in line


def test_input_with_a_bad_shape(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(
        tmp_path, 'INPUT = {"kind": "image", "shape": [8, 8], "num_classes": 3}\n'
                  'def pytorch():\n    pass\n'))
    assert "shape of a image" in line and "[H, W, C]" in line


def test_framework_without_a_function_says_which_it_has(tmp_path, capsys):
    # beside pytorch, tensorflow's cells are skipped (tests/test_own_model_partial.py); alone,
    # it has nothing to run: an error naming what the file has
    line = _error(tmp_path, capsys, _conf(tmp_path, frameworks=("tensorflow",)))
    assert "no tensorflow() for framework tensorflow" in line
    assert "pytorch(), jax(), keras()" in line and "models[0].source" in line


def test_keras_backends_need_a_keras_function(tmp_path, capsys):
    text = GOOD.replace("def keras(width=4):", "def other(width=4):")
    line = _error(tmp_path, capsys, _conf(tmp_path, text, frameworks=("keras-torch",)))
    assert "no keras() for framework keras-torch" in line


def test_options_the_functions_do_not_accept(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(tmp_path, options={"depth": 3}))
    assert "option 'depth' is not a parameter of pytorch()" in line
    assert "its parameters: width" in line and "models[0].options" in line
    # a builder with **kwargs takes anything: jax(width, **extra) alone accepts depth
    conf = _conf(tmp_path, frameworks=("jax",), options={"depth": 3})
    assert config.load_config(conf).models[0].options == {"depth": 3}


def test_a_name_of_a_builtin_model_is_refused(tmp_path, capsys):
    conf = _conf(tmp_path)
    raw = yaml.safe_load(conf.read_text())
    raw["models"][0]["name"] = "mlp"
    conf.write_text(yaml.safe_dump(raw))
    line = _error(tmp_path, capsys, conf)
    assert "not a built-in model's" in line and "models[0].name" in line


def test_the_parent_never_imports_the_user_file(tmp_path):
    marker = tmp_path / "imported"
    text = (f"open({str(marker)!r}, 'w').write('x')\nimport torch_does_not_exist\n" + GOOD)
    conf = _conf(tmp_path, text)
    c = config.load_config(conf)
    matrix.expand(c)
    assert not marker.exists()
    assert c.models[0].user_model["input"] == {"kind": "vector", "shape": [8], "num_classes": 3}


def test_module_name_source_is_found_without_import(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (pkg / "net.py").write_text(GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    c = config.load_config(_conf(tmp_path, None, source="mypkg.net"))
    assert c.models[0].user_model["path"] == str((pkg / "net.py").resolve())


def test_unknown_module_name(tmp_path, capsys):
    line = _error(tmp_path, capsys, _conf(tmp_path, None, source="no_such_pkg.model"))
    assert "model module 'no_such_pkg.model' not found" in line


def test_editing_the_file_changes_the_fingerprint(tmp_path):
    conf = _conf(tmp_path)
    before = matrix.expand(config.load_config(conf))[0].fingerprint
    assert matrix.expand(config.load_config(conf))[0].fingerprint == before
    (tmp_path / "m.py").write_text(GOOD.replace("width=4", "width=5"))
    assert matrix.expand(config.load_config(conf))[0].fingerprint != before


def test_builtin_cells_keep_their_fingerprint(tmp_path):
    """No user_model key in a built-in model's request: stored runs still --resume."""
    c = config.load_config(write_config(tmp_path / "c.yaml", frameworks=["pytorch"]))
    assert all("user_model" not in cell.request for cell in matrix.expand(c))


def test_input_drives_the_synthetic_data():
    from mlbench.config import catalog
    s = catalog.specs()
    spec = s.user_spec({"name": "x", "path": "/x.py", "input": {"kind": "tokens", "seq_len": 6,
                                                                "vocab_size": 11}})
    req = {"train_samples": 20, "eval_samples": 4, "seed": 1}
    d = s.make_dataset(spec, req)
    assert d["x_train"].shape == (20, 6) and d["x_train"].dtype.name == "int32"
    assert d["y_train"].shape == (20, 6) and int(d["x_train"].max()) < 11
    # next-token: the label is the input shifted by one
    assert (d["x_train"][:, 1:] == d["y_train"][:, :-1]).all()
    assert s.make_dataset(spec, req)["hash"] == d["hash"]
    img = s.user_spec({"name": "x", "path": "/x.py",
                       "input": {"kind": "image", "shape": [6, 10, 2], "num_classes": 4}})
    d = s.make_dataset(img, req)
    assert d["x_train"].shape == (20, 6, 10, 2) and int(d["y_train"].max()) < 4


# --- for real: the examples through `mlbench run` ---------------------------------------------

def _example(tmp_path: Path, name: str, **over) -> Path:
    raw = yaml.safe_load((EXAMPLES / name).read_text())
    for m in raw["models"]:
        m["source"] = str(EXAMPLES / m["source"])
    raw.update(output_dir=str(tmp_path / "results"), ceiling=False, train_samples=64,
               eval_samples=16, batch_sizes=[16], timed_iterations=2, warmup_iterations=1,
               timeout_s=300, **over)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(tmp_path, conf, capsys):
    rc, out, err = run_inproc(["run", "--config", str(conf), "--report-dir",
                               str(tmp_path / "report")], capsys)
    gate = json.loads((tmp_path / "results" / "verify.json").read_text())
    html = (tmp_path / "report" / "index.html").read_text()
    return rc, by_cell(tmp_path / "results"), gate, html, out + err


@pytest.mark.framework
def test_native_example_runs_in_three_frameworks(tmp_path, capsys):
    rc, cells, gate, html, text = _run(tmp_path, _example(tmp_path, "own_model.yaml"), capsys)
    assert rc == 0, text[-3000:]
    assert len(cells) == 3
    assert {c["status"] for c in cells.values()} == {"ok"}, [c.get("reason") for c in
                                                              cells.values()]
    counts = {c["framework"]: c["metrics"]["params"] for c in cells.values()}
    assert len({json.dumps(v, sort_keys=True) for v in counts.values()}) == 1, counts
    assert counts["pytorch"]["trainable"] > 0
    rows = gate["rows"]
    assert {r["framework"] for r in rows} == {"pytorch", "jax", "tensorflow"}
    for r in rows:  # the file's canonical_weights() and loaders: the numbers are compared too
        assert r["passed"] is True and r["reference"].startswith("pairwise"), r
        assert r["params_equal"] and r["data_hash_equal"] and r["max_abs_err"] is not None
    assert "numerics unchecked" not in html
    # FLOPs: counted by torch (FlopCounterMode) and XLA; TF's left unknown (MFU n/a)
    fl = {c["framework"]: c["metrics"]["flops_per_sample"]["forward"] for c in cells.values()}
    assert fl["pytorch"] > 0 and fl["jax"] > 0 and fl["tensorflow"] is None


@pytest.mark.framework
def test_keras_example_runs_on_its_backends_with_exact_gate(tmp_path, capsys):
    # two of the three backends (CI time: keras-jax's functional build is the slowest; the
    # worker code is the same for all three)
    conf = _example(tmp_path, "keras_model.yaml", frameworks=["keras-torch", "keras-tensorflow"])
    rc, cells, gate, html, text = _run(tmp_path, conf, capsys)
    assert rc == 0, text[-3000:]
    assert {c["status"] for c in cells.values()} == {"ok"}, [c.get("reason") for c in
                                                              cells.values()]
    backends = {c["framework"]: c["metrics"]["settings"]["backend"] for c in cells.values()}
    assert backends == {"keras-torch": "torch", "keras-tensorflow": "tensorflow"}
    rows = gate["rows"]
    assert len(rows) == 2
    for r in rows:  # the same seeded weights on every backend: compared, and they agree
        assert r["passed"] is True, r
        assert r["reference"].startswith("pairwise")
        assert r["max_abs_err"] is not None and r["params_equal"]
    assert "keras-torch" in html


@pytest.mark.framework
def test_broken_builders_fail_their_cell_with_the_message(tmp_path, capsys):
    (tmp_path / "raises.py").write_text(GOOD.replace(
        "    import torch.nn as nn\n", "    raise ValueError('no such layer: Foo')\n"))
    (tmp_path / "wrongtype.py").write_text(GOOD.replace(
        "    import torch.nn as nn\n    return", "    return 42 or"))
    (tmp_path / "wrongshape.py").write_text(GOOD.replace("nn.Linear(width, 3)",
                                                         "nn.Linear(width, 7)"))
    conf = write_config(tmp_path / "c.yaml", frameworks=["pytorch"], batch_sizes=[4],
                        train_samples=16, eval_samples=8, timed_iterations=1,
                        warmup_iterations=0, verify=False, ceiling=False, timeout_s=120,
                        models=[{"name": n, "source": f"{n}.py"} for n in
                                ("raises", "wrongtype", "wrongshape")])
    rc, out, err = run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    cells = {c["model"]: c for c in by_cell(tmp_path / "results").values()}
    assert {c["status"] for c in cells.values()} == {"failed"}
    assert "pytorch() in model file" in cells["raises"]["reason"]
    assert "ValueError: no such layer: Foo" in cells["raises"]["reason"]
    assert "returned builtins.int, not a torch.nn.Module" in cells["wrongtype"]["reason"]
    assert "logits of shape [4, 7]" in cells["wrongshape"]["reason"]
    assert "needs [4, 3]" in cells["wrongshape"]["reason"]


def test_examples_are_valid_configs():
    for name in ("own_model.yaml", "keras_model.yaml"):
        c = config.load_config(EXAMPLES / name)
        assert all(m.user_model["sha256"] for m in c.models)
