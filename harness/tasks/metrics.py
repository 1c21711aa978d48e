"""GLUE metrics, offline: a thin module over scikit-learn and scipy.

`evaluate.load("glue", ...)` fetches its script from the Hub, which a CI box or
an air-gapped cluster cannot reach; these are the same formulas the GLUE
script uses (sklearn's f1_score / matthews_corrcoef, scipy's pearsonr /
spearmanr), reported in percent as GLUE tables are. A correlation of a constant
prediction is undefined and is reported as NaN, as scipy defines it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(np.mean(predictions == references))


def f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE scores MRPC and QQP."""
    return float(f1_score(references, predictions, average="binary", pos_label=1, zero_division=0))


def matthews_correlation(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(matthews_corrcoef(references, predictions))


def _correlation(fn: Callable) -> MetricFn:
    def compute(predictions: np.ndarray, references: np.ndarray) -> float:
        if np.ptp(predictions) == 0 or np.ptp(references) == 0:
            return float("nan")  # undefined for a constant, and scipy would only warn
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn(predictions, references)[0])

    return compute


METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": _correlation(stats.pearsonr),
    "spearmanr": _correlation(stats.spearmanr),
}


def compute_metrics(
    names: list[str], predictions: np.ndarray, references: np.ndarray, suffix: str = ""
) -> dict[str, float]:
    """Each named metric in percent; keys get `_<suffix>` when a task has several eval splits."""
    key = (lambda name: f"{name}_{suffix}") if suffix else (lambda name: name)
    return {key(name): 100.0 * METRICS[name](predictions, references) for name in names}
