"""Equal-size comparisons: a from-scratch model's widths chosen so that it meets a budget.

A suite's `budget: {params: [0.25M, 1M, 4M]}` (or `{flops_per_example: [...]}`) runs each
from-scratch model once per value. Each model names two width parameters (`width_fields`:
the embedding width first, then the width of what reads it: filters, hidden size, d_ff), and
the cell, once its vocabulary is known, chooses them so that the model's parameter count (or
forward FLOPs per example at the evaluation split's representative length) is within
±`TOLERANCE` of the budget. Of the widths that meet it, those that balance hitting the budget
against keeping the model's own proportions (the suite's ratio of the two widths) win, so a
small budget shrinks the model rather than deforming it. Sizes are measured on models built on
the `meta` device (shapes, no memory), so every candidate is counted exactly as the real model is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from harness.config import BudgetPoint
from harness.models.registry import Adapter, TaskInfo

TOLERANCE = 0.05  # the largest relative miss of the budget a sized model may have
WINDOW = 4  # embedding widths tried on each side of the one that keeps the model's proportions


class BudgetUnreachable(ValueError):
    """No widths of this model meet the budget within the tolerance (the cell's error)."""


@dataclass(frozen=True)
class Sizing:
    """What a budget chose for one cell (the record's `sizing`)."""

    model: str  # the model's label without its budget: the row of the equal-size table
    kind: str  # "params" or "flops_per_example"
    target: float
    value: float  # the sized model's parameter count or forward FLOPs per example
    widths: dict[str, int]  # the chosen width parameters
    tokens: int | None = None  # the token count FLOPs per example are stated for

    @property
    def error(self) -> float:
        return self.value / self.target - 1

    def to_dict(self) -> dict:
        return asdict(self) | {"error": self.error}


def size_of(adapter: Adapter, info: TaskInfo, kind: str, tokens: int) -> float:
    """The model's parameter count, or forward FLOPs of one `tokens`-token example."""
    with torch.device("meta"):
        model = adapter.build(info)
    if kind == "params":
        return float(sum(p.numel() for p in model.parameters()))
    return float(model.flops(tokens))


def first_above(size: Callable[[int], float], limit: float) -> int:
    """The fewest units (1, 2, ...) whose size exceeds `limit`, for a size that grows with the
    units: doubling, then bisection. 0 when even one unit is over."""
    if size(1) > limit:
        return 0
    low, high = 1, 2
    while size(high) <= limit:
        low, high = high, high * 2
        if high > 2**24:
            raise BudgetUnreachable(f"no width reaches {limit:,.0f}: the size does not grow with it")
    while high - low > 1:  # size(low) <= limit < size(high)
        middle = (low + high) // 2
        low, high = (middle, high) if size(middle) <= limit else (low, middle)
    return high


@dataclass
class Sizer:
    """The search for one cell: sizes of the model at (coarse, fine) widths, each measured once."""

    adapter: Adapter
    info: TaskInfo
    point: BudgetPoint
    tokens: int
    sizes: dict[tuple[int, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fields = self.adapter.width_fields
        self.steps = tuple(self.adapter.width_multiple(name) for name in self.fields)
        base = [getattr(self.adapter.params, name) for name in self.fields]
        self.ratio = base[1] / base[0]  # the model's own proportion of the two widths

    def widths(self, coarse_units: int, fine_units: int) -> dict[str, int]:
        return {self.fields[0]: coarse_units * self.steps[0], self.fields[1]: fine_units * self.steps[1]}

    def size(self, coarse_units: int, fine_units: int) -> float:
        key = (coarse_units, fine_units)
        if key not in self.sizes:
            sized = self.adapter.with_widths(self.widths(*key))
            self.sizes[key] = size_of(sized, self.info, self.point.kind, self.tokens)
        return self.sizes[key]

    def proportional_fine(self, coarse_units: int) -> int:
        """The fine width that keeps the model's proportions at this embedding width, in units."""
        return max(1, round(coarse_units * self.steps[0] * self.ratio / self.steps[1]))

    def fine_within(self, coarse_units: int) -> list[int]:
        """Fine widths whose size is within the tolerance of the budget (an interval, as the size
        grows with the width): the one nearest the model's proportions and the two nearest the
        budget. Empty when none is within it."""
        target = self.point.value

        def size(fine: int) -> float:
            return self.size(coarse_units, fine)

        smallest = max(1, first_above(size, target * (1 - TOLERANCE) - 0.5))  # >= budget × (1 - tol)
        largest = first_above(size, target * (1 + TOLERANCE)) - 1  # <= budget × (1 + tol)
        if smallest > largest:
            return []
        over = first_above(size, target)
        proportional = min(max(self.proportional_fine(coarse_units), smallest), largest)
        return sorted({fine for fine in (proportional, over - 1, over) if smallest <= fine <= largest})

    def cost(self, coarse_units: int, fine_units: int) -> float:
        """How far a fit is from ideal: its miss of the budget in tolerances (5% costs 1) plus how
        far its proportion of the widths is from the model's own in factors of 1.5 (1.5× costs 1)."""
        widths = self.widths(coarse_units, fine_units)
        deformation = abs(math.log(widths[self.fields[1]] / widths[self.fields[0]] / self.ratio))
        miss = abs(self.size(coarse_units, fine_units) / self.point.value - 1)
        return miss / TOLERANCE + deformation / math.log(1.5)


def sized_adapter(
    adapter: Adapter, info: TaskInfo, point: BudgetPoint, tokens: int, model: str
) -> tuple[Adapter, Sizing]:
    """The adapter with widths that meet the budget, and what was chosen; `BudgetUnreachable`
    when none do. The embedding widths tried are those around where the model at its own
    proportions reaches the budget; of the fits, the one of least `Sizer.cost` wins."""
    sizer = Sizer(adapter, info, point, tokens)
    centre = first_above(lambda units: sizer.size(units, sizer.proportional_fine(units)), point.value)
    found = [
        (sizer.cost(coarse, fine), coarse, fine)
        for coarse in range(max(1, centre - WINDOW), centre + WINDOW + 1)
        for fine in sizer.fine_within(coarse)
    ]
    if not found:
        raise BudgetUnreachable(
            f"no {' and '.join(sizer.fields)} of {model} give {point.kind} within ±{TOLERANCE:.0%} of "
            f"{point.value:,.0f} (the smallest model has {sizer.size(1, 1):,.0f}; the vocabulary has "
            f"{info.vocab_size:,} rows)"
        )
    _, coarse, fine = min(found)
    widths = sizer.widths(coarse, fine)
    stated = tokens if point.kind == "flops_per_example" else None
    return adapter.with_widths(widths), Sizing(
        model, point.kind, point.value, sizer.size(coarse, fine), widths, stated
    )
