"""Data loading through HF datasets: mirror, slicing, pairs, MNLI's two eval splits, missing data."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config import DatasetSource, TaskSpec, TrainingSettings
from harness.errors import DataMissingError
from harness.tasks.data import load_task_data, resolve_source
from harness.tasks.registry import builtin_task


def task(name: str, **overrides) -> TaskSpec:
    base = builtin_task(name)
    return TaskSpec.model_validate({**base.model_dump(), **overrides})


def test_sst2_from_the_mirror_with_slicing(data_dir):
    sst2 = task("sst2", splits={"train": "train[:400]", "eval": "train[400:500]"})
    data = load_task_data(sst2, TrainingSettings(), str(data_dir))
    assert len(data.train) == 400 and len(data.eval[""]) == 100
    assert data.num_labels == 2 and data.label_names == ["negative", "positive"]
    assert data.train.text_b is None
    assert list(data.eval[""].row_ids[:3]) == [400, 401, 402]  # the slice is the rows asked for


def test_subsets_are_fixed_and_shuffled(data_dir):
    imdb = task("imdb")
    settings = TrainingSettings(max_train_examples=300, max_eval_examples=200)
    first = load_task_data(imdb, settings, str(data_dir))
    again = load_task_data(imdb, settings, str(data_dir))
    assert first.train.fingerprint() == again.train.fingerprint()
    # the IMDb files are sorted by label: a fixed shuffle must still see both classes
    assert 0.3 < first.train.labels.mean() < 0.7 and 0.3 < first.eval[""].labels.mean() < 0.7


def test_mnli_path_three_labels_two_texts_matched_and_mismatched(data_dir):
    mnli = task(
        "mnli",
        dataset={"path": "nyu-mll/glue", "name": "mnli_subset"},
        splits={
            "train": "train[:320]",
            "eval": {"matched": "train[320:400]", "mismatched": "train[400:]"},
        },
    )
    data = load_task_data(mnli, TrainingSettings(), str(data_dir))
    assert data.num_labels == 3
    assert data.label_names == ["entailment", "neutral", "contradiction"]
    assert set(data.eval) == {"matched", "mismatched"}
    assert len(data.eval["mismatched"]) == 80
    assert data.train.text_b is not None and len(data.train.text_b) == 320
    assert set(np.unique(data.train.labels)) == {0, 1, 2}


def test_qqp_and_qnli_samples_load_as_pairs(data_dir):
    for name, config in (("qqp", "qqp_subset"), ("qnli", "qnli_subset")):
        spec = task(
            name,
            dataset={"path": "nyu-mll/glue", "name": config},
            splits={"train": "train[:200]", "eval": "train[200:]"},
        )
        data = load_task_data(spec, TrainingSettings(), str(data_dir))
        assert data.num_labels == 2 and data.train.text_b is not None and len(data.eval[""]) == 120


def test_stsb_labels_are_float_scores(data_dir):
    data = load_task_data(task("stsb"), TrainingSettings(max_train_examples=50), str(data_dir))
    assert data.num_labels == 1 and data.train.labels.dtype == np.float32
    assert 0.0 <= data.train.labels.min() and data.train.labels.max() <= 5.0


def test_missing_split_says_which_where_and_how_to_fix(data_dir):
    with pytest.raises(DataMissingError) as caught:
        load_task_data(task("qnli"), TrainingSettings(), str(data_dir))  # the mirror lacks QNLI train
    message = str(caught.value)
    assert "split 'train'" in message and "nyu-mll/glue" in message and "qnli" in message
    assert "HARNESS_DATA_DIR" in message and "--data-dir" in message


def test_unlabelled_test_split_is_refused(data_dir):
    with pytest.raises(DataMissingError, match="unlabelled"):
        load_task_data(
            task("sst2", splits={"train": "train[:50]", "eval": "test"}),
            TrainingSettings(),
            str(data_dir),
        )


def test_hub_id_is_used_when_no_mirror_has_the_dataset(data_dir, tmp_path):
    source = DatasetSource(path="nyu-mll/glue", name="sst2")
    assert resolve_source(source, None) == "nyu-mll/glue"
    assert resolve_source(source, tmp_path) == "nyu-mll/glue"
    assert resolve_source(source, data_dir) == str(data_dir / "hf" / "datasets" / "nyu-mll" / "glue")
