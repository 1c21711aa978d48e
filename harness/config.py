"""The schemas: pydantic models of tasks, groups, suites, training settings and cells.

A suite is data: which tasks, which models (adapter name, label, parameters), which
seeds, and the training settings, overridable per task and per model. Every model
forbids unknown keys, so a typo is an error naming the field rather than a setting
silently ignored. Finding and reading the files is elsewhere: `tasks/registry.py`
(task and group YAMLs), `planning.py` (a suite file into cells).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.deploy.catalog import NAMES as BACKEND_NAMES
from harness.errors import BadValue
from harness.fingerprint import file_hash
from harness.tasks.metrics import get_metric, metric_names, two_class_misfit

Backend = Literal[BACKEND_NAMES]  # the catalog's names (harness/deploy/catalog.py)


def eager_first(backends: list[str]) -> list[str]:
    """Eager is the reference every other backend is checked and compared against: first, once."""
    return ["eager", *dict.fromkeys(b for b in backends if b != "eager")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- tasks


class DatasetSource(Strict):
    """Where a task's data lives: a Hub dataset (id and config, as `datasets.load_dataset`
    takes them) or local files read by `datasets`' own csv / json / parquet builders."""

    path: str | None = Field(default=None, description="Hub dataset id, e.g. nyu-mll/glue, or a local folder")
    name: str | None = Field(default=None, description="dataset config name, e.g. sst2")
    revision: str | None = None
    format: Literal["csv", "json", "parquet"] | None = Field(
        default=None, description="local files: the `datasets` builder that reads them"
    )
    data_files: dict[str, str | list[str]] | None = Field(
        default=None, description="local files per split, relative to the task file: {train: train.csv}"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSource:
        if (self.path is None) == (self.format is None):
            raise ValueError("give either `path` (a Hub id or folder) or `format` with `data_files`")
        if self.format is not None and not self.data_files:
            raise ValueError(f"format {self.format!r} needs `data_files`, e.g. {{train: data/train.csv}}")
        if self.format is None and self.data_files is not None:
            raise ValueError("`data_files` needs a `format`: csv, json or parquet")
        return self

    def resolved(self, base: Path) -> DatasetSource:
        """Local file paths made absolute against `base` (the folder of the task file)."""
        if not self.data_files:
            return self

        def absolute(item: str) -> str:
            return str((base / item).resolve()) if not Path(item).is_absolute() else item

        files = {
            split: [absolute(f) for f in value] if isinstance(value, list) else absolute(value)
            for split, value in self.data_files.items()
        }
        return self.model_copy(update={"data_files": files})

    def describe(self) -> str:
        if self.format is not None:
            return f"{self.format} files"
        return self.path + (f" / {self.name}" if self.name else "")


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


class SliceSpec(Strict):
    """A task's own slice of its evaluation rows (the report's slices table): rows whose text
    matches `regex` (case-insensitive, either text of a pair) and whose word count is within
    [min_words, max_words]; at least one of the three."""

    regex: str | None = None
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _something_to_match(self) -> SliceSpec:
        if self.regex is None and self.min_words is None and self.max_words is None:
            raise ValueError("a slice needs regex, min_words or max_words")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as error:
                raise ValueError(f"regex {self.regex!r} does not compile: {error}") from None
        return self


class TaskSpec(Strict):
    """One task, as written in `<tasks dir>/<name>.yaml` (the file name is the task's name)."""

    name: str
    title: str | None = Field(default=None, description="shown in reports; default: the name")
    description: str = ""
    dataset: DatasetSource
    splits: TaskSplits
    text_fields: list[str] = Field(min_length=1, max_length=2)
    label_field: str = "label"
    label_map: dict[str, int] | None = Field(
        default=None, description="string label → class id; default: the sorted set of train labels"
    )
    label_names: list[str] | None = Field(
        default=None, description="class names by id, when the labels are ids already (GLUE's ClassLabels)"
    )
    problem_type: Literal["classification", "regression"] = "classification"
    metrics: list[str] = Field(min_length=1)
    primary_metric: str
    group: str | None = Field(default=None, description="the group score this task counts in, e.g. glue")
    slices: dict[str, SliceSpec] = Field(
        default_factory=dict, description="the report's slices beyond the built-in ones, by name"
    )

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def num_labels(self) -> int | None:
        """The number of classes when the task file says (label_map or label_names)."""
        if self.label_map is not None:
            return len(self.label_map)
        return len(self.label_names) if self.label_names is not None else None

    def metric_keys(self) -> list[str]:
        """The metric names a cell of this task reports, e.g. `accuracy_matched`."""
        return [
            f"{metric}_{eval_name}" if eval_name else metric
            for eval_name in self.splits.eval_splits()
            for metric in self.metrics
        ]

    @field_validator("label_map", mode="before")
    @classmethod
    def _number_names_as_text(cls, value: Any) -> Any:
        """YAML reads `{0: 0, 1: 1}` with integer keys; the data's labels are matched as text."""
        if isinstance(value, dict):
            return {
                str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v for k, v in value.items()
            }
        return value

    @field_validator("label_map")
    @classmethod
    def _one_id_per_class(cls, label_map: dict[str, int] | None) -> dict[str, int] | None:
        """Ids 0..n-1, one name each: two names on one id would silently merge two classes
        (three names on 0 once trained a one-class task that scored 100%)."""
        if label_map is None:
            return None
        by_id: dict[int, list[str]] = {}
        for name, index in label_map.items():
            by_id.setdefault(index, []).append(name)
        shared = {index: names for index, names in sorted(by_id.items()) if len(names) > 1}
        if shared:
            index, names = next(iter(shared.items()))
            raise BadValue(
                f"{', '.join(map(repr, names))} share the id {index}, which would make them one class",
                "give each class its own id, 0..n-1 (merge names in the data, not in label_map)",
            )
        ids = sorted(by_id)
        if ids != list(range(len(ids))):
            raise BadValue(
                f"ids must be 0..{len(ids) - 1} without gaps; they are {ids}",
                f"number the {len(ids)} classes 0..{len(ids) - 1}",
            )
        if len(ids) < 2:
            raise BadValue("names a single class; a classifier needs two or more", "add the other classes")
        return label_map

    @field_validator("label_names")
    @classmethod
    def _distinct_names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise BadValue(
                f"names {repeated} more than once; a class id is its position in this list",
                "name each class once, in id order",
            )
        if len(names) < 2:
            raise BadValue("names a single class; a classifier needs two or more", "add the other classes")
        return names

    @field_validator("metrics")
    @classmethod
    def _metrics_registered(cls, metrics: list[str]) -> list[str]:
        unknown = [m for m in metrics if m not in metric_names()]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; registered: {', '.join(metric_names())}")
        return metrics

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        if self.primary_metric not in self.metric_keys():
            reported = self.metric_keys()
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not among the reported metrics {reported}"
            )
        wrong = [m for m in self.metrics if get_metric(m).problem_type != self.problem_type]
        if wrong:
            raise ValueError(f"metric(s) {wrong} are not for {self.problem_type} tasks")
        misfit = two_class_misfit(self.metrics, self.num_labels) if self.num_labels is not None else None
        if misfit:
            raise ValueError(f"{misfit}; use f1_macro or f1_micro")
        return self


