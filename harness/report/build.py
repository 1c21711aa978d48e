"""Records (+ predictions, references, task specs) → one `Report`: everything the templates show.

No formatting happens here, only numbers and names; `render.py` turns them into text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from harness.report.leader import LeaderTest, PredictionLoader, judge_leader, ranked, split_metric
from harness.report.plots import colours, pareto_front, task_figures
from harness.report.references import Reference
from harness.report.scores import GLUE_TASKS, Entry, GlueScore, glue_row, pool_seeds

TASK_TITLES = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
    "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "imdb": "IMDb",
}  # fmt: skip
HEADLINE_TASKS = ("sst2", "imdb")  # shown right after the GLUE scores, on their own


def task_title(name: str) -> str:
    return TASK_TITLES.get(name, name)


def task_order(names: Sequence[str]) -> list[str]:
    """SST-2 and IMDb first, then the other GLUE tasks in GLUE's order, then the rest by name."""
    known = [t for t in HEADLINE_TASKS if t in names]
    known += [t for t in GLUE_TASKS if t in names and t not in known]
    return known + sorted(t for t in names if t not in known)


# --------------------------------------------------------------------------- the report's parts


@dataclass
class RefValue:
    value: float
    metric: str
    reference: Reference
    footnote: int
    other_split: bool  # measured on another split than our runs (e.g. test, where we use dev)
    other_metric: bool = False  # not the column's metric (MNLI's published mean of m and mm)


@dataclass
class RefRow:
    """A published model in a table: its numbers by column, marked "not run here"."""

    model: str
    values: dict[str, RefValue] = field(default_factory=dict)  # column (task or metric) → value
    extra: list[RefValue] = field(default_factory=list)  # numbers with no column of their own
    footnotes: list[int] = field(default_factory=list)
    glue9: GlueScore | None = None
    glue8: GlueScore | None = None
    published_glue: RefValue | None = None


@dataclass
class TaskSection:
    name: str
    title: str
    description: str
    primary_metric: str
    metric_keys: list[str]
    eval_splits: tuple[str, ...]
    entries: list[Entry]  # ranked, best first
    references: list[RefRow]
    leader: LeaderTest | None
    figures: dict[str, str]  # kind → figure id
    pareto: dict[str, list[str]]  # kind → models on the Pareto front
    memory_kinds: list[str]


@dataclass
class ModelRow:
    model: str
    entries: dict[str, Entry]  # task → entry
    glue9: GlueScore | None
    glue8: GlueScore | None


@dataclass
class Provenance:
    run_ids: list[str]
    suites: list[str]
    commits: list[str]
    versions: dict[str, list[str]]
    devices: list[str]
    started: str | None
    finished: str | None
    generated: str
    cells_ok: int
    cells_failed: list[str]


@dataclass
class Report:
    title: str
    tasks: list[TaskSection]
    models: list[ModelRow]
    references: list[RefRow]  # overview rows
    show_glue: bool
    footnotes: list[str]  # source texts; footnote n is footnotes[n - 1]
    figures: dict[str, dict]
    provenance: Provenance
    notes: list[str]
    alpha: float


# --------------------------------------------------------------------------- building


def _same_split(reference: Reference, ours: Sequence[str]) -> bool:
    if not ours:
        return True
    return all(split.split("[")[0].startswith(reference.split) for split in ours)


class _Footnotes:
    def __init__(self) -> None:
        self.sources: list[str] = []

    def number(self, source: str) -> int:
        if source not in self.sources:
            self.sources.append(source)
        return self.sources.index(source) + 1


def _task_spec(name: str):
    from harness.config import available_tasks, load_task
    from harness.errors import InputError

    path = available_tasks().get(name)
    if path is None:
        return None
    try:
        return load_task(path)
    except InputError:
        return None


