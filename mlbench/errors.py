"""The one error type for user mistakes. The CLI prints `error: <what> (<where>)` and exits 2."""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a config, a command-line value, a results file. Never shown as a traceback."""

    def __init__(self, what: str, where: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where

    def __str__(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what
