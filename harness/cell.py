"""One cell, start to finish: a pure function from a `CellSpec` to a record and its predictions.

The phases, each a function below: data (rows, tokenizer, encoded splits) → train (a seeded
model) → evaluate (metrics, predictions, eager speed and latency) → measure (size and work) →
deploy (each requested backend in its own process) → record. Memory is tracked per phase
(`trackers.memory.MemoryTracker`). A cell never touches another cell's state or the store;
the runner (or a Ray worker's driver) is what writes its result. Exceptions are not caught
here: the executor records them as the cell's error.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness import probes, sizing
from harness.allocator import keep_freed_memory, release_freed_memory
from harness.batching import Encoded, encode
from harness.config import CellSpec, train_size_value
from harness.deploy.backends import state_dict_bytes
from harness.deploy.capabilities import capabilities
from harness.deploy.phase import BackendResult, deploy_phase, warm_up
from harness.events import Progress
from harness.fingerprint import CodeFingerprint, code_fingerprint, combined, vocabulary_hash
from harness.models.registry import Adapter, FittedAdapter, TaskInfo, get_adapter
from harness.record import CellRecord, now
from harness.tasks.data import Examples, TaskData, load_task_data
from harness.tasks.metrics import compute_metrics, split_metric_key, two_class_misfit
from harness.trackers import machine, speed, work
from harness.trackers.contention import ContentionTracker
from harness.trackers.memory import MemoryTracker
from harness.train import TrainStats, Trajectory, cpu_bf16_training, predict, to_predictions, train


@dataclass
class CellResult:
    record: CellRecord
    predictions: pd.DataFrame | None  # one row per evaluated example
    model_files: dict[str, bytes] | None = None  # with `keep_models`: the model's files by name


@dataclass
class CellInputs:
    """What the data phase hands on: the rows, the tokenizer, and every split encoded."""

    data: TaskData
    tokenizer: object
    train: Encoded
    holdout: Encoded | None
    eval: dict[str, Encoded]  # evaluation name ("" when single) → rows


@dataclass
class Evaluation:
    """What the evaluate phase found: metrics, per-example predictions, and eager's figures."""

    metrics: dict[str, float]
    frames: list[pd.DataFrame]  # predictions, one frame per evaluation split
    eager: BackendResult


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
    code = code_fingerprint()  # before the cell imports the modules it loads lazily: the code it runs
    quiet_libraries()
    record = CellRecord.for_spec(spec, run_id)
    device = pick_device(spec.device)
    memory = MemoryTracker(device)
    contention = ContentionTracker()
    if spec.threads:
        torch.set_num_threads(spec.threads)

    with memory.phase("train"), contention.phase("train"):
        inputs = data_phase(spec, record)
        release_freed_memory()  # what reading and encoding the rows left, before training keeps blocks
        allocator = keep_freed_memory()
        model, stats = train_phase(spec, inputs, device, record, on_progress)
    with memory.phase("inference"), contention.phase("inference"):
        evaluation = evaluate_phase(spec, inputs, model, device, stats.epochs_run, on_progress)
        probing = time.perf_counter()
        record.probes = probe_phase(spec, inputs, model, device)
        record.probe_seconds = time.perf_counter() - probing if spec.probes else None
    eager_memory(evaluation.eager, memory)
    measure_phase(record, model, inputs)

    on_progress(Progress("deploy", stats.epochs_run, spec.training.epochs, 0, 0))
    settings = spec.training
    with contention.phase("deploy"):
        deployed, deployed_outputs = deploy_phase(
            model,
            inputs.eval,
            spec.task.metrics,
            spec.deploy,
            settings.eval_batch_size,
            device,
            evaluation.eager,
            spec.deploy_windows,
            spec.speed,
        )
    record.deployed = {name: result.to_dict() for name, result in deployed.items()}
    add_backend_predictions(evaluation.frames, list(inputs.eval), deployed_outputs)
    if inputs.holdout is not None:
        outputs = predict(model, inputs.holdout, settings.eval_batch_size, device, settings.amp)
        record.holdout_metrics = compute_metrics(spec.task.metrics, outputs, inputs.holdout.labels)

    record_phase(record, spec, inputs, stats, evaluation, memory)
    record.contention = contention.phases
    record.trajectory["points"] = finished_trajectory(record, stats)
    fill_provenance(record, device, allocator, code)
    record.wall_seconds = time.perf_counter() - started
    kept = model_files(model, inputs.tokenizer) if spec.keep_models else None
    return CellResult(record, pd.concat(evaluation.frames, ignore_index=True), kept)


# --------------------------------------------------------------------------- phases


