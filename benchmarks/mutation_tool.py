"""The uncurated second opinion beside benchmarks/mutation_check.py: mutmut (pinned) over the
modules that compute what the user reads, against the fast tests that cover each module.

    python benchmarks/mutation_tool.py [--only order,summary] [--cap-s 600] [--work /tmp/mutwork]
                                       [--sample N]   # one mutant in N for every module (1: all)
                                       [--resume]     # keep the caches: retry what lived

Installs mutmut MUTMUT_VERSION into a scratch virtualenv (VENV) that also sees the project's
virtualenv through a .pth file (no install into the project's own), copies the working tree to a
scratch directory (mutmut 2 mutates files in place, one mutant at a time), and runs, per module,
`mutmut run` with only the related fast tests as its runner (`pytest -x`), each module under a
wall-clock cap. Prints, per module, killed / survived / timeout / suspicious / untested and the
score (killed + timeout + suspicious) / tested (mutmut's "suspicious": killed, but slower than
twice the baseline run), and writes each module's surviving mutants as diffs to
<work>/<module>.survivors.txt. A module marked provisional is being rewritten: its score says
little until that lands (none is, now).
A run over every module takes about 30 minutes of CPU on a quiet 2-core machine (measured with
the earlier, wider skip rule); recommend alone, every mutant (439), about 50 minutes on a loaded
one; compare (428) about 20 and stats (534) about 50 on one loaded core; `--resume` after new
tests a few minutes (only the survivors are tried again).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

MUTMUT_VERSION = "2.5.1"
COVERAGE_VERSION = "7.6.1"  # mutmut --use-coverage: only lines the selected tests run
ROOT = Path(__file__).resolve().parent.parent
VENV = Path("/tmp/mutvenv")
FAST = "-x -q -p no:cacheprovider -m 'not framework and not slow'"

# module -> (the fast tests that check its figures, provisional?); SAMPLE: one mutant in n
SAMPLE = {"aggregate": 12, "summary": 3, "harness": 3, "stats": 8, "compare": 6, "recommend": 6}
MODULES = {
    "order": ("mlbench/run/order.py", "tests/test_partial_grids.py tests/test_order.py", False),
    "summary": ("mlbench/results/summary.py", "tests/test_summary_values.py tests/test_schema.py "
                "tests/test_partial_grids.py "
                "-k 'not real_run'", False),
    "aggregate": ("mlbench/results/aggregate.py",
                  "tests/test_summary_values.py tests/test_summary.py "
                  "tests/test_partial_grids.py tests/test_untested_branches.py "
                  "-k 'not real_run'", False),
    "harness": ("workers/harness.py", "tests/test_harness_timing.py tests/test_worker_clock.py",
                False),
    "stats": ("mlbench/analysis/stats.py", "tests/test_stats_mutants.py tests/test_stats.py "
              "tests/test_decision.py", False),
    "compare": ("mlbench/analysis/compare.py", "tests/test_compare_mutants.py "
                "tests/test_compare_shift.py tests/test_compare.py "
                "tests/test_modes.py::test_compare_says_when_a_cell_ran_in_another_mode", False),
    "recommend": ("mlbench/report/recommend.py", "tests/test_recommend_mutants.py "
                  "tests/test_recommend_evidence.py tests/test_report.py tests/test_decision.py "
                  "tests/test_promises_report.py", False),
}


def venv_python() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    # the scratch venv sees the project's packages (numpy, polars, pytest...) after its own
    Path(site.stdout.strip(), "project.pth").write_text(ours.stdout.strip() + "\n")
    have = subprocess.run([str(py), "-m", "pip", "show", "mutmut"], capture_output=True,
                          text=True).stdout
    if f"Version: {MUTMUT_VERSION}" not in have:
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"mutmut=={MUTMUT_VERSION}",
                        f"coverage=={COVERAGE_VERSION}"], check=True)
    return py


# mutmut 2 calls pre_mutation(context) from mutmut_config.py in its working directory: the
# mutants of documentation (docstrings and other bare string statements, pydantic field
# descriptions) and of `raise` lines (error texts, pinned by the error tests) say nothing about
# the figures and cost a test run each; they are skipped. Code that merely continues on a line
# opening with a string (a record's keys, a verdict's reason, an Aspect's higher_is_better) is
# mutated: what the user reads.
# A module's mutants may also be sampled (MUTMUT_SAMPLE=n: one in n, by a hash of the mutant's
# line and index, so spread over the whole file and the same from run to run): mutmut 2 tries
# mutants in file order, and a capped run would otherwise judge only a file's first functions.
MUTMUT_CONFIG = """
import ast, functools, hashlib, os


@functools.lru_cache(maxsize=None)
def _doc_lines(source):
    out = set()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            out.update(range(node.lineno - 1, node.end_lineno))
    return frozenset(out)


def pre_mutation(context):
    line = context.current_source_line.strip()
    if ("description=" in line or line.startswith("raise ")
            or context.current_line_index in _doc_lines(context.source)):
        context.skip = True
        return
    n = int(os.environ.get("MUTMUT_SAMPLE", "1"))
    key = f"{context.current_source_line}|{context.mutation_id.index}".encode()
    if n > 1 and int(hashlib.sha1(key).hexdigest(), 16) % n:
        context.skip = True
