"""The `mlbench` command line: run, gate, report, compare, list.

Owns argument parsing (typer) and turning UserError into `error: <what> (<where>)` with exit 2.
Lists after one flag are accepted as the seed writes them (`--frameworks pytorch jax`), as well as
comma-separated and repeated. Must not import any ML framework.

Answers fast: at import only typer and the standard library load; rich, pydantic (the config),
polars and plotly (the report) are imported by the command that uses them, so `--help`,
`--version`, `list` (plain text) and an unknown option never pay for them. A command with value
options imports pydantic when it parses them (typer 0.29 coerces every option value through a
pydantic TypeAdapter; mlbench uses typer only through its public API), and a config file is read
and its YAML parsed (mlbench.config.configfile) before the config's models are built, so a missing
file or a YAML syntax error answers before them (tests/test_cli_fast.py pins this,
benchmarks/cli_startup.py measures it).
"""
from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from . import __version__
from .run import executor_table
from .errors import EXIT_INTERNAL, Interrupted, UserError

if TYPE_CHECKING:
    from rich.console import Console

    from .config import schema as cfg


class _Lean:
    """A command (or the group) whose built-in --help flag, when not given, needs no coercion.

    typer (0.29) coerces a parameter's value through a pydantic TypeAdapter unless it is a bool
    for a bool parameter; click leaves the help flag's default at None, so every command would
    import pydantic (~100 ms) for a flag nobody gave. Its default set to False (click's public
    get_help_option and Option.default) keeps `--version`, `list`, `run --help` and an unknown
    option free of pydantic. A command with value options still imports it to coerce
    them (typer's own coercion, which this leaves alone)."""

    def get_help_option(self, ctx):  # type: ignore[no-untyped-def]
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None and option.default is None:
            option.default = False
        return option


class _Group(_Lean, TyperGroup):
    pass


class _Command(_Lean, TyperCommand):
    pass


# rich_markup_mode=None: click's plain help; typer's rich help panels alone cost ~100 ms a start.
app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Benchmark PyTorch, TensorFlow and JAX on your own hardware.")

# Options that take several values after one flag (the seed's `--frameworks pytorch jax`).
LIST_OPTIONS = ("--frameworks", "--models", "--devices", "--batch-sizes", "--precisions",
                "--only")

ListOpt = Optional[list[str]]
# what mlbench.report writes into its directory: checked for planted links before it writes
REPORT_FILES = ("index.html", "summary.csv", "aggregated.parquet")
MAX_ERROR_CHARS = 2000  # an echoed value is cut long before this; a safety net for the line
_NUMBER = re.compile(r"-\d+(\.\d*)?")


@lru_cache(maxsize=1)
def err_console() -> Console:
    """rich's console on stderr, for the commands that do real work (progress, warnings)."""
    from rich.console import Console
    return Console(stderr=True)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape
    return rich_escape(text)


# An error echoes what the user gave (a file name, a value): a carriage return, backspace or
# escape sequence in it must not rewrite the terminal, so control characters are shown as \xNN.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127) if c not in (9, 10)}


def _error_line(text: str) -> None:
    """One `error: ...` line on stderr, without loading rich (a bad command line answers fast)."""
    sys.stderr.write(text.translate(_CONTROL) + "\n")
    sys.stderr.flush()


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[:limit] + "…"


def expand_list_args(argv: list[str]) -> list[str]:
    """`--frameworks a b,c` -> `--frameworks a --frameworks b --frameworks c`."""
    out: list[str] = []
    current = None
    for arg in argv:
        if arg.startswith("-") and not (current and _NUMBER.fullmatch(arg)):
            name, eq, value = arg.partition("=")
            current = name if name in LIST_OPTIONS else None
            if current and eq:
                out += [x for v in value.split(",") if v for x in (name, v)]
                current = None
            elif not current:
                out.append(arg)
            continue
        if current:
            out += [x for v in arg.split(",") if v for x in (current, v)]
        else:
            out.append(arg)
    return out


