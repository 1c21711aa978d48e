"""The result record: one flat, typed row per cell (schema in docs/architecture.md).

A figure that was not measured is `None` (NULL in the store, empty in tables),
never 0: a CPU cell has no CUDA memory figure, a failed cell has no metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.config import variant_label

if TYPE_CHECKING:
    from harness.config import CellSpec


@dataclass(frozen=True)
class Cost:
    """A field that is a cost of the cell: which way is better, and the relative change `compare`
    calls a regression on the same hardware (None: shown, never compared, e.g. a deterministic
    count). Memory fields are shown as the entry's memory with its kind, not as a column. A timed
    field names the cell phase that timed it, whose contention (`record.contention`) marks it."""

    higher_is_better: bool
    tolerance: float | None = None
    memory: bool = False
    phase: str | None = None


def cost(
    higher_is_better: bool, tolerance: float | None = None, memory: bool = False, phase: str | None = None
) -> Any:
    return field(default=None, metadata={"cost": Cost(higher_is_better, tolerance, memory, phase)})


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class CellRecord:
    # identity
    run_id: str
    cell_id: str
    suite: str
    task: str
    model: str  # the suite's label for the model
    variant: str  # label + sweep point + training size: what seeds are pooled over (`CellSpec.variant`)
    adapter: str
    seed: int
    config_hash: str
    status: str = "failed"  # "ok" or "failed"
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know, e.g. a pad token added
    # quality
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    primary_value: float | None = None
    # data
    label_names: list[str] | None = None  # class names by id (the mapping of string labels)
    train_examples: int | None = None
    eval_examples: int | None = None
    train_size: str | None = None  # a learning curve's point: "250", "full"; None off a curve
    # tuning
    sweep_point: dict[str, Any] | None = None  # this cell's values of its model's sweep
    holdout_metrics: dict[str, float] = field(default_factory=dict)  # on the held-out slice of train
    # training
    epochs: int | None = None
    best_epoch: int | None = None
    steps: int | None = None
    train_seconds: float | None = None
    train_examples_per_s: float | None = cost(higher_is_better=True, tolerance=0.10, phase="train")
    train_tokens_per_s: float | None = None
    # the learning trajectory: {split, metric, points: [{step, epoch, examples, train_seconds,
    # train_flops, value}]}, after each epoch (and every N steps); see harness/train.py
    trajectory: dict[str, Any] = field(default_factory=dict)
    # an equal-size comparison: {model, kind, target, value, error, widths, tokens}; see harness/sizing.py
    sizing: dict[str, Any] = field(default_factory=dict)
    # inference
    # the fastest fp32 pass over the evaluation split at the eval batch size (trackers/speed.py)
    infer_examples_per_s: float | None = cost(higher_is_better=True, tolerance=0.10, phase="inference")
    latency_p50_ms: float | None = cost(higher_is_better=False, tolerance=0.10, phase="inference")
    latency_p95_ms: float | None = cost(higher_is_better=False, phase="inference")
    # memory
    peak_rss_mb: float | None = cost(higher_is_better=False, tolerance=0.05, memory=True)
    cuda_peak_allocated_mb: float | None = cost(higher_is_better=False, tolerance=0.05, memory=True)
    cuda_peak_reserved_mb: float | None = None
    # size and work
    params_total: int | None = cost(higher_is_better=False)
    params_trainable: int | None = None
    # forward, from the model's formula (same on every device)
    flops_per_example: float | None = cost(higher_is_better=False)
    flops_tokens: int | None = None  # the token count flops_per_example is for
    # deployment: backend → {status, reason, metrics, infer_examples_per_s, latency, peak_mb, size_mb, ...}
    deployed: dict[str, dict[str, Any]] = field(default_factory=dict)
    # robustness probes: probe (or "worst-case") → {status, reason, rate, rows, changed, metrics,
    # clean_metrics, invariance, moved}; see harness/probes.py
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    probe_seconds: float | None = None  # the probe phase's time (perturbing, encoding, predicting)
    # provenance
    device: str | None = None
    device_name: str | None = None
    cpu_model: str | None = None
    threads: int | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)  # CPU flags (bf16, AMX), GPU
    git_commit: str | None = None
    git_dirty: bool | None = None  # the package's files differed from git_commit
    code_version: str | None = None  # the package version
    code_hash: str | None = None  # hash of the package's source files: what --resume compares
    data_fingerprint: str | None = None  # hash of the rows trained and evaluated on
    vocab_hash: str | None = None  # hash of the tokenizer's token → id table
    versions: dict[str, str] = field(default_factory=dict)
    # phase (train, inference, deploy) → the share of the machine's CPU time other processes used
    # during it, 0–1 (trackers/contention.py): above CONTENDED, the phase's timings are marked
    contention: dict[str, float] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    wall_seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    predictions_file: str | None = None  # relative to the store's folder; set by the store
    model_dir: str | None = None  # the kept model's folder, relative to the store's; set by the store
    model_mb: float | None = None  # its size on disk

    @classmethod
    def for_spec(cls, spec: CellSpec, run_id: str) -> CellRecord:
        """A record of this cell with its identity filled in (status failed until it is ok)."""
        return cls(
            run_id=run_id,
            cell_id=spec.cell_id,
            suite=spec.suite,
            task=spec.task.name,
            model=spec.model.display_label,
            variant=spec.variant,
            adapter=spec.model.adapter,
            seed=spec.seed,
            config_hash=spec.config_hash,
            train_size=None if spec.train_size is None else str(spec.train_size),
            sweep_point=spec.sweep_point,
            primary_metric=spec.task.primary_metric,
            config=spec.model_dump(mode="json"),
            started_at=now(),
        )

    @classmethod
    def costs(cls) -> dict[str, Cost]:
        """The cost fields, in record order: what reports pool and `compare` judges."""
        return {f.name: f.metadata["cost"] for f in fields(cls) if "cost" in f.metadata}

    @classmethod
    def timings(cls) -> dict[str, str]:
        """The timed cost fields and the cell phase that times each (`contention`'s keys)."""
        return {name: cost.phase for name, cost in cls.costs().items() if cost.phase}

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fill_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """`variant` for records written before it was a field: from the label, sweep point and size."""
    if frame.empty:
        return frame.assign(variant=pd.Series(dtype=object))
    known = frame["variant"] if "variant" in frame else pd.Series(None, index=frame.index)
    columns = [frame.get(name, pd.Series(None, index=frame.index)) for name in ("sweep_point", "train_size")]
    filled = [
        variant if isinstance(variant, str) and variant else variant_label(str(model), point, size)
        for variant, model, point, size in zip(known, frame["model"], *columns, strict=True)
    ]
    return frame.assign(variant=filled)