"""


def copy_tree(work: Path, resume: bool = False) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    # --resume keeps each module's mutmut cache (<module>.mutmut-cache) across the fresh copy
    caches = {c.name: c.read_bytes() for c in work.glob("*.mutmut-cache")} if resume else {}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, data in caches.items():
        (work / name).write_bytes(data)
    for f in files:
        src = ROOT / f
        if src.is_file() and not src.is_symlink():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / f)
    (work / "mutmut_config.py").write_text(MUTMUT_CONFIG)


def run_module(py: Path, work: Path, name: str, cap_s: float, sample: int,
               resume: bool = False) -> dict:
    path, tests, provisional = MODULES[name]
    mutmut = [str(py), "-m", "mutmut"]
    cache, kept = work / ".mutmut-cache", work / f"{name}.mutmut-cache"
    cache.unlink(missing_ok=True)
    if resume and kept.exists():
        # mutmut 2's own incremental rule: a killed mutant stays killed; the others (survived,
        # untested, a capped run's rest) are tried again when the tests changed
        shutil.move(kept, cache)
        # what pre_mutation skipped is judged again (the skip rule may have changed)
        con = sqlite3.connect(cache)
        with con:
            con.execute("update Mutant set status = 'untested' where status = 'skipped'")
        con.close()
    env = {**os.environ, "PYTHONPATH": str(work), "MUTMUT_SAMPLE": str(sample)}
    # mutmut 2 counts only exit status 1 as killed: a mutant that breaks the import (pytest
    # exits 2, collection error) would count as survived, so every failure is made a 1
    runner = f'sh -c "{py} -m pytest {FAST} {tests} || exit 1"'
    t0 = time.monotonic()
    # the lines the selected tests execute: mutants elsewhere are not tried (mutmut counts
    # them as untested; the score is over the mutants tried)
    subprocess.run(f"{py} -m coverage run --include={path} -m pytest {FAST} {tests}",
                   shell=True, cwd=work, env=env, capture_output=True)
    original = (work / path).read_bytes()
    with open(work / f"{name}.log", "w", encoding="utf-8") as log:
        # its own session: a capped run is stopped with its worker processes (mutmut 2 tests
        # in a multiprocessing child that would otherwise go on writing the cache)
        proc = subprocess.Popen([*mutmut, "run", "--paths-to-mutate", path, "--tests-dir",
                                 "tests", "--use-coverage", "--runner", runner], cwd=work,
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=cap_s)
            capped = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            capped = True
    # a capped run leaves its file mutated: restore the copy it started from (not the
    # project's, which may have changed meanwhile)
    (work / path).write_bytes(original)
    counts = _statuses(work, path)
    survivors = counts.pop("_survivors")
    with open(work / f"{name}.survivors.txt", "w", encoding="utf-8") as fh:
        for i in survivors:
            diff = subprocess.run([*mutmut, "show", str(i)], cwd=work, env=env,
                                  capture_output=True, text=True).stdout
            fh.write(f"--- mutant {i}\n{diff}\n")
    shutil.move(cache, kept)
    return {**counts, "seconds": time.monotonic() - t0, "capped": capped,
            "provisional": provisional}


STATUS = {"ok_killed": "killed", "bad_survived": "survived", "bad_timeout": "timeout",
          "ok_suspicious": "suspicious", "untested": "untested", "skipped": "untested"}


def _statuses(work: Path, path: str) -> dict:
    """Counts per outcome and the surviving mutants' ids of one file, from mutmut's own cache
    (SQLite)."""
    con = sqlite3.connect(work / ".mutmut-cache")
    try:
        rows = con.execute("select m.id, m.status from Mutant m join Line l on m.line = l.id "
                           "join SourceFile f on l.sourcefile = f.id where f.filename = ?",
                           (path,)).fetchall()
    finally:
        con.close()
    out: dict = {k: 0 for k in dict.fromkeys(STATUS.values())}
    for _, st in rows:
        out[STATUS.get(st, "untested")] += 1
    out["tested"] = len(rows) - out["untested"]
    out["_survivors"] = sorted(i for i, st in rows if st == "bad_survived")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(MODULES), help="comma-separated module names")
    ap.add_argument("--cap-s", type=float, default=600, help="wall-clock cap per module")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mutwork"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the work tree's mutmut caches: try again only what was not "
                         "killed (a capped run's rest, survivors after new tests)")
    ap.add_argument("--sample", type=int, default=0,
                    help="one mutant in n for every module (1: all; 0: each module's SAMPLE)")
    args = ap.parse_args()
    py = venv_python()
    copy_tree(args.work, args.resume)
    print(f"mutmut {MUTMUT_VERSION}; work tree {args.work}")
    print(f"{'module':10} {'sample':>6} {'killed':>6} {'surv':>5} {'t/o':>4} {'susp':>4} "
          f"{'untested':>8} "
          f"{'score':>6} {'s':>5}")
    for name in args.only.split(","):
        sample = args.sample or SAMPLE.get(name, 1)
        r = run_module(py, args.work, name, args.cap_s, sample, args.resume)
        # mutmut 2's "suspicious" mutants were killed too (the tests failed), only slower than
        # twice the baseline: on a shared, loaded machine that is contention, not a survivor
        score = ((r["killed"] + r["timeout"] + r["suspicious"]) / r["tested"] if r["tested"]
                 else float("nan"))
        note = (" (capped)" if r["capped"] else "") + (" provisional" if r["provisional"] else "")
        print(f"{name:10} {'1/' + str(sample):>6} {r['killed']:6} {r['survived']:5} "
              f"{r['timeout']:4} {r['suspicious']:4} {r['untested']:8} {score:6.0%} "
              f"{r['seconds']:5.0f}{note}",
              flush=True)
    print(f"survivors: {args.work}/<module>.survivors.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
