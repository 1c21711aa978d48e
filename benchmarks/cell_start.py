"""What a cell's own process costs: the same ten tiny cells run by the local executor (a process
per cell, forked from the fork server) and inline (all in the driver's process), in one run.

Each is a whole `harness run` command timed from outside, alternately, `--repeats` times: the
cnn on 64 SST-2 sentences, one epoch, ten seeds. The difference over ten is what starting a
cell's process adds to each cell.

    python benchmarks/cell_start.py               # 3 repeats each
    python benchmarks/cell_start.py --repeats 1   # a quick check
    python benchmarks/cell_start.py --baseline ../old-checkout   # that tree's harness too, alternately

Goal: at most 1 s a cell above inline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _publish import publish

from harness.store import load_records
from harness.trackers.machine import cpu_model

REPO_ROOT = Path(__file__).resolve().parents[1]

CELLS = 10
SUITE = f"""
name: cell-start
tasks: [{{name: sst2, splits: {{train: "train[:2000]", eval: validation}}}}]
models: [{{adapter: cnn, params: {{vocab_size: 2000}}}}]
seeds: {list(range(CELLS))}
threads: 1
training: {{epochs: 1, max_train_examples: 64, max_eval_examples: 64}}
"""


def timed_run(suite: Path, store: Path, executor: str, tree: Path) -> tuple[float, float]:
    """The command's wall seconds with the harness of `tree`, and the median of its cells' peak
    resident memory (MiB)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "--store", str(store), "--executor", executor],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # `-m` puts the working directory first on sys.path
    )
    seconds = time.perf_counter() - started
    records = load_records(store)
    assert len(records) == CELLS and set(records["status"]) == {"ok"}, records[["status", "error"]]
    return seconds, float(records["peak_rss_mb"].median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout, run the same way alternately")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cell_start.md")
    args = parser.parse_args()
    trees = {"this tree": REPO_ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    runs = [(tree, executor) for tree in trees for executor in ("local", "inline")]
    seconds: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    peak_mb: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as folder:
        suite = Path(folder) / "cell-start.yaml"
        suite.write_text(SUITE)
        for repeat in range(args.repeats):
            for tree, executor in runs:
                store = Path(folder) / f"{tree}-{executor}-{repeat}.db"
                wall, peak = timed_run(suite, store, executor, trees[tree])
                seconds[tree, executor].append(wall)
                peak_mb[tree, executor].append(peak)
    lines = [
        f"# Starting a cell's process ({CELLS} tiny cnn cells; {cpu_model()}; "
        f"median of {args.repeats} alternating runs)",
        "",
        "| harness | executor | `harness run`, s | range, s | a cell's peak resident memory, MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for tree, executor in runs:
        runs_s = seconds[tree, executor]
        lines.append(
            f"| {tree} | {executor} | {statistics.median(runs_s):.1f} | {min(runs_s):.1f}–{max(runs_s):.1f} "
            f"| {statistics.median(peak_mb[tree, executor]):.0f} |"
        )
    lines.append("")
    for tree in trees:
        local, inline = (statistics.median(seconds[tree, executor]) for executor in ("local", "inline"))
        lines.append(
            f"- {tree}: a cell's process adds **{(local - inline) / CELLS:.2f} s** a cell (goal ≤ 1 s)"
        )
    text = "\n".join([*lines, ""])
    publish(text, args.out)


if __name__ == "__main__":
    main()
