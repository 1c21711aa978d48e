"""A vocabulary trained on the task's training texts, for models that start from scratch.

WordPiece pieces (trained by `harness.wordpiece`, deterministically) or whole words (tokenizers'
WordLevel trainer), as a Hugging Face `tokenizers` model with BERT's normalizer and pre-tokenizer,
wrapped as a `PreTrainedTokenizerFast` so that from-scratch and pretrained models go through one
encoding path: `[CLS] a [SEP]` for one text, `[CLS] a [SEP] b [SEP]` with segment ids 0/1 for a
pair. Cached on disk by (training-data fingerprint, settings, trainer): the second run of a suite
loads the file instead of retraining; the same texts give the same vocabulary on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.wordpiece import PREFIX, train_wordpiece_vocab

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CACHE_ENV = "HARNESS_CACHE_DIR"
TRAINER = "harness.wordpiece/1"  # part of the cache key: a vocabulary another trainer made is not reused


class VocabSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(default=20000, ge=100)
    tokenization: Literal["wordpiece", "word"] = "wordpiece"
    lowercase: bool = True
    min_frequency: int = Field(default=2, ge=1)
    strip_html_breaks: bool = Field(
        default=True,
        description="read `<br />` (IMDb's line breaks) as a space, not as four word pieces",
    )


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harness"
    return Path(os.environ.get(CACHE_ENV, default))


def _train(texts: list[str], settings: VocabSettings):
    from tokenizers import (
        Regex,
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    steps = [normalizers.BertNormalizer(lowercase=settings.lowercase)]
    if settings.strip_html_breaks:
        steps.insert(0, normalizers.Replace(Regex(r"<br\s*/?>"), " "))
    normalizer = normalizers.Sequence(steps)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if settings.tokenization == "wordpiece":
        tokenizer = Tokenizer(_wordpiece(texts, settings, normalizer, pre_tokenizer))
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    if settings.tokenization == "word":  # tokenizers' WordLevel trainer breaks count ties by the word
        trainer = trainers.WordLevelTrainer(
            vocab_size=settings.vocab_size,
            min_frequency=settings.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def _wordpiece(texts: list[str], settings: VocabSettings, normalizer, pre_tokenizer):
    """A WordPiece model from `harness.wordpiece` (tokenizers' own trainer is not deterministic),
    over the words the tokenizer's normalizer and pre-tokenizer make of the texts."""
    from tokenizers import models

    words = (
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    vocab = train_wordpiece_vocab(words, settings.vocab_size, settings.min_frequency, SPECIAL_TOKENS)
    return models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=PREFIX)


def vocab_tokenizer(texts: list[str], fingerprint: str, settings: VocabSettings):
    """The tokenizer for these training texts and settings: from the cache, or trained now."""
    from transformers import PreTrainedTokenizerFast

    key = hashlib.sha256(f"{fingerprint}|{settings.model_dump_json()}|{TRAINER}".encode()).hexdigest()[:16]
    path = cache_dir() / "vocab" / key / "tokenizer.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        _train(texts, settings).save(str(tmp))
        tmp.replace(path)  # atomic: parallel cells never read a half-written file
        (path.parent / "settings.json").write_text(
            json.dumps({"fingerprint": fingerprint, **settings.model_dump()})
        )
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
