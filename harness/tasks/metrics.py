"""The metric registry: one decorator adds a metric, and everything reads it from here.

In the shape of lm-evaluation-harness's metric registry: a name maps to a function and
to the facts the rest of the harness needs — whether higher is better (the report's
ranks, `compare`'s direction), what it needs (predicted labels, or scores: the
positive class's probability for classification, the output for regression), which
problem type it is for, whether it is defined only for two classes, and its resampled
form for the paired bootstrap (vectorised over resamples).

```python
@register_metric("f1_macro", binary_only=False)
def f1_macro(predictions, labels): ...
```

Metrics are computed offline with scikit-learn and scipy (`evaluate.load` fetches
its scripts from the Hub), with the formulas the GLUE script uses, and reported in
percent as GLUE tables are. An undefined value (the correlation of a constant, ROC AUC
with one class present) is NaN, never a crash.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray], float]  # (predictions or scores, labels) → fraction
ResampledFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (R, N), (R, N) → (R,) percent


@dataclass(frozen=True)
class Metric:
    name: str
    compute: MetricFn
    higher_is_better: bool = True
    needs: Literal["predictions", "scores"] = "predictions"
    problem_type: Literal["classification", "regression"] = "classification"
    binary_only: bool = False
    resampled: ResampledFn | None = None
    description: str = ""


_METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    *,
    higher_is_better: bool = True,
    needs: Literal["predictions", "scores"] = "predictions",
    problem_type: Literal["classification", "regression"] = "classification",
    binary_only: bool = False,
    resampled: ResampledFn | None = None,
):
    """Register `function(predictions_or_scores, labels) -> float` (a fraction) as `name`."""

    def decorate(function: MetricFn) -> MetricFn:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        summary = ((function.__doc__ or "").strip().splitlines() or [""])[0]
        _METRICS[name] = Metric(
            name, function, higher_is_better, needs, problem_type, binary_only, resampled, summary
        )
        return function

    return decorate


def get_metric(name: str) -> Metric:
    return _METRICS[name]


def metric_names() -> list[str]:
    return list(_METRICS)


def split_metric_key(key: str) -> tuple[str, str | None]:
    """A reported key → (metric, eval name): `accuracy_matched` → ("accuracy", "matched"),
    `f1_macro` → ("f1_macro", None). The longest registered name wins."""
    for name in sorted(_METRICS, key=len, reverse=True):
        if key == name:
            return name, None
        if key.startswith(name + "_"):
            return name, key[len(name) + 1 :]
    return key, None


def higher_is_better(key: str) -> bool:
    """For a reported key: `accuracy_matched`, or a deployment backend's `accuracy@int8`."""
    name, _ = split_metric_key(key.split("@")[0])
    return _METRICS[name].higher_is_better if name in _METRICS else True


def two_class_misfit(names: list[str], num_labels: int) -> str | None:
    """What is wrong when a two-class metric (binary F1, precision, ROC AUC) is asked of a task
    with another number of classes; None when nothing is."""
    binary = [name for name in names if _METRICS[name].binary_only]
    if binary and num_labels != 2:
        return f"metric(s) {binary} are defined for two classes and this task has {num_labels}"
    return None


def positive_scores(outputs: np.ndarray) -> np.ndarray:
    """The positive class's probability from (N, 2) logits; regression outputs as they are."""
    if outputs.ndim == 1:
        return outputs
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return probabilities[:, 1]


def compute_metrics(
    names: list[str], outputs: np.ndarray, labels: np.ndarray, suffix: str = ""
) -> dict[str, float]:
    """Each named metric in percent from the model's outputs ((N, C) logits or (N,) scores);
    keys get `_<suffix>` when a task has several evaluation splits."""
    predictions = outputs if outputs.ndim == 1 else outputs.argmax(axis=-1)
    result = {}
    for name in names:
        metric = _METRICS[name]
        given = positive_scores(outputs) if metric.needs == "scores" else predictions
        result[f"{name}_{suffix}" if suffix else name] = 100.0 * metric.compute(given, labels)
    return result


# --------------------------------------------------------------------------- resampled forms
# Each takes predictions and labels of shape (resamples, examples) and returns (resamples,)
# in percent: the paired bootstrap computes a metric on a thousand resamples at once.