def _ints(values: list[str] | None, flag: str) -> list[int] | None:
    if values is None:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        raise UserError(f"batch sizes must be integers, got {values}", flag) from None


@app.command(cls=_Command)
def run(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config "
                      "(default: the embedded quick CPU sweep)")] = None,
    frameworks: Annotated[ListOpt, typer.Option(help="e.g. --frameworks pytorch jax")] = None,
    models: Annotated[ListOpt, typer.Option(help="e.g. --models mlp cnn")] = None,
    devices: Annotated[ListOpt, typer.Option(help="e.g. --devices cpu cuda:0")] = None,
    batch_sizes: Annotated[ListOpt, typer.Option(help="e.g. --batch-sizes 32 64")] = None,
    precisions: Annotated[ListOpt, typer.Option(help="fp32 bf16 fp16")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs per cell")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="fresh processes per cell")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o",
                      help="run directory (default: the config's output_dir)")] = None,
    resume: Annotated[bool, typer.Option(help="finish the run in --output")] = False,
    only: Annotated[ListOpt, typer.Option(help="rerun just these cell ids")] = None,
    failed: Annotated[bool, typer.Option(help="rerun every failed cell")] = False,
    archive: Annotated[bool, typer.Option(help="move an earlier run's results aside "
                                          "and start anew")] = False,
    gate: Annotated[Optional[bool], typer.Option(
        "--gate/--no-gate", help="run the equivalence gate first (config: verify)")] = None,
    verify: Annotated[Optional[bool], typer.Option(
        "--verify/--no-verify", hidden=True, help="former name of --gate/--no-gate")] = None,
    ceiling: Annotated[Optional[bool], typer.Option(
        "--ceiling/--no-ceiling", help="measure device ceilings for MFU (config: ceiling)")] = None,
    report: Annotated[bool, typer.Option(help="write the HTML report at the end")] = True,
    report_dir: Annotated[Optional[Path], typer.Option(help="where the report goes "
                          "(default: reports/<run directory name>)")] = None,
    executor: Annotated[Optional[str], typer.Option(
        help=f"where cells run: {executor_table.choices_text()} (config: executor.kind)")] =
        None,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Ray cluster to join: auto, host:port or ray://...; none starts one on this "
             "machine (implies --executor ray)")] = None,
) -> None:
    """Run a benchmark sweep: every cell in a fresh worker process."""
    from .config import guards

    modes = [m for m, on in (("resume", resume), ("only", bool(only)), ("failed", failed)) if on]
    if len(modes) > 1:
        raise UserError("choose one of --resume, --only, --failed", "command line")
    mode = modes[0] if modes else "new"
    if archive and mode != "new":  # --archive starts anew; --resume and the others continue
        raise UserError(f"--archive starts a new run and --{mode} continues the stored one; "
                        "choose one", "command line")
    for flag, value in (("--output", output), ("--report-dir", report_dir)):
        if value is not None:
            guards.sane_path(value, flag)
            guards.no_link_loop(value, flag)
    if gate is not None and verify is not None and gate != verify:
        raise UserError("--gate/--no-gate and --verify/--no-verify (its former name) disagree",
                        "command line")
    overrides = {"frameworks": frameworks, "models": models, "devices": devices,
                 "batch_sizes": _ints(batch_sizes, "--batch-sizes"), "precisions": precisions,
                 "epochs": epochs, "repeats": repeats,
                 "verify": gate if gate is not None else verify, "ceiling": ceiling}
    conf, out_dir = _resolve_config(config, overrides, output, mode)
    guards.no_link_loop(out_dir, "output directory")  # output_dir of the config, too
    if mode == "only":  # an override that removes a named cell would run nothing, silently
        from .run.matrix import expand
        ids = {c.cell_id for c in expand(conf)}
        gone = [o for o in only if o not in ids]
        given = [f for f, v in (("--frameworks", frameworks), ("--models", models),
                                ("--devices", devices), ("--batch-sizes", batch_sizes),
                                ("--precisions", precisions)) if v]
        if gone and given:  # (an id never in the run: the runner's did-you-mean)
            raise UserError(f"cell {gone[0]!r} is not in the sweep as narrowed by "
                            f"{', '.join(given)}; nothing would run", "--only")
    from .config import schema as cfg
    for note in cfg.notes(conf):
        err_console().print(f"warning: {escape(note)}", highlight=False, soft_wrap=True)
    conf = _with_executor(conf, executor, ray_address)
    rep_dir = report_dir or Path("reports") / out_dir.resolve().name
    if report:  # checked before any cell: a finished sweep must not die on its report folder
        guards.writable_dir(rep_dir, "report directory")
        guards.refuse_links(rep_dir, REPORT_FILES, "the report's")
    from .run import progress, runner
    hooks = progress.RichHooks(err_console())
    try:
        outcome = runner.run_sweep(conf, out_dir, runner.Plan(mode, tuple(only or ()), archive),
                                   hooks)
    except Interrupted as exc:  # during a blocking call (Ray connecting): typer would say 130
        raise typer.Exit(_aborted(exc)) from None
    prefix = ["mlbench", "run", "--output", str(out_dir)]
    progress.print_summary(outcome, err_console(), prefix)
    if report and outcome.latest:
        _report_after_sweep(out_dir, rep_dir)
    raise typer.Exit(outcome.exit_code)


