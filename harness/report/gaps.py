"""Against the literature: each model's score beside the published number it stands for.

A suite names a model's published counterparts (`counterparts:` on the model, by their names
in the references file), each with why a gap is expected: one text, or one per task (`'*'`
for the rest), since why a model trails its counterpart on CoLA need not be why on IMDb. A
reference's own `note` (e.g. "this is the majority class's score") is a reason too. The
report shows, per task, ours, theirs and the gap in points. A score more than `TOLERANCE`
points below its counterpart is a bug until explained: by those texts, or by what the
records show differs (another split, a capped training set, a subset of the evaluation
split). One that nothing explains is listed in the report's notes as unexplained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import InputError
from harness.report.references import Reference
from harness.report.scores import Entry
from harness.tasks.metrics import higher_is_better, split_metric_key

TOLERANCE = 3.0


@dataclass
class Gap:
    model: str
    counterpart: str
    metric: str
    theirs: float
    ours: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        """Ours minus theirs, in points (positive: ours is better, for a lower-is-better metric too)."""
        if self.ours is None:
            return None
        sign = 1.0 if higher_is_better(self.metric) else -1.0
        return sign * (self.ours - self.theirs)

    @property
    def unexplained(self) -> bool:
        return self.delta is not None and self.delta < -TOLERANCE and not self.reasons


def counterpart_reason(why: str | dict[str, str], task: str) -> str:
    """The suite's text for this task: the one text, or the task's own, else the `'*'` one."""
    if isinstance(why, str):
        return why
    return why.get(task, why.get("*", ""))


def _record_reasons(records: pd.DataFrame, reference: Reference, eval_splits: Sequence[str]) -> list[str]:
    """What the records show differs from a published full-data run."""
    reasons = []
    if eval_splits and not all(split.startswith(reference.split) for split in eval_splits):
        reasons.append(f"published on the {reference.split} split, ours on {', '.join(eval_splits)}")
    configs = list(records["config"])
    capped = {(c.get("training") or {}).get("max_train_examples") for c in configs} - {None}
    sizes = {c.get("train_size") for c in configs} - {None, "full"}
    if capped or sizes:
        rows = sorted({int(v) for v in capped | sizes})
        reasons.append(f"trained on {', '.join(f'{r:,}' for r in rows)} rows, not the whole training set")
    if {(c.get("training") or {}).get("max_eval_examples") for c in configs} - {None}:
        reasons.append("evaluated on a subset of the split")
    return reasons


def task_gaps(
    records: pd.DataFrame, entries: Sequence[Entry], references: Sequence[Reference], task: str
) -> list[Gap]:
    """Per entry of this task, the gap to each of its model's published counterparts here."""
    gaps = []
    for entry in entries:
        mine = records[(records["task"] == task) & (records["model"] == entry.model)]
        if mine.empty:
            continue
        counterparts = ((mine["config"].iloc[0] or {}).get("model") or {}).get("counterparts") or {}
        base, _ = split_metric_key(entry.primary_metric)
        for name, why in counterparts.items():
            candidates = [r for r in references if r.model == name and r.task == task]
            chosen = next((r for r in candidates if r.metric == entry.primary_metric), None) or next(
                (r for r in candidates if split_metric_key(r.metric)[0] == base), None
            )
            if chosen is None:
                continue
            texts = [counterpart_reason(why, task), chosen.note]
            reasons = [text for text in texts if text] + _record_reasons(mine, chosen, entry.eval_splits)
            gaps.append(Gap(entry.model, name, chosen.metric, chosen.value, entry.primary.mean, reasons))
    return gaps


def with_counterparts_from(records: pd.DataFrame, suite_file: Path) -> pd.DataFrame:
    """`records` with each model's `counterparts` replaced by the suite file's (by model label)."""
    from harness.planning import load_suite

    suite = load_suite(suite_file)
    texts = {model.display_label: model.counterparts for model in suite.models}
    if not set(records["model"]) & set(texts):
        raise InputError(suite_file, "names none of the report's models", "pass the suite the runs came from")

    def refreshed(row):
        config = dict(row["config"] or {})
        if row["model"] in texts:
            config["model"] = {**(config.get("model") or {}), "counterparts": texts[row["model"]]}
        return config

    records = records.copy()
    records["config"] = records.apply(refreshed, axis=1)
    return records
