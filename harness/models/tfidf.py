"""The classical baseline: word n-grams with TF-IDF weights and a linear model fitted by
scikit-learn, or NB-SVM (Wang & Manning 2012).

The fit (`TfidfAdapter.fit`) reads the training rows once: the n-grams seen in at least
`min_df` of them become features, their counts a sparse matrix, scikit-learn's
`TfidfTransformer` (sublinear tf, smooth idf, unit length) weights them and a logistic
regression (ridge regression for scores) learns one weight per feature and class. NB-SVM
instead scales each present n-gram by its naive-Bayes log-count ratio
r = log((α + Σ_pos x / ‖α + Σ_pos x‖₁) / (α + Σ_neg x / ‖α + Σ_neg x‖₁)) and fits the logistic
regression on those (one against the rest per class), with a logistic loss rather than the
paper's hinge, so that its outputs are probabilities like every other model's.

The fitted model is then a torch module (`TfidfModel`) that computes exactly what
scikit-learn's pipeline computes from the same token ids, so the cell evaluates, probes,
times and measures it as it does every other model. Its work is a sparse product: per
example, 2 × (distinct known n-grams) × (outputs) FLOPs.

Tokens are the word-level vocabulary of the training split (`harness.vocab`, BERT's
normalisation and punctuation split); `[UNK]` and special tokens are never features, and an
n-gram is a window of n consecutive words of one text (never across a pair's `[SEP]`).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from torch import nn

from harness.batching import Encoded, collate, eval_batches
from harness.config import TaskSpec, TrainingSettings
from harness.models.registry import FittedAdapter, TaskInfo, register_adapter
from harness.models.scratch import classifier_output
from harness.tasks.data import Examples
from harness.train import TrainStats
from harness.vocab import SPECIAL_TOKENS, VocabSettings, vocab_tokenizer

FIRST_WORD_ID = len(SPECIAL_TOKENS)  # the vocabulary trainer numbers the special tokens first
FIT_BATCH = 1024  # rows read at a time while fitting
NB_ALPHA = 1.0  # NB-SVM's smoothing count (Wang & Manning's α)


class TfidfParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ngrams: int = Field(default=2, ge=1, le=3, description="longest n-gram: 1 words, 2 adds pairs, 3 triples")
    min_df: int = Field(
        default=2, ge=1, description="an n-gram is a feature if this many training texts hold it"
    )
    vocab_size: int = Field(default=200_000, ge=100, description="most words kept (by frequency)")
    classifier: Literal["logistic", "nbsvm"] = "logistic"
    C: float = Field(
        default=4.0,
        gt=0,
        description="inverse regularization strength (scikit-learn's C; ridge's alpha = 1/C)",
    )


def ngram_keys(
    input_ids: torch.Tensor, is_word: torch.Tensor, n: int, base: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window of n consecutive tokens as one int64 key (its ids as digits in `base`), and
    whether all n tokens of the window are words."""
    if n == 1:
        return input_ids, is_word
    if input_ids.shape[1] < n:
        empty = input_ids.new_zeros((input_ids.shape[0], 0))
        return empty, empty.bool()
    windows = input_ids.unfold(1, n, 1)  # (B, T-n+1, n)
    powers = base ** torch.arange(n - 1, -1, -1, device=input_ids.device)  # (n,)
    return (windows * powers).sum(-1), is_word.unfold(1, n, 1).all(-1)  # (B, T-n+1) each


