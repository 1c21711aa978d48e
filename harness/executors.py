"""Executors run cells and hand each result back to the runner, the only writer of the store.

`local` runs every cell in its own child process (multiprocessing "spawn"): a
segfault or an out-of-memory kill ends that cell only, and the child's peak
resident memory is the cell's own. `inline` runs cells in this process, for
debugging with pdb. `ray` (harness/ray_executor.py) runs each cell as a Ray task.
All run the same function, `harness.cell.run_cell`, and yield `(spec, outcome)`
as cells finish; the outcome is a `CellResult` or a `CellFailure`.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.config import CellSpec
from harness.train import Progress

if TYPE_CHECKING:
    from harness.cell import CellResult
    from harness.progress import Events

PROGRESS_INTERVAL_S = 0.1


@dataclass
class CellFailure:
    error: str  # one line: what went wrong
    details: str  # the traceback, kept in the run folder's log


def describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _throttled(put: Callable[[Progress], None]) -> Callable[[Progress], None]:
    last = 0.0

    def send(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if (
            progress.phase != "train"
            or progress.step in (1, progress.steps)
            or now - last > PROGRESS_INTERVAL_S
        ):
            last = now
            put(progress)

    return send


def _run_in_child(spec_json: str, run_id: str, channel) -> None:
    """Child-process entry point: run the cell, send progress and then the result or error."""
    from harness.cell import run_cell

    spec = CellSpec.model_validate_json(spec_json)
    try:
        result = run_cell(spec, run_id, _throttled(lambda p: channel.put(("progress", p))))
        channel.put(("result", result))
    except BaseException as error:  # everything, KeyboardInterrupt too: the parent decides
        channel.put(("failure", CellFailure(describe(error), traceback.format_exc())))


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"the cell's process died from {name}{hint}"
    return f"the cell's process exited with code {code} before reporting a result"


def run_local(
    specs: list[CellSpec], run_id: str, events: Events
) -> Iterator[tuple[CellSpec, CellResult | CellFailure]]:
    context = mp.get_context("spawn")
    for spec in specs:
        events.started(spec)
        channel = context.Queue()
        process = context.Process(
            target=_run_in_child, args=(spec.model_dump_json(), run_id, channel), daemon=True
        )
        process.start()
        outcome = None
        try:
            while outcome is None:
                try:
                    kind, payload = channel.get(timeout=0.5)
                except queue_module.Empty:
                    if not process.is_alive():
                        try:  # the result may have landed just as the process exited
                            kind, payload = channel.get(timeout=1.0)
                        except queue_module.Empty:
                            outcome = CellFailure(_exit_reason(process.exitcode), "")
                            break
                    else:
                        continue
                if kind == "progress":
                    events.progress(spec, payload)
                else:
                    outcome = payload
        finally:
            if process.is_alive():
                process.join(timeout=30)
            if process.is_alive():
                process.kill()
            channel.close()
        yield spec, outcome


def run_inline(
    specs: list[CellSpec], run_id: str, events: Events
) -> Iterator[tuple[CellSpec, CellResult | CellFailure]]:
    from harness.cell import run_cell

    for spec in specs:
        events.started(spec)
        try:
            outcome = run_cell(spec, run_id, lambda p, s=spec: events.progress(s, p))
        except Exception as error:
            outcome = CellFailure(describe(error), traceback.format_exc())
        yield spec, outcome


Executor = Callable[[list[CellSpec], str, "Events"], Iterator[tuple[CellSpec, "CellResult | CellFailure"]]]


def make_executor(name: str, ray_address: str | None = None) -> Executor:
    if name == "ray":
        from harness.ray_executor import ray_executor

        return ray_executor(ray_address)
    return {"local": run_local, "inline": run_inline}[name]
