"""Token ids, length-grouped batches and dynamic padding.

Sequences are encoded once without padding and packed into one flat array with row
offsets, so that building a batch is a few vectorised numpy gathers rather than a
Python loop over rows (for a small model the per-row loop cost as much as its
backward pass). A training epoch shuffles the rows, then sorts each window of
`batch_size * GROUP_WINDOW` rows by length, cuts it into batches and shuffles the
batches: batches hold similar lengths, so padding to the longest row of a batch
wastes little, while the order stays random. Evaluation sorts all rows by length
and restores the order afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from harness.tasks.data import Examples

GROUP_WINDOW = 50


def _pack(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids → (flat ids, offsets): row i is flat[offsets[i]:offsets[i + 1]]."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets


@dataclass(frozen=True)
class Encoded:
    """Every row's token ids (and segment ids, for pair tasks), packed; labels; the pad id."""

    ids: np.ndarray  # (total tokens,) int64
    offsets: np.ndarray  # (N + 1,) int64
    token_types: np.ndarray | None  # (total tokens,) int64, or None: all zero
    labels: np.ndarray  # (N,)
    pad_id: int

    @classmethod
    def from_rows(
        cls,
        input_ids: Sequence[Sequence[int]],
        token_type_ids: Sequence[Sequence[int]] | None,
        labels: np.ndarray,
        pad_id: int,
    ) -> Encoded:
        ids, offsets = _pack(input_ids)
        types = None if token_type_ids is None else _pack(token_type_ids)[0]
        return cls(ids, offsets, types, np.asarray(labels), pad_id)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, index: int) -> list[int]:
        """Row `index`'s token ids."""
        return self.ids[self.offsets[index] : self.offsets[index + 1]].tolist()

    def row_types(self, index: int) -> list[int]:
        """Row `index`'s segment ids."""
        if self.token_types is None:
            return [0] * int(self.offsets[index + 1] - self.offsets[index])
        return self.token_types[self.offsets[index] : self.offsets[index + 1]].tolist()

    def subset(self, indices: np.ndarray) -> Encoded:
        """The rows `indices`, in that order, as their own `Encoded`."""
        lengths = self.row_lengths(indices)
        positions, real = self.padded_positions(indices, int(lengths.max(initial=0)))
        flat = positions[real]  # row-major: each row's tokens in order
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        types = None if self.token_types is None else self.token_types[flat]
        return Encoded(self.ids[flat], offsets, types, self.labels[indices], self.pad_id)

    def row_lengths(self, indices: np.ndarray) -> np.ndarray:
        return self.offsets[indices + 1] - self.offsets[indices]  # (B,)

    def padded_positions(self, indices: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """For rows `indices` padded to `width`: each cell's position in the flat arrays (0 for
        a pad), and whether it holds a real token."""
        start = self.offsets[indices]  # (B,)
        column = np.arange(width)  # (W,)
        real = column[None, :] < self.row_lengths(indices)[:, None]  # (B, W)
        return np.where(real, start[:, None] + column[None, :], 0), real  # (B, W), (B, W)


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
    return Encoded.from_rows(
        out["input_ids"], out.get("token_type_ids"), examples.labels, tokenizer.pad_token_id
    )


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
    width = int(encoded.row_lengths(indices).max())
    positions, real = encoded.padded_positions(indices, width)  # (B, T), (B, T)
    input_ids = np.where(real, encoded.ids[positions], encoded.pad_id)  # (B, T)
    if encoded.token_types is None:
        token_type_ids = np.zeros_like(input_ids)  # (B, T)
    else:
        token_type_ids = np.where(real, encoded.token_types[positions], 0)  # (B, T)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(real.astype(np.int64)),  # (B, T)
        "token_type_ids": torch.from_numpy(token_type_ids),
        "labels": torch.from_numpy(encoded.labels[indices]),
    }


def iterate(encoded: Encoded, batches: list[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
    for indices in batches:
        yield collate(encoded, indices)
