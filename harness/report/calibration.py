"""Are a classifier's probabilities to be trusted? Calibration and confidence from stored logits.

Per cell (one seed), on the task's primary evaluation split:
- expected calibration error, as HELM computes it: the rows sorted by top-class confidence
  and cut into 10 bins of equal mass; ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|;
- the Brier score, Σ_k (p_k − 1[y = k])² averaged over rows (0 is perfect, 2 the worst);
- the negative log-likelihood, −mean log p_y (natural log);
- selective accuracy: accuracy on the most confident 10% and 50% of the rows.
Seeds are pooled as every other figure is (mean ± t-interval); the reliability diagram
pools the rows of every seed before binning.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from harness.report.plots import scatter_layout
from harness.report.stats import Estimate, t_interval

BINS = 10
COVERAGES = (0.1, 0.5)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C)
    exp = np.exp(shifted)  # (N, C)
    return exp / exp.sum(axis=1, keepdims=True)  # (N, C), rows sum to 1


def equal_mass_bins(
    probs: np.ndarray, labels: np.ndarray, bins: int = BINS
) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, rows) per bin of rows sorted by top-class confidence."""
    confidence = probs.max(axis=1)  # (N,)
    correct = probs.argmax(axis=1) == labels  # (N,)
    order = np.argsort(confidence, kind="stable")
    return [
        (float(confidence[part].mean()), float(correct[part].mean()), len(part))
        for part in np.array_split(order, min(bins, len(order)))
        if len(part)
    ]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    n = len(labels)
    return sum(
        size / n * abs(accuracy - confidence)
        for confidence, accuracy, size in equal_mass_bins(probs, labels, bins)
    )


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[labels]  # (N, C)
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def selective_accuracy(probs: np.ndarray, labels: np.ndarray, coverage: float) -> float:
    """Accuracy on the `coverage` share of rows the model is most confident about."""
    keep = max(1, math.ceil(coverage * len(labels)))
    order = np.argsort(-probs.max(axis=1), kind="stable")[:keep]
    return float((probs[order].argmax(axis=1) == labels[order]).mean())


def cell_calibration(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every figure of one cell; percentages for the accuracies and the ECE, as metrics are shown."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64)
    figures = {
        "ece": 100 * expected_calibration_error(probs, labels),
        "brier": brier_score(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
    }
    for coverage in COVERAGES:
        figures[f"selective_{int(coverage * 100)}"] = 100 * selective_accuracy(probs, labels, coverage)
    return figures


@dataclass
class Calibration:
    """One model on one task: its figures over seeds, and the pooled reliability diagram."""

    model: str
    figures: dict[str, Estimate] = field(default_factory=dict)
    reliability: list[tuple[float, float, int]] = field(default_factory=list)  # (confidence, accuracy, rows)


def pooled_calibration(model: str, per_seed: list[tuple[np.ndarray, np.ndarray]]) -> Calibration:
    """From each seed's (logits, labels)."""
    cells = [cell_calibration(logits, labels) for logits, labels in per_seed]
    figures = {name: t_interval([cell[name] for cell in cells]) for name in cells[0]} if cells else {}
    probs = np.concatenate([softmax(np.asarray(logits, dtype=np.float64)) for logits, _ in per_seed])
    labels = np.concatenate([np.asarray(labels, dtype=np.int64) for _, labels in per_seed])
    return Calibration(model, figures, equal_mass_bins(probs, labels))


def reliability_figure(title: str, rows: list[Calibration], colour_of: dict[str, str]) -> dict | None:
    """Accuracy against confidence per equal-mass bin, a line per model; the diagonal is perfect."""
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "perfectly calibrated",
            "x": [0, 1],
            "y": [0, 1],
            "line": {"dash": "dot", "color": "#666", "width": 1.5},
            "hoverinfo": "skip",
        }
    ]
    for row in rows:
        if not row.reliability:
            continue
        name = html.escape(row.model)
        colour = colour_of.get(row.model, "#444")
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": [confidence for confidence, _, _ in row.reliability],
                "y": [accuracy for _, accuracy, _ in row.reliability],
                "customdata": [[size] for _, _, size in row.reliability],
                "line": {"color": colour},
                "marker": {"color": colour, "size": 7},
                "hovertemplate": name + "<br>confidence %{x:.3f}<br>accuracy %{y:.3f}"
                "<br>%{customdata[0]} rows<extra></extra>",
            }
        )
    if len(traces) == 1:
        return None
    layout = scatter_layout(
        f"{html.escape(title)}: reliability ({BINS} equal-mass bins, seeds pooled)",
        "confidence (top-class probability)",
        "accuracy",
    )
    layout["xaxis"] = {"title": {"text": "confidence (top-class probability)"}, "range": [0, 1.02]}
    layout["yaxis"] = {"title": {"text": "accuracy"}, "range": [0, 1.02]}
    return {"data": traces, "layout": layout}