def word_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T): true where a real token is a word of the vocabulary (not padding, [UNK] or special)."""
    return (batch["input_ids"] >= FIRST_WORD_ID) & batch["attention_mask"].bool()


class TfidfModel(nn.Module):
    """The fitted model: token ids → n-gram features → weights (tf-idf or binary) → linear."""

    def __init__(self, vocab_size: int, num_labels: int, ngrams: int, weighting: Literal["tfidf", "binary"]):
        super().__init__()
        self.vocab_size, self.num_labels, self.ngrams, self.weighting = (
            vocab_size,
            num_labels,
            ngrams,
            weighting,
        )
        for n in range(1, ngrams + 1):  # the kept n-grams of each order, as sorted keys (set by the fit)
            self.register_buffer(f"ngrams{n}", torch.zeros(0, dtype=torch.int64))
        outputs = 1 if num_labels <= 2 else num_labels  # two classes: one score, the logit of class 1
        # parameters (learned, by the fit): so they count as the model's weights, as in every model
        self.weight = nn.Parameter(torch.zeros(0, outputs))  # (F, K)
        self.bias = nn.Parameter(torch.zeros(outputs))  # (K,)
        self.register_buffer("idf", torch.ones(0))  # (F,)

    def table(self, n: int) -> torch.Tensor:
        return self.get_buffer(f"ngrams{n}")

    @property
    def num_features(self) -> int:
        return sum(len(self.table(n)) for n in range(1, self.ngrams + 1))

    def occurrences(
        self, input_ids: torch.Tensor, is_word: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every occurrence of a kept n-gram: (its row, its feature index), each (N,)."""
        rows, features, offset = [], [], 0
        for n in range(1, self.ngrams + 1):
            keys, valid = ngram_keys(input_ids, is_word, n, self.vocab_size)  # (B, W) each
            table = self.table(n)
            size = len(table)
            index = torch.searchsorted(table, keys).clamp(max=max(size - 1, 0))  # (B, W)
            valid = valid & (table[index] == keys) if size else torch.zeros_like(valid)
            row, column = valid.nonzero(as_tuple=True)  # (N_n,) each
            rows.append(row)
            features.append(index[row, column] + offset)
            offset += size
        return torch.cat(rows), torch.cat(features)

    def distinct(self, rows: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Occurrences → each (row, feature) once, with its count: three (M,) tensors."""
        pairs, counts = torch.unique(rows * self.num_features + features, return_counts=True)  # (M,) each
        return pairs // self.num_features, pairs % self.num_features, counts

    def values(
        self, rows: torch.Tensor, features: torch.Tensor, counts: torch.Tensor, batch: int
    ) -> torch.Tensor:
        """(M,) feature values: sublinear tf × idf scaled to unit length per row, or 1 (binary)."""
        if self.weighting == "binary":
            return torch.ones(len(rows), dtype=self.weight.dtype, device=rows.device)
        values = (1 + torch.log(counts.to(self.weight.dtype))) * self.idf[features]  # (M,)
        norms = torch.zeros(batch, dtype=values.dtype, device=values.device).index_add_(0, rows, values**2)
        return values / norms.sqrt()[rows]  # (M,)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        input_ids = batch["input_ids"]  # (B, T)
        rows, features, counts = self.distinct(*self.occurrences(input_ids, word_mask(batch)))  # (M,) each
        values = self.values(rows, features, counts, len(input_ids))  # (M,)
        scores = self.bias.expand(len(input_ids), -1).clone()  # (B, K)
        scores.index_add_(0, rows, values[:, None] * self.weight[features])  # (B, K)
        if self.num_labels == 2:
            scores = torch.cat([torch.zeros_like(scores), scores], dim=1)  # (B, 2): softmax = the fit's p
        return classifier_output(scores, self.num_labels)

    def row_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """FLOPs of one row: 2 × multiply-adds of the sparse product, (distinct known n-grams) ×
        outputs; weighting and normalising add a few operations per n-gram, not counted."""
        rows, _, _ = self.distinct(*self.occurrences(batch["input_ids"], word_mask(batch)))
        return 2.0 * len(rows) * self.weight.shape[1]

    @staticmethod
    def backend_unsupported(backend: str) -> str | None:
        if backend == "eager":
            return None
        return (
            "a fitted sparse n-gram model: its work is a lookup and a sum, while half precision, "
            "quantization, compile and ONNX export act on the dense layers it does not have"
        )

    # ------------------------------------------------------------------ the fit's reading of rows

    def batches(self, data: Encoded):
        """The rows in fitting batches: (row numbers, batch dict)."""
        for indices in eval_batches(data.lengths, FIT_BATCH):
            yield indices, collate(data, indices)

    def keep_ngrams(self, data: Encoded, min_df: int) -> None:
        """The n-grams (of words of the vocabulary) that at least `min_df` training rows hold,
        as scikit-learn's `min_df` keeps them; the weights and idf sized for them."""
        for n in range(1, self.ngrams + 1):
            in_rows = []
            for _, batch in self.batches(data):
                keys, valid = ngram_keys(batch["input_ids"], word_mask(batch), n, self.vocab_size)
                row, column = valid.nonzero(as_tuple=True)
                in_rows.append(torch.unique(torch.stack([row, keys[row, column]]), dim=1)[1].numpy())
            keys, df = np.unique(np.concatenate(in_rows), return_counts=True)
            setattr(self, f"ngrams{n}", torch.from_numpy(keys[df >= min_df]))
        self.weight = nn.Parameter(torch.zeros(self.num_features, self.weight.shape[1]))
        self.idf = torch.ones(self.num_features)

    def count_matrix(self, data: Encoded) -> sparse.csr_matrix:
        """(rows, features) counts of every kept n-gram: what scikit-learn's models are fitted on."""
        parts = []
        for indices, batch in self.batches(data):
            rows, features, counts = self.distinct(*self.occurrences(batch["input_ids"], word_mask(batch)))
            parts.append((indices[rows.numpy()], features.numpy(), counts.numpy()))
        rows, features, counts = (np.concatenate(column) for column in zip(*parts, strict=True))
        shape = (len(data), self.num_features)
        return sparse.csr_matrix((counts.astype(np.float64), (rows, features)), shape=shape)


def nb_ratios(binary: sparse.csr_matrix, positive: np.ndarray) -> np.ndarray:
    """(F,) naive-Bayes log-count ratios of present features, `positive` rows against the rest."""
    p = NB_ALPHA + np.asarray(binary[positive].sum(axis=0)).ravel()  # (F,)
    q = NB_ALPHA + np.asarray(binary[~positive].sum(axis=0)).ravel()  # (F,)
    return np.log(p / p.sum()) - np.log(q / q.sum())


@register_adapter("tfidf")
class TfidfAdapter(FittedAdapter):
    """TF-IDF word n-grams with logistic (or ridge) regression, or NB-SVM: fitted by scikit-learn."""

    Params = TfidfParams
    params: TfidfParams
    seeded = False  # lbfgs and ridge are deterministic: every seed would fit the same weights

    def tokenizer(self, train: Examples, training: TrainingSettings):
        vocab = VocabSettings(
            vocab_size=self.params.vocab_size, tokenization="word", min_frequency=self.params.min_df
        )
        tokenizer = vocab_tokenizer(train.texts(), train.fingerprint(), vocab)
        assert max(tokenizer.all_special_ids) < FIRST_WORD_ID, "special tokens must come first"
        return tokenizer

    def unsupported_task(self, task: TaskSpec) -> str | None:
        if self.params.classifier == "nbsvm" and task.problem_type == "regression":
            return f"nbsvm weighs words by how they split classes; {task.name} is scored, not classed"
        return None

    def build(self, info: TaskInfo) -> TfidfModel:
        weighting = "binary" if self.params.classifier == "nbsvm" else "tfidf"
        return TfidfModel(info.vocab_size, info.num_labels, self.params.ngrams, weighting)

    def fit(self, model: nn.Module, train: Encoded, seed: int) -> TrainStats:
        from sklearn.feature_extraction.text import TfidfTransformer

        started = time.perf_counter()
        assert isinstance(model, TfidfModel)
        model.keep_ngrams(train, self.params.min_df)
        counts = model.count_matrix(train)  # (N, F)
        if model.weighting == "binary":
            features, scales = (counts > 0).astype(np.float64), self.nb_scales(counts, train.labels, model)
        else:
            transformer = TfidfTransformer(sublinear_tf=True).fit(counts)
            model.idf.copy_(torch.from_numpy(transformer.idf_))
            features, scales = transformer.transform(counts), None
        steps = self.fit_linear(model, features, train.labels, scales)
        seconds = time.perf_counter() - started
        return TrainStats(
            epochs_run=1,
            steps=steps,
            wall_seconds=seconds,
            steady_seconds=seconds,
            steady_examples=len(train),
            steady_tokens=int(train.lengths.sum()),
        )

    def nb_scales(self, counts: sparse.csr_matrix, labels: np.ndarray, model: TfidfModel) -> np.ndarray:
        """(K, F): per output, the NB ratios of that class against the rest (class 1 when two)."""
        binary = (counts > 0).astype(np.float64)
        classes = [1] if model.num_labels == 2 else range(model.num_labels)
        return np.stack([nb_ratios(binary, labels == label) for label in classes])

    def fit_linear(
        self, model: TfidfModel, features: sparse.csr_matrix, labels: np.ndarray, scales: np.ndarray | None
    ) -> int:
        """The linear model's weights into `model`; its solver's iterations."""
        from sklearn.linear_model import LogisticRegression, Ridge

        if model.num_labels == 1:
            ridge = Ridge(alpha=1 / self.params.C).fit(features, labels)
            weight, bias, steps = ridge.coef_[:, None], np.atleast_1d(ridge.intercept_), 1
        elif scales is None:
            logistic = LogisticRegression(C=self.params.C, max_iter=1000).fit(features, labels)
            weight, bias, steps = logistic.coef_.T, logistic.intercept_, int(logistic.n_iter_.max())
        else:  # NB-SVM: one against the rest, each on its own scaled features
            columns, biases, steps = [], [], 0
            for output, scale in enumerate(scales):
                target = labels == (1 if model.num_labels == 2 else output)
                logistic = LogisticRegression(C=self.params.C, max_iter=1000)
                logistic.fit(features @ sparse.diags(scale), target)
                columns.append(logistic.coef_[0] * scale)  # the scale folded into the weight
                biases.append(logistic.intercept_[0])
                steps += int(logistic.n_iter_.max())
            weight, bias = np.stack(columns, axis=1), np.array(biases)
        with torch.no_grad():
            model.weight.copy_(torch.from_numpy(weight))
            model.bias.copy_(torch.from_numpy(bias))
        return steps