class GroupSpec(Strict):
    """A group score over tasks, as data (`<tasks dir>/groups/<name>.yaml`).

    The rule: a member's task score is the mean of its listed metrics; each named score
    is the unweighted mean of its members' task scores (GLUE's rule, Wang et al. 2018).
    A score over fewer members than it names is reported as partial, with what it lacks.
    """

    name: str
    title: str
    description: str = ""
    members: dict[str, list[str]] = Field(min_length=1, description="task → metrics averaged first")
    scores: dict[str, list[str]] = Field(min_length=1, description="score name → member tasks")
    aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="a published metric that stands for a member's task score (MNLI's mean of m and mm)",
    )

    @model_validator(mode="after")
    def _scores_over_members(self) -> GroupSpec:
        for score, tasks in self.scores.items():
            unknown = [t for t in tasks if t not in self.members]
            if unknown:
                raise ValueError(f"score {score!r} names {unknown}, which are not members")
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
    amp_cpu: bool = Field(
        default=False,
        description="bf16 autocast for training on a CPU that computes bf16 natively (AVX512-BF16, AMX); "
        "off by default so a suite's results do not depend on which CPU ran it",
    )


MAX_SEED = 2**32 - 1  # numpy's seeding (`np.random.seed`) takes 0..2**32-1; torch takes those too


