"""Load a task's splits with Hugging Face `datasets`, from the Hub or a local mirror.

One code path serves both: a task names a Hub dataset id (`nyu-mll/glue`,
config `sst2`); when `HARNESS_DATA_DIR` (or `--data-dir`) points at a folder laid
out like the Hub's parquet exports (`<dir>/hf/datasets/<id>/<config>/<split>-*.parquet`)
and that folder holds the dataset, `datasets.load_dataset` reads the folder instead.
Either way the rows come back as `Examples`: one or two texts and a label.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import DatasetSource, TaskSpec, TrainingSettings
from harness.errors import DataMissingError

DATA_DIR_ENV = "HARNESS_DATA_DIR"
SUBSET_SEED = 0  # one fixed shuffle for subsets, so every seed of a suite sees the same data


@dataclass
class Examples:
    """Rows of one split: text(s), labels (int ids or float scores) and the row index."""

    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray
    row_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.text_a)

    def take(self, indices: np.ndarray) -> Examples:
        return Examples(
            text_a=[self.text_a[i] for i in indices],
            text_b=None if self.text_b is None else [self.text_b[i] for i in indices],
            labels=self.labels[indices],
            row_ids=self.row_ids[indices],
        )

    def texts(self) -> list[str]:
        return self.text_a + (self.text_b or [])

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts():
            digest.update(text.encode())
            digest.update(b"\0")
        digest.update(self.labels.tobytes())
        return digest.hexdigest()[:16]


@dataclass
class TaskData:
    train: Examples
    holdout: Examples | None  # monitors early stopping; carved out of train
    eval: dict[str, Examples]  # evaluation name ("" when single) → rows
    num_labels: int  # 1 for regression
    label_names: list[str] | None


def data_dir(explicit: str | None = None) -> Path | None:
    value = explicit or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def resolve_source(source: DatasetSource, mirror: Path | None) -> str:
    """The path `datasets.load_dataset` should read: the mirror's copy when it has one, else the id."""
    if mirror is not None:
        for candidate in (mirror / "hf" / "datasets" / source.path, mirror / source.path):
            if candidate.is_dir():
                return str(candidate)
    return source.path


def load_split(task: TaskSpec, split: str, mirror: Path | None):
    import datasets

    where = resolve_source(task.dataset, mirror)
    try:
        return datasets.load_dataset(
            where, task.dataset.name, split=split, revision=task.dataset.revision
        )
    except Exception as error:  # datasets raises many types for "not there"
        reason = (
            str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        )
        origin = (
            f"the local mirror {where}"
            if where != task.dataset.path
            else (
                f"the Hugging Face Hub (no mirror holds it{'' if mirror is None else f' under {mirror}'})"
            )
        )
        raise DataMissingError(
            f"task {task.name}: split {split!r} of {task.dataset.path} "
            f"(config {task.dataset.name}) could not be loaded from {origin}: {reason}. "
            f"Fix: point {DATA_DIR_ENV} or --data-dir at a folder laid out as "
            f"hf/datasets/{task.dataset.path}/{task.dataset.name}/<split>-*.parquet that has "
            "this split, or run where the Hub is reachable."
        ) from None


def to_examples(task: TaskSpec, dataset, split: str) -> Examples:
    """Rows as `Examples`; columns are read through Arrow at once, not row by row."""
    missing = [f for f in [*task.text_fields, task.label_field] if f not in dataset.column_names]
    if missing:
        raise DataMissingError(
            f"task {task.name}: split {split!r} has no column(s) {missing}; it has "
            f"{dataset.column_names}. Fix text_fields/label_field in the task YAML."
        )
    table = dataset.with_format("arrow")[:]
    dtype = np.float32 if task.problem_type == "regression" else np.int64
    labels = table.column(task.label_field).to_numpy().astype(dtype)
    if task.problem_type == "classification" and len(labels) and labels.min() < 0:
        raise DataMissingError(
            f"task {task.name}: split {split!r} has unlabelled rows (label -1, a hidden test "
            "split); evaluate on a labelled split or a slice of train such as 'train[-10%:]'."
        )
    has_idx = "idx" in table.column_names
    return Examples(
        text_a=table.column(task.text_fields[0]).to_pylist(),
        text_b=table.column(task.text_fields[1]).to_pylist() if task.is_pair else None,
        labels=labels,
        row_ids=table.column("idx").to_numpy() if has_idx else np.arange(len(labels)),
    )


def fixed_subset(examples: Examples, limit: int | None) -> Examples:
    """At most `limit` rows, drawn by one fixed shuffle (files such as IMDb are sorted by label)."""
    if limit is None or limit >= len(examples):
        return examples
    order = np.random.default_rng(SUBSET_SEED).permutation(len(examples))[:limit]
    return examples.take(np.sort(order))


def split_holdout(examples: Examples, fraction: float) -> tuple[Examples, Examples]:
    order = np.random.default_rng(SUBSET_SEED + 1).permutation(len(examples))
    size = max(1, int(round(len(examples) * fraction)))
    return examples.take(np.sort(order[size:])), examples.take(np.sort(order[:size]))


def load_task_data(
    task: TaskSpec, training: TrainingSettings, explicit_dir: str | None
) -> TaskData:
    mirror = data_dir(explicit_dir)
    train_raw = load_split(task, task.splits.train, mirror)
    label_names = None
    if task.problem_type == "classification":
        feature = train_raw.features[task.label_field]
        label_names = list(getattr(feature, "names", []) or [])
    train = fixed_subset(
        to_examples(task, train_raw, task.splits.train), training.max_train_examples
    )
    if task.problem_type == "regression":
        num_labels = 1
    else:
        num_labels = len(label_names) if label_names else int(train.labels.max()) + 1
    holdout = None
    if training.early_stopping_patience is not None:
        train, holdout = split_holdout(train, training.holdout_fraction)
    evaluation = {
        name: fixed_subset(
            to_examples(task, load_split(task, split, mirror), split), training.max_eval_examples
        )
        for name, split in task.splits.eval_splits().items()
    }
    return TaskData(train, holdout, evaluation, num_labels, label_names)
