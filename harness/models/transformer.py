"""A transformer encoder text classifier, written out in full (Vaswani et al. 2017, §3).

One file, read top to bottom: the parameters, then the blocks bottom-up
(positional encoding → attention → feed-forward → encoder block → classifier),
with the shape of every tensor in a comment. Nothing comes from `nn.Transformer*`
so that each equation of the paper is a line here.

- Input: token embedding × sqrt(d_model) + positional encoding (the paper's
  sinusoids, or learned positions) + a segment embedding for pair tasks.
- Encoder block: multi-head scaled dot-product self-attention with its own Q, K
  and V projections and a key-padding mask, then a position-wise feed-forward
  network; each sub-layer has dropout and a residual connection. `norm: post`
  is the paper's `LayerNorm(x + Sublayer(x))`; `norm: pre` is
  `x + Sublayer(LayerNorm(x))` with a final LayerNorm (Xiong et al. 2020),
  which trains more stably without a long warm-up.
- Pooling: the first token (`[CLS]`, which the tokenizer always puts there) or
  the mean over real tokens, then dropout and a linear classifier.

Attention runs with `torch.nn.functional.scaled_dot_product_attention` (the
fused kernel). `reference_attention` below is the paper's formula,
softmax(QKᵀ/sqrt(d_k))V, spelled out; `attention: reference` selects it, and the
tests check that both agree. Training on a CPU with attention dropout also takes
it: no fused CPU kernel drops attention weights (SDPA falls back to the same
formula op by op), and `harness.models.dropout` draws the mask 6× faster.

FLOPs (`TransformerClassifier.flops`): 2 × the multiply-adds of every matrix product, the
attention's QKᵀ and AV included, whichever kernel runs them, so the figure is the same on every
device. With `attention: reference` torch's FLOP counter sees every product and checks it.

Padding invariance: keys at padded positions are masked out of every softmax,
so real tokens never see pads; padded query rows still attend to the real keys
(never an all-masked row, so never NaN) and are ignored by the pooling. The same
text padded to 8 or 64 tokens therefore gives the same logits.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from harness.models.dropout import Dropout, dropout
from harness.models.registry import TaskInfo, register_adapter
from harness.models.scratch import ScratchAdapter, ScratchParams, classifier_output

# ----------------------------------------------------------------------------- parameters


class TransformerParams(ScratchParams):
    d_model: int = Field(default=128, ge=2, description="even, divisible by num_heads")
    num_heads: int = Field(default=4, ge=1)
    num_layers: int = Field(default=2, ge=1)
    d_ff: int = Field(default=512, ge=1, description="inner size of the feed-forward network")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    attention_dropout: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="dropout on the attention weights; None: the same as `dropout`",
    )
    activation: Literal["relu", "gelu"] = "relu"
    norm: Literal["post", "pre"] = "post"
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    pooling: Literal["cls", "mean"] = "mean"
    attention: Literal["fused", "reference"] = "fused"

    @model_validator(mode="after")
    def _shapes(self) -> TransformerParams:
        if self.d_model % self.num_heads:
            raise ValueError("d_model must be divisible by num_heads")
        if self.d_model % 2:
            raise ValueError("d_model must be even (sine and cosine pairs)")
        return self


# ----------------------------------------------------------------------------- input


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model))."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (L, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,): 0, 2, 4, ...
    angle = pos / torch.pow(10000.0, two_i / d_model)  # (L, D/2)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)  # (L, D)
    pe[:, 0::2] = torch.sin(angle)  # (L, D/2) into the even dimensions
    pe[:, 1::2] = torch.cos(angle)  # (L, D/2) into the odd dimensions
    return pe.float()  # (L, D)


class Embeddings(nn.Module):
    """Token embedding × sqrt(d_model) + position + segment (pair tasks), then dropout."""

    def __init__(self, params: TransformerParams, info: TaskInfo):
        super().__init__()
        self.scale = math.sqrt(params.d_model)
        self.tokens = nn.Embedding(info.vocab_size, params.d_model, padding_idx=info.pad_token_id)
        # Init N(0, 1/d_model) so that tokens × sqrt(d_model) have unit variance, as the sinusoids do.
        nn.init.normal_(self.tokens.weight, std=params.d_model**-0.5)
        with torch.no_grad():
            self.tokens.weight[info.pad_token_id].zero_()
        if params.positions == "sinusoidal":
            pe = sinusoidal_positions(info.max_seq_length, params.d_model)  # (L, D)
            self.register_buffer("sinusoids", pe, persistent=False)
            self.learned = None
        else:
            self.learned = nn.Embedding(info.max_seq_length, params.d_model)
            nn.init.normal_(self.learned.weight, std=0.02)
        self.segments = nn.Embedding(2, params.d_model) if info.is_pair else None
        if self.segments is not None:
            nn.init.normal_(self.segments.weight, std=0.02)
        self.dropout = Dropout(params.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]  # (B, T)
        T = ids.size(1)
        x = self.tokens(ids) * self.scale  # (B, T, D)
        if self.learned is None:
            x = x + self.sinusoids[:T]  # (B, T, D) + (T, D)
        else:
            x = x + self.learned.weight[:T]  # (B, T, D) + (T, D)
        if self.segments is not None:
            x = x + self.segments(batch["token_type_ids"])  # (B, T, D)
        return self.dropout(x)  # (B, T, D)


# ----------------------------------------------------------------------------- attention


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d_k)) V, where `mask` is True for the keys that may be attended to.

    q, k, v: (B, H, T, d_k); mask: broadcastable to (B, H, T, T), e.g. (B, 1, 1, T).
    """
    d_k = q.size(-1)
    scores = (q / math.sqrt(d_k)) @ k.transpose(-2, -1)  # (B, H, T, T), scaled on the smaller side
    scores = scores.masked_fill(~mask, float("-inf"))  # (B, H, T, T), masked keys → -inf
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, T), each row sums to 1
    weights = dropout(weights, dropout_p, training=dropout_p > 0)  # (B, H, T, T)
    return weights @ v  # (B, H, T, d_k)


