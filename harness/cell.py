"""One cell, start to finish: a pure function from a `CellSpec` to a record and its predictions.

data → tokenizer → encoded batches → model (seeded) → train → evaluate → measure.
A cell never touches another cell's state or the store; the runner (or a Ray
worker's driver) is what writes its result. Exceptions are not caught here:
the executor records them as the cell's error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from harness import measure
from harness.allocator import keep_freed_memory
from harness.batching import Encoded, encode
from harness.config import CellSpec, train_size_value
from harness.deploy.backends import state_dict_bytes
from harness.deploy.capabilities import capabilities
from harness.deploy.phase import BackendResult, deploy_phase, warm_up
from harness.events import Progress
from harness.fingerprint import code_fingerprint, combined, vocabulary_hash
from harness.models.registry import TaskInfo, get_adapter
from harness.record import CellRecord, now
from harness.tasks.data import Examples, TaskData, load_task_data
from harness.tasks.metrics import compute_metrics, two_class_misfit
from harness.train import cpu_bf16_training, predict, to_predictions, train


@dataclass
class CellResult:
    record: CellRecord
    predictions: pd.DataFrame | None  # one row per evaluated example


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the suite asks for device: cuda but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def quiet_libraries() -> None:
    """The harness draws its own progress; library bars would interleave with it."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_cell(
    spec: CellSpec, run_id: str, on_progress: Callable[[Progress], None] = lambda p: None
) -> CellResult:
    started = time.perf_counter()
    quiet_libraries()
    measure.reset_peak_rss(new_cell=True)
    record = CellRecord.for_spec(spec, run_id)
    allocator = keep_freed_memory()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = pick_device(spec.device)
    settings = spec.training
    task = spec.task

    train_size = train_size_value(spec.train_size)
    data = load_task_data(task, settings, spec.data_dir, holdout=spec.holdout, train_size=train_size)
    check_metrics_fit(spec, data.num_labels)
    adapter = get_adapter(spec.model)
    tokenizer = adapter.tokenizer(data.train, settings)
    record.notes += adapter.notes
    record.vocab_hash = vocabulary_hash(tokenizer)
    record.data_fingerprint = data_fingerprint(data)

    def encode_rows(rows: Examples) -> Encoded:
        return encode(tokenizer, rows, settings.max_seq_length, settings.truncation_side)

    train_enc = encode_rows(data.train)
    holdout_enc = encode_rows(data.holdout) if data.holdout else None
    eval_enc = {name: encode_rows(rows) for name, rows in data.eval.items()}

    seed_everything(spec.seed)
    info = TaskInfo(
        num_labels=data.num_labels,
        is_pair=task.is_pair,
        max_seq_length=settings.max_seq_length,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = adapter.build(info).to(device)

    def score_holdout(trained: torch.nn.Module) -> float:
        outputs = predict(trained, holdout_enc, settings.eval_batch_size, device, settings.amp)
        primary_base = task.primary_metric.removesuffix(f"_{next(iter(data.eval))}")
        metric = primary_base if primary_base in task.metrics else task.metrics[0]
        return compute_metrics([metric], outputs, holdout_enc.labels)[metric]

    if settings.amp_cpu and device.type == "cpu" and not cpu_bf16_training(settings, device):
        record.notes.append(
            "amp_cpu asked for bf16 training, but this CPU has no native bf16: trained in fp32"
        )
    measure.reset_cuda_peaks(device)
    stats = train(
        model,
        train_enc,
        settings,
        spec.seed,
        device,
        score_holdout if settings.early_stopping_patience is not None else None,
        on_progress,
    )
    train_alloc, train_reserved = measure.cuda_peaks_mb(device)

    measure.reset_cuda_peaks(device)
    measure.reset_peak_rss()  # eager inference's own peak, as each backend's is
    metrics: dict[str, float] = {}
    frames = []
    infer_rates = []
    warm_up(model, next(iter(eval_enc.values())), settings.eval_batch_size, device)  # as every backend is
    for name, encoded in eval_enc.items():
        on_progress(Progress("eval", stats.epochs_run, settings.epochs, 0, 0))
        outputs, rate = measure.timed_predict(model, encoded, settings.eval_batch_size, device, settings.amp)
        infer_rates.append(rate)
        predictions = to_predictions(outputs)
        metrics.update(compute_metrics(task.metrics, outputs, encoded.labels, suffix=name))
        frame = pd.DataFrame(
            {
                "eval_split": name or task.splits.eval_splits()[name],
                "row_id": data.eval[name].row_ids,
                "label": encoded.labels,
                "prediction": predictions,
            }
        )
        if outputs.ndim == 2:
            frame["logits"] = list(outputs)
        frames.append(frame)
    infer_alloc, infer_reserved = measure.cuda_peaks_mb(device)
    first_eval = next(iter(eval_enc.values()))
    p50, p95 = measure.latency_ms(model, first_eval, device, settings.amp)
    total, trainable = measure.count_parameters(model)
    infer_rate = float(np.mean(infer_rates))
    eager = BackendResult(
        "ok",
        metrics=dict(metrics),
        infer_examples_per_s=infer_rate,
        rates_by_process=[infer_rate],
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        peak_mb=infer_alloc if infer_alloc is not None else measure.peak_rss_mb(),
        memory_kind="CUDA" if infer_alloc is not None else "RSS",
        size_mb=state_dict_bytes(model) / 1024**2,
        prepare_seconds=0.0,
        max_abs_diff=0.0,
    )
    on_progress(Progress("deploy", stats.epochs_run, settings.epochs, 0, 0))
    deployed, deployed_outputs = deploy_phase(
        model,
        eval_enc,
        task.metrics,
        spec.deploy,
        settings.eval_batch_size,
        device,
        eager,
        spec.deploy_windows,
    )
    record.deployed = {name: result.to_dict() for name, result in deployed.items()}
    for frame, name in zip(frames, eval_enc, strict=True):
        for backend, outputs_by_split in deployed_outputs.items():
            if name in outputs_by_split:
                outputs = outputs_by_split[name]
                frame[f"prediction@{backend}"] = to_predictions(outputs)
                if outputs.ndim == 2:
                    frame[f"logits@{backend}"] = list(outputs)

    if holdout_enc is not None:
        outputs = predict(model, holdout_enc, settings.eval_batch_size, device, settings.amp)
        record.holdout_metrics = compute_metrics(task.metrics, outputs, holdout_enc.labels)
    record.status = "ok"
    record.metrics = metrics
    record.primary_value = metrics[task.primary_metric]
    record.label_names = data.label_names
    record.train_examples = len(data.train)
    record.eval_examples = sum(len(rows) for rows in data.eval.values())
    record.epochs = stats.epochs_run
    record.best_epoch = stats.best_epoch
    record.steps = stats.steps
    record.train_seconds = stats.wall_seconds
    record.train_examples_per_s = stats.examples_per_s
    record.train_tokens_per_s = stats.tokens_per_s
    record.infer_examples_per_s = infer_rate
    record.latency_p50_ms, record.latency_p95_ms = p50, p95
    record.peak_rss_mb = measure.cell_peak_rss_mb()
    record.cuda_peak_allocated_mb = max_or_none(train_alloc, infer_alloc)
    record.cuda_peak_reserved_mb = max_or_none(train_reserved, infer_reserved)
    record.params_total, record.params_trainable = total, trainable
    flops = measure.forward_flops(model, first_eval)
    record.flops_per_example, record.flops_tokens = flops.flops, flops.tokens
    record.notes += [flops.note] if flops.note else []
    fill_provenance(record, device, allocator)
    record.wall_seconds = time.perf_counter() - started
    return CellResult(record, pd.concat(frames, ignore_index=True))


def check_metrics_fit(spec: CellSpec, num_labels: int) -> None:
    """Before any training: a two-class metric on a task with more classes is an error now,
    not a crash after an hour (the suite check catches it when the task file names its labels)."""
    misfit = two_class_misfit(spec.task.metrics, num_labels)
    if spec.task.problem_type == "classification" and misfit:
        raise ValueError(f"task {spec.task.name}: {misfit}; use f1_macro or f1_micro in the task file")


def data_fingerprint(data: TaskData) -> str:
    """The rows this cell trained, held out and evaluated on, as one hash."""
    splits = {"train": data.train, **{f"eval:{name}": rows for name, rows in data.eval.items()}}
    if data.holdout is not None:
        splits["holdout"] = data.holdout
    return combined({name: rows.fingerprint() for name, rows in splits.items()})


def max_or_none(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def fill_provenance(record: CellRecord, device: torch.device, allocator: str | None) -> None:
    record.device = device.type
    record.device_name = measure.device_name(device)
    record.cpu_model = measure.cpu_model()
    record.threads = torch.get_num_threads()
    record.capabilities = capabilities(device) | {"allocator": allocator}
    code = code_fingerprint()
    record.git_commit, record.git_dirty = code.commit, code.dirty
    record.code_version, record.code_hash = code.version, code.source_hash
    record.versions = measure.package_versions()
    record.finished_at = now()
