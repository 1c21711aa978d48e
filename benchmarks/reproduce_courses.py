"""Reproduce the courses' from-scratch classifiers on full IMDb and full SST-2, and print the table.

Runs `suites/reproduce-courses.yaml` (cnn, rnn and transformer, each with its
default architecture and one training recipe; IMDb 25k train → 25k test, SST-2
67k train → 872 dev) through the harness's own runner, into a store under
`results/`, then reads the run back with `harness.store.load_records` and prints a
markdown table: model | IMDb test acc | IMDb train wall time | SST-2 dev acc |
SST-2 train wall time, each figure marked against its target.

    python benchmarks/reproduce_courses.py                                  # the benchmark, ~1 h on 2 cores
    python benchmarks/reproduce_courses.py --resume                         # finish an interrupted run
    python benchmarks/reproduce_courses.py --table-only                     # the table of the latest run
    python benchmarks/reproduce_courses.py --max-train 200 --epochs 1       # a smoke run, ~2 minutes
    python benchmarks/reproduce_courses.py --resume --model cnn --seeds 0 1 2   # more seeds of one model

With several seeds a model's figures are the mean over them, its accuracy as mean ± sd.

A smoke run (any of --max-train, --max-eval, --epochs) runs a copy of the suite
named `reproduce-courses-smoke`, with those settings forced on every cell, into
its own store, so its numbers never mix with the real ones.

Targets (2-core CPU, default settings): IMDb test accuracy cnn ≥ 86.5, rnn ≥ 86,
transformer ≥ 86.5; SST-2 dev accuracy cnn ≥ 81, rnn ≥ 81, transformer ≥ 79; each
model's IMDb training under 20 minutes. `--check-targets` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console

from harness.errors import InputError
from harness.runner import CellSelection, run_suite
from harness.store import Store, load_records

REPO_ROOT = Path(__file__).resolve().parents[1]
SUITE = REPO_ROOT / "suites" / "reproduce-courses.yaml"
STORE = REPO_ROOT / "results" / "reproduce-courses" / "harness.db"
SMOKE_STORE = REPO_ROOT / "results" / "reproduce-courses-smoke" / "harness.db"

# model label → (IMDb test accuracy, SST-2 dev accuracy), in percent
TARGETS: dict[str, tuple[float, float]] = {
    "cnn": (86.5, 81.0),
    "rnn": (86.0, 81.0),
    "transformer": (86.5, 79.0),
}
IMDB_TRAIN_LIMIT_S = 20 * 60


def default_data_dir() -> str | None:
    if os.environ.get("HARNESS_DATA_DIR"):
        return os.environ["HARNESS_DATA_DIR"]
    beside = REPO_ROOT.parent / "shared" / "data"
    return str(beside) if beside.is_dir() else None


def suite_copy(suite: Path, overrides: dict[str, int], seeds: list[int] | None, folder: Path) -> Path:
    """A copy of the suite with other seeds, or (a smoke suite, named apart) with `overrides`
    forced on every cell (set at the model level, which wins)."""
    raw = yaml.safe_load(suite.read_text())
    if seeds:
        raw["seeds"] = seeds
    if overrides:
        raw["name"] = f"{raw['name']}-smoke"
        raw["description"] = f"smoke run of {suite.name}: {overrides}"
        for model in raw["models"]:
            model["training"] = {**model.get("training", {}), **overrides}
    path = folder / suite.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def fmt_minutes(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def cell_figures(records: pd.DataFrame, task: str, model: str) -> tuple[float | None, float | None, str]:
    """(mean accuracy, mean training seconds, note) over the seeds of one task × model; with
    several seeds the note is their count and the accuracy's standard deviation."""
    rows = records[(records.task == task) & (records.model == model)]
    ok = rows[rows.status == "ok"]
    if rows.empty:
        return None, None, "not run"
    if ok.empty:
        return None, None, "failed"
    accuracy = ok["metric.accuracy"]
    note = f"sd {accuracy.std():.2f}, {len(ok)} seeds" if len(ok) > 1 else ""
    return float(accuracy.mean()), float(ok["train_seconds"].mean()), note


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def markdown_table(records: pd.DataFrame, models: list[str]) -> tuple[str, list[str]]:
    """The table, and the targets it misses."""
    lines = [
        "| model | IMDb test acc | IMDb train wall time | SST-2 dev acc | SST-2 train wall time |",
        "|---|---:|---:|---:|---:|",
    ]
    missed = []
    for model in models:
        imdb_target, sst2_target = TARGETS.get(model, (None, None))
        cells = []
        for task, target, limit in (("imdb", imdb_target, IMDB_TRAIN_LIMIT_S), ("sst2", sst2_target, None)):
            accuracy, seconds, note = cell_figures(records, task, model)
            if accuracy is None:
                cells += [note, "—"]
                missed.append(f"{task}/{model}: {note}")
                continue
            acc_text = f"{accuracy:.2f}"
            if target is not None:
                acc_text += f" {mark(accuracy >= target)} (≥ {target:g})"
                if accuracy < target:
                    missed.append(f"{task}/{model}: accuracy {accuracy:.2f} < {target:g}")
            time_text = fmt_minutes(seconds)
            if limit is not None:
                time_text += f" {mark(seconds < limit)} (< {limit // 60} min)"
                if seconds >= limit:
                    missed.append(f"{task}/{model}: training took {fmt_minutes(seconds)} ≥ {limit // 60} min")
            if note:
                acc_text += f" ({note})"
            cells += [acc_text, time_text]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=SUITE)
    parser.add_argument("--store", type=Path, help=f"results store (default {STORE.relative_to(REPO_ROOT)})")
    parser.add_argument("--data-dir", default=default_data_dir(), help="local data mirror")
    parser.add_argument("--resume", action="store_true", help="finish the suite's latest run")
    parser.add_argument("--table-only", action="store_true", help="print the latest run's table; run nothing")
    parser.add_argument("--max-train", type=int, help="smoke run: training rows per task")
    parser.add_argument(
        "--max-eval", type=int, help="smoke run: evaluation rows per task (default --max-train)"
    )
    parser.add_argument("--epochs", type=int, help="smoke run: epochs for every model")
    parser.add_argument("--seeds", type=int, nargs="+", help="run these seeds instead of the suite's")
    parser.add_argument("--model", action="append", help="run only this model label (repeatable)")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    console = Console()
    if args.max_train is not None and args.max_eval is None:
        args.max_eval = args.max_train  # a smoke run should not evaluate on 25,000 reviews
    overrides = {
        key: value
        for key, value in (
            ("max_train_examples", args.max_train),
            ("max_eval_examples", args.max_eval),
            ("epochs", args.epochs),
        )
        if value is not None
    }
    store = args.store or (SMOKE_STORE if overrides else STORE)

    with tempfile.TemporaryDirectory() as folder:
        copy = overrides or args.seeds
        suite = suite_copy(args.suite, overrides, args.seeds, Path(folder)) if copy else args.suite
        suite_name = yaml.safe_load(suite.read_text())["name"]
        models = [m.get("label") or m["adapter"] for m in yaml.safe_load(suite.read_text())["models"]]
        try:
            if args.table_only:
                db = Store(store, create=False)
                run_id = db.latest_run(suite_name)
                db.close()
                if run_id is None:
                    raise InputError(store, f"no run of suite {suite_name!r}", "run the benchmark first")
                failed = 0
            else:
                selection = CellSelection(models=tuple(args.model or ()))
                summary = run_suite(suite, store, console, args.data_dir, args.resume, selection=selection)
                run_id, failed = summary.run_id, summary.failed
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # the runner has stored the finished cells and said how to resume
            return 130

    records = load_records(store, [run_id])
    table, missed = markdown_table(records, models)
    device = records["device_name"].dropna().iloc[0] if records["device_name"].notna().any() else "?"
    threads = records["threads"].dropna().iloc[0] if records["threads"].notna().any() else "?"
    text = (
        f"### {suite_name}: run {run_id}\n\n"
        f"{device}, {threads} torch threads; accuracy in %, training wall time in m:ss\n\n{table}\n"
    )
    print()
    print(text)
    if missed:
        print("targets missed:\n" + "\n".join(f"- {line}" for line in missed))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if failed:
        return 1
    return 1 if args.check_targets and missed else 0


if __name__ == "__main__":
    sys.exit(main())
