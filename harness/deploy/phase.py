"""The deploy phase of a cell: after evaluation, the trained model under each requested
backend, on the same real evaluation rows, with its own metrics, speed, memory and size.

Each backend, eager included, runs in a fresh process started from the trained model saved
whole. Why: a process's resident memory is one figure for everything it ever loaded, so in one
process each backend's peak would also hold what the backends before it left behind (inductor,
ONNX Runtime, the fp32 model an int8 copy was made from), and a backend that crashes its
process (a segfaulting kernel) would take the cell and its training with it. In its own
process a backend's peak is what serving it takes: the interpreter and the libraries it needs,
the deployed artefact, the activations; the same for every backend, in any order.

For each backend, in order:
1. skip it, with its reason and without a process, where this machine cannot run it
   (`unsupported_reason`) or the model cannot take it (`model_unsupported`);
2. prepare it (export, quantize, compile); one that breaks, or kills its process, is `failed`
   with its error: never a 0, never a crash of the cell;
3. warm up on the largest and the smallest batch (for `compile` this is where compilation
   happens, timed as `prepare_seconds` with the export or quantization of the others);
4. drop what only preparing needed, start the memory mark (CUDA peak allocated; on a CPU the
   peak resident set), and check the outputs against eager's on up to `CHECK_ROWS` real rows:
   backends that compute in fp32 (`eager`, `compile`, `onnx`) must agree within
   `EXACT_TOLERANCE` or fail; the others (bf16, fp16, int8) report their largest difference,
   and their accuracy says the rest;
5. time the full evaluation pass at the eval batch size, compute every task metric from its
   outputs, repeat the pass while a budget lasts and keep the fastest pass's examples/s
   (`speed.fastest_rate`: contention on a shared machine only ever adds time), time batch-1
   latency (p50/p95), and read the memory mark.

Every backend that ran is then served a second time, in the mirrored order (eager, A, B, then
B, A, eager), and keeps the faster speed figures of its two processes (`best_of`; the suite's
`deploy_windows`, default 2, sets how many sweeps). Why: a
shared machine drifts by 10–35% within one cell (eager's two windows in the AMD benchmark run
20261206-042721), and a backend timed only once wears whatever minute it landed in. Mirrored,
each backend's two windows sit at mirrored times, and eager, which every speed-up divides by,
brackets all the others: a slow minute on eager can no longer inflate every speed-up. It costs
one more process per backend.
"""

from __future__ import annotations

import gc
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.allocator import keep_freed_memory
from harness.batching import Encoded, collate, eval_batches
from harness.config import SpeedSettings
from harness.deploy.backends import BACKENDS, workdir
from harness.deploy.catalog import BY_NAME, unsupported_reason
from harness.executors.base import CellFailure
from harness.executors.child import run_in_child
from harness.tasks.metrics import compute_metrics
from harness.trackers import memory, speed
from harness.train import predict, synchronize, to_device

CHECK_ROWS = 256
EXACT_TOLERANCE = 1e-3  # largest absolute difference of logits allowed for fp32 backends


@dataclass
class BackendResult:
    status: str  # ok | skipped | failed
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    infer_examples_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    peak_mb: float | None = None
    memory_kind: str | None = None  # "CUDA" or "RSS"
    size_mb: float | None = None
    prepare_seconds: float | None = None
    max_abs_diff: float | None = None  # against eager's outputs on the checked rows
    # examples/s in each process that timed it, in order (the deploy phase's two windows)
    rates_by_process: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _sample(encoded: Encoded, rows: int) -> Encoded:
    return encoded.subset(np.arange(min(rows, len(encoded))))


def warm_up(module: nn.Module, encoded: Encoded, batch_size: int, device: torch.device) -> None:
    """Run the longest batch and the last (smallest) one, so that the shapes a compiled or
    exported model first meets are not timed."""
    batches = eval_batches(encoded.lengths, batch_size)
    module.eval()
    with torch.no_grad():
        for indices in batches[:1] + batches[1:][-1:]:
            module(to_device(collate(encoded, indices), device))
    synchronize(device)


