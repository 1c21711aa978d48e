"""Learning curves: the primary metric against the number of training rows, per model.

A suite with `train_sizes` trains every model on nested, label-stratified subsets (see
`tasks.data.nested_order`). Each size's seeds pool into mean ± t-interval. The "reach"
table gives, per model, the smallest size at which its mean reaches a share of its score
at the largest size (the whole training set when the suite has `full`): where a pretrained
model needs a few hundred rows, a model from scratch may need thousands.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from harness.report.plots import band_trace, scatter_layout
from harness.report.stats import Estimate, t_interval
from harness.tasks.metrics import higher_is_better

SHARES = (0.9, 0.95)


@dataclass
class CurvePoint:
    size: str  # as the suite wrote it: "250", "full"
    rows: int  # training rows at that size (for `full`, the whole set)
    score: Estimate


@dataclass
class Curve:
    model: str
    points: list[CurvePoint] = field(default_factory=list)  # smallest first

    def at(self, size: str) -> CurvePoint | None:
        return next((point for point in self.points if point.size == size), None)

    def reach(self, share: float, higher: bool) -> CurvePoint | None:
        """The smallest size whose mean reaches `share` of the largest size's mean."""
        final = self.points[-1].score.mean if self.points else None
        if final is None:
            return None
        for point in self.points:
            if point.score.mean is None:
                continue
            if (point.score.mean >= share * final) if higher else (point.score.mean <= final / share):
                return point
        return None


def _size_order(size: str) -> float:
    return float("inf") if size == "full" else float(size)


def largest_sizes(ok: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model), only the records of its largest learning-curve size (`full` first):
    the leaderboard's tables rank models on the most data they were given."""
    if "train_size" not in ok:
        return ok
    on_curve = ok["train_size"].map(lambda s: isinstance(s, str))
    if not on_curve.any():
        return ok
    keep = ~on_curve
    for _, group in ok[on_curve].groupby(["task", "model"], sort=False):
        largest = max(group["train_size"], key=_size_order)
        keep |= ok.index.isin(group.index[group["train_size"] == largest])
    return ok[keep]


def learning_curves(ok: pd.DataFrame, task: str, models: Sequence[str]) -> list[Curve]:
    """Per model, its points on this task, when the records hold at least two sizes."""
    if "train_size" not in ok:
        return []
    rows = ok[(ok["task"] == task) & ok["train_size"].map(lambda s: isinstance(s, str))]
    if rows.empty or rows["train_size"].nunique() < 2:
        return []
    primary = str(rows["primary_metric"].iloc[0])
    curves = []
    for model in models:
        mine = rows[rows["model"] == model]
        if mine.empty:
            continue
        curve = Curve(model)
        for size, cells in mine.groupby("train_size", sort=False):
            score = t_interval([(m or {}).get(primary) for m in cells["metrics"]])
            curve.points.append(CurvePoint(str(size), int(cells["train_examples"].max()), score))
        curve.points.sort(key=lambda p: p.rows)
        curves.append(curve)
    return curves


def curve_sizes(curves: Sequence[Curve]) -> list[CurvePoint]:
    """Every size on any curve, smallest first (a model may lack one that did not finish)."""
    seen: dict[str, CurvePoint] = {}
    for curve in curves:
        for point in curve.points:
            seen.setdefault(point.size, point)
    return sorted(seen.values(), key=lambda p: p.rows)


def reach_table(
    curves: Sequence[Curve], primary: str
) -> list[tuple[str, float | None, list[CurvePoint | None]]]:
    """(model, score at the largest size, the point that reaches each of `SHARES`)."""
    higher = higher_is_better(primary)
    return [
        (curve.model, curve.points[-1].score.mean, [curve.reach(share, higher) for share in SHARES])
        for curve in curves
    ]


def curve_figure(title: str, primary: str, curves: Sequence[Curve], colour_of: dict[str, str]) -> dict | None:
    """Primary metric against training rows (log x): a line per model, its seed interval a band."""
    traces = []
    for curve in curves:
        points = [p for p in curve.points if p.score.mean is not None]
        if not points:
            continue
        colour = colour_of.get(curve.model, "#444")
        name = html.escape(curve.model)
        x = [p.rows for p in points]
        banded = [p for p in points if p.score.half_width is not None]
        if len(banded) == len(points):
            traces.append(
                band_trace(x, [p.score.low for p in points], [p.score.high for p in points], colour, name)
            )
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": x,
                "y": [p.score.mean for p in points],
                "name": name,
                "legendgroup": name,
                "line": {"color": colour},
                "marker": {"color": colour, "size": 7},
                "text": [f"{name}: {p.size} rows" for p in points],
                "hovertemplate": "%{text}<br>%{y:.1f}<extra></extra>",
            }
        )
    if not traces:
        return None
    title_text = html.escape(f"{title}: {primary} against training rows")
    return {"data": traces, "layout": scatter_layout(title_text, "training rows (log)", html.escape(primary))}