def _report_after_sweep(out_dir: Path, rep_dir: Path) -> None:
    """The results are stored already; whatever goes wrong here is a warning and the command
    that builds the report later, never an error that hides a finished sweep."""
    import shlex
    later = shlex.join(["mlbench", "report", "--results", str(out_dir), "--output",
                        str(rep_dir)])
    try:
        from .report import build_report
        index = build_report(out_dir, rep_dir)
        err_console().print(f"report: {escape(str(index))}")
    except Exception as exc:  # noqa: BLE001 - the sweep's results are safe whatever this is
        what = str(exc) if isinstance(exc, UserError) else \
            f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc}"
        err_console().print(f"warning: report not written: {escape(_cut(what, 300))}; the results "
                          f"are stored in {escape(str(out_dir))}; build the report later with: "
                          f"{escape(later)}", highlight=False, soft_wrap=True)


def _with_executor(conf: cfg.Config, kind: str | None, address: str | None) -> cfg.Config:
    """--executor / --ray-address on top of the config's `executor:`."""
    if kind is not None and kind not in executor_table.EXECUTORS:
        raise UserError(f"unknown executor {kind!r}; use "
                        f"{' or '.join(executor_table.names())}", "--executor")
    if address is not None and kind is not None and kind not in executor_table.takes("address"):
        raise UserError("--ray-address needs --executor ray", "--ray-address")
    if kind is None and address is None:
        return conf
    update: dict = {"kind": kind or "ray"}
    if address is not None:
        if not address.strip():
            raise UserError("empty Ray address", "--ray-address")
        update["address"] = address
    return conf.model_copy(update={"executor": conf.executor.model_copy(update=update)})


def _resolve_config(path: Path | None, overrides: dict, output: Path | None, mode: str):
    """A new run reads --config (or the default); --resume/--only/--failed reuse the run's stored
    config, with command-line overrides on top (cells whose request changed run again). A
    --config given with them must be the run's own config: another file would mix two sweeps'
    cells in one run, so it is refused with the keys that differ."""
    if mode != "new":
        from .config import schema as cfg, guards
        out_dir = output or Path("results")
        stored = out_dir / "run.json"
        if not (stored.exists() or stored.is_symlink()):
            if path is None:
                raise UserError("nothing to resume: no run.json here", str(out_dir))
        else:
            from .results import store
            guards.run_layout(out_dir)
            raw = store.read_run(stored).config
            _check_model_names(overrides, raw)
            stored_conf = cfg.validate(raw, str(stored), overrides)
            if path is None:
                return stored_conf, out_dir
            conf = _load_config(path, overrides)
            # where the cells run (executor.*) is not part of what was measured: not a change
            changed = [k for k in cfg.differences(cfg.dump(stored_conf), cfg.dump(conf))
                       if k.split(".")[0] != "executor"]
            from .run.matrix import expand
            before = {c.cell_id for c in expand(stored_conf)}
            after = {c.cell_id for c in expand(conf)}
            if before != after:
                diff = sorted(after - before) or sorted(before - after)
                raise UserError(
                    f"--{mode} with a config whose cells differ from the run's "
                    f"({len(after - before)} new, {len(before - after)} gone, e.g. {diff[0]}); "
                    f"changed: {', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}. "
                    "One run holds one sweep: resume without --config, or start a new run with "
                    "--archive or another --output", f"{path}: {changed[0] if changed else ''}")
            if changed:
                err_console().print(
                    f"warning: the config differs from the run's stored one in "
                    f"{escape(', '.join(changed[:6]))}{' ...' if len(changed) > 6 else ''}; "
                    "cells whose request changed run again", highlight=False, soft_wrap=True)
            return conf, out_dir
    conf = _load_config(path, overrides)
    return conf, output or Path(conf.output_dir)


