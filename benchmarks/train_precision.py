"""bf16 against fp32 training speed, interleaved: the same model, rows and batches trained in
short alternating bouts in one process, so that both precisions meet the same machine.

Why: `benchmarks/deploy.py` trains the fp32 model and its bf16 twin in two cells minutes apart,
and on a shared machine the speed drifts by more than the goal's margin in that time (the
same AMD EPYC read the twin cells' ratio at 1.42×, 1.50×, 1.51×, 1.68× and 1.76× across runs).
Here each round trains fp32 and bf16 back to back from the same starting weights through the
harness's own `train` (length-bucketed batches, fused AdamW, clipping, schedule, bf16 autocast
as `amp_cpu` sets it), alternating which goes first, and the ratio is taken within each round:
drift slower than a round cancels. The median round is the figure.

    python benchmarks/train_precision.py [--model minilm-l6] [--rounds 6] [--rows 640]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SUITE = REPO_ROOT / "suites" / "deploy.yaml"


@dataclass
class Interleaved:
    fp32: list[float]  # train examples/s of each round's fp32 bout
    bf16: list[float]  # and of its bf16 bout

    @property
    def ratios(self) -> list[float]:
        return [b / f for f, b in zip(self.fp32, self.bf16, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def describe(self) -> str:
        rounds = ", ".join(f"{r:.2f}" for r in self.ratios)
        return (
            f"{self.median:.2f}× (median of {len(self.ratios)} interleaved rounds: {rounds}; "
            f"fp32 {statistics.median(self.fp32):.1f}, bf16 {statistics.median(self.bf16):.1f} ex/s)"
        )


def interleaved_training(
    suite: Path, label: str, data_dir: str | None, rounds: int, rows: int
) -> Interleaved | None:
    """Model `label` of `suite` trained on its first `rows` training rows, fp32 and bf16 in turn,
    `rounds` times. None where this CPU has no native bf16 (nothing to compare)."""
    import numpy as np
    import torch

    from harness.allocator import keep_freed_memory
    from harness.batching import encode
    from harness.cell import pick_device, quiet_libraries, seed_everything
    from harness.deploy.capabilities import cpu_has_bf16
    from harness.models.registry import TaskInfo, get_adapter
    from harness.planning import expand_cells, load_suite
    from harness.tasks.data import load_task_data
    from harness.train import train

    if not cpu_has_bf16():
        return None
    spec = next(c for c in expand_cells(load_suite(suite), suite, data_dir) if c.model.label == label)
    quiet_libraries()
    keep_freed_memory()  # as a cell's process does
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = pick_device("cpu")
    settings = spec.training
    data = load_task_data(spec.task, settings, spec.data_dir)
    adapter = get_adapter(spec.model)
    tokenizer = adapter.tokenizer(data.train, settings)
    encoded = encode(tokenizer, data.train, settings.max_seq_length, settings.truncation_side)
    bout = encoded.subset(np.arange(min(rows, len(encoded))))
    seed_everything(spec.seed)
    info = TaskInfo(
        num_labels=data.num_labels,
        is_pair=spec.task.is_pair,
        max_seq_length=settings.max_seq_length,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = adapter.build(info).to(device)
    start = copy.deepcopy(model.state_dict())
    precision = {
        "fp32": settings.model_copy(update={"amp_cpu": False}),
        "bf16": settings.model_copy(update={"amp_cpu": True}),
    }
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for round_index in range(rounds):
        for name in ("fp32", "bf16") if round_index % 2 == 0 else ("bf16", "fp32"):
            model.load_state_dict(start)
            stats = train(model, bout, precision[name], spec.seed, device)
            rates[name].append(stats.examples_per_s)
    return Interleaved(rates["fp32"], rates["bf16"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=SUITE)
    parser.add_argument("--model", default="minilm-l6", help="a model label of the suite")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=640, help="training rows per bout")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    args = parser.parse_args()
    result = interleaved_training(args.suite, args.model, args.data_dir, args.rounds, args.rows)
    print("this CPU has no native bf16" if result is None else f"bf16 / fp32 training: {result.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
