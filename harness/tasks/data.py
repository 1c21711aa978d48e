"""Load a task's splits with Hugging Face `datasets`: from the Hub, a local mirror, or local files.

One code path serves all three: a task names a Hub dataset id (`nyu-mll/glue`,
config `sst2`); when `HARNESS_DATA_DIR` (or `--data-dir`) points at a folder laid
out like the Hub's parquet exports (`<dir>/hf/datasets/<id>/<config>/<split>-*.parquet`)
and that folder holds the dataset, `datasets.load_dataset` reads the folder instead.
A task on local files (`format: csv | json | parquet` with `data_files`) goes through
`datasets`' own builders for those formats. Either way the rows come back as
`Examples`: one or two texts and a label id (or a score for regression).

Labels: integer ids are used as they are (GLUE's ClassLabels); string labels are mapped
by the task's `label_map`, or else by the sorted set of the training split's labels,
and the names by id travel with the data into the record. A problem the user can fix
(a missing column, an empty text, a label the mapping does not know, a file that is not
UTF-8) is an `InputError` naming the task file, the field and the fix.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import DatasetSource, TaskSpec, TrainingSettings
from harness.errors import DataMissingError, InputError
from harness.tasks.metrics import two_class_misfit

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
    label_names: list[str] | None  # class names by id, when known


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


def _where(task: TaskSpec) -> str:
    """How an error names the task: its dataset, or its data files."""
    return f"task {task.name} ({task.dataset.describe()})"


def load_split(task: TaskSpec, split: str, mirror: Path | None):
    import datasets

    source = task.dataset
    if source.format is not None:
        try:
            return datasets.load_dataset(source.format, data_files=source.data_files, split=split)
        except Exception as error:  # the builders raise their own types, often wrapping the cause
            raise _local_files_error(task, split, error) from None
    where = resolve_source(source, mirror)
    try:
        return datasets.load_dataset(where, source.name, split=split, revision=source.revision)
    except Exception as error:  # datasets raises many types for "not there"
        reason = _first_line(error)
        origin = (
            f"the local mirror {where}"
            if where != source.path
            else f"the Hugging Face Hub (no mirror holds it{'' if mirror is None else f' under {mirror}'})"
        )
        raise DataMissingError(
            f"task {task.name}: split {split!r} of {source.path} "
            f"(config {source.name}) could not be loaded from {origin}: {reason}. "
            f"Fix: point {DATA_DIR_ENV} or --data-dir at a folder laid out as "
            f"hf/datasets/{source.path}/{source.name}/<split>-*.parquet that has "
            "this split, or run where the Hub is reachable."
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _is_text_column(dataset, column: str) -> bool:
    import pyarrow as pa

    if column not in dataset.column_names:
        return False  # to_examples names the missing column
    kind = dataset.data.schema.field(column).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _local_files_error(task: TaskSpec, split: str, error: BaseException) -> InputError:
    """One line for what went wrong reading a task's own files."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, UnicodeDecodeError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, UnicodeDecodeError):
        return InputError(
            _where(task),
            f"a data file is not UTF-8 (byte {cause.start})",
            "save it as UTF-8",
            "dataset.data_files",
        )
    empty = _empty_file(task)
    if empty is not None:
        file, what = empty
        return InputError(
            _where(task),
            f"data file {file} {what}",
            "put the rows in it, or leave the file out of data_files",
            "dataset.data_files",
        )
    mismatch = _column_mismatch(task)
    if mismatch is not None:
        return InputError(
            _where(task),
            mismatch,
            "give every data file the same columns (the splits are read as one dataset)",
            "dataset.data_files",
        )
    root = error
    if type(error).__name__ == "DatasetGenerationError":  # says nothing itself; its cause does
        while root.__cause__ or root.__context__:
            root = root.__cause__ or root.__context__
    reason = _first_line(root)
    if "corresponds to no data" in reason:  # a slice that selects nothing, e.g. train[:0]
        return InputError(_where(task), f"split {split!r} has no rows", "select a slice with rows", "splits")
    if isinstance(error, ValueError | KeyError) and "split" in reason.lower():
        splits = sorted(task.dataset.data_files or {})
        return InputError(
            _where(task),
            f"split {split!r} could not be read: {reason}",
            f"name one of {splits} in `splits`",
            "splits",
        )
    return InputError(
        _where(task),
        f"split {split!r} is not readable {task.dataset.format}: {reason}",
        f"check that the files are valid {task.dataset.format}, with the same column types in every file",
        "dataset.data_files",
    )


