"""Hostile inputs, third round (issue 25): the classes, not only the cases found.

Writes never go through a planted symbolic link (every path mlbench writes); cell ids are unique by
construction or the config is refused naming both entries; empty values are refused; an exclude
rule's label must exist; an unexpected error is one line with a log of the traceback (exit 3);
processes a cell started in a session of their own are killed with it; and the silently wrong
cases (--only removed by an override, --archive --resume, a local executor with an address, `~`
and control characters in output_dir, an absurd INPUT, another run's attempts, an interpreter that
never answers, a relative interpreter path, builders bound without `def`).
"""
from __future__ import annotations

import importlib
import itertools
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import yaml

import mlbench

from cliutil import results, run_inproc, write_config
from mlbench.config import schema as cfg, guards
from mlbench.results import store
from mlbench.errors import UserError

VICTIM_TEXT = "precious data, not mlbench's\n"


def _one_line(rc: int, err: str, want_rc: int = 2) -> str:
    assert rc == want_rc, err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _cfg(tmp_path: Path, name: str = "c.yaml", **fields) -> Path:
    return write_config(tmp_path / name, **fields)


@pytest.fixture
def done_run(tmp_path, capsys):
    """A finished two-cell dummy run (batch sizes 1 and 2), no gate, no report."""
    c = _cfg(tmp_path, output_dir=str(tmp_path / "out"))
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    assert rc == 0, err
    return tmp_path / "out"


def _victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_text(VICTIM_TEXT)
    return v


# --- 3. planted symbolic links, at every path mlbench writes -------------------------------------
CELL = "dummy-mlp-cpu-bs1-fp32"
RUN_FILES = [".mlbench.lock", "results.jsonl", "run.json", "results.json", "results.csv",
             "verify.json", "ceilings.json", f"cells/{CELL}/request.json",
             f"cells/{CELL}/command.txt"]
COMMANDS = {"resume": ["--resume"], "only": ["--only", CELL], "failed": ["--failed"]}


# a done cell's own files are written only when it runs again: --only
CASES = [(rel, mode) for rel in RUN_FILES for mode in sorted(COMMANDS)
         if mode == "only" or not rel.startswith("cells/")]


@pytest.mark.parametrize("rel,mode", CASES)
def test_a_planted_link_in_the_run_directory_is_never_written_through(done_run, tmp_path,
                                                                      capsys, rel, mode):
    victim = _victim(tmp_path)
    target = done_run / rel
    if target.exists():
        target.unlink()
    target.symlink_to(victim)
    before = {p: p.read_bytes() for p in done_run.rglob("*") if p.is_file() and
              not p.is_symlink()}
    rc, _, err = run_inproc(["run", "-o", str(done_run), "--no-report", *COMMANDS[mode]], capsys)
    assert victim.read_text() == VICTIM_TEXT
    assert target.is_symlink()
    line = _one_line(rc, err)
    assert "symbolic link" in line and target.name in line
    # the measured attempts are intact
    after = store.read_jsonl(done_run / "results.jsonl")[0] if rel != "results.jsonl" else []
    assert len(after) in (0, 2) and all(p.read_bytes() == b for p, b in before.items()
                                        if p.name == "results.jsonl")


@pytest.mark.parametrize("name", ["index.html", "summary.csv", "aggregated.parquet"])
def test_the_report_never_writes_through_a_planted_link(done_run, tmp_path, capsys, name):
    victim = _victim(tmp_path)
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / name).symlink_to(victim)
    rc, _, err = run_inproc(["report", "--results", str(done_run), "-o", str(rep)], capsys)
    assert "symbolic link" in _one_line(rc, err) and victim.read_text() == VICTIM_TEXT


