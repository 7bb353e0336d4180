"""The error types and exit codes of mlbench.

UserError: bad input; the CLI prints `error: <what> (<where>)` and exits 2 (EXIT_BAD_INPUT).
Interrupted: Ctrl-C or SIGTERM during a blocking call into a dependency (mlbench.run.interrupts);
exit 130 or 143. Anything else escaping a command is a bug of mlbench: one line naming the
command and a log file holding the traceback, exit 3 (EXIT_INTERNAL), never the 1 of "a cell
failed" or the 2 of bad input.
"""
from __future__ import annotations

EXIT_CELL_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class UserError(Exception):
    """Bad input: a config, a command-line value, a results file. Never shown as a traceback."""

    def __init__(self, what: str, where: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where

    def __str__(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT or SIGTERM) that stopped a blocking call; `signal_name` says which."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name