def _data_files(task: TaskSpec) -> list[str]:
    files = []
    for value in (task.dataset.data_files or {}).values():
        for pattern in value if isinstance(value, list) else [value]:
            files += sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    return files


def _columns_of(file: str, kind: str | None) -> list[str] | None:
    """A data file's column names from its first row (None when that cannot be told cheaply)."""
    import csv
    import json

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(file).names)
        with open(file, encoding="utf-8-sig", newline="") as handle:
            if kind == "csv":
                return next(csv.reader(handle), None)
            first = handle.readline()
            row = json.loads(first) if first.strip().startswith("{") else None
            return list(row) if isinstance(row, dict) else None
    except (OSError, UnicodeDecodeError, ValueError, ImportError):
        return None


def _column_mismatch(task: TaskSpec) -> str | None:
    """Which data files disagree on their columns: `datasets` reads every split as one
    dataset and fails with a cast error that names neither file."""
    seen: tuple[str, list[str]] | None = None
    for file in _data_files(task):
        columns = _columns_of(file, task.dataset.format)
        if columns is None:
            continue
        if seen is not None and sorted(columns) != sorted(seen[1]):
            return f"data file {file} has the columns {columns}, but {seen[0]} has {seen[1]}"
        seen = seen or (file, columns)
    return None


def _empty_file(task: TaskSpec) -> tuple[str, str] | None:
    """A data file of the task with no rows (empty, or a CSV with only its header), and which;
    `datasets` fails on one with a message that names neither the file nor the cause."""
    for file in _data_files(task):
        try:
            with open(file, "rb") as handle:
                head = handle.read(1 << 16)
        except OSError:
            continue  # the loader's own error says what is wrong with it
        text = head.decode("utf-8", errors="replace").strip()
        if not text:
            return file, "is empty"
        lines = [line for line in text.splitlines() if line.strip()]
        if task.dataset.format == "csv" and len(lines) == 1 and len(head) < 1 << 16:
            return file, "holds only a header row"
        if task.dataset.format == "json" and text.replace(" ", "") in ("[]", "{}"):
            return file, "holds no rows"
    return None


