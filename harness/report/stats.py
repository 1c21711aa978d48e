"""Uncertainty: a t-interval over seeds, and a paired bootstrap over seeds and examples.

- `t_interval`: the mean over seeds with a 95% Student-t confidence interval
  (half-width t(0.975, n-1) * s / sqrt(n)); one seed has no interval.
- `paired_bootstrap`: is model A ahead of model B on the same examples? A score moves for two
  reasons: the seeds (another set of training runs gives other models; on small tasks this is
  the larger part, CoLA's seed interval is ±17.9) and the examples (another evaluation set). So
  the bootstrap has two levels: each resample draws each model's seeds with replacement (its
  own draw per model: they are independent runs), then the examples with replacement (the same
  rows for both models, which were evaluated on the same rows); each model's score is its
  metric on those rows averaged over the seeds drawn (each seed's deviation from the seeds' mean
  widened by sqrt(S/(S-1)) so that the seed level's variance is not understated, see
  `_over_drawn_seeds`). The interval is the 2.5th-97.5th percentile of the resampled A - B;
  the p-value is one-sided, the share of resamples where A is not ahead,
  (1 + #{delta* <= 0}) / (B + 1). With one seed per model there is nothing to draw at the
  seed level and it is the example bootstrap, number for number: the seed noise of a one-seed
  model is then not covered. `resample_seeds=False` gives the example bootstrap for any number of
  seeds, with the trained models held fixed, which calls two models that differ only by their
  seeds separable: it answers "is A ahead on this evaluation set, for these trained models?".
  With few seeds (three) the seed level still has only three values to draw from, and the test
  is somewhat liberal when seed noise dominates (tests/test_ties.py measures it).
- `example_standard_error`: the example bootstrap alone (the trained models held fixed), for
  the report's split of the variance into its seed part and its example part.
"""

from __future__ import annotations

import math
import warnings
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


def _seed_weights(rng: np.random.Generator, seeds: int, resamples: int) -> np.ndarray:
    """(resamples, seeds): how often each seed is drawn when `seeds` are drawn with replacement,
    divided by `seeds`; each row sums to 1. A seed drawn twice counts twice, one not drawn not at all."""
    return rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=resamples) / seeds