def data_phase(spec: CellSpec, record: CellRecord) -> CellInputs:
    """The task's rows, the model's tokenizer, every split encoded; their fingerprints recorded."""
    settings = spec.training
    data = load_task_data(
        spec.task,
        settings,
        spec.data_dir,
        holdout=spec.holdout,
        train_size=train_size_value(spec.train_size),
    )
    check_metrics_fit(spec, data.num_labels)
    adapter = get_adapter(spec.model)
    tokenizer = adapter.tokenizer(data.train, settings)
    record.notes += adapter.notes
    record.vocab_hash = vocabulary_hash(tokenizer)
    record.data_fingerprint = data_fingerprint(data)

    def encode_rows(rows: Examples) -> Encoded:
        return encode(tokenizer, rows, settings.max_seq_length, settings.truncation_side)

    return CellInputs(
        data=data,
        tokenizer=tokenizer,
        train=encode_rows(data.train),
        holdout=encode_rows(data.holdout) if data.holdout else None,
        eval={name: encode_rows(rows) for name, rows in data.eval.items()},
    )


def train_phase(
    spec: CellSpec,
    inputs: CellInputs,
    device: torch.device,
    record: CellRecord,
    on_progress: Callable[[Progress], None],
) -> tuple[torch.nn.Module, TrainStats]:
    """The model built from the cell's seed (sized to the cell's budget, when it has one) and
    trained (a fitted adapter's: fitted); early stopping scores the holdout, and the learning
    trajectory is scored on the holdout, else on the evaluation rows of the primary metric."""
    settings, task = spec.training, spec.task
    seed_everything(spec.seed)
    info = TaskInfo(
        num_labels=inputs.data.num_labels,
        is_pair=task.is_pair,
        max_seq_length=settings.max_seq_length,
        vocab_size=len(inputs.tokenizer),
        pad_token_id=inputs.tokenizer.pad_token_id,
    )
    adapter = get_adapter(spec.model)
    split, rows = (
        ("holdout", inputs.holdout) if inputs.holdout is not None else ("eval", primary_rows(spec, inputs))
    )
    record.trajectory = {"split": split, "metric": trajectory_metric(spec)}
    if isinstance(adapter, FittedAdapter):
        model = adapter.build(info)
        on_progress(Progress("train", 1, 1, 0, 1))
        stats = adapter.fit(model, inputs.train, spec.seed)  # on the CPU, as scikit-learn fits
        if not adapter.seeded:
            record.notes.append("the fit has no randomness: this cell stands for every seed of the suite")
        return model.to(device), stats
    if spec.budget is not None:
        adapter = sized(spec, adapter, info, inputs, record)
    model = adapter.build(info).to(device)
    if settings.amp_cpu and device.type == "cpu" and not cpu_bf16_training(settings, device):
        record.notes.append(
            "amp_cpu asked for bf16 training, but this CPU has no native bf16: trained in fp32"
        )

    metric = record.trajectory["metric"]

    def score_on(rows: Encoded) -> Callable[[torch.nn.Module], float]:
        def score(trained: torch.nn.Module) -> float:
            outputs = predict(trained, rows, settings.eval_batch_size, device, settings.amp)
            return compute_metrics([metric], outputs, rows.labels)[metric]

        return score

    stopping = score_on(inputs.holdout) if settings.early_stopping_patience is not None else None
    flops = work.flops_by_length(model, settings.max_seq_length)
    trajectory = Trajectory(score_on(rows), split, flops, spec.trajectory_every_steps)
    stats = train(
        model, inputs.train, settings, spec.seed, device, stopping, on_progress, trajectory=trajectory
    )
    return model, stats


def sized(
    spec: CellSpec, adapter: Adapter, info: TaskInfo, inputs: CellInputs, record: CellRecord
) -> Adapter:
    """The adapter with its widths made to the cell's budget (`harness/sizing.py`), recorded."""
    tokens = work.representative_length(next(iter(inputs.eval.values())))
    base_label = spec.model.display_label.removesuffix(f"@{spec.budget.label}")
    adapter, chosen = sizing.sized_adapter(adapter, info, spec.budget, tokens, base_label)
    record.sizing = chosen.to_dict()
    return adapter


def finished_trajectory(record: CellRecord, stats: TrainStats) -> list[dict]:
    """The trajectory with its last point's value filled in where the final evaluation is that point
    (the evaluation split's last epoch); a fitted model's is the fit: one point."""
    split = record.trajectory["split"]
    final = (
        record.primary_value if split == "eval" else record.holdout_metrics.get(record.trajectory["metric"])
    )
    if not stats.trajectory:
        point = {
            "step": 0,
            "epoch": 1,
            "examples": record.train_examples,
            "train_seconds": stats.wall_seconds,
        }
        return [point | {"train_flops": None, "value": final}]
    return [point if point["value"] is not None else point | {"value": final} for point in stats.trajectory]


