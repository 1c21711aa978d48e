"""Dropout whose mask is cheap to draw on a CPU.

`torch.nn.functional.dropout` on a CPU draws its mask with `bernoulli_`, one call of the
(serial) Mersenne Twister and one float conversion per element. For a small model that is
most of the step: the d_model-32 transformer on IMDb (batch 32, 200 tokens, 2 heads) drops
2.6 million attention weights a step, which took 17 ms of a 39 ms step on 2 threads, and
the softmax ⊙ mask is why attention with dropout cannot use the fused kernel on a CPU at
all. Here a mask element is 16 of the 64 random bits one generator call gives: a 16-bit
uniform integer compared with a threshold, about 6× faster.

The same regularizer: each element is kept with probability 1 − p, where p is rounded to a
multiple of 2⁻¹⁶ (0.1 becomes 0.100006), and the kept ones are scaled by 1 / (1 − p); the
mask comes from torch's seeded generator, so a seed still fixes the run. On other devices
(CUDA's dropout is a fused Philox kernel) this is `F.dropout`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A bool CPU tensor of `shape`, each element True with probability 1 − p (p to 2⁻¹⁶)."""
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # 4 × 16 bits each
    draws = words.view(torch.int16)[:count].view(shape)  # uniform on [-2¹⁵, 2¹⁵)
    return draws >= round(p * _LEVELS) - _LEVELS // 2


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, with `keep_mask` drawing the mask on a CPU.

    The mask is multiplied as floats: one vectorised pass, where `torch.where` or
    `masked_fill` with a bool mask take 3–4× as long."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return x * keep_mask(x.shape, p).to(x.dtype).mul_(1.0 / (1.0 - p))  # x's shape


class Dropout(nn.Dropout):
    """`nn.Dropout` (same parameters, same train/eval switch) drawing its mask with `keep_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_cheap_masks(model: nn.Module) -> None:
    """Swap each plain `nn.Dropout` inside `model` (a Hugging Face model's) for `Dropout`, in
    place. Dropout a model applies functionally (its attention's, inside SDPA) keeps torch's
    masks."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace))
