"""The runner: suite → cells → executor → store. The only loop over cells, the only writer.

Each finished cell is written at once, in its own transaction, so a crash, a `kill -9`
or a Ctrl-C loses at most the cell in flight; `--resume` continues the suite's latest
run and runs only the cells without an ok record there. Nothing computed is dropped on
the way to the store: a record the store cannot take is kept as JSON in the run folder
(or, failing that, printed), and the suite goes on.

This module and everything it imports on the driver side stay free of torch: the cells
import it in their own processes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from harness.config import CellSpec
from harness.errors import InputError
from harness.executors import CellFailure, Outcome, make_executor
from harness.fingerprint import code_fingerprint
from harness.interrupts import stops_held
from harness.planning import expand_cells, load_suite
from harness.progress import RunDisplay
from harness.record import CellRecord, now
from harness.store import Store, cell_file_stem, check_store_path, slug


@dataclass
class RunSummary:
    run_id: str
    ran: int
    skipped: int
    failed: int
    unsaved: int = 0  # cells not wholly stored (the record kept as JSON, or predictions lost)


def new_run_id(suite: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug(suite, 60, 'suite')}-{uuid.uuid4().hex[:6]}"


def failed_record(spec: CellSpec, run_id: str, failure: CellFailure) -> CellRecord:
    record = CellRecord.for_spec(spec, run_id)
    record.error = failure.error
    record.finished_at = now()
    return record


@contextmanager
def interrupted_on_stop(store: Store, run_id: str, console: Console) -> Iterator[None]:
    """A Ctrl-C or `kill PID` anywhere in here marks the run interrupted (finished cells are
    stored) and goes on up, to end the command with exit code 130. A second stop (Ctrl-C pressed
    twice) waits until the mark is written and said."""
    try:
        yield
    except KeyboardInterrupt:
        with stops_held():
            store.finish_run(run_id, "interrupted")
            console.print("[yellow]interrupted; finished cells are stored. Continue with --resume[/]")
        raise


@dataclass(frozen=True)
class CellSelection:
    """`harness run --model/--task/--seed`: only the cells that match every filter given (an
    empty filter matches all), to redo part of a suite: one model after changing it, one
    task's cells after fixing its data, a seed whose timing shared the machine."""

    models: tuple[str, ...] = ()  # model labels as the cells carry them (`cnn@1M-params`)
    tasks: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()

    def filters(self) -> list[tuple[str, str, tuple, Callable[[CellSpec], str | int]]]:
        """(option, what it names, values, the cell's value) per filter."""
        return [
            ("--model", "model", self.models, lambda cell: cell.model.display_label),
            ("--task", "task", self.tasks, lambda cell: cell.task.name),
            ("--seed", "seed", self.seeds, lambda cell: cell.seed),
        ]

    def apply(self, cells: list[CellSpec], suite_path: Path) -> list[CellSpec]:
        chosen = cells
        for option, noun, wanted, value_of in self.filters():
            if not wanted:
                continue
            known = list(dict.fromkeys(value_of(cell) for cell in cells))
            for value in wanted:
                if value not in known:
                    raise InputError(
                        suite_path,
                        f"{option} {value!r} is not a {noun} of this suite",
                        f"use one of {', '.join(map(str, known))}",
                        f"{noun}s",
                    )
            chosen = [cell for cell in chosen if value_of(cell) in wanted]
        if not chosen:
            asked = " ".join(f"{option} {v}" for option, _, wanted, _ in self.filters() for v in wanted)
            raise InputError(
                suite_path,
                f"no cell of this suite matches {asked}",
                "check the model's `tasks:` and seeds (a fitted model runs one seed), or drop a filter",
            )
        return chosen


