"""Size and work: parameters, and forward FLOPs per example.

FLOPs are 2 × the multiply-adds of every matrix product (linear layers, convolutions, recurrent
gates, attention scores and weighted sums), from each model's own formula beside its module, so
the figure is the same on every device; torch's FLOP counter is the fallback for a model
without one, and the cross-check in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness.batching import Encoded, collate
from harness.train import to_device


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def representative_length(data: Encoded) -> int:
    """The token count of the real row whose length is closest to the split's mean length: the
    length a FLOPs-per-example figure is stated for (the record's `flops_tokens`)."""
    lengths = data.lengths
    return int(lengths[int(np.argmin(np.abs(lengths - lengths.mean())))])


@dataclass(frozen=True)
class FlopsFigure:
    flops: float | None  # forward FLOPs (2 × multiply-adds) of one example of `tokens` tokens
    tokens: int
    note: str | None = None  # set when no formula gave the figure


def forward_flops(model: nn.Module, data: Encoded) -> FlopsFigure:
    """Forward FLOPs of one example of the split's representative length, from the model's own
    analytic formula (`model.flops(tokens)`, beside its module): the same figure on every device.
    A model whose work depends on the tokens themselves (the sparse `tfidf` model: one product
    per distinct n-gram it knows) counts it on the split's representative row (`row_flops`).

    A model without a formula (another package's adapter) is counted by torch's FLOP counter on
    the CPU, which sees matrix products and convolutions but not fused attention or recurrent
    kernels; the record's notes say so."""
    tokens = representative_length(data)
    of_row = getattr(model, "row_flops", None)  # a model whose work depends on which tokens, not how many
    if of_row is not None:
        row = int(np.flatnonzero(data.lengths == tokens)[0])
        return FlopsFigure(float(of_row(collate(data, np.array([row])))), tokens)
    formula = getattr(model, "flops", None)
    if formula is not None:
        value = formula(tokens)
        note = None if value is not None else "no FLOPs formula for this architecture: FLOPs left empty"
        return FlopsFigure(None if value is None else float(value), tokens, note)
    return FlopsFigure(
        counted_flops(model, data, tokens),
        tokens,
        "FLOPs counted by torch's FLOP counter (fused attention and recurrent kernels are not "
        "seen); give the module a flops(tokens) method for a complete figure",
    )


def flops_by_length(model: nn.Module, max_tokens: int) -> np.ndarray | None:
    """Forward FLOPs of one example of each token count 0..max_tokens, from the model's formula
    (what training FLOPs are summed from); None for a model without one."""
    formula = getattr(model, "flops", None)
    if formula is None or formula(1) is None:
        return None
    return np.array([float(formula(tokens)) for tokens in range(max_tokens + 1)])


@torch.no_grad()
def counted_flops(model: nn.Module, data: Encoded, tokens: int) -> float | None:
    """torch's FLOP counter over one forward pass of the first real row of `tokens` tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    row = int(np.flatnonzero(data.lengths == tokens)[0])
    device = next(model.parameters()).device
    batch = to_device(collate(data, np.array([row])), device)
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(batch)
    total = counter.get_total_flops()
    return float(total) if total > 0 else None
