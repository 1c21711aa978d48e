"""Seeds pooled into one entry per (task, model), and group scores (GLUE's) by their rule.

A group score is data (`GroupSpec`, from `<tasks dir>/groups/<name>.yaml`, carried in each
record): a member's task score is the unweighted mean of its listed metrics (GLUE: MRPC
and QQP mean(F1, accuracy), STS-B mean(Pearson, Spearman), MNLI mean(matched, mismatched
accuracy)); each named score (GLUE-9, GLUE-8) is the unweighted mean of its members' task
scores. A score over fewer members is returned as partial, with the members it lacks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from pydantic import ValidationError

from harness.config import GroupSpec, ModelSpec, TaskSpec, TrainingSettings
from harness.record import CellRecord
from harness.report.stats import Estimate, t_interval
from harness.trackers.contention import shared_share

# an entry's cost columns: the record's cost fields but memory (shown with its kind), and the
# token count the FLOPs are for
COST_COLUMNS = (*(name for name, c in CellRecord.costs().items() if not c.memory), "flops_tokens")
# the timed cost columns by the cell phase that times them (`record.contention`'s keys)
TIMED_COLUMNS: dict[str, list[str]] = {}
for _column, _phase in CellRecord.timings().items():
    TIMED_COLUMNS.setdefault(_phase, []).append(_column)
PHASE_WORDS = {
    "train": "training speed",
    "inference": "inference speed and latency",
    "deploy": "deployed backends' speed and latency",
}


def _on_gpu(records: pd.DataFrame) -> pd.Series:
    return records["device"] == "cuda" if "device" in records else pd.Series(False, index=records.index)


def cpu_hours(records: pd.DataFrame) -> float:
    """What the CPU cells cost: Σ wall seconds × torch threads, in hours (a thread counted as a
    core). A CUDA cell's CPU threads mostly wait for the GPU: it is counted in `gpu_hours`."""
    cpu = records[~_on_gpu(records)]
    total = 0.0
    for wall, threads in zip(cpu["wall_seconds"], cpu["threads"], strict=True):
        if _finite(wall):
            total += float(wall) * (float(threads) if _finite(threads) and threads > 0 else 1.0)
    return total / 3600


def gpu_hours(records: pd.DataFrame) -> float:
    """What the CUDA cells cost: Σ wall seconds of the cells that ran on a GPU, in hours."""
    walls = pd.to_numeric(records[_on_gpu(records)]["wall_seconds"], errors="coerce")
    return float(walls.fillna(0).sum()) / 3600


def _finite(value) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def member_score(group: GroupSpec, task: str, metrics: Mapping[str, float | None]) -> float | None:
    """One member's task score from its metrics (percent), or None when a metric is missing."""
    keys = group.members.get(task)
    if keys is None:
        return None
    values = [metrics.get(key) for key in keys]
    if all(_finite(value) for value in values):
        return sum(values) / len(values)
    for alias in group.aliases.get(task, ()):
        if _finite(metrics.get(alias)):
            return float(metrics[alias])
    return None


@dataclass(frozen=True)
class GroupScore:
    name: str  # e.g. "GLUE-9"
    value: float | None  # mean over the members present
    present: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.present) + len(self.missing)

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    @property
    def note(self) -> str:
        """Empty for a full score, else e.g. `partial: 5/8, missing mnli, qqp, qnli`."""
        if not self.partial or self.value is None:
            return ""
        return f"partial: {len(self.present)}/{self.total}, missing {', '.join(self.missing)}"


def score_over(name: str, members: tuple[str, ...], task_scores: Mapping[str, float | None]) -> GroupScore:
    present = tuple(task for task in members if _finite(task_scores.get(task)))
    missing = tuple(task for task in members if task not in present)
    value = sum(task_scores[task] for task in present) / len(present) if present else None
    return GroupScore(name, value, present, missing)


def group_scores(
    group: GroupSpec, metrics_by_task: Mapping[str, Mapping[str, float | None]]
) -> dict[str, GroupScore]:
    """Every named score of the group (GLUE-9, GLUE-8) from one model's metrics per task."""
    task_scores = {task: member_score(group, task, metrics_by_task.get(task, {})) for task in group.members}
    return {name: score_over(name, tuple(members), task_scores) for name, members in group.scores.items()}


# --------------------------------------------------------------------------- seeds pooled


