"""Bring a store written by an older version up to what records carry now, without retraining.

- FLOPs: older records hold torch's FLOP counter's figure, which missed what the counter does not
  see (the LSTM/GRU kernels; attention run by the fused kernel on a CPU) and so depended on the
  device. The formula of each model needs only its config and the token count, which older
  records did not keep: it is recovered as the length at which the counter, run again on the
  record's own model, reproduces the stored figure exactly (the counter as it ran on a CPU, or
  with every product seen, as it ran on CUDA). A figure no length reproduces is left alone
  and reported.
- Variant: the label, sweep point and training size, for records from before the field.
- Config hashes: a model's `task_training` and `task_params` for other tasks once entered every
  cell's config (and hash); planning now keeps only the cell's own task's. A record whose config
  holds another task's override, and whose hash the current formula reproduces from it, gets
  the narrowed config and its hash, so `--resume` recognises the cell instead of training it again.

Code, data and vocabulary fingerprints cannot be recovered: they stay empty ("unrecorded").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from harness import strict_json
from harness.batching import Encoded
from harness.config import CellSpec, ModelSpec, TaskSpec, TrainingSettings, variant_label
from harness.models.registry import TaskInfo, get_adapter
from harness.store import Store
from harness.trackers.work import counted_flops

VOCAB_SIZE = 1000  # embedding lookups are not FLOPs: any table size gives the same count


@dataclass
class UpgradeSummary:
    flops_recomputed: int = 0
    variants_filled: int = 0
    hashes_narrowed: int = 0
    changes: list[str] = field(default_factory=list)  # "task / model: before → after at T tokens"
    unresolved: list[str] = field(default_factory=list)


def _model(config: dict, label_names: list[str] | None) -> torch.nn.Module:
    task = TaskSpec.model_validate(config["task"])
    training = TrainingSettings.model_validate(config["training"])
    spec = ModelSpec.model_validate(config["model"])
    num_labels = 1 if task.problem_type == "regression" else len(label_names or task.label_names or [0, 1])
    info = TaskInfo(num_labels, task.is_pair, training.max_seq_length, VOCAB_SIZE, pad_token_id=0)
    torch.manual_seed(0)
    return get_adapter(spec).build(info).eval()


def _counter_at(model: torch.nn.Module) -> Callable[[int], float | None]:
    """torch's count of the model's forward pass over one row of the given length."""

    def count(tokens: int) -> float | None:
        row = Encoded.from_rows([[5] * tokens], [[0] * tokens], np.zeros(1, dtype=np.int64), 0)
        return counted_flops(model, row, tokens)

    return count


def _length_for(figure: float, count: Callable[[int], float | None], longest: int) -> int | None:
    """The token count at which `count` (increasing in the length) gives exactly `figure`."""
    low, high = 1, longest
    while low <= high:
        middle = (low + high) // 2
        value = count(middle) or 0.0
        if value == figure:
            return middle
        low, high = (middle + 1, high) if value < figure else (low, middle - 1)
    return None


def recovered_tokens(model: torch.nn.Module, figure: float, longest: int) -> int | None:
    """The length a stored counter figure was taken at: as the counter ran on a CPU, or with every
    product seen (as on CUDA, where the fused attention is counted), which the formula is."""
    tokens = _length_for(figure, _counter_at(model), longest)
    formula = getattr(model, "flops", None)
    if tokens is None and formula is not None:
        tokens = _length_for(figure, lambda t: formula(t), longest)
    return tokens


def narrowed(config: dict) -> dict | None:
    """`config` with the model's per-task overrides kept for the cell's own task only, as planning
    writes them now; None when it holds none for another task."""
    model, task = config["model"], config["task"]["name"]
    extra = {
        key: {name: value for name, value in model[key].items() if name == task}
        for key in ("task_training", "task_params")
        if set(model.get(key) or {}) - {task}
    }
    return {**config, "model": {**model, **extra}} if extra else None


def narrowed_hash(config: dict, stored_hash: str) -> tuple[str, dict] | None:
    """The narrowed config and its hash, when narrowing is the only difference: the current
    formula reproduces `stored_hash` from the config as stored (anything else is left alone)."""
    new = narrowed(config)
    if new is None:
        return None
    try:
        if CellSpec.model_validate(config).config_hash != stored_hash:
            return None
        return CellSpec.model_validate(new).config_hash, new
    except ValidationError:
        return None


def upgrade_store(path: Path) -> UpgradeSummary:
    summary = UpgradeSummary()
    with Store(path) as store:
        records = store.records()
        missing_variant = [
            (variant_label(model, json.loads(point or "null"), size), run_id, cell_id)
            for run_id, cell_id, model, point, size in store.db.execute(
                "SELECT run_id, cell_id, model, sweep_point, train_size FROM records WHERE variant IS NULL"
            )
        ]
        stale = records[(records["status"] == "ok") & records["flops_tokens"].isna()]
        updates = []
        models: dict[str, torch.nn.Module] = {}
        for row in stale.itertuples():
            if row.flops_per_example is None or np.isnan(row.flops_per_example):
                continue
            key = f"{row.task}/{row.config_hash}"
            if key not in models:
                models[key] = _model(row.config, row.label_names)
            model = models[key]
            longest = TrainingSettings.model_validate(row.config["training"]).max_seq_length
            tokens = recovered_tokens(model, float(row.flops_per_example), longest)
            figure = model.flops(tokens) if tokens is not None and hasattr(model, "flops") else None
            where = f"{row.task} / {row.variant} / seed {row.seed} ({row.device})"
            if figure is None:
                summary.unresolved.append(
                    f"{where}: {row.flops_per_example:,.0f} not reproduced at any length"
                )
                continue
            updates.append((float(figure), tokens, row.run_id, row.cell_id))
            summary.changes.append(
                f"{where}: {row.flops_per_example:,.0f} → {figure:,.0f} at {tokens} tokens"
            )
        hashes = [
            (new_hash, strict_json.dumps(config), row.run_id, row.cell_id)
            for row in records.itertuples()
            for new_hash, config in [narrowed_hash(row.config, row.config_hash) or (None, None)]
            if new_hash is not None
        ]
        with store.transaction() as db:
            db.executemany(
                "UPDATE records SET flops_per_example = ?, flops_tokens = ? WHERE run_id = ? AND cell_id = ?",
                updates,
            )
            db.executemany(
                "UPDATE records SET config_hash = ?, config = ? WHERE run_id = ? AND cell_id = ?", hashes
            )
            db.executemany("UPDATE records SET variant = ? WHERE run_id = ? AND cell_id = ?", missing_variant)
        summary.flops_recomputed, summary.variants_filled = len(updates), len(missing_variant)
        summary.hashes_narrowed = len(hashes)
    return summary
