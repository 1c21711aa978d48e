"""Token ids, length-grouped batches and dynamic padding.

Sequences are encoded once without padding. A training epoch shuffles them,
then sorts each window of `batch_size * GROUP_WINDOW` rows by length, cuts it
into batches and shuffles the batches: batches hold similar lengths, so
padding to the longest row of a batch wastes little, while the order stays
random. Evaluation sorts all rows by length and restores the order afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from harness.tasks.data import Examples

GROUP_WINDOW = 50


@dataclass
class Encoded:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self))


def encode(
    tokenizer,
    examples: Examples,
    max_length: int,
    truncation_side: Literal["right", "left"] = "right",
) -> Encoded:
    """Tokenize once, truncated to `max_length` by cutting `truncation_side`, unpadded."""
    tokenizer.truncation_side = truncation_side
    out = tokenizer(
        examples.text_a,
        examples.text_b,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=True,
    )
    types = out.get("token_type_ids")
    return Encoded(out["input_ids"], types, examples.labels, tokenizer.pad_token_id)


def train_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(lengths))
    window = batch_size * GROUP_WINDOW
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(encoded: Encoded, indices: np.ndarray) -> dict[str, torch.Tensor]:
    """Pad the rows `indices` to the longest of them."""
    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), encoded.pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention_mask[r, : len(ids)] = 1
        if encoded.token_type_ids is not None:
            token_type_ids[r, : len(ids)] = torch.tensor(encoded.token_type_ids[indices[r]])
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "labels": torch.from_numpy(encoded.labels[indices]),
    }


def iterate(encoded: Encoded, batches: list[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
    for indices in batches:
        yield collate(encoded, indices)