class MultiHeadSelfAttention(nn.Module):
    """Project to Q, K, V, split into heads, attend, concatenate the heads, project back."""

    def __init__(self, params: TransformerParams):
        super().__init__()
        self.num_heads = params.num_heads
        self.d_k = params.d_model // params.num_heads
        self.q_proj = nn.Linear(params.d_model, params.d_model)  # W^Q for all heads at once
        self.k_proj = nn.Linear(params.d_model, params.d_model)  # W^K
        self.v_proj = nn.Linear(params.d_model, params.d_model)  # W^V
        self.out_proj = nn.Linear(params.d_model, params.d_model)  # W^O
        self.dropout_p = params.dropout if params.attention_dropout is None else params.attention_dropout
        self.fused = params.attention == "fused"

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.d_k).transpose(1, 2)  # (B, H, T, d_k)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape  # x: (B, T, D); key_mask: (B, T), True = real token
        q = self.split_heads(self.q_proj(x))  # (B, H, T, d_k)
        k = self.split_heads(self.k_proj(x))  # (B, H, T, d_k)
        v = self.split_heads(self.v_proj(x))  # (B, H, T, d_k)
        mask = key_mask[:, None, None, :]  # (B, 1, 1, T), broadcast over heads and queries
        dropout_p = self.dropout_p if self.training else 0.0
        if self.fused and (dropout_p == 0.0 or q.device.type != "cpu"):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        else:
            out = reference_attention(q, k, v, mask, dropout_p)  # (B, H, T, d_k)
        out = out.transpose(1, 2).reshape(B, T, D)  # (B, T, D), heads concatenated
        return self.out_proj(out)  # (B, T, D)


# ----------------------------------------------------------------------------- feed-forward


class FeedForward(nn.Module):
    """FFN(x) = act(x W1 + b1) W2 + b2, applied to every position alike."""

    def __init__(self, params: TransformerParams):
        super().__init__()
        self.up = nn.Linear(params.d_model, params.d_ff)
        self.act = nn.ReLU() if params.activation == "relu" else nn.GELU()
        self.down = nn.Linear(params.d_ff, params.d_model)
        self.dropout = Dropout(params.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.act(self.up(x)))  # (B, T, d_ff)
        return self.down(h)  # (B, T, D)


# ----------------------------------------------------------------------------- encoder block