def _load_config(path: Path | None, overrides: dict) -> cfg.Config:
    """config.load_config, with the file read (and its YAML parsed) before pydantic loads: a
    missing file or a YAML syntax error answers without building the config's models."""
    from .config import configfile
    got = configfile.read(path)
    _check_model_names(overrides, got.raw)
    from .config import schema as cfg
    return cfg.from_file(got, overrides)


def _check_model_names(overrides: dict, raw: Any) -> None:
    """`--models NAME`: a name that is neither built in nor one of the config's own models is
    refused with the closest of both suggested (the config alone knows only the built-in)."""
    names = overrides.get("models")
    if not names:
        return
    from .config import catalog, usermodel
    why = usermodel.unknown_model(list(names), raw.get("models") if isinstance(raw, dict)
                                  else None, tuple(catalog.models()))
    if why:
        raise UserError(why, "command line: models")


@app.command("gate", cls=_Command)
def gate_cmd(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config "
                      "(default: the embedded quick CPU sweep)")] = None,
    frameworks: Annotated[ListOpt, typer.Option(help="e.g. --frameworks pytorch jax")] = None,
    models: Annotated[ListOpt, typer.Option(help="e.g. --models mlp cnn")] = None,
    devices: Annotated[ListOpt, typer.Option(help="e.g. --devices cpu")] = None,
    precisions: Annotated[ListOpt, typer.Option(help="fp32 bf16 fp16")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="where the gate's verdicts "
                                         "(verify.json) go")] = Path("results/gate"),
) -> None:
    """Run the equivalence gate: do the frameworks run the same model? Exit 1 if a row fails.

    Every framework loads the same weights and batches; the forward outputs, the loss and the
    losses after a few identical optimizer steps are compared against the numpy reference (mlp)
    or pairwise, with tolerances per precision, plus the parameter counts. `mlbench run` runs
    the same gate before its cells (--no-gate skips it); a cell that fails it is not ranked.
    """
    _gate(config, frameworks, models, devices, precisions, output)


@app.command("verify", cls=_Command, hidden=True)
def verify_cmd(
    config: Annotated[Optional[Path], typer.Option("--config", "-c")] = None,
    frameworks: Annotated[ListOpt, typer.Option()] = None,
    models: Annotated[ListOpt, typer.Option()] = None,
    devices: Annotated[ListOpt, typer.Option()] = None,
    precisions: Annotated[ListOpt, typer.Option()] = None,
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("results/verify"),
) -> None:
    """The former name of `mlbench gate` (hidden; kept, with its former default output folder,
    so existing scripts keep working)."""
    _gate(config, frameworks, models, devices, precisions, output)


