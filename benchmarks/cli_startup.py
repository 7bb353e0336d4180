"""How fast the `mlbench` command answers, against a bare Python start on this machine.

For each command: the median wall time of N fresh processes (run round-robin, so a change in the
machine's load touches every command alike) and the median CPU time (user + system) of those
processes, which a busy machine disturbs much less than the wall time; each with its ratio to
`python -c pass`, and with --baseline the same for another version of mlbench side by side (a
directory holding one, or a git revision of this repository, e.g. the commit before a change).

    .venv/bin/python benchmarks/cli_startup.py [-n 21] [--baseline REV_OR_DIR]

Measures `python -m mlbench.cli ...` with PYTHONPATH at the tree (the installed `mlbench` script
does the same imports). What a command imports: `python -X importtime -m mlbench.cli --help`.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAD_KEY = "frameworks: [numpy]\nmodels: [mlp]\nbatch_sizes: [8]\nepochz: 1\n"
BAD_VALUE = "frameworks: [numpy]\nmodels: [mlp]\nbatch_sizes: [8]\nepochs: -1\n"
BAD_SYNTAX = "frameworks: [numpy\nmodels: [mlp]\n"
COMMANDS = [  # (label, arguments after the interpreter; None: bare python)
    ("python -c pass (bare start)", None),
    ("import typer (the floor)", ["-c", "import typer"]),
    ("a one-command typer --help", ["-c", "import typer; app = typer.Typer(rich_markup_mode="
                                    "None); app.command()(lambda: None); app()", "--help"]),
    ("import mlbench.cli", ["-c", "import mlbench.cli"]),
    ("mlbench --help", ["-m", "mlbench.cli", "--help"]),
    ("mlbench --version", ["-m", "mlbench.cli", "--version"]),
    ("mlbench list", ["-m", "mlbench.cli", "list"]),
    ("bad option (run --bogus)", ["-m", "mlbench.cli", "run", "--bogus"]),
    ("bad option value (--epochs x)", ["-m", "mlbench.cli", "run", "--epochs", "x"]),
    ("bad list value (--batch-sizes x)", ["-m", "mlbench.cli", "run", "--batch-sizes", "x"]),
    ("config file missing", ["-m", "mlbench.cli", "run", "--config", "missing.yaml"]),
    ("config YAML syntax error", ["-m", "mlbench.cli", "run", "--config", "syntax.yaml"]),
    ("config unknown key", ["-m", "mlbench.cli", "run", "--config", "bad.yaml"]),
    ("config bad value", ["-m", "mlbench.cli", "run", "--config", "value.yaml"]),
    ("import pydantic (reference)", ["-c", "import pydantic; pydantic.TypeAdapter(int)"]),
]


def _export(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(args: list[str] | None, tree: Path, cwd: Path) -> tuple[float, float]:
    """(wall ms, CPU ms) of one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("MLBENCH_WORKERS_DIR", None)
    cpu, start = _cpu(), time.perf_counter()
    subprocess.run([sys.executable, *(args or ["-c", "pass"])], cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000, (_cpu() - cpu) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=21, help="processes per command (median)")
    ap.add_argument("--baseline", help="another mlbench: a directory or a git revision")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        (cwd / "bad.yaml").write_text(BAD_KEY)
        (cwd / "value.yaml").write_text(BAD_VALUE)
        (cwd / "syntax.yaml").write_text(BAD_SYNTAX)
        trees = {"now": ROOT}
        if args.baseline:
            given = Path(args.baseline)
            trees["baseline"] = given if given.is_dir() else _export(args.baseline,
                                                                     Path(tmp) / "baseline")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.n):
            for name, tree in trees.items():
                for label, cmd in COMMANDS:
                    times.setdefault((name, label), []).append(_time(cmd, tree, cwd))
    print(f"median of {args.n} fresh processes each; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} after the runs")
    for i, kind in enumerate(("wall", "CPU")):
        med = {k: statistics.median(t[i] for t in v) for k, v in times.items()}
        bare = {name: med[(name, COMMANDS[0][0])] for name in trees}
        head = f"{kind + ' time':33} {'now ms':>8} {'x bare':>7}"
        if "baseline" in trees:
            head += f" {'baseline ms':>12} {'x bare':>7} {'speed-up':>9}"
        print(f"\n{head}")
        for label, _ in COMMANDS:
            now = med[("now", label)]
            line = f"{label:33} {now:8.0f} {now / bare['now']:7.1f}"
            if "baseline" in trees:
                base = med[("baseline", label)]
                line += f" {base:12.0f} {base / bare['baseline']:7.1f} {base / now:8.1f}x"
            print(line)


if __name__ == "__main__":
    main()
