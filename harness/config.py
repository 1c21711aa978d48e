"""Pydantic models of suites and tasks, and their loading from YAML.

A suite is data: which tasks, which models (adapter name, label, parameters),
which seeds, and the training settings, overridable per task and per model.
Every model forbids unknown keys, so a typo is an error naming the field rather
than a setting silently ignored. YAML is read with `yaml.safe_load` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILTIN_TASK_DIR = REPO_ROOT / "suites" / "tasks"

MetricName = Literal["accuracy", "f1", "matthews_correlation", "pearson", "spearmanr"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- tasks


class DatasetSource(Strict):
    """Where a task's data lives: a Hub dataset id and config, as `datasets.load_dataset` takes them."""

    path: str = Field(description="Hub dataset id, e.g. nyu-mll/glue, or a local folder")
    name: str | None = Field(default=None, description="dataset config name, e.g. sst2")
    revision: str | None = None


class TaskSplits(Strict):
    """Split names, with `datasets` slicing allowed (`train[:90%]`).

    `eval` is one split, or a mapping from an evaluation name to a split (MNLI's
    matched and mismatched); with a mapping every metric is reported per name
    (`accuracy_matched`).
    """

    train: str
    eval: str | dict[str, str]

    def eval_splits(self) -> dict[str, str]:
        return {"": self.eval} if isinstance(self.eval, str) else dict(self.eval)


class TaskSpec(Strict):
    """One task, as written in `suites/tasks/<name>.yaml`."""

    name: str
    description: str = ""
    dataset: DatasetSource
    splits: TaskSplits
    text_fields: list[str] = Field(min_length=1, max_length=2)
    label_field: str = "label"
    problem_type: Literal["classification", "regression"] = "classification"
    metrics: list[MetricName] = Field(min_length=1)
    primary_metric: str
    group: str | None = None

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    def metric_keys(self) -> list[str]:
        """The metric names a cell of this task reports, e.g. `accuracy_matched`."""
        return [
            f"{metric}_{eval_name}" if eval_name else metric
            for eval_name in self.splits.eval_splits()
            for metric in self.metrics
        ]

    @model_validator(mode="after")
    def _primary_is_reported(self) -> TaskSpec:
        if self.primary_metric not in self.metric_keys():
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not among the reported metrics "
                f"{self.metric_keys()}"
            )
        regression_only = {"pearson", "spearmanr"}
        if self.problem_type == "regression" and not set(self.metrics) <= regression_only:
            raise ValueError("a regression task takes only the metrics pearson and spearmanr")
        if self.problem_type == "classification" and set(self.metrics) & regression_only:
            raise ValueError("pearson/spearmanr are for regression tasks")
        return self


# --------------------------------------------------------------------------- training


class TrainingSettings(Strict):
    """How every cell trains and evaluates; a suite sets them, a task or model overrides them."""

    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=128, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    max_seq_length: int = Field(default=128, ge=8)
    truncation_side: Literal["right", "left"] = Field(
        default="right",
        description="which end of a too-long text is cut: `left` keeps the end, where a "
        "review's verdict usually is (Keras `pad_sequences` truncates that way by default)",
    )
    max_train_examples: int | None = Field(default=None, ge=1)
    max_eval_examples: int | None = Field(default=None, ge=1)
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="epochs without improvement of the primary metric"
    )
    holdout_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="share of the training data held out to monitor early stopping "
        "(so the reported evaluation split never chooses the checkpoint)",
    )
    amp: bool = Field(default=True, description="mixed precision on CUDA; ignored on CPU")


class TaskRef(Strict):
    """A task named in a suite, optionally with its data source, splits or training overridden."""

    name: str
    dataset: DatasetSource | None = None
    splits: TaskSplits | None = None
    training: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(Strict):
    adapter: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    task_training: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="training overrides for this model on one task: {imdb: {...}}"
    )

    @property
    def display_label(self) -> str:
        return self.label or self.adapter


class Resources(Strict):
    """What one cell asks a Ray cluster for (`--executor ray`)."""

    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float | None = Field(
        default=None, ge=0, description="default: 1 when the cell runs on CUDA, else 0"
    )


class CompareSettings(Strict):
    """How `harness compare` judges this suite's runs (see harness/compare.py)."""

    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_effect: float = Field(default=0.5, ge=0, description="points a quality metric must drop")
    per_metric: dict[str, float] = Field(
        default_factory=dict, description='minimum effect per "task/metric", e.g. {"rte/accuracy": 2.0}'
    )
    compare_cost: bool = Field(default=True, description="compare speed and memory (same hardware only)")


class Suite(Strict):
    name: str
    description: str = ""
    tasks: list[TaskRef] = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    seeds: list[int] = Field(default=[0], min_length=1)
    training: TrainingSettings = TrainingSettings()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1, description="torch threads per cell")
    compare: CompareSettings = CompareSettings()
    resources: Resources = Resources()

    @field_validator("tasks", mode="before")
    @classmethod
    def _names_to_refs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _labels_unique(self) -> Suite:
        labels = [model.display_label for model in self.models]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"model labels must be unique; repeated: {duplicates}")
        return self


