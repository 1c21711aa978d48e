"""Which models are really ahead? Ranks with honest ties, tested on per-example predictions.

Two models are compared with a two-level paired bootstrap (`stats.paired_bootstrap`): each
resample draws each model's seeds with replacement, then the evaluation examples (the same rows
for both), so a verdict must hold under both sources of noise: another set of training runs
(seed noise, the larger part on small tasks: CoLA's seed interval is ±17.9) and another draw of
the evaluation set. Resampling the examples alone, with the trained models fixed, would call two
models separable that differ only by their seeds. With one seed per model only the examples are
resampled, and a model's seed noise is then not covered. The examples compared are those every
seed of both models predicted, matched by (eval split, row id). The metric is the task's primary
metric on the evaluation split it names (MNLI's `accuracy_matched`: the matched split).

Tie groups over the whole ranking: the best remaining model leads a group; each model below
it is compared with it (paired bootstrap, two-sided: the order comes from the same data), the
p-values Holm-corrected over those
comparisons; the leader and the run of models right below it that are not separable at
`alpha` share a rank (`=1`, `=1`, then `3`). The next group starts at the first separable
model. The top two also get McNemar's exact test on right/wrong per example, each model's
seeds taken as one ensemble (the argmax of their mean probabilities), a check that does not
rest on resampling; it holds the trained models fixed, so it speaks to example noise only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from harness.report.calibration import softmax
from harness.report.scores import Entry
from harness.report.stats import (
    BootstrapResult,
    McNemarResult,
    holm_adjusted,
    mcnemar_exact,
    paired_bootstrap,
    seed_welch_p,
)
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
    mcnemar: McNemarResult | None = None
    groups: list[list[str]] = field(default_factory=list)  # tie groups, best first
    adjusted: dict[str, float] = field(default_factory=dict)  # model → Holm p against its group's leader

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


def seed_frames(entry: Entry, split: str | None, load: PredictionLoader) -> list[pd.DataFrame] | str:
    """Each seed's predictions on one evaluation split, indexed by (eval split, row id); or why not."""
    frames = []
    for run_id, cell_id, _seed in entry.cells:
        frame = load(run_id, cell_id)
        if frame is None:
            return f"no predictions for {cell_id} of run {run_id}"
        if split is not None:
            frame = frame[frame["eval_split"] == split]
        frames.append(frame.drop_duplicates(["eval_split", "row_id"]).set_index(["eval_split", "row_id"]))
    return frames


