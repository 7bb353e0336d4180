"""Bad input of every kind: exit code 2 and one line, `error: <what> (<file>: <key>)`, naming the
file (or the command line) and the key; never a traceback. Complements test_config.py."""
import json

import pytest

from cliutil import dummy_config, run_inproc, run_subprocess

BASE = "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\n"
CFG = "{tmp}/bad.yaml"
RUN = ["run", "--config", CFG, "--output", "{tmp}/r", "--no-report"]
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else 'mlp'}]\n"
               for i in range(7))

# (id, file contents for bad.yaml (or {name: contents}), arguments, words the error line has)
CASES = [
    # --- YAML itself
    ("tab indent", "frameworks: [pytorch]\n\tmodels: [mlp]\n", RUN, [CFG, "line 2"]),
    ("unclosed quote", 'frameworks: ["pytorch]\nmodels: [mlp]\n', RUN, [CFG, "line"]),
    ("two documents", "frameworks: [pytorch]\n---\nmodels: [mlp]\n", RUN, [CFG, "line 2"]),
    ("duplicate key", BASE + "epochs: 1\nepochs: 2\n", RUN, [CFG, "duplicate key 'epochs'"]),
    ("list document", "- pytorch\n- mlp\n", RUN, [CFG, "mapping"]),
    ("scalar document", "42\n", RUN, [CFG, "mapping"]),
    ("empty file", "", RUN, [CFG, "empty"]),
    ("only comments", "# nothing here\n", RUN, [CFG, "empty"]),
    ("binary garbage", bytes(range(256)) * 8, RUN, [CFG, "UTF-8"]),
    ("control character", BASE + "epochs: \x01\n", RUN, [CFG, "character"]),
    ("recursive alias", "frameworks: &a [*a]\nmodels: [mlp]\nbatch_sizes: [8]\n", RUN,
     [CFG, "frameworks", "recursive"]),
    ("recursive mapping", "frameworks: [pytorch]\nbatch_sizes: [8]\n"
     "models: [{name: mlp, options: &o {x: *o}}]\n", RUN, [CFG, "models[0].options", "recursive"]),
    ("alias bomb", "frameworks: [pytorch]\nbatch_sizes: [8]\n" + BOMB.replace("l6:", "models:"),
     RUN, [CFG, "models", "too large"]),
    # --- unknown keys, with a did-you-mean at every level
    ("unknown model key", "frameworks: [pytorch]\nbatch_sizes: [8]\n"
     "models: [{name: cnn, presett: tiny}]\n", RUN, [CFG, "models[0].presett", "'preset'"]),
    ("unknown settings key", BASE + "framework_settings: {pytorch: {optons: {}}}\n", RUN,
     [CFG, "framework_settings.pytorch.optons", "'options'"]),
    ("unknown exclude key", BASE + "exclude: [{frameworks: pytorch}]\n", RUN,
     [CFG, "exclude[0].frameworks", "'framework'"]),
    # --- wrong types (strict: no silent coercion)
    ("boolean batch size", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [true]\n", RUN,
     [CFG, "batch_sizes[0]", "True"]),
    ("string epochs", BASE + "epochs: '3'\n", RUN, [CFG, "epochs", "'3'"]),
    ("float repeats", BASE + "repeats: 2.5\n", RUN, [CFG, "repeats"]),
    ("boolean timeout", BASE + "timeout_s: true\n", RUN, [CFG, "timeout_s"]),
    ("string tf32", BASE + "tf32: 'yes'\n", RUN, [CFG, "tf32"]),
    ("integer tf32", BASE + "tf32: 1\n", RUN, [CFG, "tf32"]),
    ("frameworks not a list", "frameworks: pytorch\nmodels: [mlp]\nbatch_sizes: [8]\n", RUN,
     [CFG, "frameworks", "list"]),
    ("models a mapping", "frameworks: [pytorch]\nmodels: {name: mlp}\nbatch_sizes: [8]\n", RUN,
     [CFG, "models"]),
    ("option a mapping", BASE + "framework_settings: {pytorch: {options: {compile: {a: 1}}}}\n",
     RUN, [CFG, "framework_settings.pytorch.options.compile"]),
    ("output_dir a number", BASE + "output_dir: 5\n", RUN, [CFG, "output_dir"]),
    # --- zero, negative, absurd numbers
    ("nan timeout", BASE + "timeout_s: .nan\n", RUN, [CFG, "timeout_s", "finite"]),
    ("infinite timeout", BASE + "timeout_s: .inf\n", RUN, [CFG, "timeout_s", "finite"]),
    ("zero timeout", BASE + "timeout_s: 0\n", RUN, [CFG, "timeout_s"]),
    ("zero epochs", BASE + "epochs: 0\n", RUN, [CFG, "epochs"]),
    ("negative repeats", BASE + "repeats: -1\n", RUN, [CFG, "repeats"]),
    ("negative seed", BASE + "seed: -1\n", RUN, [CFG, "seed"]),
    ("absurd memory limit", BASE + "memory_limit_mb: 100000000000000\n", RUN,
     [CFG, "memory_limit_mb"]),
    ("absurd batch size", "frameworks: [pytorch]\nmodels: [mlp]\n"
     "batch_sizes: [1000000000000000000000000000000]\n", RUN, [CFG, "batch_sizes[0]"]),
    ("absurd threads", BASE + "threads: 100000\n", RUN, [CFG, "threads"]),
    ("zero model samples", "frameworks: [pytorch]\nbatch_sizes: [8]\n"
     "models: [{name: mlp, train_samples: 0}]\n", RUN, [CFG, "models[0].train_samples"]),
    # --- unknown names, malformed devices, empty lists, duplicates
    ("unknown settings framework", BASE + "framework_settings: {caffe: {}}\n", RUN,
     [CFG, "framework_settings", "caffe"]),
    ("unknown exclude framework", BASE + "exclude: [{framework: pytorc}]\n", RUN,
     [CFG, "exclude[0].framework", "'pytorch'"]),
    ("unknown exclude precision", BASE + "exclude: [{precision: fp4}]\n", RUN,
     [CFG, "exclude[0].precision"]),
    ("device without index", BASE + "devices: [cuda]\n", RUN, [CFG, "devices", "cuda:N"]),
    ("negative device", BASE + "devices: ['cuda:-1']\n", RUN, [CFG, "devices"]),
    ("device with newline", BASE + 'devices: ["cpu\\n"]\n', RUN, [CFG, "devices"]),
    ("empty models", "frameworks: [pytorch]\nmodels: []\nbatch_sizes: [8]\n", RUN,
     [CFG, "models"]),
    ("empty batch sizes", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: []\n", RUN,
     [CFG, "batch_sizes"]),
    ("duplicate by alias", "frameworks: [pytorch, torch]\nmodels: [mlp]\nbatch_sizes: [8]\n",
     RUN, [CFG, "frameworks", "duplicate"]),
    ("duplicate batch size", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8, 8]\n",
     RUN, [CFG, "batch_sizes", "duplicate"]),
    ("duplicate device", BASE + "devices: [cpu, cpu]\n", RUN, [CFG, "devices", "duplicate"]),
    ("duplicate model", "frameworks: [pytorch]\nmodels: [mlp, mlp]\nbatch_sizes: [8]\n", RUN,
     [CFG + ": models", "twice"]),
    # --- interpreters
    ("missing interpreter", BASE + "framework_settings: {pytorch: {python: /nope/python}}\n",
     RUN, [CFG, "framework_settings.pytorch.python", "/nope/python"]),
    ("interpreter not executable", {"bad.yaml": BASE + "framework_settings: {pytorch: "
                                    "{python: '{tmp}/py'}}\n", "py": "#!/bin/sh\n"}, RUN,
     [CFG, "framework_settings.pytorch.python", "not executable"]),
    ("interpreter a directory", BASE + "framework_settings: {pytorch: {python: '{tmp}'}}\n",
     RUN, [CFG, "framework_settings.pytorch.python"]),
    # --- the command line
    ("batch size not a number", BASE, RUN + ["--batch-sizes", "abc"], ["--batch-sizes"]),
    ("zero batch size flag", BASE, RUN + ["--batch-sizes", "0"],
     ["command line", "batch_sizes[0]"]),
    ("zero epochs flag", BASE, RUN + ["--epochs", "0"], ["command line", "epochs"]),
    ("negative repeats flag", BASE, RUN + ["--repeats", "-2"], ["command line", "repeats"]),
    ("bad device flag", BASE, RUN + ["--devices", "gpu0"], ["command line", "devices"]),
    ("bad precision flag", BASE, RUN + ["--precisions", "fp8"], ["command line", "precisions"]),
    ("bad model flag", BASE, RUN + ["--models", "mpl"], ["command line", "models", "'mlp'"]),
    ("two modes", BASE, RUN + ["--resume", "--failed"], ["command line", "--resume"]),
    ("nothing to resume", None, ["run", "--resume", "--output", "{tmp}/r"],
     ["{tmp}/r", "nothing to resume"]),
    ("output is a file", {"bad.yaml": BASE, "f": "x"},
     ["run", "--config", CFG, "--output", "{tmp}/f", "--no-report"],
     ["{tmp}/f", "not a directory"]),
    ("stored config corrupt", {"r/run.json": '{"config": {"frameworks": '},
     ["run", "--resume", "--output", "{tmp}/r"], ["{tmp}/r/run.json", "not mlbench output"]),
    # --- results files that are not mlbench output, or are truncated
    ("results not mlbench", {"x.json": '[1, 2, 3]'}, ["report", "--results", "{tmp}/x.json",
                                                     "--output", "{tmp}/rep"],
     ["{tmp}/x.json", "not an mlbench results file"]),
    ("results truncated", {"x.json": '{"schema": 1, "run": {}, "cells": [{"cell_id": "a", '},
     ["report", "--results", "{tmp}/x.json", "--output", "{tmp}/rep"],
     ["{tmp}/x.json", "JSON"]),
    ("results binary", {"x.json": bytes(range(256))},
     ["report", "--results", "{tmp}/x.json", "--output", "{tmp}/rep"], ["{tmp}/x.json"]),
    ("results missing", None, ["report", "--results", "{tmp}/none.json", "--output",
                               "{tmp}/rep"], ["{tmp}/none.json", "not found"]),
    ("compare truncated", {"a.json": '{"schema": 1, "ru'},
     ["compare", "{tmp}/a.json", "{tmp}/a.json"], ["{tmp}/a.json", "JSON"]),
    ("compare not mlbench", {"a.json": '{"hello": "world"}'},
     ["compare", "{tmp}/a.json", "{tmp}/a.json"], ["{tmp}/a.json", "not an mlbench"]),
]


