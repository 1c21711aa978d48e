"""Reading YAML the one safe way, and pydantic errors turned into one line for the user.

YAML is read with `yaml.safe_load` only: a suite or task file never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.errors import InputError


def read_yaml(path: Path) -> Any:
    if path.is_dir():
        raise InputError(path, "is a folder, not a YAML file", "pass the file's path")
    if not path.is_file():
        raise InputError(path, "file not found", "check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(path, f"not UTF-8 text (byte {error.start})", "save the file as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(path, f"malformed YAML{where}: {problem}", "fix the YAML syntax") from None


def validation_to_input_error(path: Path | str, error: ValidationError) -> InputError:
    """The first pydantic error as one line: the field's dotted path, what is wrong, the fix."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return InputError(path, "unknown key", "remove it or correct its spelling", field)
    if kind == "missing":
        return InputError(path, "required key is missing", "add it", field)
    message = first["msg"].removeprefix("Value error, ")
    fix = getattr(first.get("ctx", {}).get("error"), "fix", None)  # a `BadValue` knows its fix
    return InputError(path, message, fix or "see docs/suites.md for the allowed values", field)


def read_mapping(path: Path, what: str, example: str) -> dict:
    """A YAML file that must hold a mapping (a suite, a task, a group)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, f"a {what} file must be a mapping", f"see {example}")
    return raw
