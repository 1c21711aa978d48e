"""Does anything survive a typo? Each model's probe figures (`harness/probes.py`), pooled over seeds.

Per model and probe: the share of rows whose text it changed, the primary metric on the
perturbed rows and its change against the same rows clean, the invariance rate (% of rows whose
predicted class stayed), and for `negation` the % of changed rows that moved the right way; per
model the worst-case accuracy over the label-keeping probes (HELM's: right clean and under every
probe). Each figure is the mean over seeds with a 95% t-interval. A probe that does not apply to
the task (negation on pairs, say) shows its reason. The figure draws the change of the metric per
probe, a bar per model.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from harness.report.plots import SYSTEM_FONTS
from harness.report.stats import Estimate, t_interval
from harness.tasks.metrics import split_metric_key


@dataclass
class ProbeCell:
    metric: Estimate | None = None  # on the perturbed rows
    change: Estimate | None = None  # perturbed minus clean, on the same rows (points)
    invariance: Estimate | None = None  # %
    moved: Estimate | None = None  # negation: % of changed rows whose p(original label) fell
    changed: Estimate | None = None  # % of rows whose text the probe changed
    reason: str = ""  # why the probe did not run


@dataclass
class RobustnessTable:
    metric: str
    probes: list[str]
    models: list[str]
    cells: dict[str, dict[str, ProbeCell]] = field(default_factory=dict)  # model → probe → cell
    worst_case: dict[str, Estimate] = field(default_factory=dict)  # model → accuracy
    rows: int = 0  # rows each probe perturbed


def _estimate(values: list[float | None]) -> Estimate | None:
    found = t_interval(values)
    return found if found.mean is not None else None


def robustness_table(records: pd.DataFrame, models: list[str], primary: str) -> RobustnessTable | None:
    """The table of one task's shown records (one variant per model label), or None without probes."""
    if "probes" not in records or not any(records["probes"].map(bool)):
        return None
    metric = split_metric_key(primary)[0]
    names = list(dict.fromkeys(name for found in records["probes"] for name in found if name != "worst-case"))
    table = RobustnessTable(metric, names, [m for m in models if m in set(records["variant"])])
    for model in table.models:
        mine = [found for found in records.loc[records["variant"] == model, "probes"] if found]
        table.cells[model] = {}
        for name in names:
            results = [found[name] for found in mine if name in found]
            ran = [r for r in results if r.get("status") == "ok"]
            if not ran:
                table.cells[model][name] = ProbeCell(reason=next((r.get("reason", "") for r in results), ""))
                continue
            table.rows = max(table.rows, max(r.get("rows", 0) for r in ran))
            perturbed = [r["metrics"].get(metric) for r in ran if r.get("metrics")]
            change = [
                r["metrics"][metric] - r["clean_metrics"][metric]
                for r in ran
                if metric in (r.get("metrics") or {})
            ]
            table.cells[model][name] = ProbeCell(
                _estimate(perturbed),
                _estimate(change),
                _estimate([r.get("invariance") for r in ran]),
                _estimate([r.get("moved") for r in ran]),
                _estimate([r.get("changed") for r in ran]),
            )
        worst = [found["worst-case"]["metrics"].get("accuracy") for found in mine if "worst-case" in found]
        if worst:
            table.worst_case[model] = _estimate(worst)
    return table


def robustness_figure(title: str, table: RobustnessTable, colour_of: dict[str, str]) -> dict | None:
    """The change of the metric under each probe (points, mean over seeds), a bar per model."""
    probes = [name for name in table.probes if any(table.cells[m][name].change for m in table.models)]
    traces = []
    for model in table.models:
        changes = [table.cells[model][name].change for name in probes]
        name = html.escape(model)
        traces.append(
            {
                "type": "bar",
                "name": name,
                "x": [html.escape(probe) for probe in probes],
                "y": [None if c is None else c.mean for c in changes],
                "error_y": {"type": "data", "array": [None if c is None else c.half_width for c in changes]},
                "marker": {"color": colour_of.get(model, "#444")},
                "hovertemplate": name + "<br>%{x}: %{y:+.2f} points<extra></extra>",
            }
        )
    if not probes:
        return None
    layout = {
        "title": {"text": f"{html.escape(title)}: {html.escape(table.metric)} change under each probe"},
        "barmode": "group",
        "xaxis": {"title": {"text": "probe"}},
        "yaxis": {"title": {"text": "perturbed − clean (points)"}},
        "font": {"family": SYSTEM_FONTS, "size": 12},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
        "margin": {"l": 55, "r": 15, "t": 45, "b": 10},
        "autosize": True,
    }
    return {"data": traces, "layout": layout}
