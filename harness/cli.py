"""The `harness` command line (typer).

Exit codes: 0 every cell ok, 1 some cell failed, 2 bad input (one line naming
the file, the field and the fix; never a traceback). Heavy libraries are
imported inside the commands that use them, so `harness --help` answers at once.
"""

from __future__ import annotations

import sys
from enum import Enum
from functools import wraps
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import InputError

app = typer.Typer(
    help="Benchmark and compare text classifiers on GLUE, SST-2 and IMDb.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI get full tables
errors = Console(stderr=True)

STORE_OPTION = typer.Option(Path("results/harness.db"), "--store", help="SQLite results store")


def user_errors(command):
    """Turn an `InputError` into one line on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as error:
            errors.print(f"[red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


class Executor(str, Enum):
    local = "local"
    inline = "inline"


@app.command()
@user_errors
def run(
    suite: Path = typer.Argument(..., help="suite YAML, e.g. suites/quickstart.yaml"),
    store: Path = STORE_OPTION,
    data_dir: str = typer.Option(
        None, "--data-dir", envvar="HARNESS_DATA_DIR", help="local data mirror (Hub parquet layout)"
    ),
    resume: bool = typer.Option(False, "--resume", help="finish the suite's latest run"),
    executor: Executor = typer.Option(
        Executor.local, help="local: a process per cell; inline: this process (debugging)"
    ),
) -> None:
    """Run every cell (task × model × seed) of a suite and store one record per cell."""
    from harness.runner import run_suite
    from harness.store import load_records
    from harness.tables import records_table

    summary = run_suite(suite, store, console, data_dir, resume, executor.value)
    records = load_records(store, [summary.run_id])
    console.print(records_table(records, f"run {summary.run_id}"))
    if summary.failed:
        console.print(
            f"[red]{summary.failed} of {summary.ran} cells failed[/]; logs in "
            f"{store.parent / 'runs' / summary.run_id / 'logs'}"
        )
    raise typer.Exit(1 if summary.failed else 0)


class ListWhat(str, Enum):
    tasks = "tasks"
    models = "models"
    runs = "runs"


@app.command("list")
@user_errors
def list_(what: ListWhat = typer.Argument(...), store: Path = STORE_OPTION) -> None:
    """List the tasks, the model adapters, or the runs in the store."""
    table = Table(title=what.value, title_justify="left")
    if what is ListWhat.tasks:
        from harness.config import available_tasks, load_task

        for column in ("task", "dataset", "texts", "type", "metrics", "group"):
            table.add_column(column)
        for name, path in available_tasks().items():
            task = load_task(path)
            table.add_row(
                name,
                f"{task.dataset.path} / {task.dataset.name}",
                ", ".join(task.text_fields),
                task.problem_type,
                ", ".join(task.metric_keys()),
                task.group or "",
            )
    elif what is ListWhat.models:
        from harness.models.registry import load_adapters

        table.add_column("adapter")
        table.add_column("description")
        for name, adapter in load_adapters().items():
            table.add_row(name, adapter.description())
    else:
        from harness.store import Store

        runs = Store(store, create=False).runs()
        for column in ("run_id", "suite", "started_at", "status", "cells"):
            table.add_column(column)
        for _, row in runs.iterrows():
            table.add_row(
                *(str(row[c]) for c in ("run_id", "suite", "started_at", "status", "cells"))
            )
    console.print(table)


def _resolve_run(store_db, run_id: str | None) -> str:
    if run_id is None:
        run_id = store_db.latest_run()
        if run_id is None:
            raise InputError(store_db.path, "the store has no runs", "run a suite first")
    elif not store_db.has_run(run_id):
        raise InputError(store_db.path, f"no run {run_id!r}", "see `harness list runs`", "run_id")
    return run_id


@app.command()
@user_errors
def show(
    run_id: str = typer.Argument(None, help="run id (default: the latest run)"),
    store: Path = STORE_OPTION,
) -> None:
    """Print a run's records as a table."""
    from harness.store import Store
    from harness.tables import records_table

    db = Store(store, create=False)
    run_id = _resolve_run(db, run_id)
    console.print(records_table(db.records([run_id]), f"run {run_id}"))


class Format(str, Enum):
    csv = "csv"
    json = "json"


@app.command()
@user_errors
def export(
    run_id: str = typer.Argument(..., help="run id"),
    format: Format = typer.Option(Format.csv, "--format"),
    out: Path = typer.Option(None, "--out", help="file to write (default: standard output)"),
    store: Path = STORE_OPTION,
) -> None:
    """Export a run's records as CSV (metrics as `metric.<name>` columns) or JSON."""
    from harness.store import Store

    db = Store(store, create=False)
    run_id = _resolve_run(db, run_id)
    records = db.records([run_id])
    if format is Format.csv:
        text = records.drop(columns=["metrics", "versions", "config"]).to_csv(index=False)
    else:
        text = records.drop(columns=[c for c in records if c.startswith("metric.")]).to_json(
            orient="records", indent=2
        )
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        console.print(f"wrote {len(records)} records to {out}")