def _accuracy_resampled(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    return 100.0 * (pred == label).mean(axis=1)


def _binary_counts(pred: np.ndarray, label: np.ndarray, positive: int = 1):
    p, y = pred == positive, label == positive
    tp = (p & y).sum(axis=1).astype(float)
    fp = (p & ~y).sum(axis=1).astype(float)
    fn = (~p & y).sum(axis=1).astype(float)
    tn = (~p & ~y).sum(axis=1).astype(float)
    return tp, fp, fn, tn


def _f1_of_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, 0.0)


def _f1_resampled(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    tp, fp, fn, _ = _binary_counts(pred, label)
    return 100.0 * _f1_of_counts(tp, fp, fn)


def _classes(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    return np.union1d(np.unique(pred), np.unique(label))


def _f1_macro_resampled(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Mean over the classes present in a resample's labels or predictions (sklearn's rule)."""
    scores, present = [], []
    for c in _classes(pred, label):
        tp, fp, fn, _ = _binary_counts(pred, label, positive=int(c))
        scores.append(_f1_of_counts(tp, fp, fn))
        present.append((tp + fp + fn) > 0)
    scores, present = np.array(scores), np.array(present)
    return 100.0 * (scores * present).sum(axis=0) / np.maximum(present.sum(axis=0), 1)


def _matthews_resampled(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    if max(int(pred.max(initial=0)), int(label.max(initial=0))) > 1:
        from sklearn.metrics import matthews_corrcoef

        return np.array([100.0 * matthews_corrcoef(y, p) for p, y in zip(pred, label, strict=True)])
    tp, fp, fn, tn = _binary_counts(pred, label)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 100.0 * (tp * tn - fp * fn) / denominator, 0.0)


def _pearson_resampled(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 100.0 * (x * y).sum(axis=1) / denominator, np.nan)


def _spearman_resampled(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy import stats

    return _pearson_resampled(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


# --------------------------------------------------------------------------- the metrics


@register_metric("accuracy", resampled=_accuracy_resampled)
def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Share of examples whose predicted label is right."""
    return float(np.mean(predictions == labels))


@register_metric("f1", binary_only=True, resampled=_f1_resampled)
def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE scores MRPC and QQP."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="binary", pos_label=1, zero_division=0))


@register_metric("f1_macro", resampled=_f1_macro_resampled)
def f1_macro(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of each class's F1 (every class counts alike, however rare)."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="macro", zero_division=0))


@register_metric("f1_micro", resampled=_accuracy_resampled)
def f1_micro(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 over all decisions pooled; for single-label classification it equals accuracy."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="micro", zero_division=0))


@register_metric("precision", binary_only=True)
def precision(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary precision of the positive class (label 1)."""
    from sklearn.metrics import precision_score

    return float(precision_score(labels, predictions, average="binary", pos_label=1, zero_division=0))


@register_metric("recall", binary_only=True)
def recall(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary recall of the positive class (label 1)."""
    from sklearn.metrics import recall_score

    return float(recall_score(labels, predictions, average="binary", pos_label=1, zero_division=0))


@register_metric("roc_auc", needs="scores", binary_only=True)
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of the positive class's probability (binary; NaN with one class)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


@register_metric("matthews_correlation", resampled=_matthews_resampled)
def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient, as GLUE scores CoLA."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, predictions))


def _correlation(name: str, resampled: ResampledFn):
    def register(function):
        def compute(predictions: np.ndarray, labels: np.ndarray) -> float:
            if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
                return float("nan")  # undefined for a constant, and scipy would only warn
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(function(predictions, labels))

        compute.__doc__ = function.__doc__
        register_metric(name, needs="scores", problem_type="regression", resampled=resampled)(compute)
        return compute

    return register


@_correlation("pearson", _pearson_resampled)
def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation of predicted and gold scores (STS-B; NaN for a constant)."""
    from scipy import stats

    return stats.pearsonr(predictions, labels)[0]


@_correlation("spearmanr", _spearman_resampled)
def spearmanr(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation of predicted and gold scores (STS-B; NaN for a constant)."""
    from scipy import stats

    return stats.spearmanr(predictions, labels)[0]
