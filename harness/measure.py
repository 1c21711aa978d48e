"""What a cell costs: inference throughput, latency, memory, parameters, FLOPs, provenance.

Clocks are read only after synchronising the device. Memory is measured where
it lives: CUDA peak allocated/reserved on a GPU (reset per phase), the peak
resident set of the cell's own process on a CPU (each cell runs in a child
process, so this is the cell's figure, not the suite's).
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.allocator import release_freed_memory
from harness.batching import Encoded, collate
from harness.train import autocast, predict, synchronize, to_device

PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "text-classifier-harness")


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


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def timed_predict(
    model: nn.Module, data: Encoded, batch_size: int, device: torch.device, amp: bool
) -> tuple[np.ndarray, float]:
    """Outputs for every row, and examples per second of the whole pass."""
    synchronize(device)
    start = time.perf_counter()
    outputs = predict(model, data, batch_size, device, amp)
    synchronize(device)
    return outputs, len(data) / (time.perf_counter() - start)


def fastest_rate(
    model: nn.Module,
    data: Encoded,
    batch_size: int,
    device: torch.device,
    amp: bool,
    first_rate: float,
    budget_s: float = 10.0,
    max_passes: int = 5,
) -> float:
    """Examples per second of the fastest whole pass: `first_rate` (the pass whose outputs
    were scored) and more passes while `budget_s` lasts, `max_passes` in all.

    Why the fastest: the backends of a cell are timed one after another, on a machine other
    jobs share; a burst of contention slows whichever pass it lands in and would be read as
    that backend's cost (MiniLM's int8 on SST-2 dev read 1.92× to 2.62× eager across three
    single-pass runs). Contention only ever adds time, so the fastest pass is the estimate
    least moved by it, as `timeit` reports. A pass longer than the budget runs once."""
    if len(data) == 0:
        return first_rate
    rates = [first_rate]
    deadline = time.perf_counter() + budget_s
    while len(rates) < max_passes and time.perf_counter() + len(data) / max(rates) < deadline:
        rates.append(timed_predict(model, data, batch_size, device, amp)[1])
    return max(rates)


@torch.no_grad()
def latency_ms(
    model: nn.Module,
    data: Encoded,
    device: torch.device,
    amp: bool,
    repeats: int = 100,
    warmup: int = 5,
    budget_s: float = 3.0,
    min_repeats: int = 20,
) -> tuple[float, float]:
    """p50 and p95 of single-example forward time over real rows (warm-up first).

    Stops after `repeats` rows, or once `budget_s` is spent and `min_repeats`
    rows are timed, so a slow model does not spend minutes here. A split smaller than
    `warmup + repeats` rows is cycled through, so any evaluation set of one row or more
    gives a figure.
    """
    if len(data) == 0:
        raise ValueError("latency needs at least one evaluation row")
    model.eval()
    order = np.random.default_rng(0).permutation(len(data))
    rows = np.resize(order, warmup + repeats)  # repeats the order when the split is small
    times: list[float] = []
    for n, row in enumerate(rows):
        batch = to_device(collate(data, np.array([row])), device)
        synchronize(device)
        start = time.perf_counter()
        with autocast(device, amp):
            model(batch)
        synchronize(device)
        if n >= warmup:
            times.append(time.perf_counter() - start)
            if len(times) >= min_repeats and sum(times) > budget_s:
                break
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 95) * 1000)


def representative_length(data: Encoded) -> int:
    """The token count of the real row whose length is closest to the split's mean length: the
    length a FLOPs-per-example figure is stated for (the record's `flops_tokens`)."""
    lengths = data.lengths
    return int(lengths[int(np.argmin(np.abs(lengths - lengths.mean())))])


@dataclass(frozen=True)
class FlopsFigure:
    flops: float | None  # forward FLOPs (2 × multiply-adds) of one example of `tokens` tokens
    tokens: int
    note: str | None = None  # set when no formula gave the figure


def forward_flops(model: nn.Module, data: Encoded) -> FlopsFigure:
    """Forward FLOPs of one example of the split's representative length, from the model's own
    analytic formula (`model.flops(tokens)`, beside its module): the same figure on every device.

    A model without a formula (another package's adapter) is counted by torch's FLOP counter on
    the CPU, which sees matrix products and convolutions but not fused attention or recurrent
    kernels; the record's notes say so."""
    tokens = representative_length(data)
    formula = getattr(model, "flops", None)
    if formula is not None:
        value = formula(tokens)
        note = None if value is not None else "no FLOPs formula for this architecture: FLOPs left empty"
        return FlopsFigure(None if value is None else float(value), tokens, note)
    return FlopsFigure(
        counted_flops(model, data, tokens),
        tokens,
        "FLOPs counted by torch's FLOP counter (fused attention and recurrent kernels are not "
        "seen); give the module a flops(tokens) method for a complete figure",
    )


@torch.no_grad()
def counted_flops(model: nn.Module, data: Encoded, tokens: int) -> float | None:
    """torch's FLOP counter over one forward pass of the first real row of `tokens` tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    row = int(np.flatnonzero(data.lengths == tokens)[0])
    device = next(model.parameters()).device
    batch = to_device(collate(data, np.array([row])), device)
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(batch)
    total = counter.get_total_flops()
    return float(total) if total > 0 else None


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({cpu_model()})"
