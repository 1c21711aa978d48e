"""Memory, measured where it lives: CUDA peak allocated/reserved on a GPU (reset per phase), the
peak resident set of the cell's own process on a CPU (each cell runs in a child process, so this
is the cell's figure, not the suite's). `MemoryTracker` keeps one cell's phases.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.allocator import release_freed_memory


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    On Linux this is `VmHWM` of /proc/self/status, the high-water mark of this
    process's own address space. Not `ru_maxrss`: the kernel carries the address
    space that `exec` replaces into it, so a child started by fork/vfork + exec
    (multiprocessing "spawn") would report at least its parent's peak.
    Elsewhere `ru_maxrss` (Linux reports KiB, macOS bytes).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


_earlier_peak_mb = 0.0  # the highest mark of the cell's phases before the current one


def reset_peak_rss(new_cell: bool = False) -> None:
    """Start a new high-water mark (Linux: `5` into /proc/self/clear_refs resets `VmHWM` to the
    current RSS), so cells run one after another in one process, and the phases of one cell
    (training, inference, each deploy backend), each report their own peak; `cell_peak_rss_mb`
    keeps the cell's. Memory the allocator kept after the last phase freed it is handed back
    first: the mark starts from what is live, not from what was."""
    global _earlier_peak_mb
    _earlier_peak_mb = 0.0 if new_cell else max(_earlier_peak_mb, peak_rss_mb())
    release_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not permitted: the figure is then the process's peak


def cell_peak_rss_mb() -> float:
    """Peak resident memory since the cell's `reset_peak_rss(new_cell=True)`, over all its phases."""
    return max(_earlier_peak_mb, peak_rss_mb())


def cuda_peaks_mb(device: torch.device) -> tuple[float | None, float | None]:
    if device.type != "cuda":
        return None, None
    return (
        torch.cuda.max_memory_allocated(device) / 1024**2,
        torch.cuda.max_memory_reserved(device) / 1024**2,
    )


def reset_cuda_peaks(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@dataclass(frozen=True)
class PhasePeak:
    rss_mb: float  # the process's peak resident set during the phase
    cuda_allocated_mb: float | None  # None off CUDA
    cuda_reserved_mb: float | None


class MemoryTracker:
    """One cell's memory, phase by phase. The first phase's mark starts with the tracker (the
    cell's start); each later phase starts a new mark from what is live then, so a phase's peak
    is its own, and `cell_rss_mb` is the highest mark over all of them."""

    def __init__(self, device: torch.device):
        self.device = device
        self.phases: dict[str, PhasePeak] = {}
        reset_peak_rss(new_cell=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.phases:
            reset_peak_rss()
        reset_cuda_peaks(self.device)
        yield
        allocated, reserved = cuda_peaks_mb(self.device)
        self.phases[name] = PhasePeak(peak_rss_mb(), allocated, reserved)

    def cell_rss_mb(self) -> float:
        return cell_peak_rss_mb()

    def cuda_peak_mb(self, kind: str) -> float | None:
        """The highest CUDA peak over the phases, `allocated` or `reserved`; None off CUDA."""
        values = [getattr(p, f"cuda_{kind}_mb") for p in self.phases.values()]
        present = [v for v in values if v is not None]
        return max(present) if present else None