def run_backend(
    name: str,
    model: nn.Module,
    eval_enc: dict[str, Encoded],
    metrics: list[str],
    batch_size: int,
    device: torch.device,
    reference: np.ndarray,
    timing: SpeedSettings,
) -> tuple[BackendResult, dict[str, np.ndarray]]:
    """One backend from preparation to figures; its outputs per evaluation split.

    Takes the caller's only reference to `model` where it can: once prepared, a backend that
    does not compute with the trained module itself (int8, ONNX) lets it go before its memory
    is measured."""
    first = next(iter(eval_enc.values()))
    check = _sample(first, CHECK_ROWS)
    example = collate(first, np.arange(min(4, len(first))))
    started = time.perf_counter()
    with workdir() as folder:
        try:
            deployed = BACKENDS[name](model, example, device, Path(folder))
            del model
            module = deployed.module
            warm_up(module, first, batch_size, device)
            prepare_seconds = time.perf_counter() - started
            gc.collect()
            memory.reset_peak_rss()
            memory.reset_cuda_peaks(device)
            outputs_check = predict(module, check, batch_size, device, amp=False)
            diff = float(np.max(np.abs(outputs_check - reference))) if len(reference) else 0.0
            if BY_NAME[name].exact and diff > EXACT_TOLERANCE:
                raise ValueError(
                    f"outputs differ from eager's by up to {diff:.3g} (tolerance {EXACT_TOLERANCE})"
                )
            result = BackendResult("ok", size_mb=deployed.size_bytes / 1024**2, max_abs_diff=diff)
            result.prepare_seconds = prepare_seconds
            outputs: dict[str, np.ndarray] = {}
            rates = []
            for split, encoded in eval_enc.items():
                out, rate = speed.timed_predict(module, encoded, batch_size, device, amp=False)
                outputs[split] = out
                rates.append(
                    speed.fastest_rate(
                        module, encoded, batch_size, device, False, rate, max_passes=timing.passes
                    )
                )
                result.metrics.update(compute_metrics(metrics, out, encoded.labels, suffix=split))
            result.infer_examples_per_s = float(np.mean(rates))
            result.rates_by_process = [result.infer_examples_per_s]
            result.latency_p50_ms, result.latency_p95_ms = speed.latency_ms(
                module, first, device, amp=False, repeats=timing.latency_rows
            )
        except Exception as error:  # a broken export or kernel: this backend failed, the cell goes on
            lines = traceback.format_exception_only(type(error), error)
            return BackendResult("failed", reason=lines[-1].strip()[:500]), {}
    cuda_peak, _ = memory.cuda_peaks_mb(device)
    if cuda_peak is not None and name.startswith("onnx"):
        result.reason = "GPU memory not measured: ONNX Runtime's CUDA arena is outside torch's allocator"
    else:
        result.peak_mb = cuda_peak if cuda_peak is not None else memory.peak_rss_mb()
        result.memory_kind = "CUDA" if cuda_peak is not None else "RSS"
    return result, outputs


def best_of(first: BackendResult, second: BackendResult) -> BackendResult:
    """One backend timed in two processes: the faster of each speed figure (contention only
    ever adds time, as in `speed.fastest_rate`); metrics, size and memory from the first
    (the second computes the same outputs: fp32 backends are checked against eager's, and a
    quantized model is quantized from the same weights)."""

    def lower(a: float | None, b: float | None) -> float | None:
        return min((value for value in (a, b) if value is not None), default=None)

    rates = first.rates_by_process + second.rates_by_process
    return replace(
        first,
        infer_examples_per_s=max(rates, default=None),
        rates_by_process=rates,
        latency_p50_ms=lower(first.latency_p50_ms, second.latency_p50_ms),
        latency_p95_ms=lower(first.latency_p95_ms, second.latency_p95_ms),
    )


def serve_backend(
    name: str,
    saved_model: Path,
    eval_enc: dict[str, Encoded],
    metrics: list[str],
    batch_size: int,
    device_name: str,
    threads: int,
    reference: np.ndarray,
    timing: SpeedSettings,
    emit=None,
) -> tuple[BackendResult, dict[str, np.ndarray]]:
    """`run_backend` as the body of a fresh process (`run_in_child`, whose `emit` it has no use
    for): the cell's threads and allocator settings, the trained model loaded from disk."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    return run_backend(
        name,
        torch.load(saved_model, map_location=device, weights_only=False),  # run_backend's alone
        eval_enc,
        metrics,
        batch_size,
        device,
        reference,
        timing,
    )


def model_unsupported(model: nn.Module, backend: str) -> str | None:
    """Why this model cannot be served by `backend`, where its module says so
    (`backend_unsupported`, e.g. the fitted sparse `tfidf` model: eager only)."""
    says = getattr(model, "backend_unsupported", None)
    return None if says is None else says(backend)


def deploy_phase(
    model: nn.Module,
    eval_enc: dict[str, Encoded],
    metrics: list[str],
    backends: list[str],
    batch_size: int,
    device: torch.device,
    eager: BackendResult,
    windows: int,
    timing: SpeedSettings,
) -> tuple[dict[str, BackendResult], dict[str, dict[str, np.ndarray]]]:
    """Every requested backend in turn, eager first, each in a fresh process, then those that
    ran `windows - 1` more times in alternating order: results by backend, and outputs by
    backend and split (from the first window; eager's are the cell's own predictions).

    `eager` is the cell's own evaluation: the eager row when no other backend is asked for,
    with nothing to compare it with, so that no process is started."""
    if backends == ["eager"]:
        return {"eager": eager}, {}
    model.eval()
    first = next(iter(eval_enc.values()))
    reference = predict(model, _sample(first, CHECK_ROWS), batch_size, device, amp=False)
    results: dict[str, BackendResult] = {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    with workdir() as folder:
        saved_model = Path(folder) / "trained.pt"
        torch.save(model, saved_model)

        def serve(name: str) -> tuple[BackendResult, dict[str, np.ndarray]]:
            args = (name, saved_model, eval_enc, metrics, batch_size, str(device), torch.get_num_threads())
            outcome = run_in_child(
                serve_backend, (*args, reference, timing), who=f"the {name} backend's process"
            )
            if isinstance(outcome, CellFailure):
                return BackendResult("failed", reason=outcome.error), {}
            return outcome

        for name in ["eager", *(name for name in backends if name != "eager")]:
            reason = unsupported_reason(name, device) or model_unsupported(model, name)
            if reason is not None:
                results[name] = BackendResult("skipped", reason=reason)
                continue
            results[name], outputs[name] = serve(name)
        served = [name for name, result in results.items() if result.status == "ok"]
        if "eager" in served and len(served) > 1:  # something to compare with eager
            for window in range(1, windows):
                for name in reversed(served) if window % 2 else served:
                    again, _ = serve(name)
                    if again.status == "ok":
                        results[name] = best_of(results[name], again)
    outputs.pop("eager", None)
    return results, outputs
