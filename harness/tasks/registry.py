"""The task registry: where task and group YAMLs are found, and how they are read.

A task is one YAML file whose name is the task's name (`tickets.yaml` holds
`name: tickets`); a group score is one YAML file in a `groups/` folder beside the
tasks (`groups/glue.yaml`). They are looked up, first match winning, in:

1. `tasks/` beside the suite file (a suite and its own tasks travel together),
2. each `--tasks-dir` given on the command line, then each folder of `HARNESS_TASKS_DIR`
   (`os.pathsep`-separated),
3. the built-ins shipped inside the package (`harness/tasks/builtin/`), so a wheel
   installed anywhere has them.

Relative `data_files` paths in a task file are resolved against that file's folder.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from harness.config import GroupSpec, TaskRef, TaskSpec
from harness.errors import InputError
from harness.yaml_io import read_mapping, validation_to_input_error

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
TASKS_DIR_ENV = "HARNESS_TASKS_DIR"
EXAMPLE = "docs/add-a-task.md"
T = TypeVar("T", TaskSpec, GroupSpec)


@dataclass(frozen=True)
class Found:
    """A task or group file and where it came from (for `harness list tasks`)."""

    name: str
    path: Path
    origin: str  # "beside the suite", "--tasks-dir", "HARNESS_TASKS_DIR" or "built-in"


def task_dirs(suite_dir: Path | None = None, extra: Sequence[Path] = ()) -> list[tuple[Path, str]]:
    """The folders searched, first match winning, each with its origin."""
    dirs = [(suite_dir / "tasks", "beside the suite")] if suite_dir is not None else []
    dirs += [(Path(d), "--tasks-dir") for d in extra]
    dirs += [(Path(p), TASKS_DIR_ENV) for p in os.environ.get(TASKS_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append((BUILTIN_DIR, "built-in"))
    return [(d, origin) for d, origin in dirs if d.is_dir()]


def _find(pattern: str, suite_dir: Path | None, extra: Sequence[Path]) -> dict[str, Found]:
    found: dict[str, Found] = {}
    for directory, origin in task_dirs(suite_dir, extra):
        for path in sorted(directory.glob(pattern)):
            found.setdefault(path.stem, Found(path.stem, path, origin))  # earlier folders win
    return dict(sorted(found.items()))


def available_tasks(suite_dir: Path | None = None, extra: Sequence[Path] = ()) -> dict[str, Found]:
    return _find("*.yaml", suite_dir, extra)


def available_groups(suite_dir: Path | None = None, extra: Sequence[Path] = ()) -> dict[str, Found]:
    return _find("groups/*.yaml", suite_dir, extra)


def _named_file(path: Path, schema: type[T], what: str, example: str) -> T:
    """A YAML file validated by `schema`, whose `name` must be its file name."""
    try:
        spec = schema.model_validate(read_mapping(path, what, example))
    except ValidationError as error:
        raise validation_to_input_error(path, error) from None
    if spec.name != path.stem:
        raise InputError(
            path,
            f"name {spec.name!r} differs from the file name {path.stem!r}",
            f"set `name: {path.stem}` or rename the file to {spec.name}.yaml",
            "name",
        )
    return spec


def load_task(path: Path) -> TaskSpec:
    """A task file, validated; its `name` must be its file name, so a copied file cannot
    pose as the task it was copied from."""
    task = _named_file(path, TaskSpec, "task", EXAMPLE)
    dataset = task.dataset.resolved(path.parent)
    for split, files in (dataset.data_files or {}).items():
        for file in files if isinstance(files, list) else [files]:
            exists = glob.glob(file) if glob.has_magic(file) else Path(file).is_file()
            if not exists:
                raise InputError(
                    path,
                    f"data file {file} is a folder" if Path(file).is_dir() else f"data file {file} not found",
                    "fix the path (relative paths start at the task file's folder)",
                    f"dataset.data_files.{split}",
                )
    return task.model_copy(update={"dataset": dataset})


def builtin_task(name: str) -> TaskSpec:
    return load_task(BUILTIN_DIR / f"{name}.yaml")


def load_group(path: Path) -> GroupSpec:
    return _named_file(path, GroupSpec, "group", "harness/tasks/builtin/groups/glue.yaml")


def resolve_task(
    ref: TaskRef, suite_path: Path, index: int, extra: Sequence[Path] = ()
) -> tuple[TaskSpec, Path]:
    """The task a suite's entry names, with the entry's data source or splits overriding,
    and the file it came from."""
    tasks = available_tasks(suite_path.parent, extra)
    if ref.name not in tasks:
        raise InputError(
            suite_path,
            f"unknown task {ref.name!r}",
            f"use one of {', '.join(tasks)} or add tasks/{ref.name}.yaml beside the suite",
            f"tasks.{index}.name",
        )
    path = tasks[ref.name].path
    task = load_task(path)
    overrides = {}
    if ref.dataset is not None:
        overrides["dataset"] = ref.dataset.resolved(suite_path.parent)
    if ref.splits is not None:
        overrides["splits"] = ref.splits
    if not overrides:
        return task, path
    try:
        return TaskSpec.model_validate({**task.model_dump(), **overrides}), suite_path
    except ValidationError as error:
        bad = validation_to_input_error(suite_path, error)
        bad.field = f"tasks.{index}.{bad.field}"
        raise bad from None


def resolve_group(
    task: TaskSpec, suite_path: Path, field: str, extra: Sequence[Path] = ()
) -> GroupSpec | None:
    """The group score a task counts in, from its group file; None for a task in no group."""
    if task.group is None:
        return None
    groups = available_groups(suite_path.parent, extra)
    if task.group not in groups:
        raise InputError(
            suite_path,
            f"task {task.name!r} names group {task.group!r}, which has no file",
            f"add tasks/groups/{task.group}.yaml beside the suite or remove `group` from the task",
            field,
        )
    return load_group(groups[task.group].path)
