"""How often does the leaderboard call two equal models apart?

Pairs of models drawn from one distribution: every seed a predictor right on a share of SST-2's
872 validation rows drawn uniformly from 70-90% (seed noise as large as the small GLUE tasks'),
the better-looking model of each pair tested against the other at alpha = 0.05, as the
leaderboard does. Three rules side by side on the same pairs:
- the example bootstrap, one-sided (the leaderboard's rule before: models fixed, examples drawn);
- the two-level bootstrap (seeds, then examples), two-sided, as the order came from the data;
- that and Welch's two-sided test over the seeds' scores, both required (the leaderboard's rule).

    python benchmarks/tie_false_alarms.py --pairs 300 --out benchmarks/results/tie_false_alarms.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _publish import publish

from harness.config import TrainingSettings
from harness.report.stats import paired_bootstrap, seed_welch_p
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task
from harness.trackers.machine import cpu_model


def rates(labels: np.ndarray, seeds: int, pairs: int, rng: np.random.Generator) -> tuple[float, float, float]:
    def draw() -> list[np.ndarray]:
        return [
            np.where(rng.random(len(labels)) < rng.uniform(0.70, 0.90), labels, 1 - labels)
            for _ in range(seeds)
        ]

    examples_only = two_level = with_welch = 0
    for pair in range(pairs):
        a, b = draw(), draw()
        if np.mean([(p == labels).mean() for p in a]) < np.mean([(p == labels).mean() for p in b]):
            a, b = b, a
        old = paired_bootstrap("accuracy", labels, a, b, seed=pair, resample_seeds=False)
        new = paired_bootstrap("accuracy", labels, a, b, seed=pair)
        two_sided = min(1.0, 2 * new.p_value)
        welch = seed_welch_p("accuracy", labels, a, b)
        examples_only += old.p_value < 0.05
        two_level += two_sided < 0.05
        with_welch += max(two_sided, welch if welch is not None else 0.0) < 0.05
    return examples_only / pairs, two_level / pairs, with_welch / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tie_false_alarms.md"))
    args = parser.parse_args()
    data = load_task_data(builtin_task("sst2"), TrainingSettings(), args.data_dir)
    (split,) = data.eval.values()
    labels = split.labels
    rng = np.random.default_rng(123)
    lines = [
        f"# Equal models called apart at alpha 0.05 ({args.pairs} pairs a row; {cpu_model()})",
        "",
        "| seeds | example bootstrap, one-sided (before) | two-level, two-sided "
        "| two-level and Welch (now) |",
        "|---:|---:|---:|---:|",
    ]
    for seeds in (2, 3, 5):
        old, two_level, now = rates(labels, seeds, args.pairs, rng)
        lines.append(f"| {seeds} | {old:.3f} | {two_level:.3f} | {now:.3f} |")
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
