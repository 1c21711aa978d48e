"""Where a model is weak: its primary metric on slices of the evaluation rows.

Built-in slices of the primary evaluation split: length quartiles (words per row, both texts of
a pair), rows with a negation, the share of a row's words never seen in the task's training
split (none, up to 10%, more), and each gold label (classification). A task file adds its own
(`slices:` in the task YAML, `config.SliceSpec`).

Per model and slice: the metric pooled over seeds with a 95% interval from the two-level
bootstrap within the slice (seeds, then examples: `stats.bootstrap_interval`); its gap to the
model's score on the whole split; and whether the slice is worse than the model's other rows:
a one-sided permutation test (`stats.permutation_worse_p`, rows drawn at random as the slice
make the null), Holm-corrected over the model's slices. A slice or remainder of fewer than
`MIN_ROWS` rows is reported as too small, without a number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report.leader import PredictionLoader, common_rows, seed_frames
from harness.report.scores import Entry
from harness.report.stats import bootstrap_interval, holm_adjusted, permutation_worse_p
from harness.samples import TaskRows, words
from harness.tasks.metrics import get_metric, higher_is_better, split_metric_key

MIN_ROWS = 30
UNSEEN_SHARE = 0.10
NEGATION = re.compile(
    r"\b(?:not|no|never|none|nothing|nobody|nowhere|neither|nor|cannot)\b|n't\b", re.IGNORECASE
)


@dataclass
class SliceCell:
    rows: int
    mean: float | None = None  # None: too small to say
    low: float | None = None
    high: float | None = None
    gap: float | None = None  # mean minus the model's score on the whole split
    p_value: float | None = None  # Holm-adjusted, over the model's slices
    worse: bool = False

    @property
    def too_small(self) -> bool:
        return self.mean is None


@dataclass
class SliceTable:
    metric: str
    names: list[str]  # slices, in order
    models: list[str]
    cells: dict[str, dict[str, SliceCell]] = field(default_factory=dict)  # slice → model → cell
    overall: dict[str, float] = field(default_factory=dict)  # model → its score on the whole split
    notes: list[str] = field(default_factory=list)
    alpha: float = 0.05


def _texts(known: pd.DataFrame) -> list[str]:
    return [
        a if b is None or pd.isna(b) else f"{a} {b}"
        for a, b in zip(known["text_a"], known["text_b"], strict=True)
    ]


def slice_members(rows: TaskRows, index: pd.MultiIndex) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each slice's membership over the rows of `index` (aligned with it), and notes on the
    slices that do not apply."""
    known = rows.eval.reindex(index)
    texts = _texts(known)
    count = known["words"].to_numpy(dtype=float)
    members: dict[str, np.ndarray] = {}
    splits = rows.eval.index.get_level_values(0).isin(index.get_level_values(0).unique())
    q1, q2, q3 = np.percentile(rows.eval.loc[splits, "words"], [25, 50, 75])  # the whole split's quartiles
    bounds = [(-np.inf, q1), (q1, q2), (q2, q3), (q3, np.inf)]
    for quartile, (low, high) in enumerate(bounds, start=1):
        span = (
            f"≤ {high:.0f}" if quartile == 1 else f"> {low:.0f}" if quartile == 4 else f"{low:.0f}–{high:.0f}"
        )
        members[f"length Q{quartile} ({span} words)"] = (count > low) & (count <= high)
    members["negation (not, no, never, n't, …)"] = np.array([bool(NEGATION.search(t)) for t in texts])
    unseen = np.array(
        [np.mean([w not in rows.train_words for w in words(t)]) if words(t) else 0.0 for t in texts]
    )
    members["no unseen words"] = unseen == 0
    members[f"unseen words ≤ {UNSEEN_SHARE:.0%}"] = (unseen > 0) & (unseen <= UNSEEN_SHARE)
    members[f"unseen words > {UNSEEN_SHARE:.0%}"] = unseen > UNSEEN_SHARE
    notes = []
    if rows.regression:
        notes.append("label slices apply to classification tasks; this task predicts a score")
    else:
        for label in dict.fromkeys(sorted(known["label_text"].dropna())):
            members[f"label: {label}"] = (known["label_text"] == label).to_numpy()
    for name, spec in rows.task.slices.items():
        keep = np.ones(len(texts), dtype=bool)
        if spec.regex is not None:
            pattern = re.compile(spec.regex, re.IGNORECASE)
            keep &= np.array([bool(pattern.search(t)) for t in texts])
        if spec.min_words is not None:
            keep &= count >= spec.min_words
        if spec.max_words is not None:
            keep &= count <= spec.max_words
        members[name] = keep
    return members, notes


def _pooled(metric: str, labels: np.ndarray, predictions: Sequence[np.ndarray], rows: np.ndarray) -> float:
    function = get_metric(metric).resampled
    return float(np.mean([function(p[rows][None, :], labels[rows][None, :])[0] for p in predictions]))


def _model_cells(
    metric: str,
    members: dict[str, np.ndarray],
    labels: np.ndarray,
    predictions: list[np.ndarray],
    resamples: int,
) -> tuple[dict[str, SliceCell], float]:
    everything = np.ones(len(labels), dtype=bool)
    overall = _pooled(metric, labels, predictions, everything)
    cells: dict[str, SliceCell] = {}
    tested: list[str] = []
    raw: list[float] = []
    for name, mask in members.items():
        rows = int(mask.sum())
        cell = SliceCell(rows)
        cells[name] = cell
        if rows < MIN_ROWS or len(mask) - rows < MIN_ROWS:
            continue
        cell.mean = _pooled(metric, labels, predictions, mask)
        cell.low, cell.high = bootstrap_interval(
            metric, labels[mask], [p[mask] for p in predictions], resamples
        )
        cell.gap = cell.mean - overall
        tested.append(name)
        raw.append(
            permutation_worse_p(metric, labels, predictions, mask, higher_is_better(metric), resamples)
        )
    for name, adjusted in zip(tested, holm_adjusted(raw), strict=True):
        cells[name].p_value = adjusted
    return cells, overall


def task_slices(
    entries: Sequence[Entry], load: PredictionLoader, rows: TaskRows | str, alpha: float, resamples: int
) -> SliceTable | None:
    """The slices table of one task's entries (ranked best first), on its primary split."""
    scored = [entry for entry in entries if entry.primary.mean is not None]
    if not scored:
        return None
    metric_key = scored[0].primary_metric
    base, split = split_metric_key(metric_key)
    table = SliceTable(metric_key, [], [entry.model for entry in scored], alpha=alpha)
    if isinstance(rows, str):
        table.notes.append(rows)
        return table
    if get_metric(base).resampled is None:
        table.notes.append(f"no slices: {base} has no per-example form to resample")
        return table
    for entry in scored:
        frames = seed_frames(entry, split, load)
        if isinstance(frames, str) or not frames:
            table.notes.append(frames or f"no predictions for {entry.model}")
            continue
        frames = common_rows(frames)
        members, notes = slice_members(rows, frames[0].index)
        table.notes += [note for note in notes if note not in table.notes]
        labels = frames[0]["label"].to_numpy()
        predictions = [frame["prediction"].to_numpy() for frame in frames]
        cells, table.overall[entry.model] = _model_cells(base, members, labels, predictions, resamples)
        for name, cell in cells.items():
            if name not in table.cells:
                table.names.append(name)
                table.cells[name] = {}
            cell.worse = cell.p_value is not None and cell.p_value < alpha
            table.cells[name][entry.model] = cell
    return table