# --------------------------------------------------------------------------- cells


class CellSpec(Strict):
    """Everything one cell needs, fully resolved: it runs anywhere from this alone."""

    suite: str
    task: TaskSpec
    model: ModelSpec
    seed: int
    training: TrainingSettings
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    data_dir: str | None = None
    resources: Resources = Resources()

    @property
    def config_hash(self) -> str:
        """Identity for `--resume`: what the cell computes, not where its data is read from."""
        payload = self.model_dump(exclude={"data_dir", "suite", "resources"})
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    @property
    def cell_id(self) -> str:
        return f"{self.task.name}__{self.model.display_label}__seed{self.seed}"


# --------------------------------------------------------------------------- loading


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise InputError(path, "file not found", "check the path")
    try:
        return yaml.safe_load(path.read_text())
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
    return InputError(path, message, "see docs/suites.md for the allowed values", field)


def task_dirs(extra: Path | None = None) -> list[Path]:
    """Where task YAMLs are looked up: beside the suite, `HARNESS_TASKS_DIR`, then the built-ins."""
    dirs = [extra / "tasks"] if extra else []
    dirs += [Path(p) for p in os.environ.get("HARNESS_TASKS_DIR", "").split(os.pathsep) if p]
    dirs.append(BUILTIN_TASK_DIR)
    return [d for d in dirs if d.is_dir()]


def available_tasks(suite_dir: Path | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in reversed(task_dirs(suite_dir)):  # earlier directories win
        found.update({p.stem: p for p in sorted(directory.glob("*.yaml"))})
    return dict(sorted(found.items()))


def load_task(path: Path) -> TaskSpec:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, "a task file must be a mapping", "see suites/tasks/sst2.yaml")
    try:
        return TaskSpec.model_validate(raw)
    except ValidationError as error:
        raise validation_to_input_error(path, error) from None


def resolve_task(ref: TaskRef, suite_path: Path, index: int) -> TaskSpec:
    tasks = available_tasks(suite_path.parent)
    if ref.name not in tasks:
        raise InputError(
            suite_path,
            f"unknown task {ref.name!r}",
            f"use one of {', '.join(tasks)} or add suites/tasks/{ref.name}.yaml",
            f"tasks.{index}.name",
        )
    task = load_task(tasks[ref.name])
    overrides = {k: v for k, v in (("dataset", ref.dataset), ("splits", ref.splits)) if v}
    if not overrides:
        return task
    try:
        return TaskSpec.model_validate({**task.model_dump(), **overrides})
    except ValidationError as error:
        raise validation_to_input_error(suite_path, error) from None


def merged_training(
    base: TrainingSettings, overrides: dict[str, Any], where: Path, field: str
) -> TrainingSettings:
    try:
        return TrainingSettings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as error:
        bad = validation_to_input_error(where, error)
        bad.field = f"{field}.{bad.field}"
        raise bad from None


def load_suite(path: Path) -> Suite:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(path, "a suite must be a mapping", "see suites/quickstart.yaml")
    try:
        return Suite.model_validate(raw)
    except ValidationError as error:
        raise validation_to_input_error(path, error) from None


def expand_cells(suite: Suite, suite_path: Path, data_dir: str | None = None) -> list[CellSpec]:
    """Suite → cells (task × model × seed), each with its training settings and every
    adapter parameter (defaults included) resolved.

    Validates everything a cell will need before any cell runs: tasks exist and
    parse, adapters exist and accept their parameters, overrides are valid.
    """
    from harness.models.registry import resolve_model_spec

    models = [
        resolve_model_spec(model, suite_path, f"models.{index}") for index, model in enumerate(suite.models)
    ]
    tasks = [resolve_task(ref, suite_path, t_index) for t_index, ref in enumerate(suite.tasks)]
    task_names = {task.name for task in tasks}
    for index, model in enumerate(models):
        for name in model.task_training:
            if name not in task_names:
                raise InputError(
                    suite_path,
                    f"task_training names {name!r}, which is not a task of this suite",
                    f"use one of {', '.join(sorted(task_names))}",
                    f"models.{index}.task_training",
                )
    cells = []
    for t_index, (ref, task) in enumerate(zip(suite.tasks, tasks, strict=True)):
        task_training = merged_training(suite.training, ref.training, suite_path, f"tasks.{t_index}.training")
        for m_index, model in enumerate(models):
            training = merged_training(
                task_training, model.training, suite_path, f"models.{m_index}.training"
            )
            training = merged_training(
                training,
                model.task_training.get(task.name, {}),
                suite_path,
                f"models.{m_index}.task_training.{task.name}",
            )
            for seed in suite.seeds:
                cells.append(
                    CellSpec(
                        suite=suite.name,
                        task=task,
                        model=model,
                        seed=seed,
                        training=training,
                        device=suite.device,
                        threads=suite.threads,
                        data_dir=data_dir,
                        resources=suite.resources,
                    )
                )
    return cells
