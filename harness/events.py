"""What a cell reports while it runs, in a module that imports nothing heavy.

The training loop (child side, torch) sends these; the executors and the live display
(driver side, no torch) receive them. Keeping the type here is what lets the driver
run a suite without importing torch itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Progress:
    """One report from the loop, for the progress display."""

    phase: str  # "train", "eval" or "deploy"
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
