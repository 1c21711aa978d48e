"""Is the leader really ahead? The top two models of a task, tested on their per-example predictions.

Seeds are pooled (see `stats.paired_bootstrap`); the examples compared are those every
seed of both models predicted, matched by (eval split, row id). The metric is the task's
primary metric on the evaluation split it names (MNLI's `accuracy_matched`: the matched
split). Ranks follow the mean primary metric; when the top two are not separable at
`alpha` both are ranked "=1".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.scores import Entry
from harness.report.stats import BootstrapResult, paired_bootstrap
from harness.tasks.metrics import get_metric, higher_is_better, metric_names, split_metric_key

ALPHA = 0.05
PredictionLoader = Callable[[str, str], "pd.DataFrame | None"]


@dataclass
class LeaderTest:
    task: str
    metric: str
    leader: str
    runner_up: str | None
    result: BootstrapResult | None = None
    skipped: str = ""  # why there is no test, when there is none
    alpha: float = ALPHA

    @property
    def separable(self) -> bool | None:
        if self.result is None or math.isnan(self.result.p_value):
            return None
        return self.result.p_value < self.alpha


def ranked(entries: Sequence[Entry]) -> list[Entry]:
    """Best first by mean primary metric (in the metric's better direction); entries without
    one come last."""

    def key(entry: Entry) -> tuple[bool, float]:
        if entry.primary.mean is None:
            return True, 0.0
        sign = -1.0 if higher_is_better(entry.primary_metric) else 1.0
        return False, sign * entry.primary.mean

    return sorted(entries, key=key)


def _aligned(
    entry_a: Entry, entry_b: Entry, split: str | None, load: PredictionLoader
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]] | str:
    frames: dict[str, list[pd.DataFrame]] = {"a": [], "b": []}
    for side, entry in (("a", entry_a), ("b", entry_b)):
        for run_id, cell_id, _seed in entry.cells:
            frame = load(run_id, cell_id)
            if frame is None:
                return f"no predictions for {cell_id} of run {run_id}"
            if split is not None:
                frame = frame[frame["eval_split"] == split]
            frames[side].append(
                frame.drop_duplicates(["eval_split", "row_id"]).set_index(["eval_split", "row_id"])
            )
    common = frames["a"][0].index
    for frame in frames["a"][1:] + frames["b"]:
        common = common.intersection(frame.index)
    if len(common) == 0:
        return "the two models share no evaluated examples"
    common = common.sort_values()
    labels = frames["a"][0].loc[common, "label"].to_numpy()
    return (
        labels,
        [frame.loc[common, "prediction"].to_numpy() for frame in frames["a"]],
        [frame.loc[common, "prediction"].to_numpy() for frame in frames["b"]],
    )


def judge_leader(
    entries: Sequence[Entry], load: PredictionLoader, alpha: float = ALPHA, resamples: int = 1000
) -> LeaderTest | None:
    """Bootstrap the top two entries of one task; sets each entry's `rank`."""
    order = ranked(entries)
    if not order:
        return None
    for position, entry in enumerate(order, start=1):
        entry.rank = str(position) if entry.primary.mean is not None else ""
    leader = order[0]
    test = LeaderTest(leader.task, leader.primary_metric, leader.model, None, alpha=alpha)
    if len(order) < 2 or order[1].primary.mean is None:
        test.skipped = "only one model"
        return test
    runner_up = order[1]
    test.runner_up = runner_up.model
    base, split = split_metric_key(leader.primary_metric)
    if base not in metric_names() or get_metric(base).resampled is None:
        test.skipped = f"no bootstrap for metric {leader.primary_metric}"
        return test
    if runner_up.primary_metric != leader.primary_metric:
        test.skipped = "the two models report different primary metrics"
        return test
    aligned = _aligned(leader, runner_up, split, load)
    if isinstance(aligned, str):
        test.skipped = aligned
        return test
    labels, predictions_a, predictions_b = aligned
    test.result = paired_bootstrap(base, labels, predictions_a, predictions_b, resamples=resamples)
    if test.separable is False:
        leader.rank = runner_up.rank = "=1"
    return test
