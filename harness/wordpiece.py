"""A WordPiece vocabulary trained the way Hugging Face `tokenizers` trains one, but deterministically.

`tokenizers.trainers.WordPieceTrainer` (0.23) gives a different vocabulary from one process to the
next on the same texts: it numbers the `##`-prefixed letters in hash-map order, and those ids
break ties between pairs of equal count, so equal data yields other merges
(huggingface/tokenizers#1794; the fix proposed upstream, #2066, numbers them in sorted order).
A from-scratch model's embedding rows follow the vocabulary's ids, so that changes what a seed
trains. This module runs the same algorithm — byte-pair merges over the words of the training
texts, the most frequent pair first, a continuing piece marked `##` — with every order fixed:
words in order of first appearance, letters numbered in code-point order, ties between pairs of
equal count broken by the smaller pair of ids. The same texts give the same vocabulary, ids
included, in any process on any machine.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

Pair = tuple[int, int]
PREFIX = "##"


class _Merger:
    """Byte-pair merges over counted words: `words[i]` is a list of token ids seen `counts[i]` times."""

    def __init__(self, words: list[list[int]], counts: list[int]):
        self.words = words
        self.counts = counts
        self.pair_counts: Counter[Pair] = Counter()
        self.pair_words: defaultdict[Pair, set[int]] = defaultdict(set)
        for index, word in enumerate(words):
            self._add(index, word)
        self.heap = [(-count, pair) for pair, count in self.pair_counts.items()]
        heapq.heapify(self.heap)

    def _add(self, index: int, word: list[int], sign: int = 1) -> None:
        for pair in zip(word, word[1:], strict=False):
            self.pair_counts[pair] += sign * self.counts[index]
            if sign > 0:
                self.pair_words[pair].add(index)

    def best(self, min_count: int) -> Pair | None:
        """The most frequent pair (the smaller ids on a tie) seen at least `min_count` times."""
        while self.heap:
            negative, pair = self.heap[0]
            count = self.pair_counts.get(pair, 0)
            if -negative == count:
                return pair if count >= min_count else None
            if count > 0:
                heapq.heapreplace(self.heap, (-count, pair))  # a stale count: re-queue with the true one
            else:
                heapq.heappop(self.heap)
        return None

    def merge(self, pair: Pair, new_id: int) -> None:
        """Replace every `pair` by `new_id` in the words that hold it; update the pair counts."""
        changed: set[Pair] = set()
        for index in sorted(self.pair_words.pop(pair)):
            old = self.words[index]
            new = _merged(old, pair, new_id)
            self._add(index, old, sign=-1)
            self._add(index, new)
            old_pairs, new_pairs = _pairs(old), _pairs(new)
            for stale in old_pairs - new_pairs:
                self.pair_words[stale].discard(index)
            changed |= old_pairs | new_pairs
            self.words[index] = new
        self.pair_counts.pop(pair, None)
        for other in sorted(changed - {pair}):
            if self.pair_counts[other] > 0:
                heapq.heappush(self.heap, (-self.pair_counts[other], other))


def _pairs(word: list[int]) -> set[Pair]:
    return set(zip(word, word[1:], strict=False))


def _merged(word: list[int], pair: Pair, new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_wordpiece_vocab(
    words: Iterable[str], vocab_size: int, min_frequency: int, special_tokens: Sequence[str]
) -> dict[str, int]:
    """token → id for WordPiece: the special tokens, the letters that start a word (code-point
    order), the `##` letters that continue one (code-point order), then one token per merge of
    the most frequent adjacent pair, until `vocab_size` or no pair is seen `min_frequency` times."""
    word_counts = Counter(words)  # insertion-ordered: first appearance in the texts
    first_letters = sorted({word[0] for word in word_counts})
    continuing_letters = sorted({PREFIX + letter for word in word_counts for letter in word[1:]})
    vocab: dict[str, int] = {}
    for token in [*special_tokens, *first_letters, *continuing_letters]:
        vocab.setdefault(token, len(vocab))
    spelled = [[vocab[w[0]], *(vocab[PREFIX + c] for c in w[1:])] for w in word_counts]
    merger = _Merger(spelled, list(word_counts.values()))
    tokens = list(vocab)
    while len(vocab) < vocab_size and (pair := merger.best(min_frequency)) is not None:
        left, right = tokens[pair[0]], tokens[pair[1]]
        token = left + right.removeprefix(PREFIX)
        if token not in vocab:
            vocab[token] = len(vocab)
            tokens.append(token)
        merger.merge(pair, vocab[token])
    return vocab
