"""A `Report` → `leaderboard.md` and a self-contained `index.html` (+ plot specs as JSON).

Both go through Jinja. The HTML environment autoescapes everything, and data reaches
JavaScript only through `|tojson`. The markdown environment escapes every `{{ }}`
value for markdown (a `Md` string is left as is), so a label cannot break a table
or inject HTML into a rendered markdown page.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.report.build import Report
from harness.strict_json import json_safe
from harness.tables import si

TEMPLATES = Path(__file__).parent / "templates"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&$])")


class Md(str):
    """Markdown written by the report itself, not to be escaped."""


def md_escape(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Md):
        return value
    text = " ".join(str(value).split())  # no newline may end a table row
    return _MD_SPECIAL.sub(r"\\\1", text)


# --------------------------------------------------------------------------- numbers as text


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def metric(value, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:.{digits}f}"


def estimate(value) -> str:
    """`85.1 ± 1.2` (n ≥ 2), `85.1` (n = 1), empty when unmeasured."""
    if value is None or value.mean is None:
        return "NaN" if value is not None and value.n == 0 else ""
    if value.half_width is None:
        return metric(value.mean)
    return f"{metric(value.mean)} ± {metric(value.half_width)}"


def estimate3(value) -> str:
    """An estimate of a figure below 1 (Brier, NLL): three decimals."""
    if value is None or value.mean is None:
        return ""
    if value.half_width is None:
        return metric(value.mean, 3)
    return f"{metric(value.mean, 3)} ± {metric(value.half_width, 3)}"


def rate(value) -> str:
    if not _present(value):
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def millis(value) -> str:
    if not _present(value):
        return ""
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def megabytes(value) -> str:
    return f"{value:,.0f}" if _present(value) else ""


def trained_on(entry) -> str:
    """`4,000 × 3`: training rows × epochs, so that differently capped models read as such."""
    if entry.train_examples is None:
        return ""
    return f"{entry.train_examples:,} × {entry.epochs}" if entry.epochs else f"{entry.train_examples:,}"


def trained_key(entry) -> str:
    """Sort by examples seen in training (rows × epochs)."""
    if entry.train_examples is None:
        return ""
    return sort_key(entry.train_examples * (entry.epochs or 1))


def p_value(value) -> str:
    if not _present(value):
        return ""
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def signed(value) -> str:
    return f"{value:+.1f}" if _present(value) else ""


def sort_key(value) -> str:
    """A `data-sort` value for a table cell: the number, or empty when unmeasured."""
    if not _present(value):
        return ""
    return repr(float(value))


def rank_key(rank: str) -> str:
    return rank.lstrip("=") if rank else ""


def gap_colour(gap: float | None) -> str:
    """A slice's gap as a background: red below the model's score, blue above, white at 0;
    full colour at 20 points."""
    if gap is None or not math.isfinite(gap):
        return "transparent"
    strength = min(abs(gap) / 20.0, 1.0) * 0.55
    hue = 0 if gap < 0 else 215
    return f"hsla({hue}, 75%, 55%, {strength:.2f})"


FILTERS = {
    "metric": metric,
    "estimate": estimate,
    "estimate3": estimate3,
    "rate": rate,
    "millis": millis,
    "megabytes": megabytes,
    "si": si,
    "p_value": p_value,
    "trained_on": trained_on,
    "trained_key": trained_key,
    "signed": signed,
    "sort_key": sort_key,
    "gap_colour": gap_colour,
    "rank_key": rank_key,
}


def _as_md(function):
    return lambda *args, **kwargs: Md(function(*args, **kwargs))


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=None if autoescape else md_escape,
    )
    if autoescape:
        env.filters.update(FILTERS)
    else:  # the report's own number formats are markdown already
        env.filters.update({name: _as_md(function) for name, function in FILTERS.items()})
        env.filters["md"] = lambda value: Md(value) if value is not None else Md("")
    return env


def render_markdown(report: Report) -> str:
    return _environment(autoescape=False).get_template("leaderboard.md.j2").render(r=report)


def render_html(report: Report) -> str:
    from plotly.offline import get_plotlyjs

    env = _environment(autoescape=True)
    return env.get_template("index.html.j2").render(
        r=report,
        figures=json_safe(report.figures),
        plotly_js=get_plotlyjs() if report.figures else "",
    )


def write_report(report: Report, out: Path) -> list[Path]:
    """`leaderboard.md`, `index.html` and `plots/<figure id>.json` in `out`; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    markdown = out / "leaderboard.md"
    markdown.write_text(render_markdown(report), encoding="utf-8")
    written.append(markdown)
    page = out / "index.html"
    page.write_text(render_html(report), encoding="utf-8")
    written.append(page)
    for task in report.tasks:
        for kind, figure_id in task.figures.items():
            path = out / "plots" / f"{_file_name(task.name)}-{kind}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(json_safe(report.figures[figure_id]), indent=1), encoding="utf-8")
            written.append(path)
    return written


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "task"
