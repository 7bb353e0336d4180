"""Promises of `mlbench run` pinned by what a user can observe: the CPU set and thread knobs each
worker really got, what `--resume` re-runs, how a diverged or SIGKILLed worker is recorded, the
fsync of every appended attempt, `exclude:` rules, and `--no-verify` / `--no-ceiling` /
`--archive`.

Fast: the dummy worker (and the numpy worker for divergence). Where a promise is about *every*
framework, a copy of workers/ in which each framework's script is the dummy worker stands in
(MLBENCH_WORKERS_DIR), so the launcher, gate and ceiling paths run for real in milliseconds.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cliutil import ROOT, by_cell, dummy_config, run_inproc, run_subprocess, write_config
from mlbench.results import store

FRAMEWORKS = ["pytorch", "tensorflow", "jax", "numpy"]


@pytest.fixture
def fake_workers(tmp_path, monkeypatch) -> Path:
    """workers/ copied, with every framework's worker (and the ceiling worker) replaced by the
    dummy, so a run over all frameworks exercises the real parent side in milliseconds."""
    d = tmp_path / "fake_workers"
    shutil.copytree(ROOT / "workers", d, ignore=shutil.ignore_patterns("__pycache__"))
    for fw in FRAMEWORKS:
        shutil.copy(d / "dummy_worker.py", d / f"{fw}_worker.py")
    shutil.copy(d / "dummy_worker.py", d / "ceiling_worker.py")
    monkeypatch.setenv("MLBENCH_WORKERS_DIR", str(d))
    from mlbench.config import fwoptions
    for fw in FRAMEWORKS:  # every "framework" is the dummy now: it takes the dummy's knobs
        monkeypatch.setitem(fwoptions.TABLE, fw, None)
    return d


def _all_frameworks_config(tmp_path: Path, **fields) -> Path:
    return write_config(tmp_path / "all.yaml", frameworks=FRAMEWORKS, batch_sizes=[4],
                        framework_settings={fw: {"options": {"echo": True}} for fw in FRAMEWORKS},
                        **fields)


# --- timing fairness: what each worker actually got ---------------------------------------------

def test_every_framework_gets_the_same_cpu_set_and_thread_knobs(tmp_path, capsys, fake_workers):
    conf = _all_frameworks_config(tmp_path, threads=1)
    rc, _, err = run_inproc(["run", "-c", str(conf), "--no-report", "--no-verify",
                             "--no-ceiling"], capsys)
    assert rc == 0, err
    cells = list(by_cell(tmp_path / "results").values())
    assert sorted(c["framework"] for c in cells) == sorted(FRAMEWORKS)
    got = {c["framework"]: c["metrics"]["settings"] for c in cells}
    # the worker read these back from its own process: the OS-enforced CPU set is `threads`
    # CPUs, the same set for every framework, and so is every thread knob of the environment
    sets = {fw: tuple(s["cpu_affinity"]) for fw, s in got.items()}
    assert len(set(sets.values())) == 1, sets
    assert len(next(iter(sets.values()))) == min(1, len(os.sched_getaffinity(0)))
    assert {c["hello"]["cpu_affinity"] == list(sets[c["framework"]]) for c in cells} == {True}
    envs = {fw: s["env"] for fw, s in got.items()}
    assert all(e == envs["pytorch"] for e in envs.values()), envs
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS"):
        assert envs["pytorch"][var] == "1", (var, envs["pytorch"])
    assert envs["pytorch"]["CUDA_VISIBLE_DEVICES"] == ""   # a CPU cell touches no GPU
    assert all(s["threads"] == 1 for s in got.values())


def test_two_threads_means_two_cpus_for_everyone(tmp_path, capsys, fake_workers):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two allowed CPUs")
    conf = _all_frameworks_config(tmp_path, threads=2)
    assert run_inproc(["run", "-c", str(conf), "--no-report", "--no-verify", "--no-ceiling"],
                      capsys)[0] == 0
    got = [c["metrics"]["settings"] for c in by_cell(tmp_path / "results").values()]
    assert {len(s["cpu_affinity"]) for s in got} == {2}
    assert {s["env"]["OMP_NUM_THREADS"] for s in got} == {"2"}


# --- the gate and the ceilings really run, and the flags really skip them ----------------------

@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_gate_and_ceilings_run_by_default(tmp_path, capsys, fake_workers):
    conf = _all_frameworks_config(tmp_path, threads=1)
    rc, _, err = run_inproc(["run", "-c", str(conf), "--no-report"], capsys)
    out = tmp_path / "results"
    assert rc == 0, err
    assert (out / "verify.json").exists() and (out / "ceilings.json").exists()
    gate = json.loads((out / "verify.json").read_text())
    # the gate started a worker for every framework but numpy (the reference); the fake ones
    # answered 'skip', which is recorded, not a failure
    assert {r["framework"] for r in gate["rows"]} == {"pytorch", "tensorflow", "jax"}
    assert list((out / "verify").iterdir())


@pytest.mark.parametrize("flag,absent", [("--no-verify", ["verify.json", "verify"]),
                                         ("--no-ceiling", ["ceilings.json"])])
@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_no_verify_and_no_ceiling_really_skip(tmp_path, capsys, fake_workers, flag, absent):
    conf = _all_frameworks_config(tmp_path, threads=1)
    rc, _, err = run_inproc(["run", "-c", str(conf), "--no-report", flag], capsys)
    out = tmp_path / "results"
    assert rc == 0, err
    for name in absent:
        assert not (out / name).exists(), (flag, name)
    other = {"--no-verify": "ceilings.json", "--no-ceiling": "verify.json"}[flag]
    assert (out / other).exists()          # only what the flag names is skipped
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["verify" if flag == "--no-verify" else "ceiling"] is False


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_archive_moves_the_earlier_gate_result_aside(tmp_path, capsys, fake_workers):
    conf = _all_frameworks_config(tmp_path, threads=1)
    out = tmp_path / "results"
    assert run_inproc(["run", "-c", str(conf), "--no-report", "--no-ceiling"], capsys)[0] == 0
    first = (out / "verify.json").read_bytes()
    first_run = json.loads((out / "run.json").read_text())["run_id"]
    assert run_inproc(["run", "-c", str(conf), "--no-report", "--no-ceiling", "--archive"],
                      capsys)[0] == 0
    archived = list((out / "archive").iterdir())
    assert len(archived) == 1
    assert (archived[0] / "verify.json").read_bytes() == first
    assert json.loads((archived[0] / "run.json").read_text())["run_id"] == first_run
    assert json.loads((out / "run.json").read_text())["run_id"] != first_run


# --- resume ------------------------------------------------------------------------------------

UNFINISHED = ["failed", "oom", "crashed", "timeout", "interrupted"]


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_resume_reruns_every_unfinished_status_and_nothing_done(tmp_path, capsys):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2, 3, 4, 5, 6, 7],
                        framework_settings={"dummy": {"options": {
                            "fault_plan": ["7:import_error:build"]}}})
    out = tmp_path / "results"
    run_inproc(["run", "-c", str(conf), "--no-report"], capsys)
    first = by_cell(out)
    assert first["dummy-mlp-cpu-bs7-fp32"]["status"] == "skipped"
    # the latest attempt of bs1..bs5 becomes each unfinished status (the store is append-only
    # and the latest attempt wins, exactly as after a real failure)
    with open(out / "results.jsonl", "a") as fh:
        for bs, status in zip(range(1, 6), UNFINISHED):
            rec = dict(first[f"dummy-mlp-cpu-bs{bs}-fp32"], status=status, metrics=None,
                       reason=f"planted {status}")
            fh.write(json.dumps(rec) + "\n")
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--no-report"], capsys)
    assert rc == 0, err
    attempts, _ = store.read_jsonl(out / "results.jsonl")
    runs = {}
    for a in attempts:
        runs.setdefault(a["cell_id"], []).append(a["status"])
    for bs, status in zip(range(1, 6), UNFINISHED):
        assert runs[f"dummy-mlp-cpu-bs{bs}-fp32"] == ["ok", status, "ok"], (status, runs)
    assert runs["dummy-mlp-cpu-bs6-fp32"] == ["ok"]          # done: not run again
    assert runs["dummy-mlp-cpu-bs7-fp32"] == ["skipped"]     # skipped is an answer too
    assert {c["status"] for c in by_cell(out).values()} == {"ok", "skipped"}


def test_resume_reruns_a_cell_whose_model_options_changed(tmp_path, capsys):
    out = tmp_path / "results"

    def run(hidden, resume):
        conf = write_config(tmp_path / "c.yaml", batch_sizes=[1],
                            models=[{"name": "mlp", "label": "m", "options": {"hidden": hidden}}])
        args = ["run", "-c", str(conf), "--no-report"] + (["--resume"] if resume else [])
        assert run_inproc(args, capsys)[0] == 0

    run([8], resume=False)
    run([8], resume=True)                     # same question: nothing to do
    assert len(store.read_jsonl(out / "results.jsonl")[0]) == 1
    run([16], resume=True)                    # same cell id, another model: measured again
    attempts = store.read_jsonl(out / "results.jsonl")[0]
    assert [a["cell_id"] for a in attempts] == ["dummy-m-cpu-bs1-fp32"] * 2
    assert [a["model_options"]["hidden"] for a in attempts] == [[8], [16]]
    assert attempts[0]["fingerprint"] != attempts[1]["fingerprint"]


# --- failure classification and durability ----------------------------------------------------

def test_sigkilled_worker_is_crashed_never_ok(tmp_path, capsys):
    conf = dummy_config(tmp_path, fault="sigkill", phase="inference", fault_batch_sizes=[1])
    rc, _, _ = run_inproc(["run", "-c", str(conf), "--no-report"], capsys)
    bad = by_cell(tmp_path / "results")["dummy-mlp-cpu-bs1-fp32"]
    assert bad["status"] == "crashed" and bad["signal"] == "SIGKILL", bad
    assert bad["metrics"] is None and "OOM killer" in bad["reason"]
    assert rc == 1


def test_a_diverging_loss_is_failed_with_diverged(tmp_path, capsys):
    # user data with an infinity in it: the loss is not finite from the first step
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 784)).astype(np.float32)
    x[5, 3] = np.inf
    y = rng.integers(0, 10, size=128).astype(np.int64)
    data = tmp_path / "bad.npz"
    np.savez(data, x_train=x[:96], y_train=y[:96], x_eval=x[96:], y_eval=y[96:])
    conf = write_config(tmp_path / "c.yaml", frameworks=["numpy"], batch_sizes=[16], threads=1,
                        models=[{"name": "mlp", "preset": "tiny", "data": str(data)}],
                        timed_iterations=2, warmup_iterations=1, verify=False, ceiling=False)
    rc, _, err = run_inproc(["run", "-c", str(conf), "--no-report"], capsys)
    cell = next(iter(by_cell(tmp_path / "results").values()))
    assert cell["status"] == "failed", cell
    assert cell["reason"].startswith("diverged: ") and "loss became" in cell["reason"]
    assert rc == 1


def test_every_appended_attempt_is_fsynced(tmp_path, capsys, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def counting(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2, 3])
    assert run_inproc(["run", "-c", str(conf), "--no-report"], capsys)[0] == 0
    jsonl = str((tmp_path / "results" / "results.jsonl").resolve())
    assert synced.count(jsonl) == 3   # one fsync per attempt, each before the next cell


def test_exclude_rules_remove_exactly_the_matching_cells(tmp_path, capsys):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1, 2, 3],
                        precisions=["fp32", "bf16"],
                        exclude=[{"batch_size": 2, "precision": "bf16"},
                                 {"framework": "dummy", "batch_size": 3}])
    assert run_inproc(["run", "-c", str(conf), "--no-report"], capsys)[0] == 0
    ran = set(by_cell(tmp_path / "results"))
    assert ran == {"dummy-mlp-cpu-bs1-fp32", "dummy-mlp-cpu-bs1-bf16", "dummy-mlp-cpu-bs2-fp32"}


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_host_memory_is_sampled_by_the_parent_over_the_whole_process_tree(tmp_path):
    # a child of the worker holds 400 MB for 1.5 s: the worker's own ru_maxrss cannot see it.
    # A fresh mlbench process: a worker's ru_maxrss starts at its parent's RSS at fork time
    # (Linux keeps the pre-exec high-water mark), so a big pytest parent would mask the child.
    conf = dummy_config(tmp_path, child_mb=400)
    proc = run_subprocess(["run", "-c", str(conf), "--no-report"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for cell in by_cell(tmp_path / "results").values():
        own = cell["metrics"]["memory"]["host_peak_rss_bytes"]
        assert own < 400 << 20, own
        assert cell["host_peak_rss_bytes"] >= 400 << 20, (cell["host_peak_rss_bytes"], own)