def _over_drawn_seeds(per_seed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean over the drawn seeds of each seed's metric, (seeds, R) and (R, seeds) → (R,).

    Each seed's deviation from the seeds' mean on the same resample is first widened by
    sqrt(S/(S-1)): the mean of S values drawn with replacement from S varies by (S-1)/S of
    s²/S, two thirds of it at three seeds (the bootstrap's bias for a mean); widened, it varies
    by s²/S, the seed-to-seed variance of a mean of S independent runs."""
    seeds = len(per_seed)
    if seeds > 1:
        mean = per_seed.mean(axis=0)
        per_seed = mean + math.sqrt(seeds / (seeds - 1)) * (per_seed - mean)
    return (weights.T * per_seed).sum(axis=0)


def _bootstrap(
    function,
    labels: np.ndarray,
    sides: Sequence[Sequence[np.ndarray]],
    resamples: int,
    seed: int,
    max_cells: int,
    resample_seeds: bool = False,
) -> list[np.ndarray]:
    """Each side's seed-pooled metric on the same `resamples` resamples of the examples, drawn in
    chunks of at most `max_cells` indices so that memory stays bounded on large splits.

    With `resample_seeds`, each resample also draws each side's seeds with replacement (its own
    draw per side: the seeds are independent runs) and averages the metric over the seeds drawn
    (`_over_drawn_seeds`); without, every seed counts once. The example draws come from `seed`
    alone, so both ways see the same example resamples, and with one seed per side they give the
    same numbers. The seeds' metrics on a chunk of resamples are computed once either way, so the
    seed draws cost next to nothing."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    weights = None
    if resample_seeds:  # a stream of its own, so that the examples' draws stay what they were
        seed_rng = np.random.default_rng([seed, 1])
        weights = [_seed_weights(seed_rng, len(predictions), resamples) for predictions in sides]
    arrays = [[np.asarray(p) for p in predictions] for predictions in sides]
    chunk = max(1, min(resamples, max_cells // max(1, n)))
    scores: list[list[np.ndarray]] = [[] for _ in sides]
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        truth = labels[index]
        for side, (out, predictions) in enumerate(zip(scores, arrays, strict=True)):
            per_seed = np.stack([function(p[index], truth) for p in predictions])  # (seeds, chunk)
            if weights is None:
                out.append(per_seed.mean(axis=0))
            else:
                out.append(_over_drawn_seeds(per_seed, weights[side][start:stop]))
    return [np.concatenate(side) for side in scores]


def paired_bootstrap(
    metric: str,
    labels: np.ndarray,
    predictions_a: Sequence[np.ndarray],
    predictions_b: Sequence[np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
    max_cells: int = 2_000_000,
    resample_seeds: bool = True,
) -> BootstrapResult:
    """Paired bootstrap of metric(A) - metric(B); each side is a list of per-seed prediction arrays.

    All arrays are aligned: element i of every array is the same example. Two levels (the
    default): each resample draws each model's seeds with replacement, its own draw per model,
    then the examples with replacement, the same rows for both models; each model's score is its
    metric on those rows averaged over the seeds drawn (their spread widened by sqrt(S/(S-1)),
    `_over_drawn_seeds`). The interval and p-value so cover seed
    noise (another set of training runs) as well as example noise (another evaluation set). With
    one seed per model it is the example bootstrap, number for number; `resample_seeds=False`
    gives the example bootstrap for any number of seeds (the trained models held fixed).
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
        function, labels, [predictions_a, predictions_b], resamples, seed, max_cells, resample_seeds
    )
    delta_star = score_a - score_b
    delta_star = delta_star[np.isfinite(delta_star)]
    if len(delta_star) == 0:
        return BootstrapResult(observed, math.nan, math.nan, math.nan, 0, n)
    p_value = (1 + int((delta_star <= 0).sum())) / (len(delta_star) + 1)
    low, high = np.percentile(delta_star, [2.5, 97.5])
    return BootstrapResult(observed, float(low), float(high), p_value, len(delta_star), n)


def seed_welch_p(
    metric: str, labels: np.ndarray, predictions_a: Sequence[np.ndarray], predictions_b: Sequence[np.ndarray]
) -> float | None:
    """Two-sided Welch's t-test of the two models' per-seed scores on these examples; None with
    fewer than two seeds a side. With few seeds it keeps its level where a bootstrap that draws
    from three seeds cannot (it reads their spread as all there is), so the leaderboard asks both."""
    if min(len(predictions_a), len(predictions_b)) < 2:
        return None
    function = _resampled_function(metric)
    labels = np.asarray(labels)
    everything = np.arange(len(labels))[None, :]
    a = [float(function(np.asarray(p)[everything], labels[everything])[0]) for p in predictions_a]
    b = [float(function(np.asarray(p)[everything], labels[everything])[0]) for p in predictions_b]
    if not all(math.isfinite(v) for v in a + b):
        return None
    return welch_pvalue(a, b)


def welch_pvalue(a: Sequence[float], b: Sequence[float], alternative: str = "two-sided") -> float:
    """Welch's t-test p-value of `a` against `b` (`alternative`: "less" is a below b).

    Seeds that agree exactly are a sample without spread: both sides so, the means are equal
    (p = 1) or they are not and nothing else varies (p = 0, or 1 for the other direction);
    one side so, Welch's statistic is defined by the other's spread, and scipy's warning about
    the moments of constant data is about that side alone, so it is silenced here."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        if a.mean() == b.mean():
            return 1.0
        below = a.mean() < b.mean()
        supported = {"two-sided": True, "less": below, "greater": not below}[alternative]
        return 0.0 if supported else 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


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


def bootstrap_interval(
    metric: str, labels: np.ndarray, predictions: Sequence[np.ndarray], resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of one model's seed-pooled metric: the two-level bootstrap (its
    seeds, then the examples) of `paired_bootstrap`, for one side."""
    (scores,) = _bootstrap(
        _resampled_function(metric), np.asarray(labels), [predictions], resamples, seed, 2_000_000, True
    )
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        return math.nan, math.nan
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def permutation_worse_p(
    metric: str,
    labels: np.ndarray,
    predictions: Sequence[np.ndarray],
    members: np.ndarray,
    higher_is_better: bool,
    permutations: int = 1000,
    seed: int = 0,
    max_cells: int = 2_000_000,
) -> float:
    """One-sided p of "the rows in `members` score worse than the other rows" for one model's
    seeds (the metric pooled over seeds on each side). Under the null the members are as good as
    any rows of the same number: each permutation draws that many rows at random as the slice,
    so a slice chosen at random is called worse at no more than the level asked for."""
    function = _resampled_function(metric)
    labels = np.asarray(labels)
    arrays = [np.asarray(p) for p in predictions]
    n, k = len(labels), int(members.sum())
    sign = 1.0 if higher_is_better else -1.0

    def gap(inside: np.ndarray, outside: np.ndarray) -> np.ndarray:  # (R, k), (R, n-k) → (R,)
        score_in = np.mean([function(p[inside], labels[inside]) for p in arrays], axis=0)
        score_out = np.mean([function(p[outside], labels[outside]) for p in arrays], axis=0)
        return sign * (score_in - score_out)

    order = np.argsort(~members, kind="stable")[None, :]  # members first
    observed = float(gap(order[:, :k], order[:, k:])[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, min(permutations, max_cells // max(1, n)))
    null = []
    for start in range(0, permutations, chunk):
        drawn = rng.permuted(np.tile(np.arange(n), (min(chunk, permutations - start), 1)), axis=1)
        null.append(gap(drawn[:, :k], drawn[:, k:]))
    values = np.concatenate(null)
    values = values[np.isfinite(values)]
    return (1 + int((values <= observed).sum())) / (len(values) + 1)
