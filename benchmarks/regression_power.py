"""How often does `harness compare` cry wolf, and what is the smallest drop it catches?

Runs one configuration (suites/ci-regression.yaml's CNN on SST-2) with N real seeds,
then, for k = 3 and k = 5 seeds a side:
- false-alarm rate: over every split of the N seeds into a baseline half and a
  disjoint current half, the share of comparisons called a regression;
- detectable drop: the same splits with the current side's accuracy lowered by d
  points; the smallest d (0.25-point steps) caught in at least 80% of splits.

    python benchmarks/regression_power.py --seeds 10 --out benchmarks/results/regression_power.md
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import pandas as pd
from _publish import publish

from harness.cell import run_cell
from harness.compare import Thresholds, compare
from harness.planning import expand_cells, load_suite

SUITE = Path(__file__).resolve().parents[1] / "suites" / "ci-regression.yaml"


def seed_records(n_seeds: int, data_dir: str | None) -> pd.DataFrame:
    suite = load_suite(SUITE).model_copy(update={"seeds": list(range(n_seeds))})
    rows = []
    for spec in expand_cells(suite, SUITE, data_dir):
        record = run_cell(spec, "power").record
        rows.append(record.to_dict())
        print(f"seed {spec.seed}: accuracy {record.metrics['accuracy']:.2f}", flush=True)
    return pd.DataFrame(rows)


def splits(seeds: list[int], k: int, limit: int, rng: random.Random) -> list[tuple[tuple, tuple]]:
    pairs = [
        (base, cur)
        for base in itertools.combinations(seeds, k)
        for cur in itertools.combinations([s for s in seeds if s not in base], k)
    ]
    rng.shuffle(pairs)
    return pairs[:limit]


def regression_rate(records: pd.DataFrame, pairs, drop: float, thresholds: Thresholds) -> float:
    flagged = 0
    for base, cur in pairs:
        current = records[records.seed.isin(cur)].copy()
        current["metrics"] = [{"accuracy": m["accuracy"] - drop} for m in current["metrics"]]
        results = compare(records[records.seed.isin(base)], current, thresholds)
        flagged += any(r.verdict == "regression" for r in results)
    return flagged / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--max-splits", type=int, default=300)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/regression_power.md"))
    args = parser.parse_args()

    records = seed_records(args.seeds, args.data_dir)
    accuracies = records["metrics"].map(lambda m: m["accuracy"])
    thresholds = Thresholds(compare_cost=False, min_effect=load_suite(SUITE).compare.min_effect)
    rng = random.Random(0)
    lines = [
        f"# Regression verdict power ({args.seeds} real seeds of suites/ci-regression.yaml)",
        "",
        f"Seed accuracies: mean {accuracies.mean():.2f}, sd {accuracies.std():.2f} "
        f"(min {accuracies.min():.2f}, max {accuracies.max():.2f}); min_effect {thresholds.min_effect}, "
        f"alpha {thresholds.alpha}.",
        "",
        "| seeds a side | splits | false-alarm rate | smallest drop caught in ≥80% of splits |",
        "|---|---|---|---|",
    ]
    for k in (3, 5):
        if 2 * k > args.seeds:
            continue
        pairs = splits(list(range(args.seeds)), k, args.max_splits, rng)
        false_alarms = regression_rate(records, pairs, 0.0, thresholds)
        drop = next(
            (d / 4 for d in range(1, 81) if regression_rate(records, pairs, d / 4, thresholds) >= 0.8), None
        )
        lines.append(f"| {k} | {len(pairs)} | {false_alarms:.3f} | {drop} points |")
    text = "\n".join(lines) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
