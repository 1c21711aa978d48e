"""Planning: a suite file → validated cells (task × model × seed), before any cell runs.

Everything a cell will need is checked here, so that a typo fails in a second, not
after an hour of training: tasks exist and parse, adapters exist and accept their
parameters, overrides are valid, and every cell id is unique in the run (two cells with
one id would overwrite each other's record).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config import (
    BudgetPoint,
    CellSpec,
    GroupSpec,
    ModelSpec,
    Suite,
    TaskRef,
    TaskSpec,
    TrainingSettings,
    train_size_value,
)
from harness.errors import InputError
from harness.tasks.data import check_local_files, holdout_rows, split_rows, training_rows
from harness.tasks.registry import resolve_group, resolve_task
from harness.yaml_io import read_mapping, validation_to_input_error


def load_suite(path: Path) -> Suite:
    raw = read_mapping(path, "suite", "suites/quickstart.yaml")
    try:
        return Suite.model_validate(raw)
    except ValidationError as error:
        raise validation_to_input_error(path, error) from None


def merged_training(
    base: TrainingSettings, overrides: dict[str, Any], where: Path, field: str
) -> TrainingSettings:
    try:
        return TrainingSettings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as error:
        bad = validation_to_input_error(where, error)
        bad.field = f"{field}.{bad.field}"
        raise bad from None


def _check_unique(cells: list[tuple[CellSpec, str]], suite_path: Path) -> None:
    """Two entries that make the same cell id would overwrite one record with the other."""
    first: dict[str, str] = {}
    for cell, origin in cells:
        if cell.cell_id in first:
            earlier = first[cell.cell_id]
            task, model, seed = origin.split("/")
            if earlier.split("/")[0] != task:
                fix, field = (
                    "a task may appear once in a suite; for a variant copy its YAML under a new name",
                    task,
                )
            elif earlier.split("/")[2] != seed:
                fix, field = "remove the repeated seed", seed
            else:
                fix, field = "give the models labels that do not contain '__'", model
            raise InputError(
                suite_path, f"{earlier} and {origin} both make the cell {cell.cell_id!r}", fix, field
            )
        first[cell.cell_id] = origin


def model_on_task(model: ModelSpec, task: str, suite_path: Path, where: str) -> ModelSpec:
    """The model as it runs on one task: its params with that task's `task_params` (resolved and
    checked), and only that task's overrides kept, so that an override for another task does
    not change this cell's config hash."""
    from harness.models.registry import resolve_model_spec

    narrowed = model.model_copy(
        update={
            "task_training": {k: v for k, v in model.task_training.items() if k == task},
            "task_params": {k: v for k, v in model.task_params.items() if k == task},
        }
    )
    if task not in model.task_params:
        return narrowed
    spec = narrowed.model_copy(update={"params": {**model.params, **model.task_params[task]}})
    return resolve_model_spec(spec, suite_path, where, params_field=f"{where}.task_params.{task}")


def sweep_points(
    model: ModelSpec, suite_path: Path, where: str
) -> list[tuple[ModelSpec, dict[str, dict[str, Any]] | None]]:
    """The model once per point of its sweep (params resolved and checked), or once as it is."""
    from harness.models.registry import resolve_model_spec

    if model.sweep is None:
        return [(model, None)]
    points = []
    for point in model.sweep.points():
        spec = model.model_copy(update={"params": {**model.params, **point["params"]}})
        points.append((resolve_model_spec(spec, suite_path, f"{where}.sweep"), point))
    return points


