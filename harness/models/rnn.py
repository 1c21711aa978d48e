"""A bidirectional recurrent text classifier with attention pooling (the RNN lecture).

embedding → bidirectional LSTM or GRU → additive attention over time
(Bahdanau et al. 2015; Yang et al. 2016) → dropout → linear classifier.

Why these pieces:
- Packed sequences (`pack_padded_sequence` with each row's length from the
  attention mask) make the recurrence stop at the last real token, so the
  backward direction starts from the real end of the text, not from pads, and
  no work is spent on padding.
- Attention pooling learns which time steps matter: a learned query vector `v`
  scores every hidden state, `score_t = v · tanh(W h_t + b)`, and the softmax
  over real tokens only (pads get -inf) weights the sum of hidden states. On
  long texts (IMDb) it keeps the evidence of every sentence, where the last
  hidden state would mostly remember the end.

FLOPs (`TextRNN.flops`): 2 × the multiply-adds of the recurrence (every gate of every layer and
direction), the attention pooling and the classifier; torch's FLOP counter does not see the
LSTM/GRU kernels, so the formula is the only complete figure.

Padding invariance: the recurrence never reads a pad and the attention gives
pads exactly zero weight, so the same text padded to 8 or 64 tokens gives the
same logits.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from harness.models.dropout import Dropout
from harness.models.registry import TaskInfo, register_adapter
from harness.models.scratch import InputEmbedding, ScratchAdapter, ScratchParams, classifier_output


class RNNParams(ScratchParams):
    cell: Literal["lstm", "gru"] = "lstm"
    embed_dim: int = Field(default=128, ge=1)
    hidden_size: int = Field(default=128, ge=1, description="per direction")
    num_layers: int = Field(default=1, ge=1)
    bidirectional: bool = True
    dropout: float = Field(
        default=0.3, ge=0, lt=1, description="on embeddings, between layers and before the head"
    )


class AttentionPooling(nn.Module):
    """Additive attention with a learned query: one weighted sum of the hidden states per row."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)  # W, b
        self.query = nn.Linear(dim, 1, bias=False)  # v

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.query(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        scores = scores.masked_fill(~mask, float("-inf"))  # (B, T), pads never chosen
        weights = torch.softmax(scores, dim=-1)  # (B, T), sums to 1 over real tokens
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1)  # (B, H)


class TextRNN(nn.Module):
    def __init__(self, params: RNNParams, info: TaskInfo):
        super().__init__()
        self.num_labels = info.num_labels
        self.embed = InputEmbedding(info.vocab_size, params.embed_dim, info.pad_token_id, info.is_pair)
        recurrent = nn.LSTM if params.cell == "lstm" else nn.GRU
        self.rnn = recurrent(
            params.embed_dim,
            params.hidden_size,
            num_layers=params.num_layers,
            bidirectional=params.bidirectional,
            batch_first=True,
            dropout=params.dropout if params.num_layers > 1 else 0.0,
        )
        out_dim = params.hidden_size * (2 if params.bidirectional else 1)
        self.pool = AttentionPooling(out_dim)
        self.dropout = Dropout(params.dropout)
        self.head = nn.Linear(out_dim, info.num_labels)
        self.gates = 4 if params.cell == "lstm" else 3
        self.embed_dim, self.hidden_size = params.embed_dim, params.hidden_size
        self.num_layers, self.directions = params.num_layers, 2 if params.bidirectional else 1
        self.out_dim = info.num_labels

    def flops(self, tokens: int) -> int:
        """Forward FLOPs of one example of `tokens` tokens (T). Per token, layer and direction a cell
        multiplies its input (E on the first layer, H × directions above) and its last state (H)
        into `gates` × H pre-activations (LSTM 4, GRU 3). Attention pooling projects each state
        (D × D), scores it (D) and sums the weighted states (D); the head is D × C."""
        H, T, D = self.hidden_size, tokens, self.hidden_size * self.directions
        recurrence = 0
        for layer in range(self.num_layers):
            inputs = self.embed_dim if layer == 0 else D
            recurrence += self.directions * T * 2 * self.gates * H * (inputs + H)
        pooling = T * (2 * D * D + 2 * D + 2 * D)
        return recurrence + pooling + 2 * D * self.out_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"].bool()  # (B, T)
        lengths = mask.sum(dim=1).cpu()  # (B,), on the CPU as packing requires
        x = self.dropout(self.embed(batch))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)  # packed (sum of lengths, H)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, T, H)
        pooled = self.dropout(self.pool(h, mask))  # (B, H)
        return classifier_output(self.head(pooled), self.num_labels)  # (B, C) or (B,)


@register_adapter("rnn")
class RNNAdapter(ScratchAdapter):
    """Bidirectional LSTM or GRU over packed sequences, additive attention pooling."""

    Params = RNNParams
    width_fields = ("embed_dim", "hidden_size")

    def build(self, info: TaskInfo) -> nn.Module:
        return TextRNN(self.params, info)
