"""The deploy phase of a cell: after evaluation, the trained model under each requested
backend, on the same real evaluation rows, with its own metrics, speed, memory and size.

For each backend, in order:
1. prepare it (export, quantize, compile); a backend the model or machine cannot run is
   `skipped` with its reason, one that breaks is `failed` with its error; never a 0, never
   a crash of the cell;
2. check its outputs against eager's on up to `CHECK_ROWS` real rows: backends that compute
   in fp32 (`compile`, `onnx`) must agree within `EXACT_TOLERANCE` or fail; the others
   (bf16, fp16, int8) report their largest difference, and their accuracy says the rest;
3. warm up on the largest and the smallest batch (for `compile` this is where compilation
   happens, timed as `prepare_seconds` with the export or quantization of the others);
4. time the full evaluation pass at the eval batch size (examples/s), compute every task
   metric from its outputs, time batch-1 latency (p50/p95), and read the phase's peak
   memory (CUDA peak allocated; on a CPU the peak resident set, reset for the phase).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import measure
from harness.batching import Encoded, collate, eval_batches
from harness.deploy.backends import BACKENDS, EXACT, Unsupported, workdir
from harness.tasks.metrics import compute_metrics
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
) -> tuple[BackendResult, dict[str, np.ndarray]]:
    """One backend from preparation to figures; its outputs per evaluation split."""
    first = next(iter(eval_enc.values()))
    check = _sample(first, CHECK_ROWS)
    example = collate(first, np.arange(min(4, len(first))))
    measure.reset_peak_rss()
    measure.reset_cuda_peaks(device)
    started = time.perf_counter()
    with workdir() as folder:
        try:
            deployed = BACKENDS[name](model, example, device, Path(folder))
            module = deployed.module
            warm_up(module, first, batch_size, device)
            prepare_seconds = time.perf_counter() - started
            outputs_check = predict(module, check, batch_size, device, amp=False)
            diff = float(np.max(np.abs(outputs_check - reference))) if len(reference) else 0.0
            if name in EXACT and diff > EXACT_TOLERANCE:
                raise ValueError(
                    f"outputs differ from eager's by up to {diff:.3g} (tolerance {EXACT_TOLERANCE})"
                )
            result = BackendResult("ok", size_mb=deployed.size_bytes / 1024**2, max_abs_diff=diff)
            result.prepare_seconds = prepare_seconds
            outputs: dict[str, np.ndarray] = {}
            rates = []
            for split, encoded in eval_enc.items():
                out, rate = measure.timed_predict(module, encoded, batch_size, device, amp=False)
                outputs[split] = out
                rates.append(rate)
                result.metrics.update(compute_metrics(metrics, out, encoded.labels, suffix=split))
            result.infer_examples_per_s = float(np.mean(rates))
            result.latency_p50_ms, result.latency_p95_ms = measure.latency_ms(
                module, first, device, amp=False
            )
        except Unsupported as why:
            return BackendResult("skipped", reason=str(why)), {}
        except Exception as error:  # a broken export or kernel: this backend failed, the cell goes on
            lines = traceback.format_exception_only(type(error), error)
            return BackendResult("failed", reason=lines[-1].strip()[:500]), {}
    cuda_peak, _ = measure.cuda_peaks_mb(device)
    result.peak_mb = cuda_peak if cuda_peak is not None else measure.peak_rss_mb()
    result.memory_kind = "CUDA" if cuda_peak is not None else "RSS"
    return result, outputs


def deploy_phase(
    model: nn.Module,
    eval_enc: dict[str, Encoded],
    metrics: list[str],
    backends: list[str],
    batch_size: int,
    device: torch.device,
    eager: BackendResult,
) -> tuple[dict[str, BackendResult], dict[str, dict[str, np.ndarray]]]:
    """Every requested backend in turn: results by backend, and outputs by backend and split.

    `eager` is the cell's own evaluation (warmed up and timed the same way), so the eager
    model is not evaluated twice."""
    results, outputs = {"eager": eager}, {}
    if backends == ["eager"]:  # the default: nothing to check against, nothing more to run
        return results, outputs
    model.eval()
    first = next(iter(eval_enc.values()))
    reference = predict(model, _sample(first, CHECK_ROWS), batch_size, device, amp=False)
    for name in backends:
        if name == "eager":
            continue
        results[name], outputs[name] = run_backend(
            name, model, eval_enc, metrics, batch_size, device, reference
        )
    return results, outputs
