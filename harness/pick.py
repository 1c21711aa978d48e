"""Pick under constraints: from stored records, the best (variant, backend) of one task that
meets a latency, memory, score and accuracy-drop budget, with the runner-up and the front of
choices no other beats on every count.

Latency and memory are a machine's: they are read from the records of one machine only (the
one most of the task's records ran on, or the one asked for), never pooled across machines.
Each (variant, backend) is pooled over its seeds on that machine as the report's deployed
table pools it (`report.deployed.deployed_rows`): means of the score, the p95 latency of one
example, and the serving process's peak memory (CUDA allocated on a GPU, else resident set).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.report.deployed import DeployedRow, deployed_rows
from harness.report.scores import latest_per_seed, machine_name
from harness.tasks.metrics import higher_is_better


@dataclass(frozen=True)
class Bounds:
    max_p95_ms: float | None = None  # p95 latency of one example (batch 1)
    max_memory_mb: float | None = None  # the serving process's peak
    max_drop: float | None = None  # points of the primary metric a backend may lose against eager
    min_score: float | None = None  # the primary metric's floor

    def broken_by(self, candidate: Candidate) -> list[str]:
        """The bounds `candidate` does not meet (a figure that was not measured meets none)."""
        checks = {
            "--max-p95-ms": (self.max_p95_ms, candidate.p95_ms, lambda bound, value: value <= bound),
            "--max-memory-mb": (self.max_memory_mb, candidate.memory_mb, lambda bound, value: value <= bound),
            "--max-drop": (self.max_drop, candidate.drop, lambda bound, value: value <= bound),
            "--min-score": (self.min_score, candidate.score, lambda bound, value: value >= bound),
        }
        return [
            name
            for name, (bound, value, meets) in checks.items()
            if bound is not None and (value is None or not meets(bound, value))
        ]


@dataclass
class Candidate:
    variant: str
    backend: str
    score: float | None  # the primary metric, mean over seeds
    drop: float | None  # points lost against the variant's eager score (0 for eager)
    p95_ms: float | None
    memory_mb: float | None
    memory_kind: str | None
    seeds: int
    broken: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.variant} · {self.backend}"


@dataclass
class Picked:
    task: str
    metric: str
    machine: str
    other_machines: list[str]
    candidates: list[Candidate]  # every served (variant, backend), best score first
    front: list[Candidate]  # those no other beats on score, latency and memory at once
    notes: list[str] = field(default_factory=list)  # e.g. seeds whose timings a shared machine slowed

    @property
    def qualifying(self) -> list[Candidate]:
        return [candidate for candidate in self.candidates if not candidate.broken]

    def ruled_out(self) -> dict[str, int]:
        """How many candidates each bound rules out, most first."""
        counts: dict[str, int] = {}
        for candidate in self.candidates:
            for bound in candidate.broken:
                counts[bound] = counts.get(bound, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))


def candidate(row: DeployedRow, higher: bool) -> Candidate:
    if row.backend == "eager":
        drop: float | None = 0.0
    else:  # + 0.0: no "-0.00" for a backend that matches eager exactly
        drop = None if row.delta is None else (-row.delta if higher else row.delta) + 0.0
    return Candidate(
        row.model, row.backend, row.primary, drop, row.latency_p95_ms, row.peak_mb, row.memory_kind, row.seeds
    )


def dominates(a: Candidate, b: Candidate, higher: bool) -> bool:
    """`a` is at least as good as `b` on score, latency and memory, and better on one."""
    sign = 1.0 if higher else -1.0
    at_least = [sign * a.score >= sign * b.score, a.p95_ms <= b.p95_ms, a.memory_mb <= b.memory_mb]
    better = [sign * a.score > sign * b.score, a.p95_ms < b.p95_ms, a.memory_mb < b.memory_mb]
    return all(at_least) and any(better)


def pick(records: pd.DataFrame, task: str, bounds: Bounds, machine: str | None = None) -> Picked:
    """The candidates of `task` on one machine, judged against `bounds`. `machine` picks the
    machine by a part of its name; by default, the one most of the task's records ran on.
    Raises `LookupError` (with what is there) when no ok record of the task or machine exists."""
    ok = records[(records["status"] == "ok") & (records["task"] == task)]
    if ok.empty:
        there = ", ".join(sorted(set(records["task"]))) or "none"
        raise LookupError(f"no finished cell of task {task!r} in these runs (tasks there: {there})")
    ok, _ = latest_per_seed(ok)
    machines = ok.apply(machine_name, axis=1)
    counts = machines.value_counts()
    if machine is None:
        chosen = str(counts.index[0])
    else:
        matching = [name for name in counts.index if machine.lower() in str(name).lower()]
        if not matching:
            raise LookupError(f"no record of task {task!r} ran on a machine named like {machine!r}")
        chosen = str(matching[0])
    mine = ok[machines == chosen].assign(model=lambda frame: frame["variant"])
    metric = str(mine["primary_metric"].iloc[0])
    higher = higher_is_better(metric)
    table = deployed_rows(mine, metric, list(dict.fromkeys(mine["variant"])))
    found = [candidate(row, higher) for row in table.rows if row.status == "ok" and row.primary is not None]
    for each in found:
        each.broken = bounds.broken_by(each)
    found.sort(key=lambda each: -each.score if higher else each.score)
    measured = [each for each in found if each.p95_ms is not None and each.memory_mb is not None]
    front = [each for each in measured if not any(dominates(other, each, higher) for other in measured)]
    others = [str(name) for name in counts.index if name != chosen]
    return Picked(task, metric, chosen, others, found, front, table.notes)