def check_seeds(seeds: list[int]) -> list[int]:
    """Seeds numpy and torch accept, checked here rather than failing every cell at its start.
    (A repeated seed is refused by planning, which names the entry.)"""
    wrong = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if wrong:
        raise BadValue(
            f"seed {wrong[0]} is out of range: numpy and torch take seeds 0..{MAX_SEED}",
            "use seeds >= 0, e.g. [0, 1, 2]",
        )
    return seeds


TrainSize = Annotated[int, Field(ge=1)] | Literal["full"]


def train_size_value(size: TrainSize | None) -> int | None:
    """A learning-curve size as a number of rows; None for the whole training set (or no curve)."""
    return None if size in (None, "full") else int(size)


def check_train_sizes(sizes: list[TrainSize]) -> list[TrainSize]:
    """Each size once, smallest first (`full` last)."""
    repeated = sorted({str(size) for size in sizes if sizes.count(size) > 1})
    if repeated:
        raise ValueError(f"train_sizes repeats {', '.join(repeated)}")
    return sorted(sizes, key=lambda size: (size == "full", 0 if size == "full" else size))


TrainSizes = Annotated[list[TrainSize], AfterValidator(check_train_sizes)]


class SweepSpec(Strict):
    """A grid over a model's parameters and training settings: every combination is one point,
    run on every seed; the point with the best mean over seeds on the held-out slice of train
    is the one reported."""

    params: dict[str, list[Any]] = Field(default_factory=dict)
    training: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _a_real_grid(self) -> SweepSpec:
        if not self.params and not self.training:
            raise ValueError("a sweep needs at least one list under `params` or `training`")
        empty = [k for k, v in {**self.params, **self.training}.items() if not v]
        if empty:
            raise ValueError(f"sweep values must be non-empty lists; empty: {empty}")
        both = sorted(set(self.params) & set(self.training))
        if both:
            raise ValueError(f"{both} appear under both params and training; sweep each in one place")
        return self

    def points(self) -> list[dict[str, dict[str, Any]]]:
        """Every combination, as {"params": {...}, "training": {...}}, in grid order."""
        axes = [("params", k, v) for k, v in self.params.items()]
        axes += [("training", k, v) for k, v in self.training.items()]
        points = []
        for values in itertools.product(*(values for _, _, values in axes)):
            point: dict[str, dict[str, Any]] = {"params": {}, "training": {}}
            for (where, key, _), value in zip(axes, values, strict=True):
                point[where][key] = value
            points.append(point)
        return points


