"""Why a model wins, example by example: confusion matrices, and where the leader and each other
model differ.

Each model's seeds count as one ensemble, as for McNemar's test (`leader.py`): its class is the
argmax of the seeds' mean probabilities (from the stored logits), or the most common predicted
class without them. "Where they differ" lists the examples exactly one of the two ensembles gets
right, so its two counts are McNemar's discordant cells, and its p-value McNemar's exact test on
them. Each row shows both ensembles' probability of the gold label; the gap between them sorts
the rows. The texts and example ids come from the task's data (`harness/samples.py`); without
it a row is named by its split and row id, and the report says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report.leader import (
    Aligned,
    PredictionLoader,
    aligned_entries,
    common_rows,
    ensemble_probabilities,
    ensemble_right,
    seed_frames,
)
from harness.report.scores import Entry
from harness.report.stats import mcnemar_exact
from harness.samples import TaskRows, label_text

SHOWN_CHARS = 300  # a row's text in the report; the samples export has it whole


@dataclass
class Confusion:
    """Counts of the seeds' ensemble: rows are gold labels, columns predicted labels."""

    model: str
    labels: list[str]
    counts: list[list[int]]


@dataclass
class DifferRow:
    example_id: str
    text: str
    label: str
    right: str  # the model that gets it right: its label
    confidence_a: float | None  # the ensemble's probability of the gold label
    confidence_b: float | None

    @property
    def gap(self) -> float | None:
        if self.confidence_a is None or self.confidence_b is None:
            return None
        return abs(self.confidence_a - self.confidence_b)


@dataclass
class Differences:
    model_a: str  # the leader
    model_b: str
    a_only: int
    b_only: int
    p_value: float
    rows: list[DifferRow] = field(default_factory=list)  # largest confidence gap first

    def table(self) -> list[list]:
        """The rows as the HTML page's script reads them: [id, text, label, right, p_a, p_b, gap]."""
        return [
            [row.example_id, row.text, row.label, row.right, row.confidence_a, row.confidence_b, row.gap]
            for row in self.rows
        ]


@dataclass
class TaskExamples:
    confusion: list[Confusion] = field(default_factory=list)
    differences: list[Differences] = field(default_factory=list)
    note: str = ""  # why something is missing


def _display(rows: TaskRows | None, index: pd.MultiIndex) -> tuple[list[str], list[str]]:
    """Each aligned example's id and the text shown for it (pairs joined by ' ‖ ')."""
    if rows is None:
        return [""] * len(index), [f"{split} row {row}" for split, row in index]
    known = rows.eval.reindex(index)
    texts = []
    for a, b in zip(known["text_a"], known["text_b"], strict=True):
        text = " ".join((str(a) if b is None or pd.isna(b) else f"{a} ‖ {b}").split())  # one line
        texts.append(text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…")
    return known["example_id"].fillna("").tolist(), texts


def _confusion(model: str, frames: Sequence[pd.DataFrame], labels: np.ndarray, names: list[str]) -> Confusion:
    probabilities = ensemble_probabilities(frames)
    if probabilities is not None:
        predicted = probabilities.argmax(axis=1)  # (N,)
    else:
        votes = np.stack([frame["prediction"].to_numpy() for frame in frames]).astype(np.int64)  # (S, N)
        predicted = np.array([np.bincount(column).argmax() for column in votes.T])
    size = len(names)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predicted), 1)
    return Confusion(model, names, counts.tolist())


def _differences(
    a: Entry, b: Entry, aligned: Aligned, rows: TaskRows | None, names: list[str]
) -> Differences:
    labels = aligned.labels.astype(np.int64)
    right_a = ensemble_right(aligned.frames_a, aligned.labels)
    right_b = ensemble_right(aligned.frames_b, aligned.labels)
    test = mcnemar_exact(right_a, right_b)
    gold = []
    for frames in (aligned.frames_a, aligned.frames_b):
        probabilities = ensemble_probabilities(frames)
        gold.append(None if probabilities is None else probabilities[np.arange(len(labels)), labels])
    differ = np.flatnonzero(right_a != right_b)
    ids, texts = _display(rows, aligned.frames_a[0].index[differ])
    found = [
        DifferRow(
            ids[k],
            texts[k],
            label_text(labels[i], names, regression=False),
            a.model if right_a[i] else b.model,
            None if gold[0] is None else float(gold[0][i]),
            None if gold[1] is None else float(gold[1][i]),
        )
        for k, i in enumerate(differ)
    ]
    found.sort(key=lambda row: -(row.gap or 0.0))
    return Differences(a.model, b.model, test.a_only, test.b_only, test.p_value, found)


def task_examples(
    entries: Sequence[Entry],
    load: PredictionLoader,
    rows: TaskRows | str,
    split: str | None,
    label_names: list[str] | None,
) -> TaskExamples:
    """The confusion matrix of every model and the leader against each other model, for a
    classification task whose entries are ranked best first."""
    result = TaskExamples()
    if isinstance(rows, str):
        result.note = rows
    known = rows if isinstance(rows, TaskRows) else None
    scored = [entry for entry in entries if entry.primary.mean is not None]
    if not scored:
        return result
    leader = scored[0]
    for entry in scored:
        frames = seed_frames(entry, split, load)
        if isinstance(frames, str) or not frames:
            result.note = result.note or (frames or f"no predictions for {entry.model}")
            continue
        frames = common_rows(frames)
        labels = frames[0]["label"].to_numpy()
        classes = max(int(labels.max()) + 1, _width(frames))
        names = [label_text(k, label_names, regression=False) for k in range(classes)]
        result.confusion.append(_confusion(entry.model, frames, labels, names))
        if entry is not leader:
            pair = aligned_entries(leader, entry, split, load)
            if isinstance(pair, str):
                result.note = result.note or pair
                continue
            result.differences.append(_differences(leader, entry, pair, known, names))
    return result


def _width(frames: Sequence[pd.DataFrame]) -> int:
    """Classes the model can predict: its logits' width, or the largest class it predicted."""
    probabilities = ensemble_probabilities(frames)
    predictions = np.concatenate([frame["prediction"].to_numpy() for frame in frames])
    return probabilities.shape[1] if probabilities is not None else int(predictions.max()) + 1