def _is_missing(value) -> bool:
    """An empty cell: null, NaN (pandas' reading of an empty numeric cell) or blank text."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _score(value) -> float | None:
    """A regression label as a finite number, or None."""
    if isinstance(value, bool):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def checked_labels(task: TaskSpec, values: list, split: str) -> list:
    """A split's raw labels, each present and of the task's kind, or an `InputError` naming the
    first bad row: a class is a name or a whole-number id (1.0 is read as 1, 1.5 is refused,
    never truncated), a regression label a finite number."""
    where, field = _where(task), task.label_field
    blank = [row for row, value in enumerate(values) if _is_missing(value)]
    if blank:
        more = f" (and {len(blank) - 1} more row(s))" if len(blank) > 1 else ""
        raise InputError(
            where,
            f"split {split!r} has no label in column {field!r} at row {blank[0]}{more}",
            "drop the rows without a label, or fill them in",
            field,
        )
    if task.problem_type == "regression":
        scores = [_score(value) for value in values]  # "0.5" in a JSON file is the number 0.5
        for row, (value, score) in enumerate(zip(values, scores, strict=True)):
            if score is None:
                raise InputError(
                    where,
                    f"split {split!r} row {row} has the label {value!r} in column {field!r}, "
                    "not a finite number (a regression task's labels are scores)",
                    "put numbers in the label column, or set problem_type: classification",
                    field,
                )
        return scores
    for row, value in enumerate(values):
        if not isinstance(value, str | int | float) or (isinstance(value, float) and not value.is_integer()):
            raise InputError(
                where,
                f"split {split!r} row {row} has the label {value!r} in column {field!r}, "
                "neither a class name nor a whole-number class id",
                "use class names or ids 0..n-1 in the label column; for scores set problem_type: regression",
                field,
            )
    names = [row for row, value in enumerate(values) if isinstance(value, str)]
    if names and len(names) < len(values):
        row = next(row for row, value in enumerate(values) if not isinstance(value, str))
        raise InputError(
            where,
            f"split {split!r} mixes class names and ids in column {field!r}: row {names[0]} has "
            f"{values[names[0]]!r}, row {row} has {values[row]!r}",
            "use one kind of label: names (with label_map if you like) or ids 0..n-1",
            field,
        )
    return [int(value) if isinstance(value, float) else value for value in values]


def _texts(task: TaskSpec, table, field: str, split: str) -> list[str]:
    texts = table.column(field).to_pylist()
    for row, text in enumerate(texts):
        if text is not None and not isinstance(text, str):
            raise InputError(
                _where(task),
                f"split {split!r} row {row} has {text!r} in column {field!r}, not text",
                "name text columns in text_fields",
                "text_fields",
            )
        if not isinstance(text, str) or not text.strip():
            raise InputError(
                _where(task),
                f"split {split!r} row {row} has an empty text in column {field!r}",
                "drop or fill the rows without text",
                "text_fields",
            )
    return texts


class LabelCoder:
    """Raw labels of a split → class ids, by the task's `label_map`, its ids, or the sorted
    set of the training split's string labels; and the class names by id."""

    def __init__(self, task: TaskSpec, train_strings: list[str], feature_names: list[str]):
        self.task = task
        self.mapping: dict[str, int] | None = None
        if task.label_map is not None:
            self.mapping = dict(task.label_map)
            by_id = sorted(task.label_map.items(), key=lambda item: item[1])
            self.names = list(dict.fromkeys(name for name, _ in by_id))
        elif train_strings:
            self.mapping = {name: index for index, name in enumerate(sorted(set(train_strings)))}
            self.names = list(self.mapping)
        else:
            self.names = list(task.label_names or feature_names)

    def encode(self, labels: list, split: str) -> np.ndarray:
        if self.mapping is None:
            if any(isinstance(v, str) for v in labels):
                raise InputError(
                    _where(self.task),
                    f"split {split!r} has string labels where the training split has ids",
                    "use one kind of label in every split, or set label_map",
                    self.task.label_field,
                )
            return np.asarray(labels, dtype=np.int64)
        keys = [v if isinstance(v, str) else str(v) for v in labels]
        unknown = sorted(set(keys) - set(self.mapping))
        if unknown:
            known = ", ".join(self.mapping)
            if self.task.label_map is not None:
                raise InputError(
                    _where(self.task),
                    f"split {split!r} has label(s) {unknown} that label_map does not name",
                    f"add them to label_map (it has {known}) or fix the data",
                    "label_map",
                )
            raise InputError(
                _where(self.task),
                f"split {split!r} has label(s) {unknown} that the training split never has",
                f"add training rows with those labels, or set label_map (train has {known})",
                self.task.label_field,
            )
        return np.array([self.mapping[key] for key in keys], dtype=np.int64)


def to_examples(task: TaskSpec, dataset, split: str, coder: LabelCoder | None) -> Examples:
    """Rows as `Examples`; columns are read through Arrow at once, not row by row."""
    import pyarrow as pa

    missing = [f for f in [*task.text_fields, task.label_field] if f not in dataset.column_names]
    if missing:
        raise InputError(
            _where(task),
            f"split {split!r} has no column(s) {missing}; it has {dataset.column_names}",
            "fix text_fields / label_field in the task file",
            "text_fields" if set(missing) - {task.label_field} else "label_field",
        )
    table = dataset.with_format("arrow")[:]
    column = table.column(task.label_field)
    values = column.to_pylist()
    if isinstance(column.type, pa.BaseExtensionType):  # JSON of mixed kinds, e.g. 1 and "pos": decoded
        values = dataset[task.label_field]
    raw_labels = checked_labels(task, values, split)
    if task.problem_type == "regression":
        labels = np.asarray(raw_labels, dtype=np.float32)
    else:
        labels = coder.encode(raw_labels, split)
        if len(labels) and labels.min() < 0 and task.dataset.format is not None:
            raise InputError(
                _where(task),
                f"split {split!r} has negative label id(s) {sorted(set(labels[labels < 0].tolist()))}",
                "class ids are 0..n-1: renumber them, or drop the unlabelled rows",
                task.label_field,
            )
        if len(labels) and labels.min() < 0:
            raise DataMissingError(
                f"task {task.name}: split {split!r} has unlabelled rows (label -1, a hidden test "
                "split); evaluate on a labelled split or a slice of train such as 'train[-10%:]'."
            )
    has_idx = "idx" in table.column_names
    return Examples(
        text_a=_texts(task, table, task.text_fields[0], split),
        text_b=_texts(task, table, task.text_fields[1], split) if task.is_pair else None,
        labels=labels,
        row_ids=table.column("idx").to_numpy() if has_idx else np.arange(len(labels)),
    )


