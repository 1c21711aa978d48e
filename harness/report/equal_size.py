"""At equal size: each model family's score at each size of a suite's budget (harness/sizing.py).

A budgeted suite labels each size as a model of its own (`cnn@1M-params`); here they are laid
back out as a grid, one row per model family and one column per size, with the size each
model was actually given. Within each size the leader test of the whole task (paired
bootstrap over seeds and examples, Holm-corrected tie groups) is run again among that size's
models only, so "best at 1M" means not separable from the best at 1M, not merely the top mean.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from harness.config import amount_label
from harness.report.leader import PredictionLoader, judge_leader
from harness.report.scores import Entry
from harness.report.trajectories import Race


@dataclass
class SizedCell:
    entry: Entry
    size: float  # the sized models' mean parameter count (or FLOPs per example)
    widths: str  # the chosen widths, e.g. "embed_dim 48, num_filters 40"
    best: bool  # in the tie group of this size's leader


@dataclass
class EqualSize:
    kind: str  # "params" or "flops_per_example"
    budgets: list[float]  # the columns, smallest first
    rows: dict[str, dict[float, SizedCell]]  # model family → budget → its cell
    tests: dict[float, str]  # budget → why its models were not compared, when they were not

    def label(self, budget: float) -> str:
        return f"{amount_label(budget)} {'params' if self.kind == 'params' else 'FLOPs/example'}"

    def sizes(self) -> dict[str, dict[str, str]]:
        """Each size's label → its models (their labels in the report) → their family."""
        return {
            self.label(budget): {
                cells[budget].entry.model: family for family, cells in self.rows.items() if budget in cells
            }
            for budget in self.budgets
        }


def size_race_sentences(races: list[Race], sizes: dict[str, dict[str, str]]) -> list[str]:
    """Who reaches each race's score first among the models of one size, by training time and by
    training FLOPs: the race an equal-size comparison asks about (the task's own race puts every
    size in one field)."""
    sentences = []
    for race in races:
        by_axis = []
        for by, unit in (("seconds", "training time"), ("flops", "training FLOPs")):
            firsts = []
            for size, families in sizes.items():
                within = Race(race.share, race.target, {m: r for m, r in race.times.items() if m in families})
                winner = within.winner(by)
                if winner is None:
                    firsts.append(f"{size} none")
                    continue
                value = getattr(within.times[winner], by)
                amount = f"{value:,.0f} s" if by == "seconds" else amount_label(value)
                firsts.append(f"{size} {families[winner]} ({amount})")
            by_axis.append(f"by {unit} {', '.join(firsts)}")
        sentences.append(f"At each size, first to {race.target:.1f}: {'; '.join(by_axis)}.")
    return sentences


def equal_size_table(
    records: pd.DataFrame,
    entries: list[Entry],
    load: PredictionLoader,
    alpha: float,
    resamples: int,
) -> EqualSize | None:
    """The grid of one task's budgeted entries; None when its records were not sized."""
    if "sizing" not in records:
        return None
    sized = records[records["sizing"].map(lambda s: isinstance(s, dict) and bool(s))]
    if sized.empty:
        return None
    by_label = {entry.model: entry for entry in entries}
    kind = str(sized["sizing"].iloc[0]["kind"])
    rows: dict[str, dict[float, SizedCell]] = {}
    members: dict[float, list[Entry]] = {}
    for label, group in sized.groupby("model", sort=False):
        entry = by_label.get(str(label))
        if entry is None:
            continue
        first = group["sizing"].iloc[0]
        budget = float(first["target"])
        widths = ", ".join(f"{name} {value}" for name, value in first["widths"].items())
        size = float(pd.Series([s["value"] for s in group["sizing"]]).mean())
        rows.setdefault(str(first["model"]), {})[budget] = SizedCell(entry, size, widths, False)
        members.setdefault(budget, []).append(entry)
    tests = {}
    for budget, group in members.items():
        test = judge_leader([replace(e) for e in group], load, alpha=alpha, resamples=resamples)
        best = set(test.groups[0]) if test is not None and test.groups else set()
        if test is not None and not test.groups:
            best = {test.leader}
            if test.skipped and test.skipped != "only one model":
                tests[budget] = test.skipped
        for cells in rows.values():
            if budget in cells and cells[budget].entry.model in best:
                cells[budget].best = True
    return EqualSize(kind, sorted(members), rows, tests)
