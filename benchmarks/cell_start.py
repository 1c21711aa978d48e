"""What a cell's own process costs: the same ten tiny cells run by the local executor (a process
per cell, forked from the fork server) and inline (all in the driver's process), in one run.

Each is a whole `harness run` command timed from outside, alternately, `--repeats` times: the
cnn on 64 SST-2 sentences, one epoch, ten seeds. The difference over ten is what starting a
cell's process adds to each cell.

    python benchmarks/cell_start.py               # 3 repeats each
    python benchmarks/cell_start.py --repeats 1   # a quick check

Goal: at most 1 s a cell above inline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _publish import publish

from harness.store import load_records
from harness.trackers.machine import cpu_model

CELLS = 10
SUITE = f"""
name: cell-start
tasks: [{{name: sst2, splits: {{train: "train[:2000]", eval: validation}}}}]
models: [{{adapter: cnn, params: {{vocab_size: 2000}}}}]
seeds: {list(range(CELLS))}
threads: 1
training: {{epochs: 1, max_train_examples: 64, max_eval_examples: 64}}
"""


def timed_run(suite: Path, store: Path, executor: str) -> tuple[float, float]:
    """The command's wall seconds, and the median of its cells' peak resident memory (MiB)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "--store", str(store), "--executor", executor],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    records = load_records(store)
    assert len(records) == CELLS and set(records["status"]) == {"ok"}, records[["status", "error"]]
    return seconds, float(records["peak_rss_mb"].median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cell_start.md")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"local": [], "inline": []}
    peak_mb: dict[str, list[float]] = {"local": [], "inline": []}
    with tempfile.TemporaryDirectory() as folder:
        suite = Path(folder) / "cell-start.yaml"
        suite.write_text(SUITE)
        for repeat in range(args.repeats):
            for executor in seconds:
                wall, peak = timed_run(suite, Path(folder) / f"{executor}-{repeat}.db", executor)
                seconds[executor].append(wall)
                peak_mb[executor].append(peak)
    local, inline = (statistics.median(seconds[name]) for name in ("local", "inline"))
    peak = {name: statistics.median(values) for name, values in peak_mb.items()}
    per_cell = (local - inline) / CELLS
    spread = {name: f"{min(runs):.1f}–{max(runs):.1f}" for name, runs in seconds.items()}
    text = "\n".join(
        [
            f"# Starting a cell's process ({CELLS} tiny cnn cells; {cpu_model()}; "
            f"median of {args.repeats} alternating runs)",
            "",
            "| executor | `harness run`, s | range, s | a cell's peak resident memory, MiB |",
            "|---|---:|---:|---:|",
            f"| local (a process per cell) | {local:.1f} | {spread['local']} | {peak['local']:.0f} |",
            f"| inline (the driver's process) | {inline:.1f} | {spread['inline']} | {peak['inline']:.0f} |",
            "",
            f"A cell's process adds **{per_cell:.2f} s** a cell (goal ≤ 1 s).",
            "",
        ]
    )
    publish(text, args.out)


if __name__ == "__main__":
    main()