def test_archive_and_a_cell_directory_link_are_refused(done_run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (done_run / "archive").symlink_to(elsewhere)
    rc, _, err = run_inproc(["run", "-c", str(_cfg(tmp_path, output_dir=str(done_run))),
                             "--archive", "--no-report"], capsys)
    assert "symbolic link" in _one_line(rc, err) and not any(elsewhere.iterdir())


WRITERS = {
    "atomic_write": lambda p: store.atomic_write(p, "x"),
    "write_text": lambda p: guards.write_text(p, "x"),
    "append": lambda p: guards.open_for_write(p, p.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT),
    "gate verdicts": lambda p: importlib.import_module(
        "mlbench.analysis.gate_verdicts").GateReport(rows=[]).write(p.parent),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("planted", ["link", "dangling link", "fifo", "directory"])
def test_every_writer_refuses_links_and_special_files(tmp_path, writer, planted):
    victim = _victim(tmp_path)
    d = tmp_path / "run"
    d.mkdir()
    p = d / "verify.json"
    if planted == "link":
        p.symlink_to(victim)
    elif planted == "dangling link":
        p.symlink_to(tmp_path / "created-elsewhere")
    elif planted == "fifo":
        os.mkfifo(p)
    else:
        p.mkdir()
    with pytest.raises(UserError):
        WRITERS[writer](p)
    assert victim.read_text() == VICTIM_TEXT and not (tmp_path / "created-elsewhere").exists()


def test_a_planted_temporary_file_link_is_not_followed(tmp_path):
    victim = _victim(tmp_path)
    p = tmp_path / "run.json"
    (tmp_path / f".run.json.tmp{os.getpid()}").symlink_to(victim)
    with pytest.raises(UserError):
        store.atomic_write(p, "{}")
    assert victim.read_text() == VICTIM_TEXT


def test_o_nofollow_closes_the_race_after_the_check(tmp_path, monkeypatch):
    """A link planted between the check and the open is still not followed."""
    victim = _victim(tmp_path)
    p = tmp_path / "request.json"
    monkeypatch.setattr(guards, "refuse_special", lambda path, what: p.symlink_to(victim))
    with pytest.raises(UserError, match="symbolic link"):
        guards.write_text(p, "x")
    assert victim.read_text() == VICTIM_TEXT


def test_the_source_has_no_write_outside_the_guards():
    """Every writer goes through mlbench.config.guards: a new open(..., "w") elsewhere fails
    here."""
    import re
    root = Path(mlbench.__file__).parent
    allowed = {"guards.py", "summary.py"}  # summary: the schema file of the source tree itself
    pattern = re.compile(r"(?<![\w.])open\([^)]*['\"][wax]b?\+?['\"]|(?<!guards)\.write_text\("
                         r"|\.write_bytes\(|os\.open\(")
    offenders = []
    for f in root.rglob("*.py"):
        if f.name in allowed or f.parent.name == "report":
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                offenders.append(f"{f.name}:{i}: {line.strip()}")
    assert not offenders, offenders


# --- 2. cell ids unique by construction -----------------------------------------------------------
def _digest_label(options: dict) -> str:
    return cfg.ModelEntry.model_validate({"name": "mlp", "options": options}).id_label


COLLISIONS = {
    "variant labels": dict(frameworks=["dummy", {"framework": "dummy", "label": "dummy-fast"}],
                           models=[{"name": "mlp", "label": "fast-m"},
                                   {"name": "mlp", "label": "m", "preset": "small"}]),
    "mode labels": dict(frameworks=["pytorch"], modes=["default", "best"],
                        models=[{"name": "mlp", "label": "compile-x"},
                                {"name": "mlp", "label": "x", "preset": "small"}]),
    "presets": dict(frameworks=["dummy", {"framework": "dummy", "label": "dummy-a"}],
                    models=[{"name": "mlp", "preset": "tiny"},
                            {"name": "mlp", "label": "a-mlp.tiny", "preset": "large"}]),
    "options hashes": dict(frameworks=["dummy", {"framework": "dummy", "label": "dummy-b"}],
                           models=[{"name": "mlp", "options": {"hidden": [40]}},
                                   {"name": "mlp", "preset": "tiny",
                                    "label": "b-" + _digest_label({"hidden": [40]})}]),
}


@pytest.mark.parametrize("shape", sorted(COLLISIONS))
def test_two_cells_under_one_id_are_refused_naming_both(tmp_path, capsys, shape):
    fields = COLLISIONS[shape]
    c = _cfg(tmp_path, batch_sizes=[8], **fields)
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    line = _one_line(rc, err)
    assert "share the id" in line and not (tmp_path / "results").exists()
    # both (framework, model) pairs named: computed here from the config
    fw_labels = [f if isinstance(f, str) else f["label"] for f in fields["frameworks"]]
    if fields.get("modes") == ["default", "best"]:
        fw_labels.append("pytorch-compile")
    model_labels = [m.get("label") or (f"mlp.{m['preset']}" if m.get("preset") else
                                       _digest_label(m["options"])) for m in fields["models"]]
    pairs = [(f, m) for f in fw_labels for m in model_labels]
    ids = [f"{f}-{m}" for f, m in pairs]
    clash = next(i for i in ids if ids.count(i) > 1)
    for f, m in (p for p, i in zip(pairs, ids) if i == clash):
        assert f"framework '{f}' with model '{m}'" in line


LABELS = ["a", "a-b", "b", "b-a", "a-b-a"]


def test_every_accepted_config_has_unique_cell_ids():
    """Across many label combinations: accepted iff no two (framework, model) pairs join to one
    id (computed here with the id's formula)."""
    seen = 0
    for fws in itertools.combinations(LABELS, 2):
        for models in itertools.combinations(LABELS, 2):
            raw = {"frameworks": [{"framework": "dummy", "label": f"dummy-{f}"} for f in fws],
                   "models": [{"name": "mlp", "label": m, "preset": p}
                              for m, p in zip(models, ("tiny", "small"))],
                   "batch_sizes": [4]}
            ids = [f"dummy-{f}-{m}" for f in fws for m in models]
            clash = len(set(ids)) < len(ids)
            try:
                conf = cfg.validate(raw, "c.yaml")
            except UserError as exc:
                assert clash and "share the id" in str(exc), (fws, models, exc)
                seen += 1
                continue
            assert not clash, (fws, models)
            from mlbench.run.matrix import expand
            got = [c.cell_id for c in expand(conf)]
            assert len(set(got)) == len(got)
    assert seen > 0


# --- 4. empty values --------------------------------------------------------------------------
EMPTY = [["run", "--only", ""], ["run", "--only", ","], ["run", "--only", ",,"], ["run", "-o", ""],
         ["run", "--output="], ["run", "--models", ""], ["run", "--frameworks", ""],
         ["run", "--frameworks="], ["run", "--devices", ","], ["run", "--batch-sizes", ""],
         ["run", "--precisions", " "], ["run", "--report-dir", ""], ["run", "-c", ""],
         ["report", "-o", ""], ["report", "--results", ""], ["gate", "-o", ""],
         ["compare", "", "x"]]


@pytest.mark.parametrize("args", EMPTY, ids=[" ".join(map(repr, a)) for a in EMPTY])
def test_an_empty_value_is_refused_and_nothing_runs(tmp_path, capsys, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_inproc(args + (["--no-report"] if args[0] == "run" else []), capsys)
    assert "empty" in _one_line(rc, err)
    assert list(tmp_path.iterdir()) == []  # nothing written here ("" is not ".")


# --- 5. exclude label --------------------------------------------------------------------------
def test_a_misspelt_exclude_label_is_refused_and_a_right_one_excludes(tmp_path, capsys):
    models = [{"name": "mlp", "preset": "tiny"}, {"name": "mlp", "preset": "small"}]
    bad = _cfg(tmp_path, "bad.yaml", models=models, batch_sizes=[8, 16],
               exclude=[{"label": "mlp.tinyy", "batch_size": 16}])
    rc, _, err = run_inproc(["run", "-c", str(bad), "--no-report"], capsys)
    line = _one_line(rc, err)
    assert "did you mean 'mlp.tiny'" in line and "exclude[0].label" in line
    good = _cfg(tmp_path, "good.yaml", models=models, batch_sizes=[8, 16],
                exclude=[{"label": "mlp.tiny", "batch_size": 16}])
    rc, _, err = run_inproc(["run", "-c", str(good), "--no-report"], capsys)
    assert rc == 0, err
    # mlp's default preset (small) is labelled plainly "mlp"
    want = {"dummy-mlp.tiny-cpu-bs8-fp32", "dummy-mlp-cpu-bs8-fp32", "dummy-mlp-cpu-bs16-fp32"}
    assert {c["cell_id"] for c in results(tmp_path / "results")} == want


# --- 6. processes that left the worker's session -----------------------------------------------
def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
@pytest.mark.parametrize("fault", ["none", "hang"])
def test_a_process_in_a_new_session_does_not_outlive_its_cell(tmp_path, capsys, fault):
    pidfile = tmp_path / "child.pid"
    c = _cfg(tmp_path, batch_sizes=[1], timeout_s=4 if fault == "hang" else 30,
             framework_settings={"dummy": {"options": {
                 "detached_child": str(pidfile), "child_s": 1.2, "fault": fault}}})
    run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    pid = int(pidfile.read_text())
    (rec,) = results(tmp_path / "results")
    assert rec["status"] == ("ok" if fault == "none" else "timeout")
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid)
    assert rec["leftover_processes"].startswith("killed 1 leftover process: ")
    assert str(pid) in rec["leftover_processes"]


def test_a_pid_reused_by_another_process_is_left_alone():
    from mlbench.run import launcher
    me = psutil.Process()
    seen = {me.pid: (me.create_time() - 100.0, "an older process with this pid")}
    assert launcher._kill_leftovers(seen) == [] and me.is_running()


# --- 7. unexpected errors, and the tracebacks found --------------------------------------------
def test_an_unexpected_error_is_one_line_exit_3_with_the_traceback_in_a_log(tmp_path, capsys,
                                                                           monkeypatch):
    from mlbench import cli

    def boom(*a, **k):
        raise KeyError("planted bug")
    monkeypatch.setattr(cli, "_load_config", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    rc, _, err = run_inproc(["run", "-c", str(_cfg(tmp_path)), "--no-report"], capsys)
    line = _one_line(rc, err, want_rc=3)
    assert "internal error in 'mlbench run'" in line and "KeyError" in line
    log = Path(line.rsplit("the traceback is in ", 1)[1].strip())
    assert log.parent == tmp_path and "Traceback" in log.read_text()
    assert "planted bug" in log.read_text()


def test_the_readme_documents_the_exit_codes():
    text = (Path(mlbench.__file__).parent.parent / "README.md").read_text()
    import re
    table = text[text.index("Exit codes:"):]
    for code in ("0", "1", "2", "3", "130", "143"):
        assert re.search(rf"^\|[^|\n]*\b{code}\b[^|\n]*\|", table, re.M), code
    assert "internal error" in table


LONG = "n" * 256


@pytest.mark.parametrize("where", ["-o", "output_dir", "--report-dir", "report -o", "gate -o",
                                   "long path"])
def test_names_the_os_cannot_hold_are_refused(tmp_path, capsys, done_run, where):
    c = _cfg(tmp_path)
    long_dir = str(tmp_path / LONG)
    args = {"-o": ["run", "-c", str(c), "-o", long_dir, "--no-report"],
            "output_dir": ["run", "-c", str(_cfg(tmp_path, "o.yaml", output_dir=long_dir)),
                           "--no-report"],
            "--report-dir": ["run", "-c", str(c), "--report-dir", long_dir],
            "report -o": ["report", "--results", str(done_run), "-o", long_dir],
            "gate -o": ["gate", "-c", str(c), "-o", long_dir],
            "long path": ["run", "-c", str(c), "-o", str(tmp_path / ("d/" * 2100)),
                          "--no-report"]}[where]
    rc, _, err = run_inproc(args, capsys)
    assert "bytes" in _one_line(rc, err) or "too long" in err


@pytest.mark.parametrize("where", ["-o", "output_dir", "model source"])
def test_a_symlink_loop_is_refused(tmp_path, capsys, where):
    (tmp_path / "la").symlink_to(tmp_path / "lb")
    (tmp_path / "lb").symlink_to(tmp_path / "la")
    if where == "-o":
        args = ["run", "-c", str(_cfg(tmp_path)), "-o", str(tmp_path / "la")]
    elif where == "output_dir":
        args = ["run", "-c", str(_cfg(tmp_path, output_dir=str(tmp_path / "la")))]
    else:
        args = ["run", "-c", str(_cfg(tmp_path, frameworks=["pytorch"], models=[
            {"name": "mine", "source": str(tmp_path / "la")}]))]
    rc, _, err = run_inproc(args + ["--no-report"], capsys)
    assert "loop" in _one_line(rc, err)


def test_a_lock_that_is_a_directory_is_refused(done_run, capsys):
    (done_run / ".mlbench.lock").unlink()
    (done_run / ".mlbench.lock").mkdir()
    rc, _, err = run_inproc(["run", "-o", str(done_run), "--resume", "--no-report"], capsys)
    assert ".mlbench.lock" in _one_line(rc, err)


def test_nan_in_a_variants_options_is_refused_like_under_framework_settings(tmp_path, capsys):
    for fields in ({"frameworks": [{"framework": "dummy", "label": "d2",
                                    "options": {"sleep_s": float("nan")}}]},
                   {"framework_settings": {"dummy": {"options": {"sleep_s": float("nan")}}}}):
        rc, _, err = run_inproc(["run", "-c", str(_cfg(tmp_path, **fields)), "--no-report"],
                                capsys)
        assert "must be finite" in _one_line(rc, err)


def test_a_model_file_nested_beyond_the_parser_is_a_clear_error_not_the_yaml(tmp_path, capsys):
    src = tmp_path / "deep.py"
    src.write_text("INPUT = {'kind': 'vector', 'shape': [4], 'num_classes': 2}\n"
                   f"x = {'not ' * 150_000}True\ndef pytorch():\n    pass\n")
    c = _cfg(tmp_path, frameworks=["pytorch"], models=[{"name": "mine", "source": str(src)}])
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    line = _one_line(rc, err)
    assert "nested too deeply" in line and str(src) in line and "YAML" not in line


# --- 8. silently wrong ------------------------------------------------------------------------
def test_only_with_an_override_that_removes_the_cell_is_refused(done_run, capsys):
    rc, _, err = run_inproc(["run", "-o", str(done_run), "--only", CELL, "--batch-sizes", "16",
                             "--no-report"], capsys)
    line = _one_line(rc, err)
    assert CELL in line and "--batch-sizes" in line


def test_archive_with_resume_is_contradictory(done_run, capsys):
    rc, _, err = run_inproc(["run", "-o", str(done_run), "--resume", "--archive"], capsys)
    assert "--archive" in _one_line(rc, err) and not (done_run / "archive").exists()


def test_a_local_executor_with_an_address_is_refused(tmp_path, capsys):
    c = _cfg(tmp_path, executor={"kind": "local", "address": "auto"})
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    assert "executor.address" in _one_line(rc, err)


def test_output_dir_expands_the_home_folder(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_inproc(["run", "-c", str(_cfg(tmp_path, output_dir="~/x")), "--no-report"],
                            capsys)
    assert rc == 0, err
    assert (home / "x" / "results.json").is_file() and not (tmp_path / "~").exists()


@pytest.mark.parametrize("name", ["results\n", "res\rults", "a\x1b[2Jb", "tab\there"])
def test_control_characters_in_output_dir_are_refused(tmp_path, capsys, name):
    rc, _, err = run_inproc(["run", "-c", str(_cfg(tmp_path, output_dir=str(tmp_path / name))),
                             "--no-report"], capsys)
    assert "control character" in _one_line(rc, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("shape", [[1_000_000, 1_000_000, 3], [20_000, 20_000, 1]])
def test_an_absurd_input_size_is_refused_though_each_dimension_passes(tmp_path, capsys, shape):
    src = tmp_path / "m.py"
    src.write_text(f"INPUT = {{'kind': 'image', 'shape': {shape}, 'num_classes': 10}}\n"
                   "def pytorch():\n    pass\n")
    c = _cfg(tmp_path, frameworks=["pytorch"], models=[{"name": "mine", "source": str(src)}])
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    assert "values per sample" in _one_line(rc, err)


def test_an_attempt_of_another_run_is_warned_about(done_run, tmp_path, capsys):
    jsonl = done_run / "results.jsonl"
    lines = jsonl.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["run_id"] = "0123456789ab"
    jsonl.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    rc, _, err = run_inproc(["report", "--results", str(done_run), "-o", str(tmp_path / "r")],
                            capsys)
    assert rc == 0 and "another run's id" in err and "0123456789ab" in err
    rc, _, err = run_inproc(["run", "-o", str(done_run), "--resume", "--no-report"], capsys)
    assert rc == 0 and "another run's id" in err


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_an_interpreter_that_never_answers_is_named_in_seconds(tmp_path, capsys):
    py = tmp_path / "slowpy"
    py.write_text("#!/bin/sh\nsleep 60\n")
    py.chmod(0o755)
    c = _cfg(tmp_path, framework_settings={"dummy": {"python": str(py)}})
    t0 = time.monotonic()
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    assert time.monotonic() - t0 < guards.PROBE_S + 8
    line = _one_line(rc, err)
    assert "did not answer" in line and "framework_settings.dummy.python" in line


def test_a_relative_interpreter_is_the_config_folders_and_resume_works_elsewhere(
        tmp_path, capsys, monkeypatch):
    import sys
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "py").symlink_to(sys.executable)
    c = _cfg(confdir, framework_settings={"dummy": {"python": "py"}},
             output_dir=str(tmp_path / "out"))
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_inproc(["run", "-c", str(c), "--no-report"], capsys)
    assert rc == 0, err
    stored = json.loads((tmp_path / "out" / "run.json").read_text())
    assert stored["config"]["framework_settings"]["dummy"]["python"] == str(confdir / "py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, _, err = run_inproc(["run", "-o", str(tmp_path / "out"), "--only",
                             "dummy-mlp-cpu-bs1-fp32", "--no-report"], capsys)
    assert rc == 0, err


@pytest.mark.parametrize("binding,params", [
    ("from mymodels import build_torch as pytorch", None),
    ("from mymodels import pytorch", None),
    ("pytorch = lambda width=8, **kw: None", {"width"}),
    ("def build(width=8):\n    pass\npytorch = build", {"width"}),
    ("import functools\ndef build(width=8):\n    pass\npytorch = functools.partial(build)", None),
])
def test_a_builder_bound_without_def_is_accepted(tmp_path, binding, params):
    from mlbench.config import usermodel
    src = tmp_path / "m.py"
    src.write_text("INPUT = {'kind': 'vector', 'shape': [4], 'num_classes': 2}\n" + binding + "\n")
    info = usermodel.inspect(str(src))
    assert usermodel.check_frameworks(info, ["pytorch"]) is None
    names, star = info.functions["pytorch"]
    if params is not None:
        assert params <= names
    else:
        assert star  # unknown signature: options are the worker's to check
    assert usermodel.check_frameworks(info, ["jax"]) is not None  # only what is bound counts


def test_import_of_a_module_named_like_a_framework_is_no_builder(tmp_path):
    from mlbench.config import usermodel
    src = tmp_path / "m.py"
    src.write_text("import jax\nINPUT = {'kind': 'vector', 'shape': [4], 'num_classes': 2}\n"
                   "def pytorch():\n    pass\n")
    assert usermodel.check_frameworks(usermodel.inspect(str(src)), ["jax"]) is not None


# --- 1. signals during every blocking call into a dependency -------------------------------------
def test_a_signal_interrupts_a_blocking_call_even_under_the_runners_handlers():
    from mlbench.run import interrupts, runner
    from mlbench.errors import Interrupted
    from mlbench.run.launcher import Stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        stop = Stop()
        old = runner._install_signals(stop)
        try:
            t0 = time.monotonic()
            with pytest.raises(Interrupted) as got:
                with interrupts.interruptible(stop):
                    os.kill(os.getpid(), sig)
                    time.sleep(30)  # a dependency's wait that never reads the stop flag
            assert time.monotonic() - t0 < 5
            assert got.value.signal_name == sig.name and stop.requested
            assert signal.getsignal(sig) is not signal.default_int_handler  # runner's, back
        finally:
            runner._restore_signals(old)
    stop = Stop(requested=True, signal_name="SIGTERM")  # a signal that came just before
    with pytest.raises(Interrupted):
        with interrupts.interruptible(stop):
            pytest.fail("the block must not start")


def test_every_blocking_call_into_a_dependency_is_bounded_or_interruptible():
    """ray.init/get/wait, subprocess waits, thread joins in mlbench/: each has a timeout or runs
    inside interrupts.interruptible(); the exceptions are listed with why."""
    import ast
    root = Path(mlbench.__file__).parent
    blocking = {("ray", "init"), ("ray", "get"), ("ray", "wait"), ("subprocess", "run"),
                ("subprocess", "check_output"), ("subprocess", "call")}
    methods = {"wait", "communicate", "join"}
    exempt = {("ray_executor.py", "connect"): "in a thread the caller waits on, bounded",
              ("ray_executor.py", "_advance"): "ray.get of a ref ray.wait found ready",
              ("launcher.py", "launch"): "proc.wait after the group was killed",
              ("launcher.py", "_wait_exit"): "proc.wait(timeout) fallback without a pidfd"}
    found = []
    for f in root.rglob("*.py"):
        tree = ast.parse(f.read_text())
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            base = node.func.value
            pair = (base.id if isinstance(base, ast.Name) else "", node.func.attr)
            if pair not in blocking and not (node.func.attr in methods and
                                             pair[0] in ("proc", "thread", "p")):
                continue
            if any(k.arg == "timeout" for k in node.keywords) or (
                    node.func.attr == "join" and node.args):
                continue
            up, func, guarded = node, None, False
            while up in parents:
                up = parents[up]
                if isinstance(up, ast.With) and any("interruptible" in ast.unparse(i)
                                                    for i in up.items):
                    guarded = True
                if func is None and isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    func = up.name
            if not guarded and (f.name, func) not in exempt:
                found.append(f"{f.name}:{node.lineno} {ast.unparse(node)} in {func}")
    assert not found, found


# --- 7. numbers out of range, at every stored numeric field ------------------------------------
BAD_NUMBERS = ["1e999", "-1e999", "1" + "0" * 400, "-" + "9" * 30]


def _numeric_paths(value, path=()):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numeric_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numeric_paths(v, path + (i,))


def _with_token(doc, path, token: str, **dump) -> str:
    """`doc` as JSON text with the number at `path` replaced by the raw `token`."""
    import copy
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = "@@NUMBER@@"
    return json.dumps(doc, **dump).replace('"@@NUMBER@@"', token)


def test_every_numeric_field_of_an_attempt_out_of_range_skips_that_line_only(done_run):
    lines = (done_run / "results.jsonl").read_text().splitlines()
    first, second = json.loads(lines[0]), lines[1]
    paths = list(_numeric_paths(first))
    assert len(paths) > 20  # the record's numbers: wall_s, order, step times, memory, ...
    bad_file = done_run.parent / "bad.jsonl"
    for path in paths:
        for token in BAD_NUMBERS:
            bad_file.write_text(_with_token(first, path, token) + "\n" + second + "\n")
            attempts, warnings = store.read_jsonl(bad_file)
            assert [a["cell_id"] for a in attempts] == [json.loads(second)["cell_id"]], path
            assert len(warnings) == 1 and "bad.jsonl:1" in warnings[0], (path, warnings)
            index = store.scan_latest(bad_file)
            assert sorted(index.latest) == [(json.loads(second)["cell_id"], 0)], path


@pytest.mark.parametrize("path", [("wall_s",), ("order",), ("metrics", "train", "step_times_s", 0),
                                  ("host_peak_rss_bytes",)])
def test_an_out_of_range_attempt_never_crashes_report_resume_failed_or_compare(
        done_run, tmp_path, capsys, path):
    jsonl = done_run / "results.jsonl"
    lines = jsonl.read_text().splitlines()
    first = json.loads(lines[0])
    jsonl.write_text("\n".join([lines[0], _with_token(first, path, "1e999"),
                                _with_token(first, path, "1" + "0" * 400), *lines[1:]]) + "\n")
    rc, _, err = run_inproc(["report", "--results", str(done_run), "-o", str(tmp_path / "r")],
                            capsys)
    assert rc == 0 and "out of range" in err and "Traceback" not in err
    rc, _, err = run_inproc(["compare", str(done_run), str(done_run)], capsys)
    assert rc in (0, 1) and "Traceback" not in err
    for mode in (["--failed"], ["--resume"]):
        rc, _, err = run_inproc(["run", "-o", str(done_run), "--no-report", *mode], capsys)
        assert rc == 0 and "Traceback" not in err, err
    # nothing lost: both cells still have their (first) good attempt, and the file's numbers
    # all parse again after the rewrite of results.json
    got = json.loads((done_run / "results.json").read_text())
    assert {c["cell_id"] for c in got["cells"]} == {CELL, "dummy-mlp-cpu-bs2-fp32"}


def test_every_numeric_field_of_run_json_out_of_range_is_a_clear_error(done_run, capsys):
    run_json = done_run / "run.json"
    doc = json.loads(run_json.read_text())
    paths = list(_numeric_paths(doc))
    assert paths
    for path in paths:
        for token in BAD_NUMBERS[::2]:
            run_json.write_text(_with_token(doc, path, token, indent=1))
            with pytest.raises(UserError, match="out of range"):
                store.read_run(run_json)
    rc, _, err = run_inproc(["run", "-o", str(done_run), "--resume", "--no-report"], capsys)
    assert "run.json" in _one_line(rc, err)


GATE_DOC = {"tolerances": {"fp32": {"rtol": 5e-4, "atol": 1e-4, "loss_rtol": 5e-4,
                                    "loss_atol": 1e-4}},
            "steps": 3, "batch_size": 16, "passed": True, "seconds": 1.25,
            "rows": [{"model": "mlp", "model_label": "mlp", "device": "cpu", "precision": "fp32",
                      "framework": "jax", "reference": "numpy", "passed": True, "reason": None,
                      "max_abs_err": 1.5e-6, "max_rel_err": 2.5e-5, "loss_err": 3e-7,
                      "steps_loss_err": 4e-7, "params_equal": True, "data_hash_equal": True,
                      "params": {"trainable": 118282}, "status": "ok"}],
            "pairs": [{"a": "jax", "b": "numpy", "max_abs_err": 1e-6}]}
DAMAGED_GATE = {
    "not JSON": "{\"rows\": [",
    "a list": "[]",
    "rows not a list": json.dumps({**GATE_DOC, "rows": {"a": 1}}),
    "a row not a mapping": json.dumps({**GATE_DOC, "rows": [3]}),
    "passed a string": json.dumps({**GATE_DOC, "rows": [{**GATE_DOC["rows"][0],
                                                         "passed": "yes"}]}),
    "max_abs_err a list": json.dumps({**GATE_DOC, "rows": [{**GATE_DOC["rows"][0],
                                                            "max_abs_err": [1]}]}),
    "framework missing": json.dumps({**GATE_DOC, "rows": [{k: v for k, v in
                                                           GATE_DOC["rows"][0].items()
                                                           if k != "framework"}]}),
    "Infinity": json.dumps(GATE_DOC).replace("1.25", "Infinity"),
    **{f"out of range at {'.'.join(map(str, p))}": _with_token(GATE_DOC, p, "1e999")
       for p in _numeric_paths(GATE_DOC)},
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_GATE))
def test_a_damaged_gate_document_is_a_clear_error_to_the_run_and_a_note_to_the_report(
        done_run, tmp_path, capsys, damage):
    from mlbench.analysis import gate_verdicts
    from mlbench.run import preflight
    f = done_run / "verify.json"
    f.write_text(DAMAGED_GATE[damage])
    with pytest.raises(UserError, match="verify.json|gate's verdicts"):
        gate_verdicts.load(f)
    # --resume and --failed read it back (a run with a real framework gated): one clear line
    conf = cfg.validate({"frameworks": ["numpy", "jax"], "models": ["mlp"],
                         "batch_sizes": [8]}, "c.yaml")
    with pytest.raises(UserError):
        preflight.run_gate(conf, done_run, lambda t: None, again=False)
    rc, _, err = run_inproc(["report", "--results", str(done_run), "-o", str(tmp_path / "r")],
                            capsys)
    assert rc == 0 and "Traceback" not in err  # the report renders without the gate table


def test_a_gate_document_that_is_a_directory_is_a_clear_error(done_run):
    from mlbench.analysis import gate_verdicts
    (done_run / "verify.json").mkdir()
    with pytest.raises(UserError, match="directory"):
        gate_verdicts.load(done_run / "verify.json")


def test_a_valid_gate_document_still_loads_with_its_values():
    from mlbench.analysis import gate_verdicts
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        Path(d, "verify.json").write_text(json.dumps(GATE_DOC))
        rep = gate_verdicts.load(Path(d, "verify.json"))
    assert rep.rows[0].max_abs_err == GATE_DOC["rows"][0]["max_abs_err"] and rep.passed


def test_every_numeric_field_of_results_json_out_of_range_is_a_clear_error(done_run):
    doc = json.loads((done_run / "results.json").read_text())
    paths = list(_numeric_paths(doc))
    assert len(paths) > 40
    f = done_run.parent / "copy" / "results.json"
    f.parent.mkdir()
    for path in paths[:: max(1, len(paths) // 60)]:  # ~60 fields spread over the document
        f.write_text(_with_token(doc, path, "1" + "0" * 400))
        with pytest.raises(UserError, match="out of range"):
            store.load(f)


CEILINGS = {"host": {"cpu": "x"}, "entries": {"pytorch-cpu": {
    "framework": "pytorch", "device": "cpu", "status": "ok", "size": 1024,
    "ceilings": {"fp32": {"best_flops": 1.5e11, "median_flops": 1.25e11}}}}}


def test_every_numeric_field_of_ceilings_json_out_of_range_is_refused_or_remeasured(tmp_path):
    from mlbench.analysis import ceiling
    paths = list(_numeric_paths(CEILINGS))
    assert len(paths) == 3
    (tmp_path / "ceilings.json").write_text(json.dumps(CEILINGS))
    assert ceiling.load(tmp_path) is not None  # the valid one loads
    for path in paths:
        for token in BAD_NUMBERS:
            (tmp_path / "ceilings.json").write_text(_with_token(CEILINGS, path, token))
            with pytest.raises(UserError, match="out of range|not JSON"):
                ceiling.load(tmp_path)
            assert ceiling.load(tmp_path, cache=True) is None  # the sweep measures again
