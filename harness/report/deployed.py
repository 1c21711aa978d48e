"""The deployed table of a task: each (model, backend) pooled over seeds, against its eager self.

From the records' `deployed` field (see `harness/deploy/phase.py`). Per (model, backend):
the primary metric's mean over seeds and its change from eager, inference examples/s and
the speed-up over eager, batch-1 latency p50/p95, peak memory of serving it (each backend in
a process of its own: on a CPU its resident set, the interpreter and libraries included),
artefact size, preparation time (export, quantization, compilation). A backend whose primary metric
drops by more than the suite's `deploy_tolerance` points is flagged. A backend skipped or
failed on every seed shows why.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from harness.report.plots import PALETTE, front_trace, pareto_front, scatter_layout
from harness.report.scores import one_machine, quiet_seeds
from harness.tasks.metrics import higher_is_better


@dataclass
class DeployedRow:
    model: str
    backend: str
    status: str  # ok, or skipped / failed when no seed ran it
    reason: str = ""
    primary: float | None = None
    delta: float | None = None  # primary minus eager's (points)
    speedup: float | None = None  # examples/s over eager's
    infer_examples_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    peak_mb: float | None = None
    memory_kind: str | None = None
    size_mb: float | None = None
    prepare_seconds: float | None = None
    seeds: int = 0
    flagged: bool = False


@dataclass
class DeployedTable:
    primary_metric: str
    tolerance: float
    rows: list[DeployedRow] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)  # "model · backend" on the accuracy-latency front
    notes: list[str] = field(default_factory=list)  # which machine's seeds a model's rows are from


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else None


def deployed_table(
    records: pd.DataFrame, primary_metric: str, model_order: Sequence[str]
) -> DeployedTable | None:
    """The report's table for one task's ok records, one variant per model label (the report's
    shown records); None when no record measured a backend beyond eager."""
    if "deployed" not in records or not any(len(d or {}) > 1 for d in records["deployed"]):
        return None
    return deployed_rows(records, primary_metric, model_order)


def quiet_results(mine: pd.DataFrame, backend: str, notes: list[str], model: str) -> list[dict]:
    """The backend's ok results timed with the machine to themselves (eager is timed in the cell's
    inference phase, the others in its deploy phase: `scores.quiet_seeds`); a note, once, when
    some or all shared it."""
    quiet, note = quiet_seeds(mine, "inference" if backend == "eager" else "deploy")
    if note and f"{model}: {note}" not in notes:
        notes.append(f"{model}: {note}")
    found = [d.get(backend) for d in quiet["deployed"] if backend in (d or {})]
    return [result for result in found if result.get("status") == "ok"]


def deployed_rows(records: pd.DataFrame, primary_metric: str, model_order: Sequence[str]) -> DeployedTable:
    """Each model's backends (eager included) over its seeds: metric, its change from eager,
    speed, latency, memory. A model whose seeds ran on several machines is shown from the
    machine most of them ran on, and `notes` says so."""
    tolerances = [(c or {}).get("deploy_tolerance") for c in records["config"]]
    tolerance = next((float(t) for t in tolerances if t is not None), 1.0)
    table = DeployedTable(primary_metric, tolerance)
    sign = 1.0 if higher_is_better(primary_metric) else -1.0
    for model in model_order:
        mine, basis = one_machine(records[records["model"] == model])  # speeds never pool machines
        if basis:
            table.notes.append(f"{model}: {basis}")
        backends = list(dict.fromkeys(b for d in mine["deployed"] for b in (d or {})))
        eager: DeployedRow | None = None
        for backend in backends:
            results = [d[backend] for d in mine["deployed"] if backend in (d or {})]
            ok = [r for r in results if r.get("status") == "ok"]
            if not ok:
                reasons = sorted({str(r.get("reason")) for r in results})
                table.rows.append(
                    DeployedRow(model, backend, results[0].get("status", "?"), "; ".join(reasons))
                )
                continue
            timed = quiet_results(mine, backend, table.notes, model) or ok
            row = DeployedRow(
                model,
                backend,
                "ok",
                reason="; ".join(sorted({f"{r['status']}: {r['reason']}" for r in results if r not in ok})),
                primary=_mean([r["metrics"].get(primary_metric) for r in ok]),
                infer_examples_per_s=_mean([r.get("infer_examples_per_s") for r in timed]),
                latency_p50_ms=_mean([r.get("latency_p50_ms") for r in timed]),
                latency_p95_ms=_mean([r.get("latency_p95_ms") for r in timed]),
                peak_mb=_mean([r.get("peak_mb") for r in ok]),
                memory_kind=ok[0].get("memory_kind"),
                size_mb=_mean([r.get("size_mb") for r in ok]),
                prepare_seconds=_mean([r.get("prepare_seconds") for r in ok]),
                seeds=len(ok),
            )
            if backend == "eager":
                eager = row
            elif eager is not None:
                if row.primary is not None and eager.primary is not None:
                    row.delta = row.primary - eager.primary
                    row.flagged = sign * row.delta < -tolerance
                if row.infer_examples_per_s and eager.infer_examples_per_s:
                    row.speedup = row.infer_examples_per_s / eager.infer_examples_per_s
            table.rows.append(row)
    points = {
        (row.latency_p50_ms, row.primary): f"{row.model} · {row.backend}"
        for row in table.rows
        if row.status == "ok" and row.latency_p50_ms and row.primary is not None
    }
    table.pareto = [points[p] for p in pareto_front(list(points), x_higher_is_better=False)]
    return table


def deployed_figure(title: str, table: DeployedTable, colour_of: dict[str, str]) -> dict | None:
    """The primary metric against batch-1 latency, one point per (model, backend), with the front."""
    traces, points = [], []
    symbols = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross")
    backends = list(dict.fromkeys(row.backend for row in table.rows))
    for row in table.rows:
        if row.status != "ok" or not row.latency_p50_ms or row.primary is None:
            continue
        points.append((row.latency_p50_ms, row.primary))
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": html.escape(f"{row.model} · {row.backend}"),
                "x": [row.latency_p50_ms],
                "y": [row.primary],
                "marker": {
                    "size": 11,
                    "color": colour_of.get(row.model, PALETTE[0]),
                    "symbol": symbols[backends.index(row.backend) % len(symbols)],
                },
                "hovertemplate": "%{fullData.name}<br>p50 %{x:.2f} ms<br>"
                + f"{html.escape(table.primary_metric)} %{{y:.1f}}<extra></extra>",
            }
        )
    if not traces:
        return None
    traces.append(front_trace(pareto_front(points, x_higher_is_better=False)))
    metric = html.escape(table.primary_metric)
    layout = scatter_layout(
        f"{html.escape(title)}: {metric} vs latency, deployed",
        "latency p50, batch 1 (ms, log)",
        f"{metric} (%)",
    )
    return {"data": traces, "layout": layout}
