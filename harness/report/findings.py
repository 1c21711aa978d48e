"""What a task's tables say, in sentences written from their own numbers.

Each sentence states one figure the section shows, with the test that backs it: the leader's
discordant rows against each other model (McNemar), the slices on which a model is significantly
worse than its own score (permutation test, Holm), the slice where the leader's lead is widest,
and the probe that costs each model most. Nothing is claimed that the section does not show;
a claim without a significant test behind it is worded as a difference, not as a finding.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.examples import TaskExamples
from harness.report.robustness import RobustnessTable
from harness.report.slices import SliceTable


def _p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def example_findings(examples: TaskExamples | None) -> list[str]:
    found = []
    for pair in examples.differences if examples else []:
        verdict = "a significant difference" if pair.p_value < 0.05 else "not a significant difference"
        found.append(
            f"Where {pair.model_a} and {pair.model_b} disagree, {pair.model_a} is right on {pair.a_only:,} "
            f"rows and {pair.model_b} on {pair.b_only:,} (McNemar {_p(pair.p_value)}: {verdict})."
        )
    return found


def slice_findings(slices: SliceTable | None, leader: str | None) -> list[str]:
    if slices is None or not slices.names:
        return []
    found = []
    for model in slices.models:
        worse = [
            (name, cells[model])
            for name, cells in slices.cells.items()
            if model in cells and cells[model].worse
        ]
        if worse:
            listed = "; ".join(
                f"{name} ({cell.gap:+.1f})" for name, cell in sorted(worse, key=lambda w: w[1].gap)
            )
            found.append(f"{model} is significantly worse than its own {slices.metric} on: {listed}.")
        elif model == leader:
            found.append(f"{model} is significantly worse on no slice.")
    found += _widest_leads(slices, leader)
    return found


def _widest_leads(slices: SliceTable, leader: str | None) -> list[str]:
    """For each other model: the slice where the leader's lead over it is widest, against its
    lead on the whole split (a difference of means; the per-slice tests are in the table)."""
    found = []
    for model in slices.models:
        if model == leader or leader not in slices.overall or model not in slices.overall:
            continue
        overall = slices.overall[leader] - slices.overall[model]
        leads = [
            (cells[leader].mean - cells[model].mean, name)
            for name, cells in slices.cells.items()
            if leader in cells
            and model in cells
            and not cells[leader].too_small
            and not cells[model].too_small
        ]
        if leads:
            lead, name = max(leads)
            found.append(
                f"{leader}'s lead over {model} is widest on {name}: {lead:+.1f} points "
                f"({overall:+.1f} on the whole split)."
            )
    return found


def probe_findings(robustness: RobustnessTable | None) -> list[str]:
    if robustness is None:
        return []
    found = []
    for model in robustness.models:
        changes = [
            (cell.change.mean, probe)
            for probe, cell in robustness.cells[model].items()
            if cell.change is not None and cell.change.mean is not None
        ]
        parts = []
        if changes:
            change, probe = min(changes)
            parts.append(f"{probe} costs it most ({change:+.1f} points of {robustness.metric})")
        worst = robustness.worst_case.get(model)
        if worst is not None:
            parts.append(f"its worst case over the label-keeping probes is {worst.mean:.1f}")
        negation = robustness.cells[model].get("negation")
        if negation is not None and negation.moved is not None:
            parts.append(
                "negating a sentence lowers its confidence in the old label "
                f"{negation.moved.mean:.0f}% of the time"
            )
        if parts:
            found.append(f"{model}: " + "; ".join(parts) + ".")
    return found


def task_findings(
    examples: TaskExamples | None,
    slices: SliceTable | None,
    robustness: RobustnessTable | None,
    ranked: Sequence[str],
) -> list[str]:
    leader = ranked[0] if ranked else None
    return example_findings(examples) + slice_findings(slices, leader) + probe_findings(robustness)