def _gate(config: Optional[Path], frameworks: ListOpt, models: ListOpt, devices: ListOpt,
          precisions: ListOpt, output: Path) -> None:
    from .config import guards
    overrides = {"frameworks": frameworks, "models": models, "devices": devices,
                 "precisions": precisions, "verify": True}
    conf = _load_config(config, overrides)
    guards.sane_path(output, "--output")  # a name the OS can hold, before anything reads it
    if (output / "run.json").exists():
        # a run's verdicts belong to its cells: rerunning them reruns their gate rows (merged)
        raise UserError(f"{output} holds a run; its gate reruns with its cells: mlbench run "
                        f"--output {output} --failed, --only CELL_ID or --resume; give "
                        "`mlbench gate` another --output", "--output")
    guards.writable_dir(output, "gate output directory")
    if output.is_dir():  # verify.json, the verify/ work folder: never links elsewhere
        guards.run_layout(output)
    from .run import preflight
    report = preflight.run_gate(conf, output, lambda t: err_console().print(escape(t)), again=True)
    if report is None:
        raise UserError("nothing for the gate to check: no ML framework or no present device in "
                        "the sweep", "command line")
    typer.echo(report.render_text())
    raise typer.Exit(0 if report.passed else 1)


@app.command(cls=_Command)
def report(
    results: Annotated[Path, typer.Option(help="results.json, results.jsonl or a run "
                                          "directory")] = Path("results/results.json"),
    output: Annotated[Path, typer.Option("--output", "-o", help="report directory")] =
        Path("reports/latest"),
) -> None:
    """Write the HTML report (and summary.csv, aggregated.parquet) for a run."""
    from .config import guards
    guards.sane_path(results, "--results")
    guards.no_link_loop(results, "--results")
    guards.writable_dir(output, "report directory")
    guards.refuse_links(output, REPORT_FILES, "the report's")
    from .report import build_report
    try:
        index = build_report(results, output)
    except OSError as exc:
        raise UserError(f"could not write the report: {exc.strerror or exc}",
                        str(exc.filename or output)) from None
    err_console().print(f"report: {escape(str(index))}")


@app.command(cls=_Command)
def compare(
    base: Annotated[Path, typer.Argument(help="baseline results")],
    new: Annotated[Path, typer.Argument(help="new results")],
    threshold: Annotated[float, typer.Option(help="relative change that counts (the margin "
                                             "the 95% interval must lie beyond)")] = 0.05,
    strict: Annotated[bool, typer.Option(help="the point change alone beyond the threshold "
                                         "regresses (the older rule)")] = False,
    drift: Annotated[float, typer.Option(help="the whole-run shift (every cell alike) put down "
                                         "to the machine: cells are judged against it; 0: "
                                         "off")] = 0.15,
) -> None:
    """Per-cell change between two runs, noise-aware (mlbench.analysis.decision's rule), and changed
    verdicts; exit 1 when a regression holds, 2 when the runs have no cell in common."""
    from .config import guards
    for name, value in (("base", base), ("new", new)):
        guards.sane_path(value, name)
        guards.no_link_loop(value, name)
    from .analysis.compare import compare as do_compare
    result = do_compare(base, new, threshold, strict=strict, drift=drift)
    typer.echo(result.render_text())
    raise typer.Exit(2 if result.nothing_compared else 1 if result.regressed else 0)


@app.command(cls=_Command)
def schema() -> None:
    """Print the JSON Schema of results.json (generated from mlbench.results.summary's models)."""
    from .results.summary import SCHEMA_FILE, schema_text
    typer.echo(SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.is_file()
               else schema_text(), nl=False)


