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
# Rows tokenized at a time. The tokenizer returns, with each row's ids, an object holding its
# tokens as strings, their character offsets and masks; a whole split's at once would be many
# times the ids' size (docs/benchmarks.md, "Memory against Keras"). A chunk's are dropped once
# it is packed.
ENCODE_CHUNK = 1024
ID_DTYPE = np.int32  # token and segment ids as stored (half of int64's memory); batches are int64


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _pack(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids → (flat ids, offsets): row i is flat[offsets[i]:offsets[i + 1]]."""
    offsets = _offsets(np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows)))
    flat = np.fromiter((i for r in rows for i in r), dtype=ID_DTYPE, count=int(offsets[-1]))
    return flat, offsets


@dataclass(frozen=True)
class Encoded:
    """Every row's token ids (and segment ids, for pair tasks), packed; labels; the pad id."""

    ids: np.ndarray  # (total tokens,) int32
    offsets: np.ndarray  # (N + 1,) int64
    token_types: np.ndarray | None  # (total tokens,) int32, or None: all zero
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

    @classmethod
    def concatenate(cls, parts: Sequence[Encoded]) -> Encoded:
        """The rows of `parts`, one after another (all with segment ids, or none)."""
        types = None if parts[0].token_types is None else np.concatenate([p.token_types for p in parts])
        return cls(
            np.concatenate([p.ids for p in parts]),
            _offsets(np.concatenate([p.lengths for p in parts])),
            types,
            np.concatenate([p.labels for p in parts]),
            parts[0].pad_id,
        )

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
        types = None if self.token_types is None else self.token_types[flat]
        return Encoded(self.ids[flat], _offsets(lengths), types, self.labels[indices], self.pad_id)

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
    """Tokenize once, truncated to `max_length` by cutting `truncation_side`, unpadded, packed
    `ENCODE_CHUNK` rows at a time. Segment ids are kept for pairs only (a single text's are 0)."""
    tokenizer.truncation_side = truncation_side
    pairs = examples.text_b is not None
    parts = []
    for start in range(0, max(len(examples), 1), ENCODE_CHUNK):
        rows = slice(start, start + ENCODE_CHUNK)
        out = tokenizer(
            examples.text_a[rows],
            examples.text_b[rows] if pairs else None,
            truncation=True,
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=pairs,
        )
        types = out["token_type_ids"] if pairs else None
        labels = examples.labels[rows]
        parts.append(Encoded.from_rows(out["input_ids"], types, labels, tokenizer.pad_token_id))
    return Encoded.concatenate(parts)


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
    input_ids = np.where(real, encoded.ids[positions], encoded.pad_id).astype(np.int64)  # (B, T)
    if encoded.token_types is None:
        token_type_ids = np.zeros_like(input_ids)  # (B, T)
    else:
        token_type_ids = np.where(real, encoded.token_types[positions], 0).astype(np.int64)  # (B, T)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(real.astype(np.int64)),  # (B, T)
        "token_type_ids": torch.from_numpy(token_type_ids),
        "labels": torch.from_numpy(encoded.labels[indices]),
    }


def iterate(encoded: Encoded, batches: list[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
    for indices in batches:
        yield collate(encoded, indices)