def trajectory_metric(spec: CellSpec) -> str:
    """The task's primary metric without its evaluation-split suffix (`accuracy_matched` → `accuracy`):
    the metric early stopping and the trajectory score."""
    task = spec.task
    base, _ = split_metric_key(task.primary_metric)
    return base if base in task.metrics else task.metrics[0]


def primary_eval_name(spec: CellSpec, inputs: CellInputs) -> str:
    """The evaluation the primary metric is computed on (MNLI's `accuracy_matched`: `matched`)."""
    name = split_metric_key(spec.task.primary_metric)[1]
    return name if name in inputs.eval else next(iter(inputs.eval))


def primary_rows(spec: CellSpec, inputs: CellInputs) -> Encoded:
    return inputs.eval[primary_eval_name(spec, inputs)]


def evaluate_phase(
    spec: CellSpec,
    inputs: CellInputs,
    model: torch.nn.Module,
    device: torch.device,
    epochs_run: int,
    on_progress: Callable[[Progress], None],
) -> Evaluation:
    """Metrics and predictions of every evaluation split (under AMP on CUDA, as trained), and the
    eager model's speed as `trackers.speed` defines it (the fastest fp32 pass) and latency."""
    settings, task = spec.training, spec.task
    metrics: dict[str, float] = {}
    frames, rates = [], []
    first = next(iter(inputs.eval.values()))
    warm_up(model, first, settings.eval_batch_size, device)  # as every backend is
    for name, encoded in inputs.eval.items():
        on_progress(Progress("eval", epochs_run, settings.epochs, 0, 0))
        outputs, rate = speed.timed_predict(model, encoded, settings.eval_batch_size, device, settings.amp)
        if device.type == "cuda" and settings.amp:  # the speed is fp32's, as for every backend
            rate = speed.timed_predict(model, encoded, settings.eval_batch_size, device, amp=False)[1]
        rates.append(
            speed.fastest_rate(
                model, encoded, settings.eval_batch_size, device, False, rate, max_passes=spec.speed.passes
            )
        )
        metrics.update(compute_metrics(task.metrics, outputs, encoded.labels, suffix=name))
        split = name or task.splits.eval_splits()[name]  # the split's own name when there is one
        frames.append(predictions_frame(split, inputs.data.eval[name], encoded, outputs))
    p50, p95 = speed.latency_ms(model, first, device, amp=False, repeats=spec.speed.latency_rows)
    rate = float(np.mean(rates))
    eager = BackendResult(
        "ok",
        metrics=dict(metrics),
        infer_examples_per_s=rate,
        rates_by_process=[rate],
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        size_mb=state_dict_bytes(model) / 1024**2,
        prepare_seconds=0.0,
        max_abs_diff=0.0,
    )
    return Evaluation(metrics, frames, eager)


def probe_phase(spec: CellSpec, inputs: CellInputs, model: torch.nn.Module, device: torch.device) -> dict:
    """The suite's probes on perturbed copies of up to `probe_rows` rows of the primary split
    (`harness/probes.py`), and the worst case over the label-keeping ones (classification)."""
    if not spec.probes:
        return {}
    settings, task = spec.training, spec.task
    sample = probes.probe_sample(inputs.data.eval[primary_eval_name(spec, inputs)], spec.probe_rows)

    def outputs(rows: Examples) -> np.ndarray:
        encoded = encode(inputs.tokenizer, rows, settings.max_seq_length, settings.truncation_side)
        return predict(model, encoded, settings.eval_batch_size, device, settings.amp)

    clean = outputs(sample)
    results, keeping = {}, []
    for probe in spec.probes:
        reason = probes.applies(probe.name, task.is_pair, inputs.data.label_names)
        if reason:
            results[probe.name] = probes.ProbeResult("skipped", reason)
            continue
        rate = probe.rate if probe.rate is not None else probes.DEFAULT_RATES.get(probe.name, 1.0)
        perturbed = probes.perturbed_rows(probe.name, sample, spec.seed, rate)
        out = outputs(perturbed)
        results[probe.name] = probes.score_probe(
            probe.name, rate, sample, perturbed, clean, out, task.metrics
        )
        if probe.name in probes.LABEL_KEEPING:
            keeping.append(out)
    if keeping and clean.ndim == 2:
        worst = probes.worst_case(sample.labels, clean, keeping)
        results["worst-case"] = probes.ProbeResult("ok", rows=len(sample), metrics={"accuracy": worst})
    return {probe: asdict(result) for probe, result in results.items()}