def fixed_subset(examples: Examples, limit: int | None) -> Examples:
    """At most `limit` rows, drawn by one fixed shuffle (files such as IMDb are sorted by label)."""
    if limit is None or limit >= len(examples):
        return examples
    order = np.random.default_rng(SUBSET_SEED).permutation(len(examples))[:limit]
    return examples.take(np.sort(order))


def nested_order(labels: np.ndarray, classification: bool) -> np.ndarray:
    """One fixed order of the rows whose every prefix is a label-stratified sample.

    Each class is shuffled (one fixed seed, the same for every cell seed), and its j-th row of
    n_c gets the key (j + 0.5) / n_c; all rows sorted by key interleave the classes in
    proportion. A prefix of any length holds each class within one row of its share, and a
    shorter prefix lies inside a longer one: learning-curve subsets are nested and stratified.
    Regression scores are one stratum."""
    rng = np.random.default_rng(SUBSET_SEED + 2)
    strata = labels if classification else np.zeros(len(labels), dtype=np.int64)
    keys = np.empty(len(labels))
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        shuffled = members[rng.permutation(len(members))]
        keys[shuffled] = (np.arange(len(members)) + 0.5) / len(members)
    return np.argsort(keys, kind="stable")


def nested_subset(examples: Examples, size: int, classification: bool, where: str) -> Examples:
    """The first `size` rows of `nested_order`, in their original order."""
    if size > len(examples):
        raise InputError(
            where,
            f"train_sizes asks for {size:,} rows, but training has {len(examples):,}",
            f"use sizes up to {len(examples):,}, or `full`",
            "train_sizes",
        )
    return examples.take(np.sort(nested_order(examples.labels, classification)[:size]))


def holdout_rows(rows: int, fraction: float) -> int:
    return max(1, int(round(rows * fraction)))


def training_rows(rows: int, training: TrainingSettings, holdout: bool) -> int:
    """How many of a training split's `rows` a cell trains on before a learning curve takes its
    subset: at most `max_train_examples`, less the holdout (as `load_task_data` takes them)."""
    if training.max_train_examples is not None:
        rows = min(rows, training.max_train_examples)
    if holdout or training.early_stopping_patience is not None:
        rows -= holdout_rows(rows, training.holdout_fraction)
    return rows


def split_holdout(examples: Examples, fraction: float) -> tuple[Examples, Examples]:
    order = np.random.default_rng(SUBSET_SEED + 1).permutation(len(examples))
    size = holdout_rows(len(examples), fraction)
    return examples.take(np.sort(order[size:])), examples.take(np.sort(order[:size]))


@functools.cache
def _mirror_split_counts(where: str, name: str | None) -> dict[str, int] | None:
    """Rows per split of a mirrored dataset, from its parquet files' footers (no data read)."""
    import datasets
    import pyarrow.parquet as pq

    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        files = datasets.load_dataset_builder(where, name).config.data_files or {}
        counts = {}
        for split, paths in files.items():
            paths = [str(path) for path in paths]
            if not paths or not all(path.endswith(".parquet") for path in paths):
                return None
            counts[str(split)] = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
        return counts or None
    except Exception:  # noqa: BLE001 - a mirror this cannot read: the cell's loader says why
        return None
    finally:
        datasets.logging.set_verbosity(verbosity)


def split_rows(task: TaskSpec, split: str, explicit_dir: str | None) -> int | None:
    """The rows of a Hub task's split (slicing such as `train[:90%]` applied) as the local
    mirror counts them, without loading it; None when that is not known cheaply: no mirror
    (the Hub is not asked while planning), or no such split (the cell reports it)."""
    import datasets

    source = task.dataset
    if source.format is not None:
        return None
    where = resolve_source(source, data_dir(explicit_dir))
    counts = _mirror_split_counts(where, source.name) if where != source.path else None
    if counts is None:
        return None
    try:
        parts = datasets.ReadInstruction.from_spec(split).to_absolute(counts)
    except (ValueError, KeyError, AssertionError):
        return None
    return sum(part.to - part.from_ for part in parts)


def check_local_files(task: TaskSpec, task_file: Path) -> int:
    """Read a local-file task's splits once while the suite is validated, so a bad file
    (a missing column, an empty text, an unknown label, not UTF-8) is one line and exit 2
    before any cell trains, not a failed cell later. `datasets` caches what it read.
    Returns the training split's rows."""
    import datasets

    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # the one line below says what failed
    try:
        data = load_task_data(task, TrainingSettings(), None)
    except InputError as error:
        error.where = task_file
        raise
    finally:
        datasets.logging.set_verbosity(verbosity)
    misfit = two_class_misfit(task.metrics, data.num_labels)
    if task.problem_type == "classification" and misfit:
        raise InputError(task_file, misfit, "use f1_macro or f1_micro", "metrics")
    return len(data.train)


