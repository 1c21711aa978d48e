"""The `harness` command line (typer).

Exit codes: 0 every cell ok, 1 some cell failed, 2 bad input (one line naming
the file, the field and the fix; never a traceback). Heavy libraries are
imported inside the commands that use them, so `harness --help` answers at once.
"""

from __future__ import annotations

import json
import math
import os
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import InputError
from harness.interrupts import sigterm_as_ctrl_c

if TYPE_CHECKING:
    from harness.profile import ProfileRow

app = typer.Typer(
    help="Benchmark and compare text classifiers on GLUE, SST-2 and IMDb.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI get full tables
errors = Console(stderr=True)

STORE_OPTION = typer.Option(Path("results/harness.db"), "--store", help="SQLite results store")
DATA_DIR_OPTION = typer.Option(
    None, "--data-dir", envvar="HARNESS_DATA_DIR", help="local data mirror (Hub parquet layout)"
)
TASKS_DIR_OPTION = typer.Option(
    None, "--tasks-dir", help="a folder of task YAMLs, searched after the suite's tasks/ (repeatable)"
)


def user_errors(command):
    """Turn an `InputError` into one line on stderr and exit code 2, and Ctrl-C into a
    line and exit code 130 (the shell's convention), never a traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as error:
            message = str(error)
        except KeyboardInterrupt:
            errors.print("[yellow]interrupted[/]", markup=True)
            raise typer.Exit(130) from None
        errors.print(f"[red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    return wrapper


def check_output(path: Path, option: str, folder: bool = False, store: Path | None = None) -> None:
    """An output path is checked before any work: a file where a folder is wanted (or the
    reverse), a folder on the way that is a file, no write permission, or the results store
    itself are one line. A missing folder is fine: the writer makes it (like `mkdir -p`)."""
    if folder and path.exists() and not path.is_dir():
        raise InputError(
            path, "is a file, but a folder is wanted here", "pass a folder; it is made if missing", option
        )
    if not folder and path.is_dir():
        raise InputError(path, "is a folder, but a file is wanted here", "pass a file name in it", option)
    if store is not None and path.resolve() == store.resolve():
        raise InputError(path, "is the results store itself", "write to another file", option)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise InputError(path, f"{existing} is a file, not a folder", "pass a path under a folder", option)
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        raise InputError(path, f"{existing} is not writable", "pass a path you can write to", option)


def check_tasks_dirs(folders: list[Path] | None) -> list[Path]:
    """Each `--tasks-dir` is a folder: a typo would otherwise be skipped, and a task of that
    name taken silently from somewhere else (a built-in)."""
    for folder in folders or []:
        if not folder.is_dir():
            problem = "is a file, not a folder" if folder.exists() else "no such folder"
            raise InputError(folder, problem, "pass a folder of task YAMLs", "--tasks-dir")
    return folders or []


def write_output(path: Path, text: str, option: str) -> None:
    """Write a checked output file, its folder made first (like `mkdir -p`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as error:
        raise InputError(
            path, f"could not be written ({error.strerror})", "pass a path you can write to", option
        ) from None


class Executor(str, Enum):
    local = "local"
    inline = "inline"
    ray = "ray"


@app.command()
@user_errors
def run(
    suite: Path = typer.Argument(..., help="suite YAML, e.g. suites/quickstart.yaml"),
    store: Path = STORE_OPTION,
    data_dir: str = DATA_DIR_OPTION,
    resume: bool = typer.Option(False, "--resume", help="finish the suite's latest run"),
    allow_mixed_code: bool = typer.Option(
        False,
        "--allow-mixed-code",
        help="with --resume: keep finished cells that other code made (the report marks the mix)",
    ),
    executor: Executor = typer.Option(
        Executor.local,
        help="local: a process per cell; inline: this process (debugging); ray: a Ray task per cell",
    ),
    address: str = typer.Option(
        None, "--address", help="Ray cluster (auto | ray://host:port); default: a local cluster"
    ),
    model: list[str] = typer.Option(
        None, "--model", help="run only the cells of this model label (repeatable)"
    ),
    task: list[str] = typer.Option(None, "--task", help="run only the cells of this task (repeatable)"),
    seed: list[int] = typer.Option(None, "--seed", help="run only the cells of this seed (repeatable)"),
    tasks_dir: list[Path] = TASKS_DIR_OPTION,
) -> None:
    """Run every cell (task × model × seed) of a suite, or those --model/--task/--seed select,
    and store one record per cell."""
    from harness.runner import CellSelection, run_suite
    from harness.store import check_store_path, load_records
    from harness.tables import records_table

    check_store_path(store)  # before the suite is planned, long before a cell trains
    with sigterm_as_ctrl_c():
        summary = run_suite(
            suite,
            store,
            console,
            data_dir,
            resume,
            executor.value,
            address,
            CellSelection(tuple(model or ()), tuple(task or ()), tuple(seed or ())),
            check_tasks_dirs(tasks_dir),
            allow_mixed_code,
        )
    records = load_records(store, [summary.run_id])
    console.print(records_table(records, f"run {summary.run_id}"))
    if summary.failed:
        console.print(
            f"[red]{summary.failed} of {summary.ran} cells failed[/]; logs in "
            f"{store.parent / 'runs' / summary.run_id / 'logs'}"
        )
    if summary.unsaved:
        console.print(f"[red]{summary.unsaved} cell(s) could not be stored whole[/]; see the messages above")
    raise typer.Exit(1 if summary.failed or summary.unsaved else 0)


class ListWhat(str, Enum):
    tasks = "tasks"
    models = "models"
    backends = "backends"
    runs = "runs"


@app.command("list")
@user_errors
def list_(
    what: ListWhat = typer.Argument(...),
    store: Path = STORE_OPTION,
    suite: Path = typer.Option(None, "--suite", help="also the tasks beside this suite (its tasks/ folder)"),
    tasks_dir: list[Path] = TASKS_DIR_OPTION,
) -> None:
    """List the tasks (and where each comes from), the model adapters, the inference backends (and
    whether this machine runs them), or the runs in the store."""
    table = Table(title=what.value, title_justify="left")
    if what is ListWhat.tasks:
        from harness.tasks.registry import available_tasks, load_task

        for column in ("task", "title", "dataset", "texts", "type", "metrics", "group", "from"):
            table.add_column(column)
        suite_dir = suite.parent if suite is not None else None
        for name, found in available_tasks(suite_dir, check_tasks_dirs(tasks_dir)).items():
            task = load_task(found.path)
            table.add_row(
                name,
                task.display_title,
                task.dataset.describe(),
                ", ".join(task.text_fields),
                task.problem_type,
                ", ".join(task.metric_keys()),
                task.group or "",
                f"{found.origin} ({found.path})" if found.origin != "built-in" else found.origin,
            )
    elif what is ListWhat.models:
        from harness.models.registry import load_adapters

        table.add_column("adapter")
        table.add_column("description")
        for name, adapter in load_adapters().items():
            table.add_row(name, adapter.description())
    elif what is ListWhat.backends:
        import torch

        from harness.deploy.catalog import CATALOG

        for column in ("backend", "exact", "what", "here"):
            table.add_column(column)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for backend in CATALOG:
            reason = backend.unsupported(device)
            here = f"skipped: {reason}" if reason else f"runs ({device.type})"
            table.add_row(
                backend.name, "fp32, checked" if backend.exact else "approximate", backend.what, here
            )
    else:
        from harness.store import Store

        with Store(store, create=False, read_only=True) as db:
            runs = db.runs()
        for column in ("run_id", "suite", "started_at", "status", "cells"):
            table.add_column(column)
        for _, row in runs.iterrows():
            table.add_row(*(str(row[c]) for c in ("run_id", "suite", "started_at", "status", "cells")))
    console.print(table)


def _resolve_run(store_db, run_id: str | None) -> str:
    """A run id of the store; None or `latest` means the newest run."""
    if run_id is None or run_id == "latest":
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

    with Store(store, create=False, read_only=True) as db:
        run_id = _resolve_run(db, run_id)
        records = db.records([run_id])
    console.print(records_table(records, f"run {run_id}"))


@app.command("upgrade-store")
@user_errors
def upgrade_store(store: Path = STORE_OPTION) -> None:
    """Bring a store written by an older version up to date: FLOPs from each model's formula
    (the token count recovered from the stored figure), each record's variant, and config hashes
    from before per-task overrides were narrowed to their task."""
    from harness.store import Store
    from harness.upgrade import upgrade_store as upgrade

    Store(store, create=False).close()  # a clear message when there is no store here
    summary = upgrade(store)
    for line in summary.changes:
        console.print(f"  {line}", highlight=False)
    for line in summary.unresolved:
        console.print(f"[yellow]  left alone: {line}[/]", highlight=False)
    console.print(
        f"{summary.flops_recomputed} FLOPs figure(s) recomputed, {summary.variants_filled} variant(s) "
        f"filled, {summary.hashes_narrowed} config hash(es) narrowed to the cell's own task's overrides"
    )


class Format(str, Enum):
    csv = "csv"
    json = "json"


@app.command()
@user_errors
def export(
    run_id: str = typer.Argument(..., help="run id"),
    format: Format = typer.Option(Format.csv, "--format"),
    out: Path = typer.Option(None, "--out", help="file to write (default: standard output)"),
    samples: bool = typer.Option(
        False, "--samples", help="one JSON line per (cell, evaluation row) with its text (harness/samples.py)"
    ),
    data_dir: str = DATA_DIR_OPTION,
    store: Path = STORE_OPTION,
) -> None:
    """Export a run's records as CSV (metrics as `metric.<name>` columns) or JSON, or with
    `--samples` every cell's predictions example by example."""
    from harness.store import JSON_FIELDS, Store

    if out is not None:
        check_output(out, "--out", store=store)
    with Store(store, create=False, read_only=True) as db:
        run_id = _resolve_run(db, run_id)
        records = db.records([run_id])
        if samples:
            _export_samples(db, records, out, data_dir)
            return
    if format is Format.csv:
        text = records.drop(columns=list(JSON_FIELDS)).to_csv(index=False)
    else:
        text = records.drop(columns=[c for c in records if c.startswith("metric.")]).to_json(
            orient="records", indent=2
        )
    if out is None:
        sys.stdout.write(text)
    else:
        write_output(out, text, "--out")
        console.print(f"wrote {len(records)} records to {out}")


def _export_samples(db, records, out: Path | None, data_dir: str | None) -> None:
    from harness.runner import check_data_dir
    from harness.samples import task_rows_loader, write_samples

    check_data_dir(data_dir)
    rows_of = task_rows_loader(records, data_dir)
    if out is None:
        write_samples(sys.stdout, records, db.predictions, rows_of)
        return
    partial = out.with_name(out.name + ".partial")  # a failed export leaves no half file under the name
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            count = write_samples(handle, records, db.predictions, rows_of)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    console.print(f"wrote {count:,} samples of {len(records)} records to {out}")


baseline_app = typer.Typer(
    help="Baselines: portable files of a run's records, kept in git.", no_args_is_help=True
)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
@user_errors
def baseline_save(
    run_id: str = typer.Argument(..., help="run id (see `harness list runs`)"),
    out: Path = typer.Option(..., "--out", help="e.g. results/baselines/<name>.json"),
    store: Path = STORE_OPTION,
) -> None:
    """Save a run's records (with seed-level metrics) as a baseline file."""
    from harness.compare import save_baseline
    from harness.store import Store

    check_output(out, "--out", store=store)
    with Store(store, create=False, read_only=True) as db:
        run_id = _resolve_run(db, run_id)
        records = db.records([run_id])
    save_baseline(records[records.status == "ok"], out)
    console.print(f"saved {int((records.status == 'ok').sum())} records of {run_id} to {out}")


@app.command("compare")
@user_errors
def compare_(
    baseline: str = typer.Argument(..., help="baseline file or run id"),
    current: str = typer.Argument(..., help="run id, `latest`, or baseline file"),
    suite: Path = typer.Option(None, "--suite", help="suite YAML whose `compare:` settings apply"),
    alpha: float = typer.Option(None, "--alpha", help="significance level (default 0.05)"),
    min_effect: float = typer.Option(None, "--min-effect", help="points (default 0.5)"),
    no_cost: bool = typer.Option(False, "--no-cost", help="compare quality metrics only"),
    markdown: Path = typer.Option(None, "--markdown", help="write a markdown summary here"),
    junit: Path = typer.Option(None, "--junit", help="write JUnit XML here"),
    store: Path = STORE_OPTION,
) -> None:
    """Compare a run with a baseline: exit 0 clean, 1 on a regression, 2 on bad input."""
    from harness.compare import (
        HEADERS,
        Thresholds,
        compare,
        has_regression,
        load_side,
        table_rows,
        to_junit,
        to_markdown,
    )
    from harness.planning import load_suite

    for path, option in ((markdown, "--markdown"), (junit, "--junit")):
        if path is not None:
            check_output(path, option, store=store)
    settings = load_suite(suite).compare if suite else None
    thresholds = Thresholds(
        alpha=alpha if alpha is not None else (settings.alpha if settings else 0.05),
        min_effect=min_effect if min_effect is not None else (settings.min_effect if settings else 0.5),
        per_metric=dict(settings.per_metric) if settings else {},
        compare_cost=not no_cost and (settings.compare_cost if settings else True),
    )
    base, cur = load_side(baseline, store), load_side(current, store)
    if base.empty or cur.empty:
        empty = baseline if base.empty else current
        raise InputError(empty, "has no ok records to compare", "compare runs whose cells finished")
    results = compare(base, cur, thresholds)
    table = Table(title=f"compare {baseline} → {current}", title_justify="left")
    for header in HEADERS:
        table.add_column(header)
    colour = {
        "regression": "red",
        "missing": "red",
        "improvement": "green",
        "skipped": "yellow",
        "undefined": "yellow",
    }
    for result, row in zip(results, table_rows(results), strict=True):
        style = colour.get(result.verdict)
        table.add_row(*row, style=style)
    console.print(table)
    if markdown:
        write_output(markdown, to_markdown(results, baseline, current), "--markdown")
    if junit:
        write_output(junit, to_junit(results), "--junit")
    regressed = has_regression(results)
    console.print("[red]regression[/]" if regressed else "[green]no regression[/]")
    raise typer.Exit(1 if regressed else 0)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(option, f"{text!r} is not a list of integers", "e.g. 64,128") from None
    if not values or min(values) < 1:
        raise InputError(option, f"{text!r} needs at least one positive integer", "e.g. 64,128")
    return sorted(set(values))


@app.command()
@user_errors
def profile(
    models: str = typer.Option("cnn,rnn,transformer", "--models", help="adapters, comma-separated"),
    seq_lens: str = typer.Option("64,128,256,512,1024", "--seq-lens", help="lengths, comma-separated"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    repeats: int = typer.Option(5, "--repeats", min=1, help="timed steps; the median is reported"),
    warmup: int = typer.Option(2, "--warmup", min=1, help="untimed steps first"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's)"),
    out: Path = typer.Option(Path("reports/profile"), "--out", help="folder for the CSV and the plot"),
    params: str = typer.Option(
        None, "--params", help="adapter parameters for every model, as JSON: '{\"d_model\": 256}'"
    ),
) -> None:
    """Time, peak memory and MFU of one forward+backward step of each model over sequence lengths."""
    from harness.profile import (
        exponents,
        measure_peaks,
        run_profile,
        write_csv,
        write_exponents_csv,
        write_plot,
    )

    check_output(out, "--out", folder=True)
    names = _profiled_adapters(models)
    lengths = _int_list(seq_lens, "--seq-lens")
    model_params = _json_params(params)
    device = _profile_device(device)

    def show(row) -> None:
        done = f"{row.time_ms:.1f} ms" if row.error is None else f"[red]{row.error.splitlines()[0]}[/]"
        console.print(f"  {row.model} @ {row.seq_len}: {done}", highlight=False)

    console.print(f"profiling {', '.join(names)} at {lengths} tokens, batch {batch_size}, on {device}")
    peaks = measure_peaks(device, threads)
    peak_text = ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" if v else f"{k} n/a" for k, v in peaks.items())
    console.print(f"dense-matmul peak of this machine (2048², measured now): {peak_text}")
    rows = run_profile(
        names, lengths, batch_size, repeats, warmup, device, threads, show, peaks["float32"], model_params
    )
    found = exponents(rows)
    _print_profile(rows, found, f"one training step (forward + backward), batch {batch_size}, {device}")
    written = [write_csv(rows, out / "profile.csv"), write_exponents_csv(found, out / "exponents.csv")]
    written += write_plot(rows, found, out)
    console.print("wrote " + ", ".join(str(path) for path in written))
    raise typer.Exit(1 if any(row.error for row in rows) else 0)


def _profiled_adapters(models: str) -> list[str]:
    """`--models` as adapter names: known ones, trained by steps (a fitted model has no step)."""
    from harness.models.registry import FittedAdapter, load_adapters

    names = [name.strip() for name in models.split(",") if name.strip()]
    known = load_adapters()
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise InputError("--models", f"unknown adapter(s) {unknown}", f"use some of {', '.join(known)}")
    fitted = [name for name in names if issubclass(known[name], FittedAdapter)]
    if fitted:
        raise InputError(
            "--models",
            f"{', '.join(fitted)} is fitted in one call, not trained by steps: it has no step to profile",
            "profile the trained models; a fitted model's cost is its cell's fit seconds",
        )
    return names


def _json_params(params: str | None) -> dict:
    try:
        model_params = json.loads(params) if params else {}
    except json.JSONDecodeError as error:
        raise InputError("--params", f"not JSON ({error.msg})", "e.g. '{\"d_model\": 256}'") from None
    if not isinstance(model_params, dict):
        raise InputError("--params", "must be a JSON object", "e.g. '{\"d_model\": 256}'")
    return model_params


def _profile_device(device: str) -> str:
    """`--device` as the device to profile on: auto is CUDA where there is one."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise InputError("--device", f"{device!r} is not a device", "use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "no CUDA device is available", "use --device cpu")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _print_profile(rows: list[ProfileRow], found: dict[str, dict[str, float]], title: str) -> None:
    """The profile's steps and growth exponents, as tables (a failed step in red)."""

    def fmt(value, spec: str = ".1f") -> str:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return "" if missing else format(value, spec)

    table = Table(title=title)
    columns = (
        "model", "seq len", "time ms (median)", "time ms (min)", "tokens/s", "GFLOP/s", "MFU (fp32)",
        "peak MB", "RSS Δ MB",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        if row.error is not None:
            table.add_row(row.model, str(row.seq_len), f"[red]failed: {row.error.splitlines()[0]}[/]")
            continue
        table.add_row(
            row.model,
            str(row.seq_len),
            fmt(row.time_ms, ".2f"),
            fmt(row.time_ms_min, ".2f"),
            fmt(row.tokens_per_s, ",.0f"),
            fmt(row.achieved_flops / 1e9 if row.achieved_flops else None, ",.1f"),
            fmt(row.mfu, ".1%"),
            fmt(row.peak_mb),
            fmt(row.rss_mb),
        )
    console.print(table)
    growth = Table(title="growth exponent over length (least-squares log-log slope)")
    for column in ("model", "time", "peak memory", "RSS Δ"):
        growth.add_column(column, justify="left" if column == "model" else "right")
    for model, values in found.items():
        growth.add_row(model, *(fmt(values[key], ".2f") for key in ("time_ms", "peak_mb", "rss_mb")))
    console.print(growth)
    console.print(f"peak memory: {next((r.memory_method for r in rows if r.memory_method), 'n/a')}")


@app.command()
@user_errors
def report(
    run_ids: list[str] = typer.Argument(None, help="run ids (default: the latest run, or all of --suite)"),
    suite: str = typer.Option(None, "--suite", help="every run of this suite (by name)"),
    out: Path = typer.Option(..., "--out", help="folder for leaderboard.md and index.html: reports/<name>/"),
    references: Path = typer.Option(
        None,
        "--references",
        help="published numbers to show beside (default: the ones shipped, harness/report/references.yaml)",
    ),
    no_references: bool = typer.Option(False, "--no-references", help="show no published numbers"),
    suite_file: Path = typer.Option(
        None,
        "--suite-file",
        help="take each model's `counterparts` (why it trails a published number) "
        "from this suite YAML as it is now",
    ),
    data_dir: str = DATA_DIR_OPTION,
    store: Path = STORE_OPTION,
) -> None:
    """Write a leaderboard (markdown and a self-contained HTML page) of runs in the store."""
    from harness.report import generate_report
    from harness.report.references import default_references
    from harness.runner import check_data_dir

    check_output(out, "--out", folder=True)
    check_data_dir(data_dir)
    chosen = None if no_references else (references or default_references())
    written, used = generate_report(
        store, out, run_ids or [], suite, chosen, suite_file=suite_file, data_dir=data_dir
    )
    pages = ", ".join(str(path) for path in written if path.suffix != ".json")
    console.print(f"report of {', '.join(used)}: {pages}")


@app.command()
@user_errors
def pick(
    run_ids: list[str] = typer.Argument(None, help="run ids (default: the latest run, or all of --suite)"),
    task: str = typer.Option(..., "--task", help="the task to choose a model for"),
    max_p95_ms: float = typer.Option(None, "--max-p95-ms", min=0, help="p95 latency of one example"),
    batch: int = typer.Option(1, "--batch", min=1, help="the batch the latency bound is for (1: recorded)"),
    max_memory_mb: float = typer.Option(None, "--max-memory-mb", min=0, help="the serving process's peak"),
    max_drop: float = typer.Option(
        None, "--max-drop", min=0, help="points of the primary metric a backend may lose against eager"
    ),
    min_score: float = typer.Option(None, "--min-score", help="the primary metric's floor (percent)"),
    machine: str = typer.Option(
        None, "--machine", help="read latency and memory of this machine (a part of its name)"
    ),
    suite: str = typer.Option(None, "--suite", help="every run of this suite (by name)"),
    store: Path = STORE_OPTION,
) -> None:
    """The best (variant, backend) of a task that meets every bound, the runner-up and the front."""
    from harness.pick import Bounds
    from harness.pick import pick as choose
    from harness.report import selected_records
    from harness.store import Store
    from harness.tables import pick_table

    if batch != 1:
        raise InputError(
            "--batch",
            f"latency is recorded for one example at a time, not for batches of {batch}",
            "use --batch 1; throughput at the suite's eval batch size is in the report",
        )
    bounds = Bounds(max_p95_ms, max_memory_mb, max_drop, min_score)
    with Store(store, create=False, read_only=True) as db:
        records = selected_records(db, run_ids or [], suite)
    try:
        picked = choose(records, task, bounds, machine)
    except LookupError as error:
        raise InputError("--machine" if machine else "--task", str(error), "see `harness show`") from None
    console.print(f"{task} ({picked.metric}): latency and memory of {picked.machine}", highlight=False)
    if picked.other_machines:
        console.print(f"  also in these runs, not read: {'; '.join(picked.other_machines)} (--machine)")
    console.print(pick_table(picked))
    for note in picked.notes:  # speeds and latencies left out: timed while the machine was shared
        console.print(f"  {note}", highlight=False)
    qualifying = picked.qualifying
    if not qualifying:
        worst, count = next(iter(picked.ruled_out().items()))
        raise InputError(
            worst,
            f"no (variant, backend) of {task} meets every bound: {worst} rules out {count} of "
            f"{len(picked.candidates)} ({', '.join(f'{b} {n}' for b, n in picked.ruled_out().items())})",
            "loosen that bound, or measure more variants or backends (deploy: in the suite)",
        )
    console.print(f"picked: [bold]{qualifying[0].name}[/]", highlight=False)
    if len(qualifying) > 1:
        console.print(f"runner-up: {qualifying[1].name}", highlight=False)


@app.command("export-model")
@user_errors
def export_model_(
    run_id: str = typer.Argument(..., help="the run (`latest` for the newest)"),
    variant: str = typer.Argument(
        ..., help="the model's variant, as the report names it: cnn, cnn[dropout=0.3]"
    ),
    task: str = typer.Option(None, "--task", help="the task (needed when the variant ran on several)"),
    seed: int = typer.Option(None, "--seed", help="which seed's model (default: the lowest kept)"),
    backend: str = typer.Option("eager", "--backend", help="eager, int8, onnx or onnx-int8"),
    out: Path = typer.Option(..., "--out", help="a new or empty folder"),
    store: Path = STORE_OPTION,
) -> None:
    """A kept model (suite `keep_models: true`) as a folder to ship: weights or ONNX, tokenizer,
    loader.py and a model card (README.md) with its scores, recipe, costs and provenance."""
    from harness.export_model import FORMATS, export_model
    from harness.store import Store

    if backend not in FORMATS:
        raise InputError("--backend", f"{backend!r} cannot be exported", f"use one of {', '.join(FORMATS)}")
    check_output(out, "--out", folder=True)
    if out.is_dir() and any(out.iterdir()):
        raise InputError(out, "the folder already holds files", "give a new or empty folder", "--out")
    with Store(store, create=False, read_only=True) as db:
        run_id = _resolve_run(db, run_id)
        records = db.records([run_id])
        mine = records[(records["variant"] == variant) & (records["status"] == "ok")]
        if task is not None:
            mine = mine[mine["task"] == task]
        if mine.empty:
            known = ", ".join(sorted(set(records["variant"])))
            raise InputError(store, f"run {run_id} has no finished cell of {variant!r}", f"variants: {known}")
        if mine["task"].nunique() > 1:
            tasks = ", ".join(sorted(set(mine["task"])))
            raise InputError("--task", f"{variant!r} ran on several tasks ({tasks})", "name one with --task")
        kept = mine[mine["model_dir"].notna()]
        if kept.empty:
            raise InputError(
                store, f"{variant!r} kept no model in run {run_id}", "run its suite with keep_models: true"
            )
        if seed is not None and seed not in set(kept["seed"]):
            raise InputError(
                "--seed", f"no kept model of seed {seed}", f"kept seeds: {sorted(set(kept['seed']))}"
            )
        record = kept.sort_values("seed").iloc[0] if seed is None else kept[kept["seed"] == seed].iloc[0]
        predictions = db.predictions(record["run_id"], record["cell_id"])
    try:
        exported = export_model(record, mine, predictions, store.parent, backend, out)
    except ValueError as error:
        raise InputError("--backend", str(error), "export it as eager") from None
    console.print(
        f"{variant} (seed {record['seed']}, {record['task']}) as {backend}: {exported.folder} "
        f"({exported.format}, {exported.size_mb:.1f} MB; README.md is its card, loader.py loads it)",
        highlight=False,
    )
