"""What the harness's training loop costs over a plain PyTorch loop doing the same work.

The same model (the `cnn` adapter), the same data (a fixed subset of real SST-2
training sentences, tokenized once), the same batches (length-grouped, padded to
the longest row of each batch, drawn from the same seed), the same optimizer
(AdamW, no decay on biases) with the same schedule and gradient clipping, trained
once by `harness.train.train` and once by the hand-written loop below, alternately,
`--repeats` times each, in one process.

Both are timed the same way, from outside: a clock read after every step (the
harness's `on_progress` callback, the plain loop's own line), so the figure covers
everything a step costs, batch collation included. The first `warmup` steps of
each run (the harness's own rule: min(10, steps // 10)) are left out of both.
The harness's self-reported `train_examples_per_s` (its steady-state window) is
shown beside them.

    python benchmarks/overhead.py                      # 5,000 sentences, 2 epochs, 3 repeats
    python benchmarks/overhead.py --train-examples 1000 --epochs 1 --repeats 1   # a quick check

On a machine shared with other jobs pass `--threads 1`: with two OpenMP threads
on two busy cores each step waits on the slower thread and timings swing several-fold.

Goal: the harness within 5% of the plain loop (ratio ≥ 0.95).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from _publish import publish
from torch import nn

from harness.batching import Encoded, collate, encode, train_batches
from harness.cell import quiet_libraries, seed_everything
from harness.config import ModelSpec, TrainingSettings
from harness.events import Progress
from harness.models.registry import TaskInfo, get_adapter
from harness.tasks.data import load_task_data
from harness.tasks.registry import BUILTIN_DIR as BUILTIN_TASK_DIR
from harness.tasks.registry import load_task
from harness.trackers.machine import cpu_model
from harness.train import train

RESULTS = Path(__file__).resolve().parent / "results"
CNN = ModelSpec(adapter="cnn", params={"vocab_size": 8000})


def plain_loop(
    model: nn.Module,
    data: Encoded,
    settings: TrainingSettings,
    seed: int,
    stamps: list[float],
) -> None:
    """A minimal hand-written loop: the harness's recipe, none of its machinery."""
    rng = np.random.default_rng(seed)
    lengths = data.lengths
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
    )
    total = -(-len(data) // settings.batch_size) * settings.epochs
    warm = int(settings.warmup_ratio * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)),
    )
    model.train()
    for _ in range(settings.epochs):
        for indices in train_batches(lengths, settings.batch_size, rng):
            batch = collate(data, indices)
            loss = nn.functional.cross_entropy(model(batch), batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            schedule.step()
            loss.item()
            stamps.append(time.perf_counter())


def step_sizes(data: Encoded, settings: TrainingSettings, seed: int) -> list[int]:
    """Rows per step, in order: the batches both loops draw from the same seed."""
    rng = np.random.default_rng(seed)
    lengths = data.lengths
    return [
        len(indices)
        for _ in range(settings.epochs)
        for indices in train_batches(lengths, settings.batch_size, rng)
    ]


def steady_rate(start: float, stamps: list[float], sizes: list[int], warmup: int) -> float:
    """Examples per second over the steps after the first `warmup`, from wall-clock stamps."""
    assert len(stamps) == len(sizes), (len(stamps), len(sizes))
    begin = stamps[warmup - 1] if warmup > 0 else start
    return sum(sizes[warmup:]) / (stamps[-1] - begin)


def markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| run | harness ex/s (wall) | plain loop ex/s (wall) | ratio harness/plain | "
        "harness ex/s (self-reported) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['run']} | {row['harness']:,.0f} | {row['plain']:,.0f} | "
            f"{row['ratio']:.3f} | {row['reported']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--train-examples", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    parser.add_argument("--out", type=Path, default=RESULTS / "overhead.md")
    args = parser.parse_args()

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    settings = TrainingSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_seq_length=args.max_seq_length,
        max_train_examples=args.train_examples,
        max_eval_examples=1,
    )
    task = load_task(BUILTIN_TASK_DIR / "sst2.yaml")
    data = load_task_data(task, settings, args.data_dir)
    adapter = get_adapter(CNN)
    tokenizer = adapter.tokenizer(data.train, settings)
    encoded = encode(tokenizer, data.train, settings.max_seq_length)
    info = TaskInfo(
        num_labels=data.num_labels,
        is_pair=False,
        max_seq_length=settings.max_seq_length,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    sizes = step_sizes(encoded, settings, args.seed)
    warmup = min(10, max(0, len(sizes) // 10))  # the harness's rule in `train`

    def fresh_model() -> nn.Module:
        seed_everything(args.seed)
        return adapter.build(info).to(device)

    def run_harness() -> tuple[float, float]:
        stamps: list[float] = []

        def stamp(progress: Progress) -> None:
            if progress.phase == "train":
                stamps.append(time.perf_counter())

        model = fresh_model()
        start = time.perf_counter()
        stats = train(model, encoded, settings, args.seed, device, on_progress=stamp)
        return steady_rate(start, stamps, sizes, warmup), stats.examples_per_s or float("nan")

    def run_plain() -> float:
        stamps: list[float] = []
        model = fresh_model()
        start = time.perf_counter()
        plain_loop(model, encoded, settings, args.seed, stamps)
        return steady_rate(start, stamps, sizes, warmup)

    rows = []
    for run in range(1, args.repeats + 1):
        if run % 2:  # alternate which goes first, so neither always runs on a warmer machine
            (harness_rate, reported), plain_rate = run_harness(), run_plain()
        else:
            plain_rate, (harness_rate, reported) = run_plain(), run_harness()
        rows.append(
            {
                "run": run,
                "harness": harness_rate,
                "plain": plain_rate,
                "ratio": harness_rate / plain_rate,
                "reported": reported,
            }
        )
        print(f"run {run}: harness {harness_rate:,.0f} ex/s, plain {plain_rate:,.0f} ex/s", flush=True)

    if len(rows) > 1:
        rows.append(
            {
                "run": "median",
                **{
                    key: statistics.median(row[key] for row in rows)
                    for key in ("harness", "plain", "ratio", "reported")
                },
            }
        )
    final = rows[-1]
    verdict = "met" if final["ratio"] >= 0.95 else "NOT met"
    header = (
        "# Harness training loop vs a plain PyTorch loop\n\n"
        f"cnn (vocab 8,000) on {len(encoded):,} SST-2 training sentences, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, max length {args.max_seq_length}, {len(sizes)} steps per run "
        f"(first {warmup} left out), {args.repeats} alternating run(s) of each.  \n"
        f"{cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}, "
        f"{datetime.now(timezone.utc).isoformat(timespec='minutes')}.  \n"
        f"Goal: ratio ≥ 0.95 — {verdict} (ratio {final['ratio']:.3f}).\n\n"
        "ex/s (wall): examples per second between wall-clock stamps taken after every step, "
        "collation included, the same for both loops. Self-reported: the harness's own "
        "`train_examples_per_s` (its steady-state window, which starts after the batch is built)."
    )
    text = markdown(rows, header)
    publish(text, args.out)


if __name__ == "__main__":
    main()
