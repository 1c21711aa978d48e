"""Records (+ predictions, references) → one `Report`: everything the templates show.

Every fact about a task comes from the records themselves (each holds its cell's spec):
its title, its metrics, where the suite listed it, and the group score it counts in.
So a task defined beside a suite reports under its own title, and a report of an old
store shows what that run ran, not what today's YAML on disk says.
No formatting happens here, only numbers and names; `render.py` turns them into text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from pydantic import ValidationError

from harness.config import GroupSpec, TaskSpec, with_point
from harness.report.calibration import COVERAGES, Calibration, pooled_calibration, reliability_figure
from harness.report.curves import (
    SHARES,
    Curve,
    CurvePoint,
    curve_figure,
    curve_sizes,
    largest_sizes,
    learning_curves,
    reach_table,
)
from harness.report.deployed import DeployedTable, deployed_figure, deployed_table
from harness.report.equal_size import EqualSize, equal_size_table, size_race_sentences
from harness.report.examples import TaskExamples, task_examples
from harness.report.findings import task_findings
from harness.report.gaps import TOLERANCE, Gap, task_gaps
from harness.report.leader import (
    LeaderTest,
    PredictionLoader,
    common_rows,
    have_logits,
    judge_leader,
    ranked,
    seed_frames,
)
from harness.report.plots import colours, pareto_front, task_figures
from harness.report.references import Reference
from harness.report.robustness import RobustnessTable, robustness_figure, robustness_table
from harness.report.scores import (
    Entry,
    GroupScore,
    cpu_hours,
    gpu_hours,
    group_scores,
    latest_per_seed,
    machine_name,
    pool_seeds,
    rerun_lines,
)
from harness.report.slices import SliceTable, task_slices
from harness.report.stats import example_standard_error
from harness.report.trajectories import AXES, Trajectories, task_trajectories, trajectory_figure
from harness.report.tuning import TunedModel, select_points
from harness.samples import TaskRows
from harness.tasks.metrics import get_metric, metric_names, split_metric_key


@dataclass
class TaskFacts:
    """What the records say of one task."""

    name: str
    title: str
    description: str
    metric_keys: list[str]
    order: int  # where the suite listed it (the smallest over the records)
    group: GroupSpec | None
    problem_type: str = "classification"


def task_facts(records: pd.DataFrame) -> dict[str, TaskFacts]:
    """Per task, its facts from the records' own specs, in the order the suites listed them."""
    facts: dict[str, TaskFacts] = {}
    for row in records.itertuples():
        config = row.config or {}
        order = int(config.get("task_order", 0) or 0)
        known = facts.get(str(row.task))
        if known is not None:
            known.order = min(known.order, order)
            continue
        try:
            spec = TaskSpec.model_validate(config.get("task") or {})
        except ValidationError:  # a record from before task specs were stored whole
            spec = None
        group = config.get("group")
        facts[str(row.task)] = TaskFacts(
            name=str(row.task),
            title=spec.display_title if spec else str(row.task),
            description=spec.description if spec else "",
            metric_keys=spec.metric_keys() if spec else [],
            order=order,
            group=GroupSpec.model_validate(group) if group else None,
            problem_type=spec.problem_type if spec else "classification",
        )
    return dict(sorted(facts.items(), key=lambda item: (item[1].order, item[0])))


@dataclass
class GroupView:
    """A group score's columns in the overview, and its rule in words."""

    spec: GroupSpec
    score_names: list[str]

    @property
    def rule(self) -> str:
        parts = [
            f"{task}: {' + '.join(metrics)}"
            for task, metrics in self.spec.members.items()
            if len(metrics) > 1
        ]
        averaged = f" ({'; '.join(parts)})" if parts else ""
        return (
            f"{self.spec.title} score: each task's metrics are averaged first{averaged}, then the tasks; "
            + "; ".join(f"{name} over {', '.join(self.spec.scores[name])}" for name in self.score_names)
        )


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
    scores: dict[str, GroupScore] = field(default_factory=dict)  # score name → complete scores only
    published: dict[str, RefValue] = field(default_factory=dict)  # score name → the published score


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
    deployed: DeployedTable | None = None
    calibration: list[Calibration] = field(default_factory=list)  # classification tasks with logits
    variance: dict[str, Variance] = field(default_factory=dict)  # model → where its interval comes from
    curves: list[Curve] = field(default_factory=list)
    curve_sizes: list[CurvePoint] = field(default_factory=list)  # the table's columns
    reach: list[tuple[str, float | None, list[CurvePoint | None]]] = field(default_factory=list)
    tuned: list[TunedModel] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # ours against the published numbers we stand for
    examples: TaskExamples | None = None  # classification: confusion matrices, where models differ
    slices: SliceTable | None = None  # each model's primary metric on slices of the evaluation rows
    robustness: RobustnessTable | None = None  # the suite's probes, per model
    findings: list[str] = field(default_factory=list)  # what the tables above say, in sentences
    trajectories: Trajectories | None = None  # the metric against training time and FLOPs
    equal_size: EqualSize | None = None  # a budgeted suite: each model family at each size


