"""Run mlbench the way a user does: in-process through cli.main, or as a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mlbench import cli

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, **fields) -> Path:
    base = {"frameworks": ["dummy"], "models": ["mlp"], "devices": ["cpu"],
            "batch_sizes": [1, 2], "timeout_s": 30, "output_dir": str(path.parent / "results")}
    base.update(fields)
    path.write_text(yaml.safe_dump(base))
    return path


def dummy_config(tmp_path: Path, name: str = "c.yaml", **options) -> Path:
    return write_config(tmp_path / name,
                        framework_settings={"dummy": {"options": options}} if options else {})


def run_inproc(args: list[str], capsys=None) -> tuple[int, str, str]:
    rc = cli.main(args)
    out, err = capsys.readouterr() if capsys else ("", "")
    return rc, out, err


def run_subprocess(args: list[str], cwd: Path, timeout: float = 600,
                   env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlbench.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def results(out_dir: Path) -> list[dict]:
    return json.loads((out_dir / "results.json").read_text())["cells"]


def by_cell(out_dir: Path) -> dict[str, dict]:
    return {c["cell_id"]: c for c in results(out_dir)}
