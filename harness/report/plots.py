"""Accuracy against cost: plotly figure specs (plain dicts) per task, with the Pareto front.

Two figures per task: the primary metric against inference throughput (higher is
cheaper) and against parameters (lower is cheaper), both on log axes. One trace per
model, one point each (the mean over seeds, the 95% CI as an error bar); the Pareto
front is a line without markers. Every string is HTML-escaped, because plotly renders
a small HTML subset in text; escaped, it shows the characters as written.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from harness.report.scores import Entry

PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)  # fmt: skip
SYSTEM_FONTS = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def pareto_front(
    points: Sequence[tuple[float, float]], x_higher_is_better: bool
) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (y higher is better), ordered by x."""
    sign = -1.0 if x_higher_is_better else 1.0
    best_first = sorted(points, key=lambda p: (sign * p[0], -p[1]))
    front: list[tuple[float, float]] = []
    for x, y in best_first:
        if not front or y > front[-1][1]:
            front.append((x, y))
    return sorted(front)


def hex_to_rgba(colour: str, alpha: float) -> str:
    """`#1f77b4` → `rgba(31, 119, 180, 0.15)`: a model's colour, translucent for its band."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def band_trace(
    x: Sequence[float], low: Sequence[float], high: Sequence[float], colour: str, name: str
) -> dict:
    """A translucent band between `low` and `high` over `x`, grouped with the line called `name`
    (a model's seed interval or range); hidden from the legend and from hovering."""
    return {
        "type": "scatter",
        "mode": "lines",
        "x": [*x, *x[::-1]],
        "y": [*high, *low[::-1]],
        "fill": "toself",
        "fillcolor": hex_to_rgba(colour, 0.15),
        "line": {"width": 0},
        "hoverinfo": "skip",
        "showlegend": False,
        "legendgroup": name,
        "name": f"{name} band",
    }


def colours(models: Sequence[str]) -> dict[str, str]:
    return {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}


def cost_figure(
    title: str,
    entries: Sequence[Entry],
    cost: str,
    colour_of: dict[str, str],
) -> dict | None:
    """One figure of the primary metric against `cost` (`infer_examples_per_s` or `params_total`)."""
    throughput = cost == "infer_examples_per_s"
    axis_title = "inference examples/s (log)" if throughput else "parameters (log)"
    points, traces = [], []
    for entry in entries:
        x, y = entry.cost.get(cost), entry.primary.mean
        if not _positive(x) or y is None:
            continue
        points.append((x, y))
        half = entry.primary.half_width
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": html.escape(entry.model),
                "x": [x],
                "y": [y],
                "error_y": {"type": "data", "array": [half or 0.0], "visible": half is not None},
                "marker": {"size": 11, "color": colour_of.get(entry.model, PALETTE[0])},
                "customdata": [[entry.primary.n]],
                "hovertemplate": (
                    "%{fullData.name}<br>"
                    + ("%{x:,.0f} examples/s" if throughput else "%{x:,.3s} parameters")
                    + f"<br>{html.escape(entry.primary_metric)} %{{y:.1f}} (n=%{{customdata[0]}})"
                    + "<extra></extra>"
                ),
            }
        )
    if not traces:
        return None
    traces.append(front_trace(pareto_front(points, x_higher_is_better=throughput)))
    metric = html.escape(entries[0].primary_metric)
    title_text = f"{html.escape(title)}: {metric} vs {axis_title.removesuffix(' (log)')}"
    return {"data": traces, "layout": scatter_layout(title_text, axis_title, f"{metric} (%)")}


def front_trace(front: Sequence[tuple[float, float]]) -> dict:
    """The Pareto front as a dotted line without markers."""
    return {
        "type": "scatter",
        "mode": "lines",
        "name": "Pareto front",
        "x": [p[0] for p in front],
        "y": [p[1] for p in front],
        "line": {"dash": "dot", "color": "#666", "width": 1.5},
        "hoverinfo": "skip",
    }


def scatter_layout(title: str, x_title: str, y_title: str) -> dict:
    """The layout every accuracy-against-cost figure shares: log x axis, legend below."""
    return {
        "title": {"text": title},
        "xaxis": {"type": "log", "title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "font": {"family": SYSTEM_FONTS, "size": 12},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
        "margin": {"l": 55, "r": 15, "t": 45, "b": 10},
        "autosize": True,
        "hovermode": "closest",
    }


def task_figures(title: str, entries: Sequence[Entry], colour_of: dict[str, str]) -> dict[str, dict]:
    """`{"throughput": figure, "params": figure}`, leaving out a figure with nothing to plot."""
    figures = {
        "throughput": cost_figure(title, entries, "infer_examples_per_s", colour_of),
        "params": cost_figure(title, entries, "params_total", colour_of),
    }
    return {kind: figure for kind, figure in figures.items() if figure is not None}
