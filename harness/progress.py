"""The live display of a run: cells pending / running / done / failed, and per running cell
its epoch, step, loss and ETA.

Executors report through the `Events` protocol (`started`, `progress`); the runner
reports `finished`. One display serves the local executor (one cell at a time, with
step-level progress from the child process) and Ray (many cells at once).
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.config import CellSpec
from harness.events import Progress as LoopProgress


class Events(Protocol):
    def started(self, spec: CellSpec) -> None: ...

    def progress(self, spec: CellSpec, event: LoopProgress) -> None: ...


class RunDisplay:
    """A bar for the suite (cells finished of n, with counts) and one per running cell."""

    def __init__(self, total_cells: int, console: Console):
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.total = total_cells
        self.started_count = self.done = self.failed = 0
        self.suite_bar = self.bars.add_task("cells", total=total_cells, detail="")
        self.cell_bars: dict[str, TaskID] = {}
        self._refresh_counts()

    def __enter__(self) -> RunDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def _refresh_counts(self) -> None:
        running = len(self.cell_bars)
        pending = self.total - self.started_count
        self.bars.update(
            self.suite_bar,
            detail=f"pending {pending} · running {running} · done {self.done} · failed {self.failed}",
        )

    def started(self, spec: CellSpec) -> None:
        self.started_count += 1
        label = (
            f"cell {self.started_count}/{self.total} "
            f"{spec.task.name} · {spec.model.display_label} · seed {spec.seed}"
        )
        self.cell_bars[spec.cell_id] = self.bars.add_task(label, total=None, detail="starting")
        self._refresh_counts()

    def progress(self, spec: CellSpec, event: LoopProgress) -> None:
        bar = self.cell_bars.get(spec.cell_id)
        if bar is None:
            return
        if event.phase in ("eval", "deploy"):
            doing = "evaluating" if event.phase == "eval" else "measuring deployment backends"
            self.bars.update(bar, detail=f"epoch {event.epoch}/{event.epochs} {doing}")
            return
        loss = f" loss {event.loss:.4f}" if event.loss is not None else ""
        self.bars.update(
            bar, total=event.steps, completed=event.step, detail=f"epoch {event.epoch}/{event.epochs}{loss}"
        )

    def finished(self, spec: CellSpec, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        bar = self.cell_bars.pop(spec.cell_id, None)
        if bar is not None:
            self.bars.remove_task(bar)
        self.bars.advance(self.suite_bar)
        self._refresh_counts()
