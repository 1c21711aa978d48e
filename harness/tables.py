"""Rich tables of records: what `harness run` ends with, what `harness show` and `harness pick` print."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
from rich.table import Table

from harness.config import with_point
from harness.record import CellRecord
from harness.trackers.contention import CONTENDED, shared_share

if TYPE_CHECKING:
    from harness.pick import Picked


TIMING_PHASES = CellRecord.timings()


def fmt(value, digits: int = 2) -> str:
    """A number for a table; a missing figure is empty, NaN is shown as NaN."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def si(value) -> str:
    """A count with an SI prefix for a table: `22.7M`, `536.9G`; a missing figure is empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def _timed(row: pd.Series, column: str, digits: int = 1) -> str:
    """A timing, marked `*` when its phase shared the machine (`record.contention` over
    `CONTENDED`: other processes slowed it)."""
    text = fmt(_present(row, column), digits)
    shared = shared_share(row.get("contention"), TIMING_PHASES[column])
    return f"[yellow]{text}*[/]" if text and shared is not None else text


def _present(row: pd.Series, column: str):
    value = row.get(column)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _model_cell(row: pd.Series) -> str:
    """The model's label, with its sweep point and learning-curve size when it has them."""
    label = with_point(str(row["model"]), row.get("sweep_point"))
    size = row.get("train_size")
    return f"{label} @ {size} rows" if isinstance(size, str) else label


def records_table(records: pd.DataFrame, title: str) -> Table:
    """One row per cell: its metrics (NaN stays NaN), cost and status."""
    table = Table(title=title, title_justify="left", caption_justify="left")
    for column, justify in [
        ("task", "left"),
        ("model", "left"),
        ("seed", "right"),
        ("status", "left"),
        ("metrics (%)", "left"),
        ("train ex/s", "right"),
        ("infer ex/s", "right"),
        ("p50 ms", "right"),
        ("peak mem MB", "right"),
        ("params", "right"),
        ("train s", "right"),
    ]:
        table.add_column(column, justify=justify)
    marked = False
    for _, row in records.iterrows():
        timed = [
            _timed(row, column)
            for column in ("train_examples_per_s", "infer_examples_per_s", "latency_p50_ms")
        ]
        marked = marked or any(text.endswith("*[/]") for text in timed)
        metrics = row["metrics"] or {}
        primary = row["primary_metric"]
        shown = [f"[bold]{primary} {fmt(metrics.get(primary))}[/]"] if primary in metrics else []
        shown += [f"{name} {fmt(value)}" for name, value in metrics.items() if name != primary]
        memory = _present(row, "cuda_peak_allocated_mb") or _present(row, "peak_rss_mb")
        status = "[green]ok" if row["status"] == "ok" else f"[red]failed: {row['error']}"
        table.add_row(
            row["task"],
            _model_cell(row),
            str(row["seed"]),
            status,
            ", ".join(shown),
            *timed,
            fmt(memory, 0),
            si(_present(row, "params_total")),
            fmt(_present(row, "train_seconds"), 1),
        )
    if marked:
        table.caption = f"* timed while other processes used over {CONTENDED:.0%} of the machine"
    return table


def pick_table(picked: Picked) -> Table:
    """`harness pick`: every served (variant, backend) of the task, best score first: its figures,
    whether it is on the front, and the bounds it breaks."""
    table = Table(title=f"{picked.task}: candidates on {picked.machine}", title_justify="left")
    columns = ("variant", "backend", picked.metric, "drop", "p95 ms", "peak MB", "seeds", "front", "bounds")
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "backend", "bounds") else "right")
    front = {id(candidate) for candidate in picked.front}
    for candidate in picked.candidates:
        memory = fmt(candidate.memory_mb, 0)
        memory += f" ({candidate.memory_kind})" if memory else ""
        table.add_row(
            candidate.variant,
            candidate.backend,
            fmt(candidate.score),
            fmt(candidate.drop),
            fmt(candidate.p95_ms),
            memory,
            str(candidate.seeds),
            "★" if id(candidate) in front else "",
            "meets all" if not candidate.broken else "breaks " + ", ".join(candidate.broken),
        )
    return table
