"""Uncertainty: a t-interval over seeds, and a paired bootstrap over examples.

- `t_interval`: the mean over seeds with a 95% Student-t confidence interval
  (half-width t(0.975, n-1) * s / sqrt(n)); one seed has no interval.
- `paired_bootstrap`: is model A ahead of model B on the same examples? Examples are
  resampled with replacement (the same resample for both models); on each resample
  each model's metric is computed per seed and averaged over its seeds (for accuracy
  this is the mean over examples of the seed-averaged correctness). The p-value is
  one-sided, the share of resamples where A is not ahead, (1 + #{delta* <= 0}) / (B + 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from harness.tasks.metrics import get_metric

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A figure over seeds: its mean, the 95% CI half-width (None for one seed), and n."""

    mean: float | None
    half_width: float | None
    n: int

    @property
    def standard_error(self) -> float | None:
        """s / sqrt(n) over seeds, recovered from the interval."""
        if self.half_width is None:
            return None
        return self.half_width / float(stats.t.ppf(0.5 + CONFIDENCE / 2, self.n - 1))

    @property
    def low(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.mean is None or self.half_width is None else self.mean + self.half_width


def t_interval(values: Sequence[float | None], confidence: float = CONFIDENCE) -> Estimate:
    """Mean and t-interval of the finite values (NaN and None are not measurements)."""
    finite = np.array([v for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    n = len(finite)
    if n == 0:
        return Estimate(None, None, 0)
    mean = float(finite.mean())
    if n == 1:
        return Estimate(mean, None, 1)
    sem = float(finite.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return Estimate(mean, half, n)


@dataclass(frozen=True)
class BootstrapResult:
    delta: float  # A - B on the real examples (points)
    low: float  # 95% percentile interval of the resampled delta
    high: float
    p_value: float  # one-sided: A is not ahead of B
    resamples: int
    examples: int


def _resampled_function(metric: str):
    function = get_metric(metric).resampled
    if function is None:
        raise ValueError(f"metric {metric!r} has no resampled form for the bootstrap")
    return function


def _pooled(function, labels: np.ndarray, predictions: Sequence[np.ndarray], index: np.ndarray) -> np.ndarray:
    """The metric on each row of `index` (resamples × n), averaged over the seeds' predictions."""
    return np.mean([function(np.asarray(p)[index], labels[index]) for p in predictions], axis=0)


def _bootstrap(
    function,
    labels: np.ndarray,
    sides: Sequence[Sequence[np.ndarray]],
    resamples: int,
    seed: int,
    max_cells: int,
) -> list[np.ndarray]:
    """Each side's seed-pooled metric on the same `resamples` resamples of the examples, drawn in
    chunks of at most `max_cells` indices so that memory stays bounded on large splits."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, max_cells // max(1, n)))
    scores: list[list[np.ndarray]] = [[] for _ in sides]
    for start in range(0, resamples, chunk):
        index = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        for side, predictions in zip(scores, sides, strict=True):
            side.append(_pooled(function, labels, predictions, index))
    return [np.concatenate(side) for side in scores]


def paired_bootstrap(
    metric: str,
    labels: np.ndarray,
    predictions_a: Sequence[np.ndarray],
    predictions_b: Sequence[np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
    max_cells: int = 2_000_000,
) -> BootstrapResult:
    """Paired bootstrap of metric(A) - metric(B); each side is a list of per-seed prediction arrays.

    All arrays are aligned: element i of every array is the same example.
    """
    function = _resampled_function(metric)
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0 or not predictions_a or not predictions_b:
        raise ValueError("the bootstrap needs examples and predictions of both models")
    everything = np.arange(n)[None, :]
    observed = float(
        _pooled(function, labels, predictions_a, everything)[0]
        - _pooled(function, labels, predictions_b, everything)[0]
    )
    score_a, score_b = _bootstrap(
        function, labels, [predictions_a, predictions_b], resamples, seed, max_cells
    )
    delta_star = score_a - score_b
    delta_star = delta_star[np.isfinite(delta_star)]
    if len(delta_star) == 0:
        return BootstrapResult(observed, math.nan, math.nan, math.nan, 0, n)
    p_value = (1 + int((delta_star <= 0).sum())) / (len(delta_star) + 1)
    low, high = np.percentile(delta_star, [2.5, 97.5])
    return BootstrapResult(observed, float(low), float(high), p_value, len(delta_star), n)


def example_standard_error(
    metric: str,
    labels: np.ndarray,
    predictions: Sequence[np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
    max_cells: int = 2_000_000,
) -> float:
    """The standard error of the seed-averaged metric from resampling examples (bootstrap), in
    the metric's units: how much the score would move on another draw of the evaluation set,
    with the trained models held fixed. Beside the seed interval it shows which of the two
    sources of variance dominates."""
    labels = np.asarray(labels)
    (values,) = _bootstrap(_resampled_function(metric), labels, [predictions], resamples, seed, max_cells)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired right/wrong outcomes: `a_only` examples only A got right,
    `b_only` only B; two-sided p-value of the binomial test of a_only against n/2."""

    a_only: int
    b_only: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    a_only = int((correct_a & ~correct_b).sum())
    b_only = int((~correct_a & correct_b).sum())
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(a_only, discordant, 0.5).pvalue)
    return McNemarResult(a_only, b_only, p_value)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control without independence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
