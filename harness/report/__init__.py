"""Leaderboards from the results store: `leaderboard.md` and a self-contained `index.html`.

| module | one job |
|---|---|
| `scores.py` | seeds pooled per (task, model); group scores (GLUE's) by the rule their YAML gives |
| `stats.py` | t-interval over seeds; paired bootstrap over examples |
| `leader.py` | the top two models of a task tested on their predictions; ranks and ties |
| `examples.py` | confusion matrices; where the leader and each other model differ, example by example |
| `slices.py` | each model's primary metric on slices of the evaluation rows, and which are worse |
| `deployed.py` | the deployed table (model × backend against eager) and its accuracy-latency plot |
| `plots.py` | plotly figure specs of accuracy against cost, with the Pareto front |
| `references.py` | published numbers (`references.yaml`, shipped beside it) |
| `build.py` | records → `Report` (numbers and names only) |
| `render.py`, `templates/` | `Report` → markdown and HTML (Jinja, autoescaped) |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from harness.store import Store


def selected_records(db: Store, run_ids: Sequence[str], suite: str | None) -> pd.DataFrame:
    """The records of `run_ids`, or of every run of `suite`, or of the latest run; a clear error
    for a run id the store lacks, or when none of them finished a cell."""
    for run_id in run_ids:
        if not db.has_run(run_id):
            raise InputError(db.path, f"no run {run_id!r}", "see `harness list runs`", "run_id")
    if not run_ids and suite is None:
        latest = db.latest_run()
        if latest is None:
            raise InputError(db.path, "the store has no runs", "run a suite first")
        run_ids = [latest]
    records = db.records(list(run_ids) or None, suite)
    if records.empty or not (records["status"] == "ok").any():
        what = f"suite {suite!r}" if suite else f"run(s) {', '.join(run_ids)}"
        raise InputError(db.path, f"{what} has no finished (ok) cells", "pass other run ids or --suite")
    return records


def generate_report(
    store: Path,
    out: Path,
    run_ids: Sequence[str] = (),
    suite: str | None = None,
    references: Path | None = None,
    title: str | None = None,
    resamples: int = 1000,
    suite_file: Path | None = None,
    data_dir: str | None = None,
) -> tuple[list[Path], list[str]]:
    """Write the report of some runs (default: the latest) to `out`; returns (paths, run ids).

    With `suite_file`, each model's `counterparts` (why it trails a published number) come from
    that file as it is now, not from the records: they are commentary, and the evidence for
    them often arrives after the cells ran. The texts of the example-level tables are read from
    `data_dir` (or HARNESS_DATA_DIR, or the Hub) through the tasks' loader."""
    from harness.report.build import build_report
    from harness.report.gaps import with_counterparts_from
    from harness.report.references import load_references
    from harness.report.render import write_report
    from harness.samples import task_rows_loader
    from harness.store import Store

    db = Store(store, create=False)
    try:
        records = selected_records(db, run_ids, suite)

        def load_predictions(run_id: str, cell_id: str):
            try:
                return db.predictions(run_id, cell_id)
            except (FileNotFoundError, OSError):
                return None

        if suite_file is not None:
            records = with_counterparts_from(records, suite_file)
        found = load_references(references) if references is not None else []
        if title is None:
            suites = sorted({str(s) for s in records["suite"]})
            title = f"Leaderboard: {', '.join(suites)}"
        report = build_report(
            records,
            load_predictions,
            found,
            title=title,
            resamples=resamples,
            task_rows=task_rows_loader(records, data_dir),
        )
        return write_report(report, out), report.provenance.run_ids
    finally:
        db.close()