@dataclass
class Variance:
    """The standard error of a model's score from its seeds and from its evaluation examples."""

    seeds: float | None  # s / sqrt(n) over seeds
    examples: float | None  # bootstrap over examples of the seed-averaged score

    @property
    def dominant(self) -> str:
        if self.seeds is None or self.examples is None:
            return ""
        return "seeds" if self.seeds > self.examples else "examples"


@dataclass
class ModelRow:
    model: str
    entries: dict[str, Entry]  # task → entry
    scores: dict[str, GroupScore]  # score name (GLUE-9) → score


@dataclass
class Hardware:
    """One machine description and the cells that ran on it (a run may span machines)."""

    device: str
    cells: int
    where: list[str]  # per task: "sst2: cnn (seeds 0, 1, 2), minilm-l6 (seed 0)"


@dataclass
class Provenance:
    run_ids: list[str]
    suites: list[str]
    code: list[str]  # each code version that made shown figures, with its cells: one, or a mix
    versions: dict[str, list[str]]
    hardware: list[Hardware]
    started: str | None
    finished: str | None
    generated: str
    cells_ok: int
    cells_failed: list[str]
    wall_hours: float  # the time during which any cell ran (a run that spans sessions: their sum)
    cell_hours: float  # Σ cell wall time
    cpu_hours: float  # Σ cell wall time × threads, CPU cells
    gpu_hours: float  # Σ cell wall time, CUDA cells


@dataclass
class Report:
    title: str
    tasks: list[TaskSection]
    models: list[ModelRow]
    references: list[RefRow]  # overview rows
    groups: list[GroupView]
    footnotes: list[str]  # source texts; footnote n is footnotes[n - 1]
    figures: dict[str, dict]
    provenance: Provenance
    notes: list[str]
    alpha: float
    shares: tuple[float, ...] = SHARES
    gap_tolerance: float = TOLERANCE
    coverages: tuple[float, ...] = COVERAGES


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


NATIVE_BF16_FLAGS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}


def _describe_device(row: pd.Series) -> str:
    """`cpu (AMD EPYC), 2 thread(s), native bf16: AVX512-BF16`: what a cell's speed depends on."""
    parts = [machine_name(row) or "?"]
    threads = row.get("threads")
    if threads is not None and not (isinstance(threads, float) and math.isnan(threads)):
        parts.append(f"{int(threads)} thread(s)")
    found = row.get("capabilities")
    if isinstance(found, dict) and row.get("device") == "cpu":
        native = [name for flag, name in NATIVE_BF16_FLAGS.items() if found.get(flag)]
        parts.append(f"native bf16: {' + '.join(native) if native else 'none'}")
    return ", ".join(parts)


def _hardware(ok: pd.DataFrame) -> list[Hardware]:
    """Which cells ran on which machine, per task and model, so that a speed is read beside its
    hardware."""
    described = ok.assign(_device=[_describe_device(row) for _, row in ok.iterrows()])
    rows = []
    for device, cells in described.groupby("_device", sort=True):
        where = []
        for task, of_task in cells.groupby("task", sort=False):
            models = []
            labels = pd.Series(
                [with_point(m, p) for m, p in zip(of_task["model"], of_task["sweep_point"], strict=True)],
                index=of_task.index,
            )
            for model, of_model in of_task.groupby(labels, sort=False):
                seeds = sorted({int(seed) for seed in of_model["seed"]})
                models.append(f"{model} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})")
            where.append(f"{task}: {', '.join(models)}")
        rows.append(Hardware(str(device), len(cells), where))
    return rows