def _describe_device(row: pd.Series) -> str:
    parts = [str(row.get("device") or "?")]
    for key in ("device_name", "cpu_model"):
        value = row.get(key)
        if not isinstance(value, str) or not value or any(value in part for part in parts):
            continue
        parts = [part for part in parts if part not in value] + [value]
    threads = row.get("threads")
    if threads is not None and not (isinstance(threads, float) and math.isnan(threads)):
        parts.append(f"{int(threads)} thread(s)")
    return ", ".join(parts)


def _provenance(records: pd.DataFrame, runs: Sequence[str]) -> Provenance:
    ok = records[records["status"] == "ok"]
    versions: dict[str, list[str]] = {}
    for mapping in ok["versions"]:
        for package, version in sorted((mapping or {}).items()):
            versions.setdefault(package, [])
            if str(version) not in versions[package]:
                versions[package].append(str(version))
    failed = records[records["status"] != "ok"]
    starts = [s for s in records["started_at"] if isinstance(s, str) and s]
    ends = [s for s in records["finished_at"] if isinstance(s, str) and s]
    return Provenance(
        run_ids=list(runs),
        suites=sorted({str(s) for s in records["suite"]}),
        commits=sorted({str(c) for c in ok["git_commit"] if isinstance(c, str) and c}),
        versions=versions,
        devices=sorted({_describe_device(row) for _, row in ok.iterrows()}),
        started=min(starts) if starts else None,
        finished=max(ends) if ends else None,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cells_ok=len(ok),
        cells_failed=[f"{r.task} / {r.model} / seed {r.seed}" for r in failed.itertuples()],
    )


def _reference_rows_for_task(
    task: TaskSection, references: Sequence[Reference], notes: _Footnotes
) -> list[RefRow]:
    rows: dict[str, RefRow] = {}
    for reference in references:
        if reference.task != task.name:
            continue
        row = rows.setdefault(reference.model, RefRow(reference.model))
        value = RefValue(
            reference.value,
            reference.metric,
            reference,
            notes.number(reference.source),
            not _same_split(reference, task.eval_splits),
        )
        if reference.metric in task.metric_keys and reference.metric not in row.values:
            row.values[reference.metric] = value
        else:
            row.extra.append(value)
        if value.footnote not in row.footnotes:
            row.footnotes.append(value.footnote)
    return list(rows.values())


def _overview_references(
    tasks: Sequence[TaskSection], references: Sequence[Reference], notes: _Footnotes, show_glue: bool
) -> list[RefRow]:
    by_model: dict[str, list[Reference]] = {}
    for reference in references:
        by_model.setdefault(reference.model, []).append(reference)
    rows = []
    for model, entries in by_model.items():
        row = RefRow(model)
        for task in tasks:
            base, _ = split_metric(task.primary_metric)
            candidates = [r for r in entries if r.task == task.name]
            exact = [r for r in candidates if r.metric == task.primary_metric]
            similar = [r for r in candidates if split_metric(r.metric)[0] == base]
            chosen = (exact or similar or [None])[0]
            if chosen is not None:
                row.values[task.name] = RefValue(
                    chosen.value,
                    chosen.metric,
                    chosen,
                    notes.number(chosen.source),
                    not _same_split(chosen, task.eval_splits),
                    chosen.metric != task.primary_metric,
                )
        if show_glue:
            dev = {}
            for reference in entries:
                if reference.split == "validation":
                    dev.setdefault(reference.task, {})[reference.metric] = reference.value
            glue = glue_row(dev)  # published rows show only complete GLUE scores
            row.glue9 = glue.glue9 if glue.glue9 and not glue.glue9.partial else None
            row.glue8 = glue.glue8 if glue.glue8 and not glue.glue8.partial else None
            if row.glue9 is not None or row.glue8 is not None:
                for reference in entries:
                    if reference.task in GLUE_TASKS and reference.split == "validation":
                        number = notes.number(reference.source)
                        if number not in row.footnotes:
                            row.footnotes.append(number)
            published = [r for r in entries if r.task == "glue" and r.metric == "glue_score"]
            if published:
                row.published_glue = RefValue(
                    published[0].value, "glue_score", published[0], notes.number(published[0].source), False
                )
        for value in row.values.values():
            if value.footnote not in row.footnotes:
                row.footnotes.append(value.footnote)
        if row.published_glue and row.published_glue.footnote not in row.footnotes:
            row.footnotes.append(row.published_glue.footnote)
        if row.values or row.glue9 is not None or row.published_glue is not None:
            row.footnotes.sort()
            rows.append(row)
    return rows


