"""GLUE metrics: hand-checked values, and the known floors of a constant predictor on real dev sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.config import TrainingSettings
from harness.tasks.data import load_task_data
from harness.tasks.metrics import compute_metrics
from harness.tasks.registry import builtin_task


def test_hand_checked_values():
    predictions = np.array([1, 1, 0, 0, 1, 0])
    references = np.array([1, 0, 0, 1, 1, 0])
    # tp=2 fp=1 fn=1 tn=2: accuracy 4/6, precision = recall = 2/3 → F1 2/3,
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 3 / 9 = 1/3
    got = compute_metrics(["accuracy", "f1", "matthews_correlation"], predictions, references)
    assert got["accuracy"] == pytest.approx(100 * 4 / 6)
    assert got["f1"] == pytest.approx(100 * 2 / 3)
    assert got["matthews_correlation"] == pytest.approx(100 / 3)


def test_correlations_hand_checked():
    references = np.array([1.0, 2.0, 3.0, 4.0])
    got = compute_metrics(["pearson", "spearmanr"], np.array([2.0, 4.0, 6.0, 8.0]), references)
    assert got == pytest.approx({"pearson": 100.0, "spearmanr": 100.0})
    # monotone but not linear: Spearman stays perfect, Pearson does not
    got = compute_metrics(["pearson", "spearmanr"], np.array([1.0, 2.0, 3.0, 40.0]), references)
    assert got["spearmanr"] == pytest.approx(100.0)
    assert 70 < got["pearson"] < 90


def test_suffix_names_metrics_per_eval_split():
    got = compute_metrics(["accuracy"], np.array([1, 0]), np.array([1, 1]), suffix="matched")
    assert got == {"accuracy_matched": 50.0}


def _dev_labels(task_name: str, data_dir) -> np.ndarray:
    task = builtin_task(task_name)
    data = load_task_data(task, TrainingSettings(max_train_examples=10), str(data_dir))
    return data.eval[""].labels


def test_constant_predictor_floors_on_real_dev_sets(data_dir):
    sst2 = _dev_labels("sst2", data_dir)
    assert compute_metrics(["accuracy"], np.ones_like(sst2), sst2)["accuracy"] == pytest.approx(
        50.92, abs=0.005
    )

    mrpc = _dev_labels("mrpc", data_dir)
    got = compute_metrics(["accuracy", "f1"], np.ones_like(mrpc), mrpc)
    assert got["accuracy"] == pytest.approx(68.38, abs=0.005)
    assert got["f1"] == pytest.approx(81.22, abs=0.005)

    cola = _dev_labels("cola", data_dir)
    assert compute_metrics(["matthews_correlation"], np.ones_like(cola), cola)["matthews_correlation"] == 0.0

    stsb = _dev_labels("stsb", data_dir)
    got = compute_metrics(["pearson", "spearmanr"], np.full_like(stsb, 2.5), stsb)
    assert math.isnan(got["pearson"]) and math.isnan(got["spearmanr"])
