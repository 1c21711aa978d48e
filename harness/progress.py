"""The live display of a run: which cell of how many, its epoch and step, loss, and ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.config import CellSpec
from harness.train import Progress as LoopProgress


class RunDisplay:
    """Two bars: the suite (cells done of n) and the current cell (steps of its epoch)."""

    def __init__(self, total_cells: int, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.suite_bar = self.progress.add_task("cells", total=total_cells, detail="")
        self.cell_bar = None
        self.cell_index = 0
        self.total_cells = total_cells

    def __enter__(self) -> RunDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start_cell(self, spec: CellSpec) -> None:
        self.cell_index += 1
        if self.cell_bar is not None:
            self.progress.remove_task(self.cell_bar)
        label = (
            f"cell {self.cell_index}/{self.total_cells} "
            f"{spec.task.name} · {spec.model.display_label} · seed {spec.seed}"
        )
        self.cell_bar = self.progress.add_task(label, total=None, detail="loading data")

    def update(self, spec: CellSpec, event: LoopProgress) -> None:
        if self.cell_bar is None:
            return
        if event.phase == "eval":
            self.progress.update(
                self.cell_bar, detail=f"epoch {event.epoch}/{event.epochs} evaluating"
            )
            return
        loss = f" loss {event.loss:.4f}" if event.loss is not None else ""
        self.progress.update(
            self.cell_bar,
            total=event.steps,
            completed=event.step,
            detail=f"epoch {event.epoch}/{event.epochs}{loss}",
        )

    def finish_cell(self, status: str) -> None:
        self.progress.advance(self.suite_bar)
        if self.cell_bar is not None:
            self.progress.update(self.cell_bar, detail=status)