@dataclass
class Entry:
    """One model on one task, its seeds pooled."""

    task: str
    model: str  # the suite's label
    variant: str  # label + sweep point + training size: the one thing these seeds measured
    primary_metric: str
    metrics: dict[str, Estimate]
    cost: dict[str, float | None]
    memory_mb: float | None
    memory_kind: str | None  # "CUDA" (peak allocated) or "RSS" (peak resident set)
    seeds: list[int]
    cells: list[tuple[str, str, int]]  # (run_id, cell_id, seed)
    eval_splits: tuple[str, ...]  # the dataset splits evaluated, e.g. ("validation",)
    eval_subset: int | None = None  # max_eval_examples when the evaluation was a subset
    train_examples: int | None = None  # training rows per epoch (the most over seeds)
    epochs: int | None = None  # epochs trained (the most over seeds)
    mixed_configs: bool = False  # seeds pooled from differing model/training settings
    # set when the seeds ran on different machines or timed phases shared the machine: whose costs these are
    cost_basis: str | None = None
    rank: str = ""  # filled in by the leader test, e.g. "1", "=1", "3"

    @property
    def primary(self) -> Estimate:
        return self.metrics.get(self.primary_metric, Estimate(None, None, 0))

    def metric_means(self) -> dict[str, float | None]:
        return {name: estimate.mean for name, estimate in self.metrics.items()}


