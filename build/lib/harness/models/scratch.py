"""What the from-scratch models share: a vocabulary trained on the task, and input embeddings.

A pair task reaches these models as one sequence, `[CLS] a [SEP] b [SEP]`, with
segment ids 0/1; `InputEmbedding` adds a learned segment vector per token so the
model can tell the two texts apart (as BERT does).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.config import TrainingSettings
from harness.models.registry import Adapter
from harness.tasks.data import Examples
from harness.vocab import VocabSettings, vocab_tokenizer


class ScratchParams(VocabSettings):
    """Vocabulary settings; each from-scratch model adds its own layer sizes."""


class ScratchAdapter(Adapter):
    params: ScratchParams

    def tokenizer(self, train: Examples, training: TrainingSettings):
        vocab = VocabSettings(**{k: getattr(self.params, k) for k in VocabSettings.model_fields})
        return vocab_tokenizer(train.texts(), train.fingerprint(), vocab)


class InputEmbedding(nn.Module):
    """Token embedding plus, for pair tasks, a segment embedding; padding rows are zero.

    `init_range` starts both tables uniform in ±init_range instead of PyTorch's N(0, 1).
    Why it matters: Adam moves a weight by about the learning rate per step, so a 1e-3
    step barely changes an N(0, 1) vector, and rare words stay near their random start.
    """

    def __init__(
        self, vocab_size: int, dim: int, pad_token_id: int, is_pair: bool, init_range: float | None = None
    ):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=pad_token_id)
        self.segments = nn.Embedding(2, dim) if is_pair else None
        if init_range is not None:
            for table in (t for t in (self.tokens, self.segments) if t is not None):
                nn.init.uniform_(table.weight, -init_range, init_range)
            with torch.no_grad():
                self.tokens.weight[pad_token_id].zero_()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.tokens(batch["input_ids"])  # (B, T, D)
        if self.segments is not None:
            x = x + self.segments(batch["token_type_ids"])  # (B, T, D)
        return x * batch["attention_mask"].unsqueeze(-1).to(x.dtype)  # (B, T, D), pads = 0


def classifier_output(logits: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(B, C) logits for classification; (B,) scores for regression (num_labels == 1)."""
    return logits.squeeze(-1) if num_labels == 1 else logits
