"""Errors a user can cause, rendered as one line: where, what, and how to fix it.

Anything raised as `InputError` reaches the command line as a single message and
exit code 2, never a traceback. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class InputError(Exception):
    """Bad input from the user: a file, the field in it, what is wrong, and the fix."""

    where: str | Path
    problem: str
    fix: str = ""
    field: str = ""

    def __str__(self) -> str:
        location = f"{self.where}" + (f": {self.field}" if self.field else "")
        text = f"{location}: {self.problem}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class DataMissingError(RuntimeError):
    """A task's split is not where the loader looked; raised inside a cell, recorded as its error."""


class BadValue(ValueError):
    """A schema validator's complaint that knows its fix: `validation_to_input_error` puts the
    problem and this fix into the one line the user sees, in place of the generic pointer."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.fix = fix