def _busy_hours(records: pd.DataFrame) -> float:
    """The length of the union of the cells' [started, finished] intervals, in hours: the wall
    time it took to produce these results, without the gaps between sessions."""
    starts = pd.to_datetime(records["started_at"], errors="coerce", utc=True)
    ends = pd.to_datetime(records["finished_at"], errors="coerce", utc=True)
    spans = sorted(
        (start, end) for start, end in zip(starts, ends, strict=True) if pd.notna(start) and end >= start
    )
    busy, reach = 0.0, None
    for start, end in spans:
        if reach is None or start > reach:
            busy, reach = busy + (end - start).total_seconds(), end
        elif end > reach:
            busy, reach = busy + (end - reach).total_seconds(), end
    return busy / 3600


def _code_versions(ok: pd.DataFrame) -> list[str]:
    """`source 6dd92043ee74cc1c (commit 06b46bf, dirty): 12 cells` per code version, records from
    before code fingerprints as `unrecorded source`."""
    counts: dict[str, int] = {}
    for row in ok.itertuples():
        source = getattr(row, "code_hash", None)
        commit = row.git_commit if isinstance(row.git_commit, str) and row.git_commit else None
        dirty = getattr(row, "git_dirty", None)
        label = f"source {source}" if isinstance(source, str) and source else "unrecorded source"
        if commit:
            label += f" (commit {commit[:7]}{', dirty' if dirty == 1 else ''})"
        counts[label] = counts.get(label, 0) + 1
    return [f"{label}: {n} cell{'s' if n > 1 else ''}" for label, n in sorted(counts.items())]


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
        code=_code_versions(ok),
        versions=versions,
        hardware=_hardware(ok),
        started=min(starts) if starts else None,
        finished=max(ends) if ends else None,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cells_ok=len(ok),
        cells_failed=[f"{r.task} / {r.model} / seed {r.seed}" for r in failed.itertuples()],
        wall_hours=_busy_hours(records),
        cell_hours=float(pd.to_numeric(records["wall_seconds"], errors="coerce").fillna(0).sum()) / 3600,
        cpu_hours=cpu_hours(records),
        gpu_hours=gpu_hours(records),
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
    tasks: Sequence[TaskSection], references: Sequence[Reference], notes: _Footnotes, groups: list[GroupView]
) -> list[RefRow]:
    by_model: dict[str, list[Reference]] = {}
    for reference in references:
        by_model.setdefault(reference.model, []).append(reference)
    rows = []
    for model, entries in by_model.items():
        row = RefRow(model)
        for task in tasks:
            base, _ = split_metric_key(task.primary_metric)
            candidates = [r for r in entries if r.task == task.name]
            exact = [r for r in candidates if r.metric == task.primary_metric]
            similar = [r for r in candidates if split_metric_key(r.metric)[0] == base]
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
        dev: dict[str, dict[str, float]] = {}
        for reference in entries:
            if reference.split == "validation":
                dev.setdefault(reference.task, {})[reference.metric] = reference.value
        for view in groups:
            scores = group_scores(view.spec, dev)  # published rows show only complete scores
            complete = {name: score for name, score in scores.items() if not score.partial}
            row.scores.update(complete)
            if complete:
                for reference in entries:
                    if reference.task in view.spec.members and reference.split == "validation":
                        number = notes.number(reference.source)
                        if number not in row.footnotes:
                            row.footnotes.append(number)
            published = [r for r in entries if r.task == view.spec.name]
            if published:
                first = published[0]
                row.published[view.score_names[0]] = RefValue(
                    first.value, first.metric, first, notes.number(first.source), False
                )
        for value in row.values.values():
            if value.footnote not in row.footnotes:
                row.footnotes.append(value.footnote)
        for value in row.published.values():
            if value.footnote not in row.footnotes:
                row.footnotes.append(value.footnote)
        if row.values or row.scores or row.published:
            row.footnotes.sort()
            rows.append(row)
    return rows