def _mean(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _most(series: pd.Series) -> int | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return int(values.max()) if len(values) else None


def _eval_splits(config: dict) -> tuple[str, ...]:
    splits = (config.get("task") or {}).get("splits") or {}
    evaluation = splits.get("eval")
    if isinstance(evaluation, dict):
        return tuple(str(v) for v in evaluation.values())
    return (str(evaluation),) if evaluation else ()


SETTINGS_SCHEMAS = {"task": TaskSpec, "model": ModelSpec, "training": TrainingSettings}


def _settings_key(config: dict) -> str:
    """What must agree for seeds to be pooled: task, model and training settings and the device,
    each read through today's schema, so a field added since (stored by newer cells, absent from
    older ones) compares at its default instead of reading as a difference. A part today's schema
    rejects is compared as stored."""
    parts: dict = {"device": config.get("device")}
    for name, schema in SETTINGS_SCHEMAS.items():
        try:
            parts[name] = schema.model_validate(config.get(name)).model_dump(mode="json")
        except ValidationError:
            parts[name] = config.get(name)
    return json.dumps(parts, sort_keys=True, default=str)


def machine_name(row) -> str:
    """`cuda, NVIDIA H200` or `cpu (AMD EPYC)`: a record's device and processor names, each once,
    the most specific kept."""
    parts: list[str] = []
    for value in (row.get(key) for key in ("device", "device_name", "cpu_model")):
        if isinstance(value, str) and value and not any(value in part for part in parts):
            parts = [part for part in parts if part not in value] + [value]
    return ", ".join(parts)


def one_machine(group: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The cells whose speed and memory are pooled: those of the machine most seeds ran on. An
    average of a GPU's and a CPU's examples/s describes neither; accuracy pools over all seeds."""
    if "device" not in group:
        return group, None
    machines = group.apply(machine_name, axis=1)
    counts = machines.value_counts(sort=False)
    if len(counts) < 2:
        return group, None
    chosen = counts.idxmax()  # the first of equals, in record order
    others = sorted(set(machines) - {chosen})
    basis = (
        f"speed and memory from the {counts[chosen]} of {len(group)} seeds that ran on {chosen}; "
        f"the others ran on {'; '.join(others)}"
    )
    return group[machines == chosen], basis


def quiet_seeds(measured: pd.DataFrame, phase: str) -> tuple[pd.DataFrame, str | None]:
    """The cells whose `phase` had the machine to itself (others used at most `CONTENDED` of it:
    a shared machine only ever slows a timing), and a note when some or all did not. When every
    seed shared it, all are kept and the note says so: a figure marked, not a figure missing."""
    contention = measured["contention"] if "contention" in measured else pd.Series(None, index=measured.index)
    shares = [shared_share(value, phase) for value in contention]
    shared = pd.Series([share is not None for share in shares], index=measured.index)
    if not shared.any():
        return measured, None
    busy = f"while other processes used up to {max(s for s in shares if s is not None):.0%} of the machine"
    words = PHASE_WORDS.get(phase, f"{phase} timings")
    if shared.all():
        return measured, f"{words}: every seed measured {busy}"
    kept = ", ".join(str(int(seed)) for seed in sorted(measured["seed"][~shared]))
    dropped = ", ".join(str(int(seed)) for seed in sorted(measured["seed"][shared]))
    return measured[~shared], f"{words} from seed(s) {kept}; seed(s) {dropped} measured {busy}"


def timed_costs(measured: pd.DataFrame) -> tuple[dict[str, float | None], list[str]]:
    """Each timed cost's mean over `quiet_seeds`, with the notes of the phases that shared."""
    costs, notes = {}, []
    for phase, columns in TIMED_COLUMNS.items():
        quiet, note = quiet_seeds(measured, phase)
        costs |= {column: _mean(quiet[column]) for column in columns if column in measured}
        notes += [note] if note else []
    return costs, notes


def latest_per_seed(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One record per (task, variant, seed): an ok one before a failed one, then the latest
    finished; and the records dropped. A seed run twice (a suite's runs pooled, a re-run) would
    otherwise count twice and narrow the interval."""
    if records.empty:
        return records, records
    order = records.assign(
        _ok=records["status"] == "ok", _finished=records["finished_at"].fillna("").astype(str)
    ).sort_values(["_ok", "_finished", "run_id"], kind="stable")
    kept = records.index.isin(order.drop_duplicates(["task", "variant", "seed"], keep="last").index)
    return records.loc[kept], records.loc[~kept]


def rerun_lines(kept: pd.DataFrame, dropped: pd.DataFrame) -> list[str]:
    """Per seed that ran again: its earlier record's primary value, then the one shown."""
    shown = kept.set_index(["task", "variant", "seed"])
    lines = []
    for key, group in dropped.groupby(["task", "variant", "seed"], sort=True):
        earlier = ", ".join(f"{_value(row)} (run {row.run_id})" for row in group.itertuples())
        lines.append(f"{key[0]} {key[1]} seed {key[2]}: {earlier} → {_value(shown.loc[key])}")
    return lines


def _value(record) -> str:
    value = record.primary_value if record.status == "ok" else None
    return f"{record.status}" if value is None or pd.isna(value) else f"{value:.2f}"


def pool_seeds(records: pd.DataFrame, metric_order: Mapping[str, list[str]] | None = None) -> list[Entry]:
    """One `Entry` per (task, variant) of the ok records, metrics as mean ± t-interval."""
    entries = []
    ok = records[records["status"] == "ok"]
    for (task, variant), group in ok.groupby(["task", "variant"], sort=False):
        names = list((metric_order or {}).get(task, []))
        for metrics in group["metrics"]:
            names += [name for name in metrics if name not in names]
        estimates = {name: t_interval([metrics.get(name) for metrics in group["metrics"]]) for name in names}
        measured, cost_basis = one_machine(group)
        timed, timing_notes = timed_costs(measured)
        cuda = _mean(measured["cuda_peak_allocated_mb"]) if "cuda_peak_allocated_mb" in group else None
        rss = _mean(measured["peak_rss_mb"]) if "peak_rss_mb" in group else None
        configs = list(group["config"])
        limits = [(c.get("training") or {}).get("max_eval_examples") for c in configs]
        limits = [int(limit) for limit in limits if limit is not None]
        sizes = pd.to_numeric(group["eval_examples"], errors="coerce").dropna()
        cut = bool(limits) and (not len(sizes) or sizes.min() >= min(limits))
        entries.append(
            Entry(
                task=str(task),
                model=str(group["model"].iloc[0]),
                variant=str(variant),
                primary_metric=str(group["primary_metric"].iloc[0]),
                metrics=estimates,
                cost={column: _mean(measured[column]) for column in COST_COLUMNS if column in group} | timed,
                memory_mb=cuda if cuda is not None else rss,
                memory_kind="CUDA" if cuda is not None else ("RSS" if rss is not None else None),
                seeds=sorted(int(s) for s in group["seed"]),
                cells=[
                    (str(r.run_id), str(r.cell_id), int(r.seed))
                    for r in group[["run_id", "cell_id", "seed"]].itertuples()
                ],
                eval_splits=_eval_splits(configs[0]) if configs else (),
                eval_subset=max(limits) if cut else None,
                train_examples=_most(group["train_examples"]) if "train_examples" in group else None,
                epochs=_most(group["epochs"]) if "epochs" in group else None,
                cost_basis="; ".join(filter(None, [cost_basis, *timing_notes])) or None,
                mixed_configs=len({_settings_key(c) for c in configs}) > 1,
            )
        )
    return entries