def _materialise(tmp_path, files, args, words):
    def sub(x):
        return x.replace("{tmp}", str(tmp_path)) if isinstance(x, str) else x

    if files is not None:
        files = files if isinstance(files, dict) else {"bad.yaml": files}
        for name, content in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(sub(content))
    return [sub(a) for a in args], [sub(w) for w in words]


def _one_clear_line(rc, out, err, words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in out + err


@pytest.mark.parametrize("name,files,args,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(tmp_path, capsys, name, files, args, words):
    args, words = _materialise(tmp_path, files, args, words)
    rc, out, err = run_inproc(args, capsys)
    _one_clear_line(rc, out, err, words)


def test_bad_input_case_count():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", ["recursive alias", "boolean batch size", "results truncated"])
def test_bad_input_in_a_real_process(tmp_path, name):
    _, files, args, words = next(c for c in CASES if c[0] == name)
    args, words = _materialise(tmp_path, files, args, words)
    proc = run_subprocess(args, cwd=tmp_path, timeout=60)
    _one_clear_line(proc.returncode, proc.stdout, proc.stderr, words)


def test_only_with_a_path_is_refused_cleanly(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    for bad in ("../../etc", "/etc/passwd"):
        rc, out, err = run_inproc(["run", "--output", str(tmp_path / "results"), "--only", bad,
                                   "--no-report"], capsys)
        _one_clear_line(rc, out, err, ["--only", bad])


def test_truncated_store_is_read_up_to_the_tear(tmp_path, capsys):
    conf = dummy_config(tmp_path)
    run_inproc(["run", "--config", str(conf), "--no-report"], capsys)
    jsonl = tmp_path / "results" / "results.jsonl"
    data = jsonl.read_bytes()
    jsonl.write_bytes(data[: len(data) - 100])
    from mlbench import store
    loaded = store.load(jsonl)
    assert len(loaded.attempts) == 1 and "torn last line" in loaded.warnings[0]
    json.dumps(loaded.attempts)
