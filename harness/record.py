"""The result record: one flat, typed row per cell (schema in docs/architecture.md).

A figure that was not measured is `None` (NULL in the store, empty in tables),
never 0: a CPU cell has no CUDA memory figure, a failed cell has no metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class CellRecord:
    # identity
    run_id: str
    cell_id: str
    suite: str
    task: str
    model: str  # the suite's label for the model
    adapter: str
    seed: int
    config_hash: str
    status: str = "failed"  # "ok" or "failed"
    error: str | None = None
    # quality
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: str | None = None
    primary_value: float | None = None
    # data
    train_examples: int | None = None
    eval_examples: int | None = None
    # training
    epochs: int | None = None
    best_epoch: int | None = None
    steps: int | None = None
    train_seconds: float | None = None
    train_examples_per_s: float | None = None
    train_tokens_per_s: float | None = None
    # inference
    infer_examples_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    # memory
    peak_rss_mb: float | None = None
    cuda_peak_allocated_mb: float | None = None
    cuda_peak_reserved_mb: float | None = None
    # size and work
    params_total: int | None = None
    params_trainable: int | None = None
    flops_per_example: float | None = None
    # provenance
    device: str | None = None
    device_name: str | None = None
    cpu_model: str | None = None
    threads: int | None = None
    git_commit: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    wall_seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
