"""What one training step of each model costs as the sequence grows: time, memory, growth exponents.

`harness profile --models cnn,rnn,transformer --seq-lens 64,128,256,512,1024` builds each model
through the adapter registry with its default parameters for a synthetic task (vocabulary of
20,000, 2 labels, `max_seq_length` = the largest length, so the transformer has a position for
every token) and feeds it random token ids, `batch_size` rows of exactly `seq_len` tokens (no
padding). Every (model, length) runs in a fresh child process (forked from a server that has only
imported), so no measurement inherits another's allocator state, caches or memory high-water mark.

One step is forward → cross-entropy → backward, from gradients set to None (no optimizer update).

- Time: `warmup` untimed steps, then `repeats` timed ones; the device is synchronised before each
  clock read; the median is reported (and the fastest).
- Memory (`peak_mb`): the peak of tensor memory during one step, above what was live before it
  (weights and inputs): activations kept for backward, gradients, temporaries. On CUDA this is
  `max_memory_allocated` (peaks reset just before the step) minus `memory_allocated` before it. On
  a CPU the same quantity comes from torch's CPU allocator as the profiler sees it
  (`profile_memory=True`: every tensor allocation and free, with the running total of bytes
  allocated since profiling began; we take the peak of that running total). It is exact and
  deterministic and means the same on both devices. It leaves out memory that does not go
  through torch's allocator (oneDNN scratch buffers, Python objects), which is small next to
  activations.
- `rss_mb` (CPU, Linux): what the operating system saw: the growth of the process's peak resident
  set over the child's first step (the high-water mark reset via /proc/self/clear_refs just
  before it), so it includes allocator overhead and one-off initialisation. Only the first step
  can be measured this way: later steps reuse memory the allocator kept, and would read ~0.

The growth exponent is the least-squares slope of log(figure) against log(length): ~1 for work
linear in the length, ~2 for quadratic. Fixed costs (weights' gradients, per-step overhead) pull
it below the asymptotic value at short lengths.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from harness.allocator import keep_freed_memory
from harness.executors.child import run_in_child
from harness.train import synchronize

VOCAB_SIZE = 20_000
NUM_LABELS = 2
PAD_ID = 0
FIRST_REGULAR_ID = 5  # ids below are [PAD] [UNK] [CLS] [SEP] [MASK]
CHILD_TIMEOUT_S = 1800


@dataclass
class ProfileRow:
    model: str
    seq_len: int
    batch_size: int
    device: str
    threads: int
    params: int | None = None
    time_ms: float | None = None  # median fwd+bwd step
    time_ms_min: float | None = None
    repeats: int = 0
    tokens_per_s: float | None = None
    peak_mb: float | None = None  # tensor memory of one step above what was live before it
    rss_mb: float | None = None  # growth of the peak resident set over the first step (CPU)
    memory_method: str = ""
    flops_per_step: float | None = None  # forward + backward: 3 × the model's forward formula
    achieved_flops: float | None = None  # FLOP/s at the median step time
    mfu: float | None = None  # achieved / this machine's fp32 dense-matmul peak, measured in the run
    error: str | None = None


# ----------------------------------------------------------------------------- memory of one step


def _proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_growth_mb(step: Callable[[], object]) -> float | None:
    """Peak resident set during `step()` minus the resident set before it (Linux), else None."""
    before = _proc_status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    step()
    peak = _proc_status_kb("VmHWM")
    if before is None or peak is None:
        return None
    return max(0.0, (peak - before) / 1024)


@contextmanager
def quiet_native_stderr():
    """Silence what native code writes to stderr (the profiler logs its start and stop there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_tensor_peak_mb(step: Callable[[], object]) -> float:
    """Peak of tensor bytes allocated (net of frees) by torch's CPU allocator during `step()`."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            fields = event.extra_fields
            events.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
        stack.extend(event.children)
    if not events:
        return 0.0
    events.sort()
    # The running total can carry bytes from an earlier profiling session whose frees went
    # untracked: measure from the total just before this step's first allocation.
    _, first_size, first_total = events[0]
    baseline = first_total - first_size
    return max(0.0, max(total for _, _, total in events) - baseline) / 1024**2


def step_peak_memory_mb(step: Callable[[], object], device: torch.device) -> tuple[float, str]:
    """Peak tensor memory of `step()` above what was allocated before it, and how it was measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 1024**2, "cuda max_memory_allocated"
    return cpu_tensor_peak_mb(step), "cpu allocator peak (torch.profiler)"


# ----------------------------------------------------------------------------- one (model, length)


def synthetic_batch(batch_size: int, seq_len: int, device: torch.device, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_REGULAR_ID, VOCAB_SIZE, (batch_size, seq_len), generator=generator)
    labels = torch.randint(0, NUM_LABELS, (batch_size,), generator=generator)
    batch = {
        "input_ids": ids,  # (B, T)
        "attention_mask": torch.ones_like(ids),  # (B, T), no padding
        "token_type_ids": torch.zeros_like(ids),  # (B, T)
        "labels": labels,  # (B,)
    }
    return {key: value.to(device) for key, value in batch.items()}


def build_model(name: str, max_seq_length: int, params: dict | None = None) -> torch.nn.Module:
    from harness.config import ModelSpec
    from harness.models.registry import TaskInfo, get_adapter

    info = TaskInfo(
        num_labels=NUM_LABELS,
        is_pair=False,
        max_seq_length=max_seq_length,
        vocab_size=VOCAB_SIZE,
        pad_token_id=PAD_ID,
    )
    return get_adapter(ModelSpec(adapter=name, params=params or {})).build(info)


def training_step_flops(model: torch.nn.Module, batch_size: int, seq_len: int) -> float | None:
    """FLOPs of one training step: 3 × the forward formula (the backward pass multiplies each
    matrix product twice more, for the inputs' and the weights' gradients), as Kaplan et al. and
    nanoGPT's `estimate_mfu` count; the same figure on every device. None without a formula."""
    formula = getattr(model, "flops", None)
    forward = formula(seq_len) if formula is not None else None
    return None if forward is None else 3.0 * batch_size * forward


def measure_one(
    model_name: str,
    seq_len: int,
    batch_size: int,
    repeats: int,
    warmup: int,
    max_seq_length: int,
    device_name: str = "cpu",
    threads: int | None = None,
    params: dict | None = None,
) -> ProfileRow:
    keep_freed_memory()  # as a cell's process does
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    torch.manual_seed(0)
    model = build_model(model_name, max_seq_length, params).to(device).train()
    batch = synthetic_batch(batch_size, seq_len, device)
    row = ProfileRow(
        model=model_name,
        seq_len=seq_len,
        batch_size=batch_size,
        device=device.type,
        threads=torch.get_num_threads(),
        params=sum(p.numel() for p in model.parameters()),
        repeats=repeats,
    )

    def step() -> None:
        logits = model(batch)  # (B, C)
        torch.nn.functional.cross_entropy(logits.float(), batch["labels"]).backward()

    # Gradients are dropped before (not inside) every step, so each step allocates them afresh
    # and the memory figures count them on both devices.
    if device.type == "cpu":
        row.rss_mb = rss_growth_mb(step)  # must be this process's first step (see module doc)
    else:
        step()
    for _ in range(max(0, warmup - 1)):
        model.zero_grad(set_to_none=True)
        step()
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    row.time_ms = statistics.median(times) * 1000
    row.time_ms_min = min(times) * 1000
    row.tokens_per_s = batch_size * seq_len / statistics.median(times)
    row.flops_per_step = training_step_flops(model, batch_size, seq_len)
    if row.flops_per_step:
        row.achieved_flops = row.flops_per_step / statistics.median(times)
    model.zero_grad(set_to_none=True)
    row.peak_mb, row.memory_method = step_peak_memory_mb(step, device)
    return row


def _measure(kwargs: dict, emit) -> ProfileRow:
    return measure_one(**kwargs)


def matmul_peak_flops(
    device_name: str, dtype_name: str, threads: int | None, size: int = 2048, seconds: float = 2.0
) -> float:
    """This machine's dense-matmul FLOP/s: the best of square `size`² matmuls repeated for
    about `seconds`, the ceiling that MFU divides by (2·size³ FLOPs a product)."""
    if threads:
        torch.set_num_threads(threads)
    device, dtype = torch.device(device_name), getattr(torch, dtype_name)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def product() -> None:
        a @ b
        synchronize(device)

    synchronize(device)
    return 2 * size**3 / fastest_call_seconds(product, seconds)


def fastest_call_seconds(call: Callable[[], object], seconds: float, warmup: int = 2) -> float:
    """The shortest wall time of `call()` over repeats for about `seconds`, after `warmup`
    calls: a peak is what the hardware does when nothing gets in its way."""
    for _ in range(warmup):
        call()
    best, deadline = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _peak(args: tuple, emit) -> float:
    return matmul_peak_flops(*args)


def measure_peaks(device: str, threads: int | None) -> dict[str, float | None]:
    """fp32 and bf16 matmul peaks, each in a fresh child like every profile point."""
    peaks: dict[str, float | None] = {}
    for dtype in ("float32", "bfloat16"):
        outcome = run_in_child(_peak, ((device, dtype, threads),), timeout_s=120)
        peaks[dtype] = outcome if isinstance(outcome, float) else None
    return peaks


def measure_in_child(**kwargs) -> ProfileRow:
    """`measure_one` in a fresh process; a crash or an error becomes the row's `error`."""
    outcome = run_in_child(_measure, (kwargs,), timeout_s=CHILD_TIMEOUT_S)
    if isinstance(outcome, ProfileRow):
        return outcome
    return ProfileRow(
        model=kwargs["model_name"],
        seq_len=kwargs["seq_len"],
        batch_size=kwargs["batch_size"],
        device=kwargs.get("device_name", "cpu"),
        threads=kwargs.get("threads") or torch.get_num_threads(),
        error=f"{outcome.error}\n{outcome.details}".strip(),
    )


def run_profile(
    models: Sequence[str],
    seq_lens: Sequence[int],
    batch_size: int = 8,
    repeats: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    threads: int | None = None,
    on_row: Callable[[ProfileRow], None] = lambda row: None,
    peak_fp32: float | None = None,
    params: dict | None = None,
) -> list[ProfileRow]:
    """Every (model, length) point; with `peak_fp32` (FLOP/s) each row's MFU is filled in."""
    rows = []
    for model in models:
        for seq_len in sorted(seq_lens):
            row = measure_in_child(
                model_name=model,
                seq_len=seq_len,
                batch_size=batch_size,
                repeats=repeats,
                warmup=warmup,
                max_seq_length=max(seq_lens),
                params=params,
                device_name=device,
                threads=threads,
            )
            if peak_fp32 and row.achieved_flops:
                row.mfu = row.achieved_flops / peak_fp32
            on_row(row)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- growth and output


def growth_exponent(xs: Sequence[float], ys: Sequence[float | None]) -> float:
    """Least-squares slope of log(y) on log(x) over the points with positive x and y; NaN if < 2."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len({x for x, _ in points}) < 2:
        return math.nan
    log_x = np.log([x for x, _ in points])
    log_y = np.log([y for _, y in points])
    return float(np.polyfit(log_x, log_y, 1)[0])


FIGURES = {"time_ms": "fwd+bwd time (ms)", "peak_mb": "peak tensor memory (MB)", "rss_mb": "RSS growth (MB)"}


def exponents(rows: Sequence[ProfileRow]) -> dict[str, dict[str, float]]:
    """Per model: the growth exponent of each figure (time_ms, peak_mb, rss_mb) over length."""
    found: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(row.model for row in rows):
        mine = [row for row in rows if row.model == model and row.error is None]
        found[model] = {
            figure: growth_exponent([r.seq_len for r in mine], [getattr(r, figure) for r in mine])
            for figure in FIGURES
        }
    return found


def write_csv(rows: Sequence[ProfileRow], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(asdict(rows[0])) if rows else list(ProfileRow.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["error"] = (record["error"] or "").splitlines()[0] if record["error"] else ""
            writer.writerow(record)
    return path


def write_exponents_csv(found: dict[str, dict[str, float]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", *(f"{figure}_exponent" for figure in FIGURES)])
        for model, values in found.items():
            writer.writerow([model, *(f"{values[figure]:.4f}" for figure in FIGURES)])
    return path


def write_plot(rows: Sequence[ProfileRow], found: dict[str, dict[str, float]], out: Path) -> list[Path]:
    """Log-log time and memory against length, one line per model; PNG and SVG."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    ok = [row for row in rows if row.error is None]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for axis, key in zip(axes, ("time_ms", "peak_mb"), strict=True):
        for model, values in found.items():
            mine = [row for row in ok if row.model == model and getattr(row, key)]
            if not mine:
                continue
            slope = values[key]
            axis.plot(
                [row.seq_len for row in mine],
                [getattr(row, key) for row in mine],
                marker="o",
                label=f"{model} (slope {slope:.2f})" if math.isfinite(slope) else model,
            )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        lengths = sorted({row.seq_len for row in ok})
        axis.set_xticks(lengths, [str(length) for length in lengths])
        axis.yaxis.set_major_formatter(ScalarFormatter())
        axis.set_xlabel("sequence length (tokens)")
        axis.set_ylabel(FIGURES[key])
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    batch = ok[0].batch_size if ok else "?"
    device = ok[0].device if ok else "?"
    figure.suptitle(f"one training step (forward + backward), batch {batch}, {device}")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "profile.png", out / "profile.svg"]
    figure.savefig(paths[0], dpi=120)
    figure.savefig(paths[1])
    plt.close(figure)
    return paths