def eager_memory(eager: BackendResult, memory: MemoryTracker) -> None:
    """Eager's serving memory: the inference phase's peak (CUDA allocated, else resident set)."""
    inference = memory.phases["inference"]
    cuda = inference.cuda_allocated_mb
    eager.peak_mb, eager.memory_kind = (cuda, "CUDA") if cuda is not None else (inference.rss_mb, "RSS")


def measure_phase(record: CellRecord, model: torch.nn.Module, inputs: CellInputs) -> None:
    """Size and work: parameters, and forward FLOPs at the first evaluation split's mean length."""
    record.params_total, record.params_trainable = work.count_parameters(model)
    flops = work.forward_flops(model, next(iter(inputs.eval.values())))
    record.flops_per_example, record.flops_tokens = flops.flops, flops.tokens
    record.notes += [flops.note] if flops.note else []


def record_phase(
    record: CellRecord,
    spec: CellSpec,
    inputs: CellInputs,
    stats: TrainStats,
    evaluation: Evaluation,
    memory: MemoryTracker,
) -> None:
    """The phases' figures into the record, which is then ok."""
    eager, data = evaluation.eager, inputs.data
    record.status = "ok"
    record.metrics = evaluation.metrics
    record.primary_value = evaluation.metrics[spec.task.primary_metric]
    record.label_names = data.label_names
    record.train_examples = len(data.train)
    record.eval_examples = sum(len(rows) for rows in data.eval.values())
    record.epochs, record.best_epoch, record.steps = stats.epochs_run, stats.best_epoch, stats.steps
    record.train_seconds = stats.wall_seconds
    record.train_examples_per_s, record.train_tokens_per_s = stats.examples_per_s, stats.tokens_per_s
    record.infer_examples_per_s = eager.infer_examples_per_s
    record.latency_p50_ms, record.latency_p95_ms = eager.latency_p50_ms, eager.latency_p95_ms
    record.peak_rss_mb = memory.cell_rss_mb()
    record.cuda_peak_allocated_mb = memory.cuda_peak_mb("allocated")
    record.cuda_peak_reserved_mb = memory.cuda_peak_mb("reserved")


# --------------------------------------------------------------------------- helpers


def model_files(model: torch.nn.Module, tokenizer) -> dict[str, bytes]:
    """The trained model as files a later process loads without this cell: `model.pt`, the whole
    module on the CPU (`torch.load(..., weights_only=False)` with this package importable), and
    `tokenizer/`, its tokenizer as `save_pretrained` writes it. Returned as bytes, not written
    here, so the runner (or a Ray worker's driver) stores them as it stores the predictions.
    The cell's last use of the model: it moves to the CPU in place rather than being copied."""
    buffer = io.BytesIO()
    torch.save(model.cpu().eval(), buffer)
    files = {"model.pt": buffer.getvalue()}
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        for path in sorted(Path(folder).iterdir()):
            files[f"tokenizer/{path.name}"] = path.read_bytes()
    return files


def predictions_frame(split: str, rows: Examples, encoded: Encoded, outputs: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "eval_split": split,
            "row_id": rows.row_ids,
            "label": encoded.labels,
            "prediction": to_predictions(outputs),
        }
    )
    if outputs.ndim == 2:
        frame["logits"] = list(outputs)
    return frame


def add_backend_predictions(
    frames: list[pd.DataFrame], splits: list[str], outputs: dict[str, dict[str, np.ndarray]]
) -> None:
    """Each backend's predictions (and logits) beside eager's: `prediction@int8`."""
    for frame, name in zip(frames, splits, strict=True):
        for backend, by_split in outputs.items():
            if name in by_split:
                frame[f"prediction@{backend}"] = to_predictions(by_split[name])
                if by_split[name].ndim == 2:
                    frame[f"logits@{backend}"] = list(by_split[name])


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


def fill_provenance(
    record: CellRecord, device: torch.device, allocator: str | None, code: CodeFingerprint
) -> None:
    record.device = device.type
    record.device_name = machine.device_name(device)
    record.cpu_model = machine.cpu_model()
    record.threads = torch.get_num_threads()
    record.capabilities = capabilities(device) | {"allocator": allocator}
    record.versions = machine.package_versions()
    record.git_commit, record.git_dirty = code.commit, code.dirty
    record.code_version, record.code_hash = code.version, code.source_hash
    record.finished_at = now()