def curve_training(training: TrainingSettings, size: Any, min_steps: int | None) -> TrainingSettings:
    """A curve point's settings: with `min_steps`, enough epochs over its `size` rows to take that
    many optimizer steps (the rows are known here, so the cell's settings say what it runs)."""
    rows = train_size_value(size)
    if min_steps is None or rows is None:
        return training
    steps_per_epoch = -(-rows // training.batch_size)
    epochs = max(training.epochs, -(-min_steps // steps_per_epoch))
    return training if epochs == training.epochs else training.model_copy(update={"epochs": epochs})


def check_training_rows(
    task: TaskSpec,
    rows: int | None,
    ref: TaskRef,
    t_index: int,
    size: Any,
    training: TrainingSettings,
    holdout: bool,
    suite_path: Path,
) -> None:
    """A learning-curve size or a holdout the training split cannot give is refused here, where
    the split's rows are known (a local file read, a mirror's parquet footers), not in every
    cell an hour later. `max_train_examples` only caps: larger than the split is fine."""
    if rows is None:
        return
    capped = rows if training.max_train_examples is None else min(rows, training.max_train_examples)
    available = training_rows(rows, training, holdout)
    if available < 1:
        raise InputError(
            suite_path,
            f"task {task.name}: the holdout ({holdout_rows(capped, training.holdout_fraction)} of "
            f"{capped} training row(s)) leaves none to train on",
            "train on more rows (the task's splits.train, max_train_examples), or drop early stopping",
            "training.holdout_fraction",
        )
    wanted = train_size_value(size)
    if wanted is not None and wanted > available:
        less = [
            name
            for name, on in (("max_train_examples", capped < rows), ("the holdout", available < capped))
            if on
        ]
        after = f" ({available:,} after {' and '.join(less)})" if less else ""
        raise InputError(
            suite_path,
            f"{wanted:,} rows asked of task {task.name}, whose training split "
            f"{task.splits.train!r} has {rows:,}{after}",
            f"use sizes up to {available:,}, or `full`",
            f"tasks.{t_index}.train_sizes" if ref.train_sizes else "train_sizes",
        )


def model_seeds(model: ModelSpec, seeds: list[int]) -> list[int]:
    """The suite's seeds, or only its first for a model whose fit the seed does not change."""
    from harness.models.registry import load_adapters

    return seeds if load_adapters()[model.adapter].seeded else seeds[:1]


def check_fitted(model: ModelSpec, training: TrainingSettings, suite_path: Path, where: str) -> None:
    """A fitted model (scikit-learn's way) has no epochs to stop early between."""
    from harness.models.registry import FittedAdapter, load_adapters

    fitted = issubclass(load_adapters()[model.adapter], FittedAdapter)
    if fitted and training.early_stopping_patience is not None:
        raise InputError(
            suite_path,
            f"{model.adapter} is fitted in one call, not trained by epochs: early stopping does not apply",
            "set early_stopping_patience for the trained models only (in their own training:)",
            f"{where}.training.early_stopping_patience",
        )


def check_task_fits(model: ModelSpec, task: TaskSpec, suite_path: Path, where: str) -> None:
    from harness.models.registry import get_adapter

    reason = get_adapter(model).unsupported_task(task)
    if reason is not None:
        raise InputError(
            suite_path,
            f"{model.display_label} cannot run on task {task.name}: {reason}",
            f"list this model's tasks without {task.name} (tasks: [...]), or change its params",
            f"{where}.tasks",
        )


def check_sizeable(suite: Suite, models: list[ModelSpec], suite_path: Path) -> None:
    """A budget sizes models by their width parameters: every model of the suite must have them."""
    from harness.models.registry import load_adapters

    if suite.budget is None:
        return
    for index, model in enumerate(models):
        if load_adapters()[model.adapter].width_fields is None:
            sizeable = [name for name, cls in load_adapters().items() if cls.width_fields is not None]
            raise InputError(
                suite_path,
                f"{model.display_label} ({model.adapter}) has no width parameters a budget can size",
                f"compare models that do ({', '.join(sizeable)}) in a suite of their own",
                f"models.{index}.adapter",
            )


def with_budget_label(model: ModelSpec, budget: BudgetPoint | None) -> ModelSpec:
    """The model as one size of an equal-size comparison: its label names the budget (`cnn@1M-params`),
    so that every table, plot and comparison treats each size as a model of its own."""
    if budget is None:
        return model
    return model.model_copy(update={"label": f"{model.display_label}@{budget.label}"})


def flat_point(point: dict[str, dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if point is None else {**point["params"], **point["training"]}


def expand_cells(
    suite: Suite, suite_path: Path, data_dir: str | None = None, tasks_dirs: Sequence[Path] = ()
) -> list[CellSpec]:
    """Suite → cells, each with its training settings and every adapter parameter
    (defaults included) resolved."""
    from harness.models.registry import resolve_model_spec

    models = [
        resolve_model_spec(model, suite_path, f"models.{index}") for index, model in enumerate(suite.models)
    ]
    resolved = [resolve_task(ref, suite_path, index, tasks_dirs) for index, ref in enumerate(suite.tasks)]
    tasks = [task for task, _ in resolved]
    plan = _Plan(suite, suite_path, data_dir, swept=any(model.sweep is not None for model in models))
    for task, task_file in resolved:
        if task.dataset.format is not None:
            plan.known_rows[task.name] = check_local_files(task, task_file)
    groups = [
        resolve_group(task, suite_path, f"tasks.{index}", tasks_dirs) for index, task in enumerate(tasks)
    ]
    _check_task_names(models, {task.name for task in tasks}, suite_path)
    check_sizeable(suite, models, suite_path)
    cells: list[tuple[CellSpec, str]] = []
    for t_index, (ref, task, group) in enumerate(zip(suite.tasks, tasks, groups, strict=True)):
        task_training = merged_training(suite.training, ref.training, suite_path, f"tasks.{t_index}.training")
        for m_index, model in enumerate(models):
            if model.tasks is None or task.name in model.tasks:
                cells += plan.model_cells(
                    _TaskPlace(t_index, ref, task, group, task_training), m_index, model
                )
    _check_unique(cells, suite_path)
    return [cell for cell, _ in cells]


def _check_task_names(models: Sequence[ModelSpec], task_names: set[str], suite_path: Path) -> None:
    """A model's per-task keys must name tasks of the suite."""
    for index, model in enumerate(models):
        for key in ("task_training", "task_params", "tasks"):
            for name in getattr(model, key) or ():
                if name not in task_names:
                    raise InputError(
                        suite_path,
                        f"{key} names {name!r}, which is not a task of this suite",
                        f"use one of {', '.join(sorted(task_names))}",
                        f"models.{index}.{key}",
                    )


@dataclass(frozen=True)
class _TaskPlace:
    """A task as the suite lists it: its place, its entry, its spec and group, its training settings."""

    index: int
    ref: TaskRef
    task: TaskSpec
    group: GroupSpec | None
    training: TrainingSettings  # the suite's, with the task entry's overrides


@dataclass
class _Plan:
    """What every cell of a suite shares while its cells are made."""

    suite: Suite
    suite_path: Path
    data_dir: str | None
    swept: bool  # a model of the suite has a sweep: every cell holds out training rows
    known_rows: dict[str, int | None] = field(default_factory=dict)  # a task's training rows, where known

    def train_rows(self, task: TaskSpec) -> int | None:
        if task.name not in self.known_rows:  # a Hub task: counted only when a cell needs it
            self.known_rows[task.name] = split_rows(task, task.splits.train, self.data_dir)
        return self.known_rows[task.name]

    def model_cells(self, place: _TaskPlace, m_index: int, model: ModelSpec) -> list[tuple[CellSpec, str]]:
        """One model's cells on one task, each with where the suite asked for it: every sweep
        point × budget × training size × seed."""
        suite, where, task = self.suite, f"models.{m_index}", place.task
        on_task = model_on_task(model, task.name, self.suite_path, where)
        budgets = suite.budget.points() if suite.budget is not None else [None]
        cells = []
        for (point_model, point), budget in itertools.product(
            sweep_points(on_task, self.suite_path, where), budgets
        ):
            point_model = with_budget_label(point_model, budget)
            training = self._point_training(place, model, point_model, point, where)
            check_fitted(point_model, training, self.suite_path, where)
            check_task_fits(point_model, task, self.suite_path, where)
            for size in place.ref.train_sizes or suite.train_sizes or [None]:
                sized = curve_training(training, size, place.ref.curve_min_steps or suite.curve_min_steps)
                if train_size_value(size) is not None or self.swept or sized.early_stopping_patience:
                    rows = self.train_rows(task)
                    check_training_rows(
                        task, rows, place.ref, place.index, size, sized, self.swept, self.suite_path
                    )
                for s_index, seed in enumerate(model_seeds(point_model, suite.seeds)):
                    spec = self._cell(place, point_model, seed, sized, size, point, budget)
                    cells.append((spec, f"tasks.{place.index}/{where}/seeds.{s_index}"))
        return cells

    def _point_training(
        self,
        place: _TaskPlace,
        model: ModelSpec,
        point_model: ModelSpec,
        point: dict[str, dict[str, Any]] | None,
        where: str,
    ) -> TrainingSettings:
        """The task's training settings, then the model's, then its per-task and sweep point's."""
        training = merged_training(place.training, point_model.training, self.suite_path, f"{where}.training")
        overrides = {**model.task_training.get(place.task.name, {}), **(point["training"] if point else {})}
        origin = f"{where}.task_training.{place.task.name}" if not point else f"{where}.sweep.training"
        return merged_training(training, overrides, self.suite_path, origin)

    def _cell(
        self,
        place: _TaskPlace,
        model: ModelSpec,
        seed: int,
        training: TrainingSettings,
        size: Any,
        point: dict[str, dict[str, Any]] | None,
        budget: BudgetPoint | None,
    ) -> CellSpec:
        suite, ref = self.suite, place.ref
        return CellSpec(
            suite=suite.name,
            task=place.task,
            model=model,
            seed=seed,
            training=training,
            device=suite.device,
            threads=suite.threads,
            data_dir=self.data_dir,
            resources=suite.resources,
            group=place.group,
            task_order=place.index,
            deploy=ref.deploy or suite.deploy,
            deploy_tolerance=suite.deploy_tolerance,
            deploy_windows=suite.deploy_windows,
            speed=suite.speed,
            probes=suite.probes,
            probe_rows=suite.probe_rows,
            keep_models=suite.keep_models,
            train_size=size,
            sweep_point=flat_point(point),
            holdout=self.swept,
            budget=budget,
            trajectory_every_steps=ref.trajectory_every_steps or suite.trajectory_every_steps,
        )