@app.command("list", cls=_Command)
def list_cmd() -> None:
    """Frameworks (installed or not), their modes, models with presets, detected devices."""
    # catalog, the worker specs, package metadata and NVML only: no rich, pydantic, polars, plotly
    from .config import catalog
    from .host import gpu, sysinfo
    versions = sysinfo.framework_versions(catalog.FRAMEWORKS)
    _table("frameworks", ("framework", "installed", "version", "interpreter"),
           [(fw, "yes" if v else "no", v or "-", sys.executable) for fw, v in versions.items()])
    _table("modes (config `modes: [default, best]` runs both; a variant entry "
           "{framework, label, options} any other)",
           ("framework", "default (out of the box)", "best", "best options", "best label"),
           [tuple(str(v) for v in row.values()) for row in catalog.modes_table()])
    s = catalog.specs()
    rows = []
    for m in s.MODELS:
        for preset in s.PRESETS[m]:
            spec = s.model_spec(m, {"preset": preset})
            default = " (default)" if s.DEFAULT_PRESET[m] == preset else ""
            rows.append((m, preset + default, f"{s.count_params(spec)['trainable']:,}",
                         f"{s.flops_per_sample(spec)['forward']:,}"))
    _table("models (trainable parameters per preset)",
           ("model", "preset", "trainable params", "forward FLOPs/sample"), rows, right=(2, 3))
    rows = [("cpu", f"{sysinfo.cpu_model()} ({sysinfo.physical_cores()} cores)")]
    rows += [(f"cuda:{g['index']}", f"{g['name']} ({g['memory_bytes'] / 2**30:.0f} GiB)")
             for g in gpu.list_gpus()]
    _table("devices", ("device", "name"), rows)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]],
           right: tuple[int, ...] = ()) -> None:
    """A titled table as plain aligned text (no rich: `mlbench list` answers fast, and its
    output reads the same in a terminal, a pipe or a log)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [title, line(columns), line(tuple("-" * w for w in widths)), *map(line, rows), ""]
    sys.stdout.write("\n".join(out) + "\n")


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="print the version")] = False
          ) -> None:
    if version:
        typer.echo(f"mlbench {__version__}")
        raise typer.Exit()


def _refuse_empty_values(argv: list[str]) -> None:
    """An empty value never means "everything" or "here": `--only ""` would run the whole sweep,
    `-o ""` write into the current directory (Path("") is "."), `--frameworks ,` select none."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and eq and not value.strip(" ,"):
            raise UserError(f"{name} is given an empty value", "command line")
        if not arg.strip() or (i and argv[i - 1] in LIST_OPTIONS and not arg.strip(" ,")):
            flag = argv[i - 1] if i and argv[i - 1].startswith("-") else "an argument"
            raise UserError(f"{flag} is given an empty value {arg!r}", "command line")


def _internal_error(exc: BaseException, argv: list[str]) -> int:
    """A bug of mlbench: one line naming the command and a log file holding the traceback."""
    import tempfile
    import traceback
    command = next((a for a in argv if not a.startswith("-")), "mlbench")
    what = f"{type(exc).__name__}: {_cut(str(exc), 200)}"
    try:
        fd, log = tempfile.mkstemp(prefix="mlbench-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"mlbench {__version__}: {' '.join(argv)}\n")
            fh.write("".join(traceback.format_exception(exc)))
        where = f"the traceback is in {log}"
    except OSError as err:
        where = f"no log written ({err.strerror})"
    _error_line(f"error: internal error in 'mlbench {command}' ({what}); this is a bug of "
                f"mlbench, please report it; {where}")
    return EXIT_INTERNAL


def _aborted(exc: BaseException) -> int:
    """Ctrl-C (130) or SIGTERM (143) that stopped a blocking call (mlbench.run.interrupts)."""
    cause = exc if isinstance(exc, Interrupted) else exc.__cause__ or exc.__context__
    if isinstance(cause, Interrupted) and cause.signal_name == "SIGTERM":
        _error_line("aborted (SIGTERM)")
        return 143
    _error_line("aborted")
    return 130


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    try:
        _refuse_empty_values(raw)
        args = expand_list_args(raw)
        rc = app(args=args, prog_name="mlbench", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except UserError as exc:
        _error_line(f"error: {_cut(str(exc), MAX_ERROR_CHARS)}")
        return 2
    except typer.Exit as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # typer's own turn of Ctrl-C into 130
            return _aborted(exc.__cause__)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt) as exc:
        return _aborted(exc)
    except (MemoryError, RecursionError) as exc:
        return _internal_error(exc, raw)
    except Exception as exc:  # click usage errors: one line, like every other bad input
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `mlbench`: the help, as click
            sys.stderr.write(exc.format_message() + "\n")  # does (on stderr, exit code 2)
            return 2
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's, in typer
            _error_line(f"error: {exc.format_message()} (command line)")
            return 2
        return _internal_error(exc, raw)


if __name__ == "__main__":
    sys.exit(main())