@dataclass
class Aligned:
    """Two models' seeds on the examples all of them predicted, in one order."""

    labels: np.ndarray
    frames_a: list[pd.DataFrame]
    frames_b: list[pd.DataFrame]

    @property
    def predictions(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return (
            [frame["prediction"].to_numpy() for frame in self.frames_a],
            [frame["prediction"].to_numpy() for frame in self.frames_b],
        )


def common_rows(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """The frames cut to the examples all of them predicted, in one sorted order."""
    common = frames[0].index
    for frame in frames[1:]:
        common = common.intersection(frame.index)
    common = common.sort_values()
    return [frame.loc[common] for frame in frames]


def have_logits(frames: Sequence[pd.DataFrame]) -> bool:
    return all("logits" in frame and frame["logits"].notna().all() for frame in frames)


def aligned_entries(
    entry_a: Entry, entry_b: Entry, split: str | None, load: PredictionLoader
) -> Aligned | str:
    frames_a, frames_b = seed_frames(entry_a, split, load), seed_frames(entry_b, split, load)
    for frames in (frames_a, frames_b):
        if isinstance(frames, str):
            return frames
    aligned = common_rows(frames_a + frames_b)
    if len(aligned[0]) == 0:
        return "the two models share no evaluated examples"
    return Aligned(aligned[0]["label"].to_numpy(), aligned[: len(frames_a)], aligned[len(frames_a) :])


def ensemble_probabilities(frames: Sequence[pd.DataFrame]) -> np.ndarray | None:
    """(N, C): the seeds' mean class probabilities from their stored logits; None without them."""
    if not have_logits(frames):
        return None
    return np.mean([softmax(np.stack(frame["logits"].to_numpy())) for frame in frames], axis=0)


def ensemble_right(frames: Sequence[pd.DataFrame], labels: np.ndarray) -> np.ndarray:
    """Per example: is the seeds' ensemble right? Its class is the argmax of the seeds' mean
    probabilities (from the stored logits), or, without logits, the most common predicted class."""
    probabilities = ensemble_probabilities(frames)
    if probabilities is not None:
        return probabilities.argmax(axis=1) == labels  # (N,)
    votes = np.stack([frame["prediction"].to_numpy() for frame in frames])  # (S, N)
    modes = [np.bincount(column.astype(np.int64)).argmax() for column in votes.T]
    return np.array(modes) == labels


def verdict_p(metric: str, aligned: Aligned, result: BootstrapResult) -> float:
    """The p-value a rank is judged by. `a` ranks above `b` on these very predictions, so the
    order was chosen from the data: the bootstrap's test is two-sided (twice its one-sided p), or
    equal models would be told apart at 2·alpha. With two or more seeds a side, the larger of
    that and Welch's two-sided test over the seeds' scores: a bootstrap that draws from three
    seeds reads their spread as all there is, and on equal models with large seed noise it
    called them apart 13% of the time at alpha 0.05 (docs/benchmarks.md)."""
    two_sided = min(1.0, 2 * result.p_value)
    welch = seed_welch_p(metric, aligned.labels, *aligned.predictions)
    return two_sided if welch is None else max(two_sided, welch)


def judge_leader(
    entries: Sequence[Entry], load: PredictionLoader, alpha: float = ALPHA, resamples: int = 1000
) -> LeaderTest | None:
    """Test the ranking of one task's entries; sets each entry's `rank` (ties as `=k`)."""
    order = ranked(entries)
    if not order:
        return None
    for position, entry in enumerate(order, start=1):
        entry.rank = str(position) if entry.primary.mean is not None else ""
    leader = order[0]
    test = LeaderTest(leader.task, leader.primary_metric, leader.model, None, alpha=alpha)
    scored = [entry for entry in order if entry.primary.mean is not None]
    if len(scored) < 2:
        test.skipped = "only one model"
        return test
    test.runner_up = scored[1].model
    base, split = split_metric_key(leader.primary_metric)
    if base not in metric_names() or get_metric(base).resampled is None:
        test.skipped = f"no bootstrap for metric {leader.primary_metric}"
        return test
    if any(entry.primary_metric != leader.primary_metric for entry in scored):
        test.skipped = "the models report different primary metrics"
        return test
    cache: dict[tuple[str, str], tuple[Aligned, BootstrapResult] | str] = {}

    def compare(a: Entry, b: Entry) -> BootstrapResult | str:
        key = (a.model, b.model)
        if key not in cache:
            aligned = aligned_entries(a, b, split, load)
            if isinstance(aligned, str):
                cache[key] = aligned
            else:
                result = paired_bootstrap(  # seeds, then examples: see the module's docstring
                    base, aligned.labels, *aligned.predictions, resamples=resamples, resample_seeds=True
                )
                cache[key] = (aligned, replace(result, p_value=verdict_p(base, aligned, result)))
        found = cache[key]
        return found if isinstance(found, str) else found[1]

    first = compare(scored[0], scored[1])
    if isinstance(first, str):
        test.skipped = first
        return test
    test.result = first
    if base == "accuracy":  # right or wrong per example, each model's seeds as one ensemble
        aligned = cache[scored[0].model, scored[1].model][0]
        test.mcnemar = mcnemar_exact(
            ensemble_right(aligned.frames_a, aligned.labels), ensemble_right(aligned.frames_b, aligned.labels)
        )
    _tie_groups(scored, compare, alpha, test)
    return test


def _tie_groups(
    scored: list[Entry],
    compare: Callable[[Entry, Entry], BootstrapResult | str],
    alpha: float,
    test: LeaderTest,
) -> None:
    position = 1
    remaining = list(scored)
    while remaining:
        head, others = remaining[0], remaining[1:]
        results = [compare(head, other) for other in others]
        if any(isinstance(r, str) for r in results):  # a pair without predictions: no ties claimed
            test.groups += [[entry.model] for entry in remaining]
            break
        adjusted = holm_adjusted([r.p_value if math.isfinite(r.p_value) else 1.0 for r in results])
        size = 1
        while size <= len(others) and adjusted[size - 1] >= alpha:
            test.adjusted[others[size - 1].model] = adjusted[size - 1]
            size += 1
        group = remaining[:size]
        for entry in group:
            entry.rank = f"={position}" if size > 1 else str(position)
        test.groups.append([entry.model for entry in group])
        position += size
        remaining = remaining[size:]
