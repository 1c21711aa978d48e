"""Tuned on the same budget: a swept model reported at the point its held-out slice chose.

A model with a `sweep` runs every point of its grid on every seed. Per (task, model, learning-
curve size) the point with the best mean over seeds of the task's primary metric on the
held-out slice of train is selected; the reported split never takes part in the choice.
Only the selected point's records go on to the leaderboard; the grid, each point's holdout
and evaluation means, and the budget (cells, CPU-hours: wall seconds × torch threads) are
shown beside it, so a reader can see that every model had the same number of tries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.config import point_label
from harness.report.scores import cpu_hours
from harness.report.stats import Estimate, t_interval
from harness.tasks.metrics import higher_is_better, split_metric_key


@dataclass
class SweepPoint:
    values: dict[str, Any]
    holdout: Estimate  # the primary metric on the held-out slice of train, over seeds
    evaluation: Estimate  # the primary metric on the evaluation split, over seeds
    selected: bool = False

    @property
    def label(self) -> str:
        return point_label(self.values)


@dataclass
class TunedModel:
    task: str
    model: str
    train_size: str | None
    metric: str  # the primary metric
    grid: dict[str, list[Any]]  # swept name → values
    points: list[SweepPoint] = field(default_factory=list)
    cells: int = 0
    seeds: int = 0
    cpu_hours: float = 0.0

    @property
    def selected(self) -> SweepPoint | None:
        return next((point for point in self.points if point.selected), None)


def point_key(point: dict[str, Any] | None) -> str:
    return json.dumps(point, sort_keys=True, default=str) if point else ""


def _grid(configs: pd.Series) -> dict[str, list[Any]]:
    """Swept name → values, over every record: a grid that grew between `--resume`s shows whole
    (each record keeps the grid of the run that made it)."""
    grid: dict[str, list[Any]] = {}
    for config in configs:
        sweep = (config.get("model") or {}).get("sweep") or {}
        for name, values in {**(sweep.get("params") or {}), **(sweep.get("training") or {})}.items():
            grid.setdefault(name, [])
            grid[name] += [value for value in values if value not in grid[name]]
    return {name: sorted(values, key=lambda v: (isinstance(v, str), v)) for name, values in grid.items()}


def select_points(ok: pd.DataFrame) -> tuple[pd.DataFrame, list[TunedModel]]:
    """The records of each swept model's selected point (unswept records pass through), and the
    tuned tables."""
    if "sweep_point" not in ok or ok["sweep_point"].isna().all():
        return ok, []
    keys = ok["sweep_point"].map(point_key)
    sizes = ok["train_size"].map(lambda size: size if isinstance(size, str) else "")
    keep = keys == ""
    tuned: list[TunedModel] = []
    for (task, model, size), group in ok[keys != ""].groupby(
        ["task", "model", sizes[keys != ""]], sort=False
    ):
        primary = str(group["primary_metric"].iloc[0])
        base, _ = split_metric_key(primary)
        table = TunedModel(
            task=str(task),
            model=str(model),
            train_size=size or None,
            metric=primary,
            grid=_grid(group["config"]),
            cells=len(group),
            seeds=group["seed"].nunique(),
            cpu_hours=cpu_hours(group),
        )
        point_groups = list(group.groupby(keys[group.index], sort=False))
        for _, cells in point_groups:
            table.points.append(
                SweepPoint(
                    values=dict(cells["sweep_point"].iloc[0]),
                    holdout=t_interval([(m or {}).get(base) for m in cells["holdout_metrics"]]),
                    evaluation=t_interval([(m or {}).get(primary) for m in cells["metrics"]]),
                )
            )
        sign = 1.0 if higher_is_better(primary) else -1.0
        candidates = [i for i, point in enumerate(table.points) if point.holdout.mean is not None]
        if candidates:
            best = max(candidates, key=lambda i: (sign * table.points[i].holdout.mean, -i))
            table.points[best].selected = True
            keep |= ok.index.isin(point_groups[best][1].index)
        tuned.append(table)
    return ok[keep], tuned