def _confidence(section: TaskSection, classification: bool, load: PredictionLoader, resamples: int) -> None:
    """Calibration (classification, from stored logits) and the variance split of each entry."""
    base, split = split_metric_key(section.primary_metric)
    bootstrappable = base in metric_names() and get_metric(base).resampled is not None
    for entry in section.entries:
        frames = seed_frames(entry, split, load)
        if isinstance(frames, str) or not frames:
            continue
        if classification and have_logits(frames):
            per_seed = [(np.stack(f["logits"].to_numpy()), f["label"].to_numpy()) for f in frames]
            section.calibration.append(pooled_calibration(entry.model, per_seed))
        if not bootstrappable:
            continue
        aligned = common_rows(frames)
        if len(aligned[0]):
            predictions = [frame["prediction"].to_numpy() for frame in aligned]
            examples = example_standard_error(
                base, aligned[0]["label"].to_numpy(), predictions, resamples=resamples
            )
            section.variance[entry.model] = Variance(entry.primary.standard_error, examples)


def _cached(load: PredictionLoader) -> PredictionLoader:
    """Each cell's predictions are read once, however many tables use them."""
    cache: dict[tuple[str, str], pd.DataFrame | None] = {}

    def cached(run_id: str, cell_id: str) -> pd.DataFrame | None:
        if (run_id, cell_id) not in cache:
            cache[run_id, cell_id] = load(run_id, cell_id)
        return cache[run_id, cell_id]

    return cached


def build_report(
    records: pd.DataFrame,
    load_predictions: PredictionLoader,
    references: Sequence[Reference] = (),
    title: str = "Leaderboard",
    alpha: float = 0.05,
    resamples: int = 1000,
    task_rows: Callable[[str], TaskRows | str] | None = None,
) -> Report:
    """The report of these records; `records` as `Store.records()` returns them. `task_rows`
    gives a task's evaluation texts for the example-level tables (`harness/samples.py`)."""
    run_ids = list(dict.fromkeys(str(r) for r in records["run_id"]))
    records, superseded = latest_per_seed(records)
    reruns = rerun_lines(records, superseded)
    ok = records[records["status"] == "ok"]
    facts = task_facts(ok)
    metric_order = {name: fact.metric_keys for name, fact in facts.items()}
    chosen, tuned = select_points(ok)  # a swept model: the records of its selected point
    shown = largest_sizes(chosen)  # a learning curve: its largest size; one variant per label
    entries = pool_seeds(shown, metric_order)
    model_order = list(dict.fromkeys(str(m) for m in ok["model"]))
    parts = _SectionParts(
        chosen=chosen,
        shown=shown,
        tuned=tuned,
        model_order=model_order,
        colour_of=colours(model_order),
        load_predictions=_cached(load_predictions),
        references=references,
        task_rows=task_rows,
        alpha=alpha,
        resamples=resamples,
    )
    if reruns:
        parts.notes.append(
            f"{len(superseded)} record(s) of a (task, variant, seed) that ran again are left out: the report "
            "shows the latest record of each (an ok one before a failed one); the primary metric before → "
            "shown: " + "; ".join(reruns)
        )
    sections = [
        parts.section(index, fact, [e for e in entries if e.task == name])
        for index, (name, fact) in enumerate(facts.items())
    ]
    # a group score needs two of its tasks: over one it would repeat that task's own column
    specs = {
        fact.group.name: fact.group
        for fact in facts.values()
        if fact.group is not None and len(set(fact.group.members) & set(facts)) > 1
    }
    groups = [GroupView(spec, list(spec.scores)) for spec in specs.values()]
    provenance = _provenance(records, run_ids)
    return Report(
        title=title,
        tasks=sections,
        models=_model_rows(entries, model_order, groups),
        references=_overview_references(sections, references, parts.footnotes, groups),
        groups=groups,
        footnotes=parts.footnotes.sources,
        figures=parts.figures,
        provenance=provenance,
        notes=parts.notes + _provenance_notes(provenance),
        alpha=alpha,
    )