def load_task_data(
    task: TaskSpec,
    training: TrainingSettings,
    explicit_dir: str | None,
    holdout: bool = False,
    train_size: int | None = None,
) -> TaskData:
    """The task's splits as `Examples`. With `holdout` (or early stopping) a fixed slice of train
    is held out first; a learning curve's `train_size` rows are then taken from the rest, so
    that every size is scored on the same holdout."""
    mirror = data_dir(explicit_dir)
    train_raw = load_split(task, task.splits.train, mirror)
    coder = None
    if task.problem_type == "classification":
        feature = train_raw.features.get(task.label_field)
        names = list(getattr(feature, "names", []) or [])
        strings = (  # checked before they are sorted into classes: None and "" are no class
            checked_labels(task, train_raw[task.label_field], task.splits.train)
            if _is_text_column(train_raw, task.label_field)
            else []
        )
        coder = LabelCoder(task, strings, names)
    full_train = _with_rows(task, to_examples(task, train_raw, task.splits.train, coder), task.splits.train)
    train = fixed_subset(full_train, training.max_train_examples)
    if task.problem_type == "regression":
        num_labels, label_names = 1, None
    else:
        # classes are those of the whole split, not of a `max_train_examples` subset of it
        label_names = coder.names or None
        num_labels = len(label_names) if label_names else int(full_train.labels.max()) + 1
        if int(full_train.labels.max()) >= num_labels:
            raise InputError(
                _where(task),
                f"split {task.splits.train!r} has label id {int(full_train.labels.max())}, "
                f"but label_names names only {num_labels} classes",
                "add the missing names to label_names, or fix the ids in the data",
                "label_names",
            )
        if num_labels < 2:
            raise InputError(
                _where(task),
                f"split {task.splits.train!r} has a single class ({(label_names or [0])[0]}); "
                "a classifier needs two or more",
                "add rows of the other classes, or set problem_type: regression for scores",
                task.label_field,
            )
    held_out = None
    if holdout or training.early_stopping_patience is not None:
        train, held_out = split_holdout(train, training.holdout_fraction)
        if not len(train):
            raise InputError(
                _where(task),
                f"the holdout takes all {len(held_out)} training row(s), leaving none to train on",
                "train on more rows (splits.train, max_train_examples)",
                "training.holdout_fraction",
            )
    if train_size is not None:
        classification = task.problem_type == "classification"
        train = nested_subset(train, train_size, classification, _where(task))
    evaluation = {}
    for name, split in task.splits.eval_splits().items():
        examples = _with_rows(task, to_examples(task, load_split(task, split, mirror), split, coder), split)
        if coder is not None and coder.mapping is None:
            _check_eval_ids(task, examples, split, full_train, num_labels, declared=label_names is not None)
        evaluation[name] = fixed_subset(examples, training.max_eval_examples)
    return TaskData(train, held_out, evaluation, num_labels, label_names)


def _with_rows(task: TaskSpec, examples: Examples, split: str) -> Examples:
    if not len(examples):
        raise InputError(_where(task), f"split {split!r} has no rows", "point splits at rows", "splits")
    return examples


def _check_eval_ids(
    task: TaskSpec, examples: Examples, split: str, train: Examples, num_labels: int, declared: bool
) -> None:
    """Integer labels of an evaluation split are classes the model has: ids that label_names
    declares, or else ids the training split has. Any other id is a row no output can match,
    and the metric would be quietly wrong."""
    present = set(np.unique(examples.labels).tolist())
    if declared:
        beyond = sorted(index for index in present if index >= num_labels)
        if beyond:
            raise InputError(
                _where(task),
                f"split {split!r} has label id(s) {beyond}, but label_names names {num_labels} "
                f"classes (ids 0..{num_labels - 1})",
                "add the missing names to label_names, or fix the ids in the data",
                "label_names",
            )
        return
    known = set(np.unique(train.labels).tolist())
    unknown = sorted(present - known)
    if unknown:
        raise InputError(
            _where(task),
            f"split {split!r} has label id(s) {unknown} that the training split never has "
            f"(it has {sorted(known)})",
            "fix the ids in the data, or declare the classes with label_names (ids) or label_map (names)",
            task.label_field,
        )
