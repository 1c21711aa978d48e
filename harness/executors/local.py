"""The local executor: every cell in its own child process, forked from a fork server (see `child.py`).

A segfault or an out-of-memory kill ends that cell only, recorded with the signal's
name, and the child's peak resident memory is the cell's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from harness.config import CellSpec
from harness.executors.base import Outcome, throttled
from harness.executors.child import run_in_child

if TYPE_CHECKING:
    from harness.cell import CellResult
    from harness.progress import Events


def run_cell_in_child(spec_json: str, run_id: str, emit: Callable) -> CellResult:
    """The child's side: one cell, its training progress sent through `emit`."""
    from harness.cell import run_cell

    spec = CellSpec.model_validate_json(spec_json)
    return run_cell(spec, run_id, throttled(emit))


def run_local(specs: list[CellSpec], run_id: str, events: Events) -> Iterator[tuple[CellSpec, Outcome]]:
    for spec in specs:
        events.started(spec)
        outcome = run_in_child(
            run_cell_in_child,
            (spec.model_dump_json(), run_id),
            on_event=lambda progress, s=spec: events.progress(s, progress),
            who="the cell's process",
        )
        yield spec, outcome