def _model_rows(
    entries: Sequence[Entry], model_order: Sequence[str], groups: Sequence[GroupView]
) -> list[ModelRow]:
    """The overview's rows: each model's entries by task and its group scores."""
    rows = []
    for model in model_order:
        mine = {e.task: e for e in entries if e.model == model}
        scores: dict[str, GroupScore] = {}
        for view in groups:
            scores.update(group_scores(view.spec, {task: e.metric_means() for task, e in mine.items()}))
        rows.append(ModelRow(model, mine, scores))
    return rows


def _provenance_notes(provenance: Provenance) -> list[str]:
    notes = []
    if len(provenance.code) > 1:
        notes.append(
            f"these figures were made by {len(provenance.code)} code versions: {'; '.join(provenance.code)}"
        )
    if provenance.cells_failed:
        notes.append(
            f"{len(provenance.cells_failed)} failed cell(s) are not shown: "
            + "; ".join(provenance.cells_failed)
        )
    return notes


@dataclass
class _SectionParts:
    """Builds each task's section, part by part, from what every section shares: the records
    shown, the statistics' settings, and the figures, notes and footnotes the sections add to
    (figure ids are report-wide: `fig-<task index>-<kind>`)."""

    chosen: pd.DataFrame  # a swept model's selected point, at every training size
    shown: pd.DataFrame  # one variant per label: the records the tables show
    tuned: list[TunedModel]
    model_order: list[str]
    colour_of: dict[str, str]
    load_predictions: PredictionLoader
    references: Sequence[Reference]
    task_rows: Callable[[str], TaskRows | str] | None
    alpha: float
    resamples: int
    footnotes: _Footnotes = field(default_factory=_Footnotes)
    figures: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def section(self, index: int, fact: TaskFacts, entries: list[Entry]) -> TaskSection:
        name = fact.name
        task_entries = ranked(entries)
        task_shown = self.shown[self.shown["task"] == name]
        section = self._tables(fact, task_entries)
        self._cost_figures(section, index)
        self._deployed(section, index, task_shown)
        _confidence(section, fact.problem_type == "classification", self.load_predictions, self.resamples)
        if section.calibration:
            self._keep(
                section,
                index,
                "reliability",
                reliability_figure(fact.title, section.calibration, self.colour_of),
            )
        self._learning(section, index, fact.title, task_shown)
        section.tuned = [table for table in self.tuned if table.task == name]
        self._gaps(section)
        section.references = _reference_rows_for_task(section, self.references, self.footnotes)
        self._why(section, index, fact, task_shown)
        self._entry_notes(section)
        return section

    def _keep(self, section: TaskSection, index: int, kind: str, figure: dict | None) -> None:
        """Keep a section's figure (none: nothing to plot) under its report-wide id."""
        if figure is not None:
            self.figures[f"fig-{index}-{kind}"] = figure
            section.figures[kind] = f"fig-{index}-{kind}"

    def _tables(self, fact: TaskFacts, task_entries: list[Entry]) -> TaskSection:
        """The section's frame: its ranked entries, their metric columns and the leader test."""
        primary = task_entries[0].primary_metric
        keys = list(fact.metric_keys)
        for entry in task_entries:
            keys += [k for k in entry.metrics if k not in keys]
        return TaskSection(
            name=fact.name,
            title=fact.title,
            description=fact.description,
            primary_metric=primary,
            metric_keys=[primary] + [k for k in keys if k != primary],
            eval_splits=task_entries[0].eval_splits,
            entries=task_entries,
            references=[],
            leader=judge_leader(
                task_entries, self.load_predictions, alpha=self.alpha, resamples=self.resamples
            ),
            figures={},
            pareto={},
            memory_kinds=sorted({e.memory_kind for e in task_entries if e.memory_kind}),
        )

    def _cost_figures(self, section: TaskSection, index: int) -> None:
        """Accuracy against inference throughput and against parameters, each with its Pareto front."""
        for kind, figure in task_figures(section.title, section.entries, self.colour_of).items():
            self._keep(section, index, kind, figure)
            cost = "infer_examples_per_s" if kind == "throughput" else "params_total"
            points = {
                (e.cost[cost], e.primary.mean): e.model
                for e in section.entries
                if e.cost.get(cost) and e.primary.mean is not None
            }
            front = pareto_front(list(points), x_higher_is_better=kind == "throughput")
            section.pareto[kind] = [points[p] for p in front]

    def _deployed(self, section: TaskSection, index: int, task_shown: pd.DataFrame) -> None:
        """The deployed backends' table and figure, with a note for each backend that loses points."""
        deployed = section.deployed = deployed_table(task_shown, section.primary_metric, self.model_order)
        if deployed is None:
            return
        self.notes += [f"{section.name} deployed table / {note}" for note in deployed.notes]
        figure = deployed_figure(section.title, deployed, self.colour_of)
        if figure is not None:
            self._keep(section, index, "deployed", figure)
            section.pareto["deployed"] = deployed.pareto
        for row in deployed.rows:
            if row.flagged:
                self.notes.append(
                    f"{section.name} / {row.model}: {row.backend} loses {-row.delta:.1f} points of "
                    f"{section.primary_metric} against eager (tolerance {deployed.tolerance})"
                )

    def _learning(self, section: TaskSection, index: int, title: str, task_shown: pd.DataFrame) -> None:
        """Learning curves (training sizes), trajectories (time and FLOPs) and the equal-size table."""
        section.curves = learning_curves(self.chosen, section.name, self.model_order)
        if section.curves:
            section.reach = reach_table(section.curves, section.primary_metric)
            section.curve_sizes = curve_sizes(section.curves)
            self._keep(
                section,
                index,
                "curve",
                curve_figure(title, section.primary_metric, section.curves, self.colour_of),
            )
        models = [e.model for e in section.entries]
        section.trajectories = task_trajectories(self.shown, section.name, models)
        if section.trajectories is not None:
            self.notes += [f"{section.name} trajectories / {note}" for note in section.trajectories.notes]
            for axis in AXES:
                self._keep(
                    section, index, axis, trajectory_figure(title, section.trajectories, axis, self.colour_of)
                )
        section.equal_size = equal_size_table(
            task_shown, section.entries, self.load_predictions, self.alpha, self.resamples
        )
        if section.equal_size is not None and section.trajectories is not None:
            races = section.trajectories.races
            section.trajectories.sentences += size_race_sentences(races, section.equal_size.sizes())

    def _gaps(self, section: TaskSection) -> None:
        """Each model against the published numbers it stands for; an unexplained gap is a note."""
        section.gaps = task_gaps(self.shown, section.entries, self.references, section.name)
        for gap in section.gaps:
            if gap.unexplained:
                self.notes.append(
                    f"{section.name} / {gap.model}: {gap.delta:+.1f} points against {gap.counterpart} "
                    f"({gap.theirs:.1f}), and nothing explains it: a bug until shown otherwise"
                )

    def _why(self, section: TaskSection, index: int, fact: TaskFacts, task_shown: pd.DataFrame) -> None:
        """Why a model wins: examples, slices, robustness probes, and the findings they add up to."""
        rows = (
            self.task_rows(fact.name)
            if self.task_rows is not None
            else "the report was not given the task's data"
        )
        if fact.problem_type == "classification":
            names = next((n for n in task_shown["label_names"] if n), None)
            split = split_metric_key(section.primary_metric)[1]
            section.examples = task_examples(section.entries, self.load_predictions, rows, split, names)
        else:
            section.examples = TaskExamples(
                note="confusion matrices and right-or-wrong rows need classes; this task predicts a score "
                "(its rows are in `harness export RUN --samples`)"
            )
        section.slices = task_slices(section.entries, self.load_predictions, rows, self.alpha, self.resamples)
        ranked_models = [entry.model for entry in section.entries]
        section.robustness = robustness_table(task_shown, ranked_models, section.primary_metric)
        if section.robustness is not None:
            self._keep(
                section,
                index,
                "robustness",
                robustness_figure(fact.title, section.robustness, self.colour_of),
            )
        section.findings = task_findings(section.examples, section.slices, section.robustness, ranked_models)

    def _entry_notes(self, section: TaskSection) -> None:
        for entry in section.entries:
            if entry.mixed_configs:
                self.notes.append(
                    f"{section.name} / {entry.model}: seeds pooled from runs with differing settings "
                    "(the same label was used for different configurations)"
                )
            if entry.cost_basis:
                self.notes.append(f"{section.name} / {entry.model}: {entry.cost_basis}")