def keep(store: Store, spec: CellSpec, outcome: Outcome, run_id: str, console: Console) -> bool:
    """Write one outcome to the store; True when all of it is there (the record, and its
    predictions when it has any). Never raises: a record the store cannot take goes to
    `<run folder>/unsaved/` as JSON (or to the console)."""
    if isinstance(outcome, CellFailure):
        record, predictions, model = failed_record(spec, run_id, outcome), None, None
    else:
        record, predictions, model = outcome.record, outcome.predictions, outcome.model_files
    try:
        if isinstance(outcome, CellFailure):
            log = store.log_path(run_id, spec.cell_id)
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(outcome.details or outcome.error)
    except OSError as error:
        record.notes.append(f"log not saved: {type(error).__name__}: {error}")
    try:
        store.write_cell(record, predictions, model)
        return predictions is None or record.predictions_file is not None
    except Exception as error:  # a full disk, a broken store: the record must survive
        text = json.dumps(record.to_dict(), default=str, indent=1)
        try:
            fallback = store.run_folder(run_id) / "unsaved" / f"{cell_file_stem(spec.cell_id)}.json"
            fallback.parent.mkdir(parents=True, exist_ok=True)
            fallback.write_text(text)
            where = f"kept in {fallback}"
        except OSError:
            console.print(text, markup=False, highlight=False)
            where = "printed above"
        console.print(f"[red]✗ {spec.cell_id}: the store could not take its record ({error}); {where}[/]")
        return False


def check_same_code(store: Store, run_id: str, kept: set[str], store_path: Path) -> None:
    """Refuse to resume when a finished cell that would be kept was made by other code than this
    checkout's (or by code that recorded no fingerprint): the run would mix code versions."""
    current = code_fingerprint().source_hash
    made_by = store.code_hashes(run_id, kept)
    others = {code: n for code, n in made_by.items() if code != current}
    if others:
        described = ", ".join(
            f"{n} by {code or 'unrecorded code'}" for code, n in sorted(others.items(), key=str)
        )
        raise InputError(
            store_path,
            f"run {run_id} holds finished cells made by other code than this checkout's "
            f"(source {current}): {described}",
            "pass --allow-mixed-code to keep them (the report marks the mix), or run without "
            "--resume to start a new run",
            "--resume",
        )


def check_data_dir(data_dir: str | None) -> None:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(
            data_dir, "--data-dir is not a folder", "point it at a data mirror such as ../shared/data"
        )


def run_suite(
    suite_path: Path,
    store_path: Path,
    console: Console,
    data_dir: str | None = None,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    selection: CellSelection = CellSelection(),
    tasks_dirs: Sequence[Path] = (),
    allow_mixed_code: bool = False,
) -> RunSummary:
    """Run the suite's cells, or the `selection` of them (with `resume`, into the suite's
    latest run; without, as a new run that a report of the suite reads beside the earlier
    ones, its records superseding theirs). Resuming a run whose finished cells other code made
    is refused unless `allow_mixed_code`."""
    check_data_dir(data_dir)
    check_store_path(store_path)  # a store that cannot be written fails before anything is planned
    suite = load_suite(suite_path)
    all_cells = expand_cells(suite, suite_path, data_dir, tasks_dirs)
    cells = selection.apply(all_cells, suite_path)
    execute = make_executor(executor, ray_address)
    with Store(store_path) as store:
        store.mark_abandoned()
        resumed = store.latest_run(suite.name) if resume else None
        run_id = resumed or new_run_id(suite.name)
        done = store.ok_hashes(run_id)
        todo = [cell for cell in cells if cell.config_hash not in done]
        if resumed and not allow_mixed_code:
            check_same_code(store, run_id, {c.config_hash for c in cells} & done, store_path)
        store.start_run(run_id, suite.name, str(suite_path), len(all_cells if resumed else cells))
        console.print(
            f"run [bold]{run_id}[/]: {len(cells)} cells"
            + (f", {len(cells) - len(todo)} already done" if resume else "")
        )
        failed = unsaved = 0
        with interrupted_on_stop(store, run_id, console), RunDisplay(len(todo), console) as display:
            for spec, outcome in execute(todo, run_id, display):
                with stops_held():  # a cell that finished is stored whole before a stop lands
                    ok = not isinstance(outcome, CellFailure)
                    if not ok:
                        failed += 1
                        console.print(f"[red]✗ {spec.cell_id}: {outcome.error}[/]")
                    if not keep(store, spec, outcome, run_id, console):
                        unsaved += 1
                    elif ok:
                        for note in outcome.record.notes:
                            console.print(f"[yellow]! {spec.cell_id}: {note}[/]")
                    display.finished(spec, ok)
            with stops_held():
                store.finish_run(run_id, "failed" if failed or unsaved else "ok")
        return RunSummary(run_id, len(todo), len(cells) - len(todo), failed, unsaved)