class TaskRef(Strict):
    """A task named in a suite, optionally with its data source, splits or training overridden."""

    name: str
    dataset: DatasetSource | None = None
    splits: TaskSplits | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    train_sizes: TrainSizes | None = Field(
        default=None, description="this task's learning-curve sizes (default: the suite's)"
    )
    curve_min_steps: int | None = Field(
        default=None,
        ge=1,
        description="this task's least optimizer steps per curve size (default: the suite's)",
    )
    deploy: list[Backend] | None = Field(
        default=None,
        description="this task's inference backends (default: the suite's `deploy`)",
    )
    trajectory_every_steps: int | None = Field(
        default=None, ge=1, description="this task's trajectory interval (default: the suite's)"
    )

    @field_validator("deploy")
    @classmethod
    def _eager_first(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else eager_first(value)


class ModelSpec(Strict):
    adapter: str
    label: str | None = Field(default=None, description="any text; shown in reports")
    params: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    task_training: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="training overrides for this model on one task: {imdb: {...}}"
    )
    task_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="adapter parameter overrides for this model on one task: {mrpc: {dropout: 0.3}}",
    )
    sweep: SweepSpec | None = Field(default=None, description="a grid of params and training settings")
    tasks: list[str] | None = Field(
        default=None, description="the suite's tasks this model runs on (default: all of them)"
    )
    counterparts: dict[str, str | dict[str, str]] = Field(
        default_factory=dict,
        description="published models this one stands for (their names in the references) → why a "
        "gap to them is expected: one text for every task, or {task: text, '*': text for the rest}; "
        "empty text: ours should match theirs",
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


class SpeedSettings(Strict):
    """How long a cell spends timing its model (`trackers/speed.py`): how often a speed is
    taken, not what is computed, so not part of a cell's config hash."""

    passes: int = Field(
        default=5,
        ge=1,
        description="whole evaluation passes timed at most (within 10 s); the fastest counts",
    )
    latency_rows: int = Field(
        default=100, ge=1, description="single-row forwards timed for p50/p95 latency at most (within 3 s)"
    )


PROBE_NAMES = ("typos", "lowercase", "punctuation", "contractions", "names", "negation")  # harness/probes.py


class ProbeSpec(Strict):
    """A robustness probe after evaluation (harness/probes.py); `rate`: the share of the words or
    marks it perturbs, where it has one (typos 0.1, punctuation 1.0)."""

    name: Literal[PROBE_NAMES]  # type: ignore[valid-type]
    rate: float | None = Field(default=None, ge=0, le=1)


SI_PREFIXES = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def amount(value: Any) -> float:
    """A count as a number or with an SI prefix: `250k`, `0.25M`, `1M`, `4e6`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a count")
    if isinstance(value, str):
        text = value.strip()
        factor = SI_PREFIXES.get(text[-1:], 1.0)
        try:
            value = float(text[:-1] if factor != 1.0 else text) * factor
        except ValueError:
            raise ValueError(f"{value!r} is not a count: write e.g. 250k, 1M, 4e6") from None
    if not isinstance(value, int | float) or not value > 0 or value != value:
        raise ValueError(f"{value!r} is not a positive count")
    return float(value)


def amount_label(value: float) -> str:
    """`250000` → `250k`, `1e6` → `1M`, `2.5e6` → `2.5M`: a budget as a label reads it."""
    for prefix, factor in reversed(SI_PREFIXES.items()):
        if value >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.3g}"


Amounts = Annotated[list[float], AfterValidator(lambda values: sorted(set(values)))]


class BudgetPoint(Strict):
    """One size every model of an equal-size comparison is made to (harness/sizing.py)."""

    kind: Literal["params", "flops_per_example"]
    value: float = Field(gt=0)

    @property
    def label(self) -> str:
        return f"{amount_label(self.value)}-{'params' if self.kind == 'params' else 'flops'}"


class Budget(Strict):
    """Equal-size comparisons: each from-scratch model's widths sized to each value, within ±5%,
    of its parameter count or its forward FLOPs per example (one of the two)."""

    params: Amounts | None = None
    flops_per_example: Amounts | None = None

    @field_validator("params", "flops_per_example", mode="before")
    @classmethod
    def _counts(cls, value: Any) -> Any:
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("give at least one size, e.g. [250k, 1M, 4M]")
        return [amount(item) for item in values]

    @model_validator(mode="after")
    def _one_kind(self) -> Budget:
        if (self.params is None) == (self.flops_per_example is None):
            raise ValueError("give `params` or `flops_per_example` (one of the two)")
        return self

    def points(self) -> list[BudgetPoint]:
        kind = "params" if self.params is not None else "flops_per_example"
        return [BudgetPoint(kind=kind, value=value) for value in getattr(self, kind)]


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
    seeds: Annotated[list[int], AfterValidator(check_seeds)] = Field(default=[0], min_length=1)
    train_sizes: TrainSizes | None = Field(
        default=None,
        description="learning curves: train each cell on nested, label-stratified subsets of these "
        "sizes (rows, or `full`); the evaluation split stays whole",
    )
    curve_min_steps: int | None = Field(
        default=None,
        ge=1,
        description="learning curves: a size of n rows trains max(epochs, ⌈steps / ⌈n / batch_size⌉⌉) "
        "epochs, so that a small size is not cut short by an epoch count chosen for a large one",
    )
    training: TrainingSettings = TrainingSettings()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1, description="torch threads per cell")
    compare: CompareSettings = CompareSettings()
    resources: Resources = Resources()
    deploy: list[Backend] = Field(
        default=["eager"], min_length=1, description="inference backends each trained model is measured under"
    )
    deploy_tolerance: float = Field(
        default=1.0,
        ge=0,
        description="points of the primary metric a backend may lose against eager unflagged",
    )
    deploy_windows: int = Field(
        default=2,
        ge=1,
        le=5,
        description="processes each deploy backend is timed in, in sweeps of alternating order; "
        "the fastest counts (2: eager brackets the others, so drift cannot inflate a speed-up)",
    )
    speed: SpeedSettings = SpeedSettings()
    probes: list[ProbeSpec] = Field(
        default_factory=list, description="robustness probes after evaluation: names, or {name, rate}"
    )
    probe_rows: int = Field(default=2000, ge=1, description="evaluation rows each probe perturbs, at most")
    keep_models: bool = Field(
        default=False, description="keep each cell's trained model in the run folder (models/<cell>/)"
    )
    budget: Budget | None = Field(
        default=None,
        description="equal-size comparisons: every model once per size, its widths sized to it "
        "(`{params: [250k, 1M, 4M]}` or `{flops_per_example: [...]}`)",
    )
    trajectory_every_steps: int | None = Field(
        default=None,
        ge=1,
        description="score the learning trajectory every N optimizer steps as well as after each epoch",
    )

    @field_validator("probes", mode="before")
    @classmethod
    def _probe_names(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        probes = [{"name": item} if isinstance(item, str) else item for item in value]
        names = [probe.get("name") for probe in probes if isinstance(probe, dict)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"probe(s) {repeated} listed twice: each probe runs once per cell, at one rate")
        return probes

    @field_validator("deploy")
    @classmethod
    def _eager_first(cls, value: list[str]) -> list[str]:
        return eager_first(value)

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


def point_label(point: dict[str, Any]) -> str:
    """A sweep point in words: `dropout=0.3, learning_rate=0.001`."""
    return ", ".join(f"{key}={value}" for key, value in point.items())


def with_point(label: str, point: Any) -> str:
    """A model's label with its sweep point, when it has one: `cnn[dropout=0.3]`. Anything but a
    non-empty dict (None, or the NaN of a records frame's empty cell) is no point."""
    return f"{label}[{point_label(point)}]" if isinstance(point, dict) and point else label


def variant_label(label: str, point: Any, train_size: Any) -> str:
    """What a record measured, in one name: the model's label, its sweep point and its learning-curve
    size, `cnn[dropout=0.3]@n=250`. Seeds of one variant are pooled; different variants never are."""
    on_curve = isinstance(train_size, int | str)  # None off a curve (NaN in a records frame)
    return with_point(label, point) + (f"@n={train_size}" if on_curve else "")


# a kept model is a product too; a budget changes the model's widths
HASHED_WHEN_SET = ("train_size", "sweep_point", "holdout", "keep_models", "budget")


class CellSpec(Strict):
    """Everything one cell needs, fully resolved: it runs anywhere from this alone.

    `group`, `task_order` and `deploy_tolerance` are facts for the report (which group score the task counts
    in, where the suite listed it), and `deploy_windows`, `speed` and `trajectory_every_steps` how often a
    figure is taken, not what is computed; like `data_dir` they are not part of its `config_hash`.
    """

    suite: str
    task: TaskSpec
    model: ModelSpec
    seed: int
    training: TrainingSettings
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    data_dir: str | None = None
    resources: Resources = Resources()
    group: GroupSpec | None = None
    task_order: int = 0
    deploy: list[Backend] = Field(default_factory=lambda: ["eager"])
    deploy_tolerance: float = 1.0
    deploy_windows: int = 2
    speed: SpeedSettings = SpeedSettings()
    probes: list[ProbeSpec] = Field(default_factory=list)
    probe_rows: int = 2000
    keep_models: bool = False
    train_size: TrainSize | None = Field(
        default=None, description="a learning curve's point: rows, or `full`; None: not on a curve"
    )
    sweep_point: dict[str, Any] | None = Field(
        default=None, description="this cell's values of its model's sweep, e.g. {learning_rate: 0.001}"
    )
    holdout: bool = Field(
        default=False, description="hold out a slice of train and score it (sweep selection)"
    )
    budget: BudgetPoint | None = Field(
        default=None, description="the size this cell's model is made to (an equal-size comparison)"
    )
    trajectory_every_steps: int | None = Field(
        default=None, ge=1, description="score the trajectory every N steps too (not hashed: it is read only)"
    )

    @property
    def config_hash(self) -> str:
        """Identity for `--resume`: what the cell computes, not where its data is read from (local
        data files enter by their content). Fields added after the first stores enter only when
        set, so old hashes still match. The code that computes it is not in the hash: the runner
        compares the records' code fingerprints before it resumes (`harness/fingerprint.py`)."""
        payload = self.model_dump(
            exclude={
                "data_dir",
                "suite",
                "resources",
                "group",
                "task_order",
                "deploy_tolerance",
                "deploy_windows",
                "speed",
                "trajectory_every_steps",
            }
        )
        payload["task"] = {
            k: v for k, v in payload["task"].items() if k not in ("title", "description", "group", "slices")
        }
        files = payload["task"]["dataset"].get("data_files")
        if files:  # local files by their content, not their absolute path
            payload["task"]["dataset"]["data_files"] = {
                split: [file_hash(f) for f in value] if isinstance(value, list) else file_hash(value)
                for split, value in files.items()
            }
        for name in HASHED_WHEN_SET:
            if payload.get(name) in (None, False):
                payload.pop(name, None)
        if not payload["probes"]:  # added later: hashed only when asked for
            payload.pop("probes")
            payload.pop("probe_rows")
        if not payload["model"].get("task_params"):  # added later: hashed only when set
            payload["model"].pop("task_params", None)
        payload["model"].pop("counterparts", None)  # for the report only
        payload["model"].pop("tasks", None)  # which cells exist, not what one computes
        payload["model"].pop("sweep", None)  # the grid: a point is its own values, so a grid that
        # grows keeps the finished points' hashes (and `--resume` skips them)
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    @property
    def model_label(self) -> str:
        """The model's label, with this cell's sweep point when it has one: `cnn[dropout=0.3]`."""
        return with_point(self.model.display_label, self.sweep_point)

    @property
    def variant(self) -> str:
        """The model label, sweep point and training size: `cnn[dropout=0.3]@n=250`."""
        return variant_label(self.model.display_label, self.sweep_point, self.train_size)

    @property
    def cell_id(self) -> str:
        size = "" if self.train_size is None else f"__n{self.train_size}"
        return f"{self.task.name}__{self.model_label}{size}__seed{self.seed}"
