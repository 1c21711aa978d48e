"""Contention: how much of the machine other processes used while a cell timed itself.

A speed or a time describes the model only when the cell had the machine to itself. A test suite
or another run beside it slows every pass, and `speed.fastest_rate` cannot undo a whole phase
spent sharing (docs/benchmarks.md, "Contention", has what that did to real cells). So each
phase of a cell records the share of the machine's CPU time that went to other processes: the busy
time of every CPU (steal included: another virtual machine's) less the CPU time of this process
and its descendants, over the phase's wall time × the CPUs. 0 is a machine to itself; 0.5 on 2
CPUs is one other core kept busy. The harness's driver process counts as other (it draws the
progress display), which is why the line is not at 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

CONTENDED = 0.10  # a phase in which others used more of the machine than this: its timings are marked
# CPU times are counted in whole clock ticks: over a phase shorter than this, a few ticks either
# way would move the share by more than the line it is judged against
MIN_SECONDS = 0.25


def shared_share(contention: Any, phase: str) -> float | None:
    """The share of the machine others used in a record's `phase`, when above `CONTENDED`
    (the phase shared the machine); None when it had it, or when no share was stated."""
    share = contention.get(phase) if isinstance(contention, dict) else None
    return float(share) if isinstance(share, int | float) and share > CONTENDED else None


@dataclass(frozen=True)
class CpuSample:
    wall: float  # seconds, monotonic
    machine_busy: float  # CPU-seconds of all CPUs not idle (nor waiting on I/O)
    own: float  # CPU-seconds of this process, its reaped children and its live descendants
    cpus: int


def _busy(times) -> float:
    # Linux counts guest time inside user time, so guest fields are not added again
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_seconds() -> float:
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            live = child.cpu_times()
        except psutil.Error:  # it ended in between: reaped, its time is in children_* next time
            continue
        total += live.user + live.system
    return total


def sample() -> CpuSample:
    return CpuSample(time.monotonic(), _busy(psutil.cpu_times()), _own_seconds(), psutil.cpu_count() or 1)


def other_share(start: CpuSample, end: CpuSample) -> float | None:
    """The share of the machine's CPU time between two samples that other processes used (0–1),
    or None under `MIN_SECONDS`. Clamped: clock ticks can put a near-idle share slightly below 0."""
    if end.wall - start.wall < MIN_SECONDS:
        return None
    capacity = (end.wall - start.wall) * end.cpus
    others = (end.machine_busy - start.machine_busy) - (end.own - start.own)
    return min(1.0, max(0.0, others / capacity))


@dataclass
class ContentionTracker:
    """One cell's phases: phase name → the share of the machine other processes used during it."""

    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = sample()
        try:
            yield
        finally:
            share = other_share(start, sample())
            if share is not None:
                self.phases[name] = round(share, 4)
