"""Learning trajectories: the metric against training time and training FLOPs, per model.

Every trained cell records its trajectory (harness/train.py): after each epoch, and every N
steps where the suite asks, the primary metric on its holdout (or, without one, its evaluation
split) with the training seconds and training FLOPs spent so far. Here each model's seeds
become one line: at every x where all its seeds have been measured, the mean of the seeds'
values (each seed interpolated linearly between its own points) and, as a band, their lowest
and highest. "Reaches first" answers the race: for a score (a share of the best final mean
on the task), the median over seeds of the time (and FLOPs) each seed took to first reach it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.config import amount_label
from harness.report.plots import band_trace, scatter_layout
from harness.report.scores import quiet_seeds

SHARES = (0.9, 0.95, 0.99)  # of the best final mean: the scores the race is run to
AXES = {"train_seconds": "training seconds (log)", "train_flops": "training FLOPs (log)"}


@dataclass
class SeedPath:
    seed: int
    points: list[dict]  # the record's trajectory points, in training order

    def xy(self, axis: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(x, value) of the measured points, or None when the axis was not recorded."""
        pairs = [(p.get(axis), p.get("value")) for p in self.points]
        pairs = [(x, y) for x, y in pairs if _finite(x) and x > 0 and _finite(y)]
        if not pairs or len(pairs) < sum(1 for p in self.points if _finite(p.get("value"))):
            return None
        x, y = (np.array(v, dtype=float) for v in zip(*pairs, strict=True))
        return x, y

    def first_reaching(self, target: float) -> dict | None:
        return next((p for p in self.points if _finite(p.get("value")) and p["value"] >= target), None)


@dataclass(frozen=True)
class Reach:
    """When one model's seeds first reached a score: medians over the seeds that did."""

    seconds: float | None
    flops: float | None
    reached: int  # seeds that reached it
    seeds: int

    @property
    def by_most(self) -> bool:
        return self.reached * 2 > self.seeds


@dataclass
class Race:
    """Who reaches `target` (a `share` of the best final mean) first."""

    share: float
    target: float
    times: dict[str, Reach]  # model → when it got there

    def winner(self, by: str) -> str | None:
        """The model a majority of whose seeds got there first, by "seconds" or "flops"."""
        reached = {
            m: getattr(r, by) for m, r in self.times.items() if r.by_most and getattr(r, by) is not None
        }
        return min(reached, key=reached.get) if reached else None


@dataclass
class Trajectories:
    metric: str
    split: str  # "holdout" or "eval" (the first model's; a note says when they differ)
    paths: dict[str, list[SeedPath]]  # model → its seeds' paths
    finals: dict[str, float]  # model → mean over seeds of its last point
    races: list[Race] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)  # who reaches each race's score first, in words
    notes: list[str] = field(default_factory=list)


