"""The types every executor shares, and the helpers of their child side."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from harness.config import CellSpec
from harness.events import Progress

if TYPE_CHECKING:
    from harness.cell import CellResult
    from harness.progress import Events

PROGRESS_INTERVAL_S = 0.1


@dataclass
class CellFailure:
    error: str  # one line: what went wrong
    details: str  # the traceback, kept in the run folder's log


Outcome = Union["CellResult", CellFailure]
Executor = Callable[[list[CellSpec], str, "Events"], Iterator[tuple[CellSpec, Outcome]]]


def describe(error: BaseException) -> str:
    """`TypeName: first line of the message`, the one line a failed record carries."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def throttled(put: Callable[[Progress], None]) -> Callable[[Progress], None]:
    """At most one training-step report per `PROGRESS_INTERVAL_S` (first, last and eval always)."""
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