class EncoderBlock(nn.Module):
    def __init__(self, params: TransformerParams):
        super().__init__()
        self.pre_norm = params.norm == "pre"
        self.attn = MultiHeadSelfAttention(params)
        self.norm1 = nn.LayerNorm(params.d_model)
        self.ff = FeedForward(params)
        self.norm2 = nn.LayerNorm(params.d_model)
        self.dropout = Dropout(params.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:  # x + Sublayer(LayerNorm(x))
            x = x + self.dropout(self.attn(self.norm1(x), key_mask))  # (B, T, D)
            x = x + self.dropout(self.ff(self.norm2(x)))  # (B, T, D)
        else:  # LayerNorm(x + Sublayer(x)), as in the paper
            x = self.norm1(x + self.dropout(self.attn(x, key_mask)))  # (B, T, D)
            x = self.norm2(x + self.dropout(self.ff(x)))  # (B, T, D)
        return x


# ----------------------------------------------------------------------------- FLOPs


def encoder_flops(tokens: int, d_model: int, d_ff: int, num_layers: int) -> int:
    """Forward FLOPs (2 × multiply-adds) of `num_layers` encoder blocks over T = `tokens` tokens.

    Per block: Q, K, V and output projections 4 · 2·T·D², the feed-forward network 2 · 2·T·D·d_ff,
    and attention QKᵀ (T × T scores of D multiply-adds over all heads) and AV (the same), 2 · 2·T²·D.
    Norms, softmax, dropout and embedding lookups are not matrix products and are not counted.
    """
    T, D = tokens, d_model
    per_block = 8 * T * D * D + 4 * T * D * d_ff + 4 * T * T * D
    return num_layers * per_block


# ----------------------------------------------------------------------------- classifier


class TransformerClassifier(nn.Module):
    def __init__(self, params: TransformerParams, info: TaskInfo):
        super().__init__()
        self.num_labels = info.num_labels
        self.max_len = info.max_seq_length
        self.pooling = params.pooling
        self.embed = Embeddings(params, info)
        self.blocks = nn.ModuleList(EncoderBlock(params) for _ in range(params.num_layers))
        self.final_norm = nn.LayerNorm(params.d_model) if params.norm == "pre" else nn.Identity()
        self.dropout = Dropout(params.dropout)
        self.head = nn.Linear(params.d_model, info.num_labels)
        self.d_model, self.d_ff, self.num_layers = params.d_model, params.d_ff, params.num_layers
        self.out_dim = info.num_labels
        for module in self.modules():  # the paper's (and PyTorch's nn.Transformer's) Linear init
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def flops(self, tokens: int) -> int:
        """Forward FLOPs of one example of `tokens` tokens (T), in nanoGPT's `estimate_flops` manner."""
        head = 2 * self.d_model * self.out_dim
        return encoder_flops(tokens, self.d_model, self.d_ff, self.num_layers) + head

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if batch["input_ids"].size(1) > self.max_len:
            raise ValueError(
                f"sequence of {batch['input_ids'].size(1)} tokens > max_seq_length {self.max_len}"
            )
        key_mask = batch["attention_mask"].bool()  # (B, T), True = real token
        x = self.embed(batch)  # (B, T, D)
        for block in self.blocks:
            x = block(x, key_mask)  # (B, T, D)
        x = self.final_norm(x)  # (B, T, D)
        if self.pooling == "cls":
            pooled = x[:, 0]  # (B, D), the [CLS] position
        else:
            weights = key_mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
            pooled = (x * weights).sum(dim=1) / weights.sum(dim=1)  # (B, D), mean over real tokens
        logits = self.head(self.dropout(pooled))  # (B, C)
        return classifier_output(logits, self.num_labels)  # (B, C) or (B,)


@register_adapter("transformer")
class TransformerAdapter(ScratchAdapter):
    """Transformer encoder from scratch: sinusoidal positions, multi-head attention (Vaswani 2017)."""

    Params = TransformerParams
    width_fields = ("d_model", "d_ff")

    def width_multiple(self, field: str) -> int:
        return math.lcm(self.params.num_heads, 2) if field == "d_model" else 1  # heads, sine pairs

    def build(self, info: TaskInfo) -> nn.Module:
        return TransformerClassifier(self.params, info)
