"""Published numbers to show beside our own runs: `harness/report/references.yaml` (shipped
with the package), or a file of the user's, one entry per number.

Each entry: model, task, split, metric, value (percent), source, and optionally a `note`:
what anyone comparing with this number should know (e.g. that it is the majority class's
score), shown as a reason beside every gap to it. A reference is never mixed into our
statistics; it is shown as a row marked "not run here", with its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError
from harness.yaml_io import read_yaml

BUILTIN_REFERENCES = Path(__file__).resolve().parent / "references.yaml"
FIELDS = ("model", "task", "split", "metric", "value", "source")
OPTIONAL = ("note",)


@dataclass(frozen=True)
class Reference:
    model: str
    task: str
    split: str
    metric: str
    value: float
    source: str
    note: str = ""


def load_references(path: Path) -> list[Reference]:
    """The entries of a references file; a malformed entry is an `InputError` naming it."""
    raw = read_yaml(path)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InputError(path, "a references file is a list of entries", "see harness/report/references.yaml")
    found = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InputError(path, "an entry must be a mapping", f"give {', '.join(FIELDS)}", str(index))
        missing = [name for name in FIELDS if entry.get(name) in (None, "")]
        unknown = sorted(set(entry) - set(FIELDS) - set(OPTIONAL))
        if missing or unknown:
            problem = f"missing {missing}" if missing else f"unknown key(s) {unknown}"
            fix = f"an entry has {', '.join(FIELDS)} (and optionally a note)"
            raise InputError(path, problem, fix, str(index))
        try:
            value = float(entry["value"])
        except (TypeError, ValueError):
            raise InputError(path, "value is not a number", "write a percentage", f"{index}.value") from None
        if not math.isfinite(value):
            raise InputError(path, "value is not finite", "write a percentage", f"{index}.value")
        found.append(
            Reference(
                model=str(entry["model"]),
                task=str(entry["task"]),
                split=str(entry["split"]),
                metric=str(entry["metric"]),
                value=value,
                source=str(entry["source"]),
                note=str(entry.get("note") or ""),
            )
        )
    return found


def default_references() -> Path | None:
    return BUILTIN_REFERENCES if BUILTIN_REFERENCES.is_file() else None
