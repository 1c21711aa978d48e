"""The runner: suite → cells → executor → store. The only loop over cells, the only writer.

Each finished cell is written at once, in its own transaction, so a crash or a
Ctrl-C loses at most the cell in flight; `--resume` continues the suite's
latest run and runs only the cells without an ok record there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from harness.config import CellSpec, expand_cells, load_suite
from harness.errors import InputError
from harness.executors import CellFailure, make_executor
from harness.progress import RunDisplay
from harness.record import CellRecord
from harness.store import Store


@dataclass
class RunSummary:
    run_id: str
    ran: int
    skipped: int
    failed: int


def new_run_id(suite: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{suite}-{uuid.uuid4().hex[:6]}"


def failed_record(spec: CellSpec, run_id: str, failure: CellFailure) -> CellRecord:
    from harness.cell import new_record, now

    record = new_record(spec, run_id)
    record.error = failure.error
    record.finished_at = now()
    return record


def interruptible(outcomes, store: Store, run_id: str, console: Console):
    """Pass outcomes through; on Ctrl-C mark the run interrupted (finished cells are stored)."""
    try:
        yield from outcomes
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted")
        console.print("[yellow]interrupted; finished cells are stored. Continue with --resume[/]")
        raise


def select_models(cells: list[CellSpec], labels: list[str] | None, suite_path: Path) -> list[CellSpec]:
    if not labels:
        return cells
    known = list(dict.fromkeys(cell.model.display_label for cell in cells))
    for label in labels:
        if label not in known:
            raise InputError(
                suite_path,
                f"--model {label!r} is not a model of this suite",
                f"use one of {', '.join(known)}",
                "models",
            )
    return [cell for cell in cells if cell.model.display_label in labels]


def run_suite(
    suite_path: Path,
    store_path: Path,
    console: Console,
    data_dir: str | None = None,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    only_models: list[str] | None = None,
) -> RunSummary:
    """Run the suite's cells, or with `only_models` the cells of those model labels (to redo
    one model after changing it: with `resume`, into the suite's latest run)."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(
            data_dir,
            "--data-dir is not a folder",
            "point it at a data mirror such as ../shared/data",
        )
    suite = load_suite(suite_path)
    all_cells = expand_cells(suite, suite_path, data_dir)
    cells = select_models(all_cells, only_models, suite_path)
    execute = make_executor(executor, ray_address)
    store = Store(store_path)
    try:
        resumed = store.latest_run(suite.name) if resume else None
        run_id = resumed or new_run_id(suite.name)
        done = store.ok_hashes(run_id)
        todo = [cell for cell in cells if cell.config_hash not in done]
        store.start_run(run_id, suite.name, str(suite_path), len(all_cells if resumed else cells))
        console.print(
            f"run [bold]{run_id}[/]: {len(cells)} cells"
            + (f", {len(cells) - len(todo)} already done" if resume else "")
        )
        failed = 0
        with RunDisplay(len(todo), console) as display:
            for spec, outcome in interruptible(execute(todo, run_id, display), store, run_id, console):
                ok = not isinstance(outcome, CellFailure)
                if ok:
                    store.write_cell(outcome.record, outcome.predictions)
                else:
                    failed += 1
                    store.write_cell(failed_record(spec, run_id, outcome))
                    log = store.run_folder(run_id) / "logs" / f"{spec.cell_id}.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    log.write_text(outcome.details or outcome.error)
                    console.print(f"[red]✗ {spec.cell_id}: {outcome.error}[/]")
                display.finished(spec, ok)
        store.finish_run(run_id, "failed" if failed else "ok")
        return RunSummary(run_id, len(todo), len(cells) - len(todo), failed)
    finally:
        store.close()