def build_report(
    records: pd.DataFrame,
    load_predictions: PredictionLoader,
    references: Sequence[Reference] = (),
    title: str = "Leaderboard",
    alpha: float = 0.05,
    resamples: int = 1000,
) -> Report:
    """The report of these records; `records` as `Store.records()` returns them."""
    run_ids = list(dict.fromkeys(str(r) for r in records["run_id"]))
    ok = records[records["status"] == "ok"]
    notes: list[str] = []
    footnotes = _Footnotes()
    specs = {name: _task_spec(name) for name in ok["task"].unique()}
    metric_order = {name: spec.metric_keys() for name, spec in specs.items() if spec is not None}
    entries = pool_seeds(ok, metric_order)
    model_order = list(dict.fromkeys(str(m) for m in ok["model"]))
    colour_of = colours(model_order)

    sections: list[TaskSection] = []
    figures: dict[str, dict] = {}
    for index, name in enumerate(task_order(list(specs))):
        spec = specs[name]
        task_entries = ranked([e for e in entries if e.task == name])
        leader = judge_leader(task_entries, load_predictions, alpha=alpha, resamples=resamples)
        keys = list(metric_order.get(name, []))
        for entry in task_entries:
            keys += [k for k in entry.metrics if k not in keys]
        primary = task_entries[0].primary_metric
        keys = [primary] + [k for k in keys if k != primary]
        section = TaskSection(
            name=name,
            title=task_title(name),
            description=spec.description if spec is not None else "",
            primary_metric=primary,
            metric_keys=keys,
            eval_splits=task_entries[0].eval_splits,
            entries=task_entries,
            references=[],
            leader=leader,
            figures={},
            pareto={},
            memory_kinds=sorted({e.memory_kind for e in task_entries if e.memory_kind}),
        )
        for kind, figure in task_figures(task_title(name), task_entries, colour_of).items():
            figure_id = f"fig-{index}-{kind}"
            figures[figure_id] = figure
            section.figures[kind] = figure_id
            cost = "infer_examples_per_s" if kind == "throughput" else "params_total"
            points = {
                (e.cost[cost], e.primary.mean): e.model
                for e in task_entries
                if e.cost.get(cost) and e.primary.mean is not None
            }
            front = pareto_front(list(points), x_higher_is_better=kind == "throughput")
            section.pareto[kind] = [points[p] for p in front]
        section.references = _reference_rows_for_task(section, references, footnotes)
        sections.append(section)
        for entry in task_entries:
            if entry.mixed_configs:
                notes.append(
                    f"{name} / {entry.model}: seeds pooled from runs with differing settings "
                    "(the same label was used for different configurations)"
                )

    show_glue = any(section.name in GLUE_TASKS for section in sections)
    models = []
    for model in model_order:
        mine = {e.task: e for e in entries if e.model == model}
        glue = glue_row({task: e.metric_means() for task, e in mine.items()}) if show_glue else None
        models.append(ModelRow(model, mine, glue.glue9 if glue else None, glue.glue8 if glue else None))
    overview_refs = _overview_references(sections, references, footnotes, show_glue)
    provenance = _provenance(records, run_ids)
    if provenance.cells_failed:
        notes.append(
            f"{len(provenance.cells_failed)} failed cell(s) are not shown: "
            + "; ".join(provenance.cells_failed)
        )
    return Report(
        title=title,
        tasks=sections,
        models=models,
        references=overview_refs,
        show_glue=show_glue,
        footnotes=footnotes.sources,
        figures=figures,
        provenance=provenance,
        notes=notes,
        alpha=alpha,
    )
