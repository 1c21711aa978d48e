"""The inline executor: cells in the driver's own process, for debugging (pdb, a profiler).

No crash isolation and no per-cell memory figure of its own (the high-water mark is
reset per cell, so each peak is the process's after that reset); the metrics are the
same as the local executor's for the same seed and threads.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness.config import CellSpec
from harness.executors.base import CellFailure, Outcome, describe

if TYPE_CHECKING:
    from harness.progress import Events


def run_inline(specs: list[CellSpec], run_id: str, events: Events) -> Iterator[tuple[CellSpec, Outcome]]:
    from harness.cell import run_cell

    for spec in specs:
        events.started(spec)
        try:
            outcome = run_cell(spec, run_id, lambda p, s=spec: events.progress(s, p))
        except Exception as error:
            outcome = CellFailure(describe(error), traceback.format_exc())
        yield spec, outcome
