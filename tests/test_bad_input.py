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



def npz(**arrays) -> bytes:
    import io

    import numpy as np
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _data(x_train=None, y_train=None, x_eval=None, y_eval=None, drop=()) -> bytes:
    import numpy as np
    arrays = {"x_train": np.zeros((8, 4), np.float32) if x_train is None else x_train,
              "y_train": np.arange(8) % 10 if y_train is None else y_train,
              "x_eval": np.zeros((4, 4), np.float32) if x_eval is None else x_eval,
              "y_eval": np.arange(4) % 10 if y_eval is None else y_eval}
    return npz(**{k: v for k, v in arrays.items() if k not in drop})


# a model fed by the user's data ({tmp}/d.npz): 4 features, 10 classes
DATA = ("frameworks: [dummy]\nbatch_sizes: [2]\nmodels: [{name: mlp, preset: tiny, "
        "options: {input_dim: 4}, data: d.npz}]\n")
PT = "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\n"
LONG = "x" * 200_000


def _np():
    import numpy as np
    return np


CASES += [
    # --- memory limits below what starts a worker: the minimum is named
    *[(f"memory limit {mb}", BASE + f"memory_limit_mb: {mb}\n", RUN,
       [CFG, "memory_limit_mb", "160"]) for mb in (1, 64, 128, 159)],
    ("memory limit negative", BASE + "memory_limit_mb: -5\n", RUN, [CFG, "memory_limit_mb"]),
    ("memory limit string", BASE + "memory_limit_mb: 1GB\n", RUN, [CFG, "memory_limit_mb"]),
    # --- the user's data, checked before any cell
    ("data file missing", DATA, RUN, [CFG, "models[0].data", "not found"]),
    ("data blank", DATA.replace("d.npz", "' '"), RUN, [CFG, "models[0].data", "empty"]),
    ("data a directory", {"bad.yaml": DATA, "d.npz/x": "x"}, RUN,
     [CFG, "models[0].data", "not a regular file"]),
    ("data garbage", {"bad.yaml": DATA, "d.npz": b"PK\x03\x04garbage" * 10}, RUN,
     [CFG, "models[0].data", "not an .npz"]),
    ("data text", {"bad.yaml": DATA, "d.npz": "hello"}, RUN, [CFG, "models[0].data", ".npz"]),
    ("data empty file", {"bad.yaml": DATA, "d.npz": b""}, RUN, [CFG, "models[0].data"]),
    ("data pickled objects", {"bad.yaml": DATA, "d.npz": _data(
        x_train=_np().array([{"a": 1}] * 8, dtype=object))}, RUN,
     [CFG, "models[0].data", "plain numeric"]),
    ("data missing y_eval", {"bad.yaml": DATA, "d.npz": _data(drop=("y_eval",))}, RUN,
     [CFG, "models[0].data", "lacks y_eval"]),
    ("data missing all", {"bad.yaml": DATA, "d.npz": npz(a=[1])}, RUN,
     [CFG, "models[0].data", "x_train, y_train, x_eval, y_eval"]),
    ("data y shorter", {"bad.yaml": DATA, "d.npz": _data(y_train=_np().arange(6) % 10)}, RUN,
     [CFG, "models[0].data", "y_train has 6 rows but x_train has 8"]),
    ("data eval y longer", {"bad.yaml": DATA, "d.npz": _data(y_eval=_np().arange(5) % 10)},
     RUN, [CFG, "models[0].data", "y_eval has 5 rows"]),
    ("data empty eval", {"bad.yaml": DATA, "d.npz": _data(
        x_eval=_np().zeros((0, 4), "float32"), y_eval=_np().zeros(0, int))}, RUN,
     [CFG, "models[0].data", "eval split is empty"]),
    ("data empty train", {"bad.yaml": DATA, "d.npz": _data(
        x_train=_np().zeros((0, 4), "float32"), y_train=_np().zeros(0, int))}, RUN,
     [CFG, "models[0].data", "train split is empty"]),
    ("data negative labels", {"bad.yaml": DATA, "d.npz": _data(y_train=-_np().ones(8, int))},
     RUN, [CFG, "models[0].data", "labels must be 0..9"]),
    ("data labels too big", {"bad.yaml": DATA, "d.npz": _data(y_eval=_np().full(4, 10))},
     RUN, [CFG, "models[0].data", "-1..".replace("-1..", "0..9"), "10 classes"]),
    ("data float labels", {"bad.yaml": DATA, "d.npz": _data(y_train=_np().zeros(8))}, RUN,
     [CFG, "models[0].data", "integer class labels"]),
    ("data string features", {"bad.yaml": DATA, "d.npz": _data(
        x_train=_np().array([["a"] * 4] * 8))}, RUN, [CFG, "models[0].data", "numeric"]),
    ("data wrong sample shape", {"bad.yaml": DATA, "d.npz": _data(
        x_train=_np().zeros((8, 5), "float32"))}, RUN,
     [CFG, "models[0].data", "(5,)", "(4,)"]),
    ("data scalar", {"bad.yaml": DATA, "d.npz": _data(y_train=_np().int64(3))}, RUN,
     [CFG, "models[0].data", "scalars"]),
    ("data 2d labels", {"bad.yaml": DATA, "d.npz": _data(y_train=_np().zeros((8, 2), int))},
     RUN, [CFG, "models[0].data", "y_train has shape"]),
    ("data too few rows", {"bad.yaml": DATA.replace("[2]", "[8]"), "d.npz": _data()}, RUN,
     [CFG, "models[0].data", "two batches of 8"]),
    ("data a fifo-like device", DATA.replace("d.npz", "/dev/null"), RUN,
     [CFG, "models[0].data", "not a regular file"]),
    # --- model size options: positive integers only
    *[(f"model option {k}: {v}", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{name: "
       f"{m}, options: {{{k}: {v}}}}}]\n", RUN, [CFG, "models[0]", k] + extra)
      for m, k, v, extra in [
          ("mlp", "hidden", "[-5]", ["-5"]), ("mlp", "hidden", "[0]", ["between 1"]),
          ("mlp", "hidden", "[a]", ["'a'"]), ("mlp", "hidden", "[true]", ["True"]),
          ("mlp", "hidden", "[]", ["empty"]), ("mlp", "hidden", "[1.5]", ["1.5"]),
          ("mlp", "hidden", "64", ["list"]), ("mlp", "input_dim", "0", ["between 1"]),
          ("mlp", "input_dim", "-3", ["-3"]), ("mlp", "input_dim", "true", ["True"]),
          ("mlp", "input_dim", "2.5", ["2.5"]), ("mlp", "num_classes", "0", []),
          ("mlp", "input_dim", "10000000", ["1,000,000"]), ("cnn", "widths", "[0, 8]", []),
          ("cnn", "image_size", "-1", []), ("lstm", "seq_len", "0", []),
          ("transformer", "n_heads", "0", []), ("transformer", "vocab_size", "'big'", []),
          ("mlp", "hiden", "[8]", ["unknown option"])]],
    ("cnn widths and blocks", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{name: cnn, "
     "options: {widths: [8], blocks: [1, 1]}}]\n", RUN, [CFG, "models[0]", "same length"]),
    # --- framework options, against each framework's published table
    ("pytorch option typo", PT + "framework_settings: {pytorch: {options: {compiel: true}}}\n",
     RUN, [CFG, "framework_settings.pytorch.options.compiel", "did you mean 'compile'"]),
    ("pytorch compile mode", PT + "framework_settings: {pytorch: {options: {compile: fast}}}\n",
     RUN, [CFG, "framework_settings.pytorch.options.compile", "max-autotune"]),
    ("pytorch compile number", PT + "framework_settings: {pytorch: {options: {compile: 1}}}\n",
     RUN, [CFG, "framework_settings.pytorch.options.compile"]),
    ("pytorch channels_last string", PT + "framework_settings: {pytorch: {options: "
     "{channels_last: 'yes'}}}\n", RUN, [CFG, "options.channels_last", "true or false"]),
    ("tensorflow option typo", PT.replace("pytorch", "tensorflow") + "framework_settings: "
     "{tensorflow: {options: {jit: true}}}\n", RUN,
     [CFG, "framework_settings.tensorflow.options.jit", "jit_compile"]),
    ("tensorflow jit string", PT.replace("pytorch", "tensorflow") + "framework_settings: "
     "{tensorflow: {options: {jit_compile: 'on'}}}\n", RUN, [CFG, "options.jit_compile"]),
    ("jax donate number", PT.replace("pytorch", "jax") + "framework_settings: {jax: {options: "
     "{donate: 0}}}\n", RUN, [CFG, "framework_settings.jax.options.donate", "true or false"]),
    ("numpy takes no options", PT.replace("pytorch", "numpy") + "framework_settings: {numpy: "
     "{options: {fast: true}}}\n", RUN,
     [CFG, "framework_settings.numpy.options.fast", "takes no options"]),
    ("option via alias", PT + "framework_settings: {torch: {options: {compiel: true}}}\n", RUN,
     [CFG, "framework_settings.pytorch.options.compiel"]),
    ("option nan", "frameworks: [dummy]\nmodels: [mlp]\nbatch_sizes: [8]\n"
     "framework_settings: {dummy: {options: {sleep_s: .nan}}}\n", RUN,
     [CFG, "framework_settings.dummy.options", "finite"]),
    # --- enough samples for two batches (the first step is timed apart)
    ("train samples below two batches", BASE.replace("[8]", "[64]") + "train_samples: 100\n",
     RUN, [CFG, "train_samples", "two batches of 64", "128"]),
    ("model train samples below two batches", "frameworks: [pytorch]\nbatch_sizes: [4]\n"
     "models: [{name: mlp, train_samples: 7}]\n", RUN, [CFG, "models[0].train_samples", "8"]),
    ("command-line batch too big", BASE + "train_samples: 16\n",
     RUN + ["--batch-sizes", "16"], ["train_samples", "two batches"]),
    # --- nonsense refused
    ("output_dir empty", BASE + "output_dir: ''\n",
     ["run", "--config", CFG, "--no-report"], [CFG, "output_dir"]),
    ("output_dir blank", BASE + "output_dir: '   '\n",
     ["run", "--config", CFG, "--no-report"], [CFG, "output_dir", "blank"]),
    ("exclude every framework", BASE + "exclude: [{framework: pytorch}]\n", RUN,
     [CFG, "exclude", "remove every cell"]),
    ("exclude every model", BASE + "exclude: [{model: mlp}]\n", RUN,
     [CFG, "exclude", "remove every cell"]),
    ("exclude by two rules", BASE + "devices: [cpu, 'cuda:0']\nexclude: [{device: cpu}, "
     "{device: 'cuda:0'}]\n", RUN, [CFG, "exclude", "remove every cell"]),
    ("excluded by the command line", BASE + "exclude: [{precision: bf16}]\n",
     RUN + ["--precisions", "bf16"], ["command line", "exclude"]),
    # --- messages: long values cut, limits stated, the real bad key first
    ("huge framework name", f"frameworks: [{LONG}]\nmodels: [mlp]\nbatch_sizes: [8]\n", RUN,
     [CFG, "frameworks", "…"]),
    ("huge device name", BASE + f"devices: [{LONG}]\n", RUN, [CFG, "devices", "…"]),
    ("long unknown key", BASE + f"{LONG[:1000]}: 1\n", RUN, [CFG, "unknown key", "…"]),
    ("huge key is a YAML error", BASE + f"{LONG}: 1\n", RUN, [CFG, "YAML", "line 4"]),
    ("huge model name", f"frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{LONG}]\n", RUN,
     [CFG, "models[0].name", "…"]),
    ("huge string epochs", BASE + f"epochs: {LONG}\n", RUN, [CFG, "epochs", "…"]),
    ("label 65 characters", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{name: mlp, "
     f"label: {'a' * 65}}}]\n", RUN, [CFG, "models[0].label", "1 to 64 characters"]),
    ("label with a slash", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{name: mlp, "
     "label: 'a/b'}]\n", RUN, [CFG, "models[0].label", "'a/b'"]),
    ("missing batch sizes hides nothing", "frameworks: [pytorch]\nmodels: [mlp]\n"
     "epochs: many\n", RUN, [CFG, "epochs", "'many'", "1 more problem: batch_sizes"]),
    ("missing keys and a typo", "framewroks: [pytorch]\nmodels: [mlp]\n", RUN,
     [CFG, "framewroks", "'frameworks'", "more problems"]),
    ("first bad key in file order", "frameworks: [pytorch]\nmodels: [mlp]\nbatch_sizes: [8]\n"
     "seed: -1\nepochs: 0\n", RUN, [CFG + ": seed", "1 more problem: epochs"]),
    # --- more wrong types and ranges
    *[(f"{key} {value}", BASE + f"{key}: {value}\n", RUN, [CFG, key]) for key, value in [
        ("timeout_s", "-1"), ("timeout_s", "1e30"), ("warmup_iterations", "-1"),
        ("timed_iterations", "0"), ("eval_samples", "0"), ("train_samples", "-5"),
        ("seed", "4294967296"), ("seed", "1.5"), ("threads", "-1"), ("epochs", "[1]"),
        ("init", "random"), ("verify", "'yes'"), ("ceiling", "2"), ("repeats", "1001"),
        ("exclude", "{framework: pytorch}"), ("framework_settings", "[pytorch]"),
        ("models", "mlp"), ("precisions", "[fp8]"), ("precisions", "[]"), ("devices", "[]"),
        ("devices", "['cuda:100']"), ("devices", "[1]"), ("frameworks", "[]"),
        ("frameworks", "[caffe]"), ("frameworks", "[1]"), ("tf32", "null"),
        ("output_dir", "[a]"), ("epoch", "2"), ("batch_size", "[8]")]],
    ("model preset unknown", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{name: mlp, "
     "preset: huge}]\n", RUN, [CFG, "models[0]", "huge"]),
    ("model without name", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{preset: tiny}]"
     "\n", RUN, [CFG, "models[0].name", "missing"]),
    ("model a number", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [5]\n", RUN,
     [CFG, "models[0]"]),
    ("transformer heads", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{name: "
     "transformer, options: {d_model: 30, n_heads: 4}}]\n", RUN, [CFG, "divisible"]),
    ("exclude batch zero", BASE + "exclude: [{batch_size: 0}]\n", RUN,
     [CFG, "exclude[0].batch_size"]),
    ("exclude device gpu", BASE + "exclude: [{device: gpu}]\n", RUN,
     [CFG, "exclude[0].device"]),
    ("interpreter empty", BASE + "framework_settings: {pytorch: {python: ''}}\n", RUN,
     [CFG, "framework_settings.pytorch.python"]),
    # --- YAML: merge keys work like yaml.safe_load; a merge of nonsense is still an error
    ("merge key of a scalar", "frameworks: [pytorch]\nbatch_sizes: [8]\nmodels: [{<<: 5, "
     "name: mlp}]\n", RUN, [CFG, "line"]),
    ("merge brings a bad key", "d: &d {name: mlp, presett: tiny}\nframeworks: [pytorch]\n"
     "batch_sizes: [8]\nmodels: [{<<: *d}]\n", RUN, [CFG, "unknown key"]),
    # --- the command line
    ("negative batch size flag", BASE, RUN + ["--batch-sizes", "-1"],
     ["command line", "batch_sizes[0]", "greater than 0"]),
    ("negative batch size among others", BASE, RUN + ["--batch-sizes", "8", "-4"],
     ["command line", "batch_sizes[1]"]),
    ("negative batch size with =", BASE, RUN + ["--batch-sizes=-2"],
     ["command line", "batch_sizes[0]"]),
    ("fractional batch size flag", BASE, RUN + ["--batch-sizes", "1.5"], ["--batch-sizes"]),
    ("negative epochs flag", BASE, RUN + ["--epochs", "-1"], ["command line", "epochs"]),
    ("zero repeats flag", BASE, RUN + ["--repeats", "0"], ["command line", "repeats"]),
    ("unknown framework flag", BASE, RUN + ["--frameworks", "caffe"],
     ["command line", "frameworks"]),
    ("huge framework flag", BASE, RUN + ["--frameworks", LONG[:5000]],
     ["command line", "frameworks", "…"]),
    ("unknown option", BASE, RUN + ["--frobnicate"], ["command line", "--frobnicate"]),
    ("only and failed", BASE, RUN + ["--only", "x", "--failed"], ["command line"]),
    ("config is a directory", None, ["run", "--config", "{tmp}", "--no-report"],
     ["{tmp}", "directory"]),
    ("config /dev/zero", None, ["run", "--config", "/dev/zero", "--no-report"],
     ["/dev/zero", "a device"]),
    ("config /dev/null", None, ["run", "--config", "/dev/null", "--no-report"],
     ["/dev/null", "a device"]),
    ("config too large", {"bad.yaml": BASE + "#" * (5 * 1024 * 1024) + "\n"}, RUN,
     [CFG, "too large"]),
    ("config missing", None, ["run", "--config", "{tmp}/none.yaml"],
     ["{tmp}/none.yaml", "not found"]),
    ("config a broken link", None, ["run", "--config", "/proc/self/fd/999999"],
     ["/proc/self/fd/999999"]),
    ("output under /proc", BASE, ["run", "--config", CFG, "--output", "/proc/mlbench-out",
                                  "--no-report"], ["/proc/mlbench-out", "not writable"]),
    ("report dir under /proc", BASE, RUN[:-1] + ["--report-dir", "/proc/mlbench-rep"],
     ["/proc/mlbench-rep", "report directory", "not writable"]),
    ("report dir a file", {"bad.yaml": BASE, "f": "x"}, RUN[:-1] + ["--report-dir",
                                                                  "{tmp}/f/sub"],
     ["{tmp}/f", "report directory", "not a directory"]),
    ("report output under /proc", {"x.json": "{}"}, ["report", "--results", "{tmp}/x.json",
                                                     "--output", "/proc/mlbench-rep"],
     ["/proc/mlbench-rep", "not writable"]),
    ("verify output under /proc", BASE, ["verify", "--config", CFG, "--output",
                                         "/proc/mlbench-verify"],
     ["/proc/mlbench-verify", "not writable"]),
    ("report results /dev/zero", None, ["report", "--results", "/dev/zero", "--output",
                                        "{tmp}/rep"], ["/dev/zero", "a device"]),
    ("report results empty dir", {"d/x": "x"}, ["report", "--results", "{tmp}/d", "--output",
                                                "{tmp}/rep"], ["{tmp}/d", "no results"]),
    ("compare /dev/null", None, ["compare", "/dev/null", "/dev/null"],
     ["/dev/null", "a device"]),
    ("compare missing", None, ["compare", "{tmp}/a.json", "{tmp}/b.json"],
     ["{tmp}/a.json", "not found"]),
]

# Stored files that are not what mlbench wrote: `report` (and compare) must exit 2 or skip the
# bad record with a warning; here, the cases where the whole file is unusable.
DEEP = "[" * 100_000 + "]" * 100_000
CASES += [
    ("results.json 100k deep", {"x.json": '{"schema": 1, "run": {}, "cells": ' + DEEP + "}"},
     ["report", "--results", "{tmp}/x.json", "--output", "{tmp}/rep"],
     ["{tmp}/x.json", "nested deeper"]),
    ("results.json deep object", {"x.json": '{"a":' * 100_000 + "1" + "}" * 100_000},
     ["compare", "{tmp}/x.json", "{tmp}/x.json"], ["{tmp}/x.json", "nested deeper"]),
    ("results.json NaN", {"x.json": '{"schema": 1, "run": {}, "cells": [NaN]}'},
     ["report", "--results", "{tmp}/x.json", "--output", "{tmp}/rep"],
     ["{tmp}/x.json", "NaN"]),
    ("results.json run a list", {"x.json": '{"schema": 1, "run": [1], "cells": []}'},
     ["report", "--results", "{tmp}/x.json", "--output", "{tmp}/rep"],
     ["{tmp}/x.json", "'run'"]),
    ("run.json config a list", {"r/run.json": '{"config": [1, 2]}', "r/results.jsonl": ""},
     ["report", "--results", "{tmp}/r", "--output", "{tmp}/rep"],
     ["{tmp}/r/run.json", "config"]),
    ("run.json sessions a string", {"r/run.json": '{"config": {}, "sessions": "x"}'},
     ["run", "--resume", "--output", "{tmp}/r", "--no-report"],
     ["{tmp}/r/run.json", "sessions"]),
    ("run.json a list", {"r/run.json": "[1]"},
     ["run", "--resume", "--output", "{tmp}/r", "--no-report"],
     ["{tmp}/r/run.json", "not mlbench output"]),
    ("run.json deep", {"r/run.json": DEEP},
     ["run", "--resume", "--output", "{tmp}/r", "--no-report"],
     ["{tmp}/r/run.json", "nested deeper"]),
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
    assert "allow_pickle" not in err  # never suggest loading pickles
    assert len(lines[0]) < 1200, len(lines[0])  # echoed values are cut


@pytest.mark.parametrize("name,files,args,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(tmp_path, capsys, name, files, args, words):
    args, words = _materialise(tmp_path, files, args, words)
    rc, out, err = run_inproc(args, capsys)
    _one_clear_line(rc, out, err, words)


LOCATIONS = (CFG, "{tmp}", "command line", "--", "/dev/", "/proc/")


@pytest.mark.parametrize("name,files,args,words", CASES, ids=[c[0] for c in CASES])
def test_every_case_pins_where_the_problem_is(name, files, args, words):
    """A case whose expected line names no file, path or flag would pass on any error line."""
    assert any(loc in w for w in words for loc in LOCATIONS) or "train_samples" in words, name


@pytest.mark.slow  # a second or more: a real sweep, process or scan
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
    from mlbench.results import store
    loaded = store.load(jsonl)
    assert len(loaded.attempts) == 1 and "torn last line" in loaded.warnings[0]
    json.dumps(loaded.attempts)


def _worker_options(name: str) -> dict:
    """The OPTIONS table a worker script defines (read from its source: no framework import)."""
    import ast
    from pathlib import Path
    tree = ast.parse((Path(__file__).parent.parent / "workers" / f"{name}_worker.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "OPTIONS":
            return {k.value: v for k, v in zip(node.value.keys, node.value.values)}
    return {}


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax", "numpy"])
def test_the_parent_option_table_matches_each_worker(framework):
    """mlbench/config/fwoptions.py publishes what each worker accepts; a worker that grows or drops
    an option without the table would make the config refuse a good option or pass a bad one."""
    from mlbench.config import fwoptions
    assert set(fwoptions.TABLE[framework]) == set(_worker_options(framework))


def test_the_compile_modes_match_the_pytorch_worker():
    import ast
    from pathlib import Path

    from mlbench.config import fwoptions
    src = (Path(__file__).parent.parent / "workers" / "pytorch_worker.py").read_text()
    modes = next(ast.literal_eval(n.value) for n in ast.parse(src).body
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") ==
                 "COMPILE_MODES")
    assert tuple(modes) == fwoptions.COMPILE_MODES


# Input that is odd but sensible: accepted (exit 0), with a warning line where the user would
# otherwise be surprised. (id, files, args, exit code, words in a `warning:` line or None)
DUMMY = ("frameworks: [dummy]\nmodels: [{name: mlp, preset: tiny}]\nbatch_sizes: [2]\n"
         "verify: false\nceiling: false\n")
ACCEPTED = [
    ("options for a framework not in the sweep", DUMMY + "framework_settings: {pytorch: "
     "{options: {compile: true}}}\n", RUN, 0,
     ["framework_settings.pytorch.options are not used", "pytorch is not in frameworks"]),
    ("YAML merge keys", "frameworks: [dummy]\nbatch_sizes: [2]\nverify: false\n"
     "models: [&d {name: mlp, preset: tiny}, {<<: *d, label: m2}]\n", RUN, 0, None),
    ("float64 data", {"bad.yaml": DATA, "d.npz": _data(x_train=_np().zeros((8, 4)))}, RUN, 0,
     ["cast x_train float64 -> float32"]),
    ("int8 labels", {"bad.yaml": DATA, "d.npz": _data(y_train=(_np().arange(8) % 10).astype(
        "int8"))}, RUN, 0, ["y_train int8 -> int32"]),
    ("memory limit at the floor", DUMMY + "memory_limit_mb: 160\n", RUN, 0, None),
    ("batch exactly two per epoch", DUMMY.replace("[2]", "[4]") + "train_samples: 8\n", RUN, 0,
     None),
    ("an exclude that leaves one cell", DUMMY.replace("[2]", "[2, 4]") +
     "exclude: [{batch_size: 2}]\n", RUN, 0, None),
]


@pytest.mark.parametrize("name,files,args,rc,words", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_odd_but_sensible_input_is_accepted(tmp_path, capsys, name, files, args, rc, words):
    args, _ = _materialise(tmp_path, files, args, [])
    got, out, err = run_inproc(args, capsys)
    assert got == rc, err
    assert "Traceback" not in out + err and "error:" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    if words is None:
        assert not warnings, warnings
    else:
        assert any(all(w in line for w in words) for line in warnings), err