def race_sentences(trajectories: Trajectories) -> list[str]:
    """Who reaches each score first, by training time and by training FLOPs, in words."""
    sentences = []
    what = f"{trajectories.split} {trajectories.metric}"
    for race in trajectories.races:
        by_time, by_flops = race.winner("seconds"), race.winner("flops")
        if by_time is None:
            sentences.append(
                f"{race.target:.1f} ({race.share:.0%} of the best final {what}): "
                "no model's seeds mostly reached it."
            )
            continue
        first = race.times[by_time]
        text = (
            f"First to {race.target:.1f} ({race.share:.0%} of the best final {what}): {by_time} after "
            f"{first.seconds:,.0f} s of training ({first.reached}/{first.seeds} seeds)"
        )
        if by_flops is not None:
            text += f"; by training FLOPs, {by_flops} after {amount_label(race.times[by_flops].flops)} FLOPs"
        sentences.append(text + ".")
    return sentences


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def task_trajectories(ok: pd.DataFrame, task: str, models: Sequence[str]) -> Trajectories | None:
    """The task's trajectories, when its records hold any with two points or more."""
    if "trajectory" not in ok:
        return None
    rows = ok[ok["task"] == task]
    paths: dict[str, list[SeedPath]] = {}
    splits: dict[str, str] = {}
    metric = None
    for model in models:
        for _, row in rows[rows["model"] == model].iterrows():
            trajectory = row["trajectory"] if isinstance(row["trajectory"], dict) else {}
            points = trajectory.get("points") or []
            if points:
                paths.setdefault(model, []).append(SeedPath(int(row["seed"]), points))
                splits[model] = trajectory["split"]
                metric = metric or trajectory["metric"]
    if not any(len(p.points) > 1 for seeds in paths.values() for p in seeds):
        return None
    finals = {}
    for model, seeds in paths.items():
        last = [p.points[-1]["value"] for p in seeds if _finite(p.points[-1].get("value"))]
        if last:
            finals[model] = float(np.mean(last))
    split = next(iter(splits.values()))
    result = Trajectories(str(metric), split, paths, finals)
    if len(set(splits.values())) > 1:
        others = sorted(m for m, s in splits.items() if s != split)
        result.notes.append(f"{', '.join(others)} scored their trajectory on another split than {split}")
    for model in paths:  # a shared machine stretches the time axis, never the FLOPs one
        _, shared = quiet_seeds(rows[rows["model"] == model], "train")
        result.notes += [f"{model}, time axis: {shared}"] if shared else []
    result.races = races(paths, finals)
    result.sentences = race_sentences(result)
    return result


def races(paths: dict[str, list[SeedPath]], finals: dict[str, float]) -> list[Race]:
    if not finals:
        return []
    best = max(finals.values())
    found = []
    for share in SHARES:
        target = share * best
        times = {}
        for model, seeds in paths.items():
            hits = [hit for path in seeds if (hit := path.first_reaching(target)) is not None]
            seconds = [h["train_seconds"] for h in hits if _finite(h.get("train_seconds"))]
            flops = [h["train_flops"] for h in hits if _finite(h.get("train_flops"))]
            times[model] = Reach(
                float(np.median(seconds)) if seconds else None,
                float(np.median(flops)) if flops else None,
                len(hits),
                len(seeds),
            )
        found.append(Race(share, target, times))
    return found


def seed_band(
    paths: Sequence[SeedPath], axis: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(x, mean, low, high) over the x range every seed covers: each seed interpolated at the
    union of the seeds' own x values. One seed: its own points, no band."""
    curves = [xy for path in paths if (xy := path.xy(axis)) is not None]
    if not curves:
        return None
    start, end = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x[(x >= start) & (x <= end)] for x, _ in curves]))
    if len(grid) == 0:
        return None
    values = np.stack([np.interp(grid, x, y) for x, y in curves])  # (seeds, points)
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def trajectory_figure(
    title: str, trajectories: Trajectories, axis: str, colour_of: dict[str, str]
) -> dict | None:
    """The metric against `axis` (training seconds or FLOPs, log x): a line per model (the mean
    over seeds), the seeds' range as its band."""
    traces = []
    for model, paths in trajectories.paths.items():
        band = seed_band(paths, axis)
        if band is None:
            continue
        x, mean, low, high = band
        colour, name = colour_of.get(model, "#444"), html.escape(model)
        if len(paths) > 1:
            traces.append(band_trace(list(x), list(low), list(high), colour, name))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines" if len(x) > 1 else "markers",  # a fitted model: its fit, one point
                "x": list(x),
                "y": list(mean),
                "name": name,
                "legendgroup": name,
                "line": {"color": colour},
                "hovertemplate": "%{fullData.name}<br>%{x:.3s}<br>%{y:.1f}<extra></extra>",
            }
        )
    if not traces:
        return None
    metric = html.escape(f"{trajectories.split} {trajectories.metric}")
    title_text = html.escape(f"{title}: ") + f"{metric} against {AXES[axis].removesuffix(' (log)')}"
    return {"data": traces, "layout": scatter_layout(title_text, AXES[axis], metric)}
