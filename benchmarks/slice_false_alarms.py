"""How often does the slices table call a slice worse when it is not, and find one that is?

On SST-2's 872 validation rows, three seeds of a model right on about 85% of them (a shared
per-row difficulty, so the seeds agree on hard rows as trained models do). Null: slices of 50,
150 and 300 rows drawn at random, each tested against the model's other rows at alpha = 0.05
(one-sided permutation test, `stats.permutation_worse_p`). Planted: the same slices with their
evaluation labels flipped on a share of their rows, as a weak slice would be.

    python benchmarks/slice_false_alarms.py --draws 300 --out benchmarks/results/slice_false_alarms.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _publish import publish

from harness.config import TrainingSettings
from harness.report.stats import permutation_worse_p
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task
from harness.trackers.machine import cpu_model

SEEDS = 3


def seeds_of(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    hard = rng.random(len(labels)) > 0.90
    return [np.where(hard ^ (rng.random(len(labels)) < 0.05), 1 - labels, labels) for _ in range(SEEDS)]


def called_worse(labels, size: int, flipped: float, draws: int, rng) -> float:
    calls = 0
    for draw in range(draws):
        predictions = seeds_of(labels, rng)
        members = np.zeros(len(labels), dtype=bool)
        chosen = rng.choice(len(labels), size=size, replace=False)
        members[chosen] = True
        planted = labels.copy()
        flip = chosen[: int(round(flipped * size))]
        planted[flip] = 1 - planted[flip]
        p = permutation_worse_p("accuracy", planted, predictions, members, True, permutations=500, seed=draw)
        calls += p < 0.05
    return calls / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/slice_false_alarms.md"))
    args = parser.parse_args()
    (split,) = load_task_data(builtin_task("sst2"), TrainingSettings(), args.data_dir).eval.values()
    rng = np.random.default_rng(7)
    lines = [
        f"# Slices called worse at alpha 0.05 ({args.draws} draws a cell; SST-2 dev; {cpu_model()})",
        "",
        "| slice rows | random slice (false alarms) | 10% of its labels flipped | 20% flipped |",
        "|---:|---:|---:|---:|",
    ]
    for size in (50, 150, 300):
        null, weak, weaker = (
            called_worse(split.labels, size, share, args.draws, rng) for share in (0, 0.1, 0.2)
        )
        lines.append(f"| {size} | {null:.3f} | {weak:.3f} | {weaker:.3f} |")
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
