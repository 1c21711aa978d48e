"""Robustness probes on real rows: deterministic perturbations that keep a row's id, a rate of 0
that reproduces the clean metric, lowercasing that an uncased model does not notice, probes that
say why they do not apply, and the figures as metrics `compare` reads and the report tabulates."""

from __future__ import annotations

import pytest

from harness.cell import run_cell
from harness.compare import probe_metrics
from harness.config import CellSpec, ModelSpec, ProbeSpec, TrainingSettings
from harness.errors import InputError
from harness.planning import expand_cells, load_suite
from harness.probes import applies, perturb, perturbed_rows, probe_sample
from harness.report.robustness import robustness_table
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task

CNN = ModelSpec(adapter="cnn", params={"embed_dim": 16, "num_filters": 8, "vocab_size": 2000})


def cell(data_dir, task: str, probes: list[ProbeSpec], probe_rows: int = 2000):
    spec = CellSpec(
        suite="probes",
        task=builtin_task(task),
        model=CNN,
        seed=0,
        training=TrainingSettings(epochs=2, learning_rate=2e-3, max_seq_length=48, max_train_examples=1500),
        threads=1,
        data_dir=str(data_dir),
        probes=probes,
        probe_rows=probe_rows,
    )
    return run_cell(spec, "run-probes").record


@pytest.fixture(scope="module")
def mrpc(data_dir):
    probes = [ProbeSpec(name="typos", rate=0.0), ProbeSpec(name="lowercase"), ProbeSpec(name="names")]
    return cell(data_dir, "mrpc", [*probes, ProbeSpec(name="negation")])


def test_a_perturbation_is_the_same_for_the_same_seed_and_row_and_keeps_the_row(data_dir):
    rows = load_task_data(builtin_task("mrpc"), TrainingSettings(max_eval_examples=200), str(data_dir)).eval[
        ""
    ]
    once, again = (perturbed_rows("typos", rows, seed=3, rate=0.3) for _ in range(2))
    assert once.text_a == again.text_a and once.text_b == again.text_b  # byte-identical
    other = perturbed_rows("typos", rows, seed=4, rate=0.3)
    assert other.text_a != once.text_a
    assert (once.row_ids == rows.row_ids).all() and (once.labels == rows.labels).all()
    changed = sum(a != b for a, b in zip(rows.text_a, once.text_a, strict=True))
    assert changed > 150  # 30% of the words of 4+ letters: nearly every sentence
    assert perturb("contractions", "it is n't bad", 0, 1, 1.0) == "it is not bad"
    assert perturb("contractions", "I do not know", 0, 1, 1.0) == "I don't know"
    assert perturb("negation", "the film is great", 0, 1, 1.0) == "the film is not great"
    assert perturb("negation", "the film is n't great", 0, 1, 1.0) == "the film is great"
    assert perturb("negation", "I can't stop watching", 0, 1, 1.0) == "I can stop watching"
    sample = probe_sample(rows, 50)
    assert len(sample) == 50 and (probe_sample(rows, 50).row_ids == sample.row_ids).all()


def test_a_rate_of_zero_is_the_clean_metric_and_lowercase_leaves_an_uncased_model_unmoved(mrpc):
    assert mrpc.status == "ok"
    typos, lowercase = mrpc.probes["typos"], mrpc.probes["lowercase"]
    assert typos["changed"] == 0 and typos["metrics"] == typos["clean_metrics"] == mrpc.metrics
    assert typos["invariance"] == 100.0
    assert lowercase["changed"] > 50  # MRPC's news sentences are cased
    assert (
        lowercase["invariance"] == 100.0 and lowercase["metrics"] == mrpc.metrics
    )  # the vocabulary lowercases
    assert mrpc.probes["names"]["changed"] > 0 and mrpc.probes["names"]["rows"] == 408
    negation = mrpc.probes["negation"]
    assert negation["status"] == "skipped" and "pair" in negation["reason"]
    worst = mrpc.probes["worst-case"]["metrics"]["accuracy"]
    assert worst <= min(mrpc.probes[name]["metrics"]["accuracy"] for name in ("typos", "lowercase", "names"))


def test_a_score_task_keeps_its_metric_and_says_invariance_needs_classes(data_dir):
    record = cell(data_dir, "stsb", [ProbeSpec(name="typos", rate=0.2)], probe_rows=300)
    typos = record.probes["typos"]
    assert typos["rows"] == 300 and set(typos["metrics"]) == {"pearson", "spearmanr"}
    assert typos["invariance"] is None and "score" in typos["reason"]
    assert "worst-case" not in record.probes
    assert 0 < record.probe_seconds < record.wall_seconds


def test_probe_figures_are_metrics_for_compare_and_a_table_for_the_report(mrpc):
    import pandas as pd

    metrics = probe_metrics(mrpc.probes)
    assert metrics["accuracy@typos"] == mrpc.metrics["accuracy"] and metrics["invariance@lowercase"] == 100.0
    assert "accuracy@worst-case" in metrics and not any(key.endswith("@negation") for key in metrics)
    records = pd.DataFrame([{"variant": "cnn", "probes": mrpc.probes}])
    table = robustness_table(records, ["cnn"], "accuracy")
    assert table.probes == ["typos", "lowercase", "names", "negation"] and table.rows == 408
    assert table.cells["cnn"]["typos"].change.mean == 0.0
    assert "pair" in table.cells["cnn"]["negation"].reason
    assert table.worst_case["cnn"].mean == mrpc.probes["worst-case"]["metrics"]["accuracy"]


def test_a_probe_listed_twice_or_unknown_is_refused_before_anything_trains(tmp_path):
    suite = tmp_path / "twice.yaml"
    suite.write_text(
        "name: t\ntasks: [sst2]\nmodels: [{adapter: cnn}]\nprobes: [typos, {name: typos, rate: 0.3}]\n"
    )
    with pytest.raises(InputError, match="listed twice"):
        load_suite(suite)
    suite.write_text("name: t\ntasks: [sst2]\nmodels: [{adapter: cnn}]\nprobes: [emoji]\n")
    with pytest.raises(InputError) as unknown:
        load_suite(suite)
    assert "probes" in str(unknown.value)
    suite.write_text("name: t\ntasks: [sst2]\nmodels: [{adapter: cnn}]\n")
    (plain,) = expand_cells(load_suite(suite), suite)
    suite.write_text("name: t\ntasks: [sst2]\nmodels: [{adapter: cnn}]\nprobes: [typos]\n")
    (probed,) = expand_cells(load_suite(suite), suite)
    assert plain.probes == [] and probed.config_hash != plain.config_hash  # a resume runs the probes
    assert plain.config_hash == plain.model_copy(update={"probe_rows": 10}).config_hash  # unset: as before


def test_negation_runs_on_every_sentiment_task_however_its_labels_are_spelled(data_dir):
    """SST-2 names its classes negative/positive, the Hub's IMDb neg/pos: both are sentiment, so
    negation runs on both (the why suite's first IMDb cells skipped it); a pair task is refused."""
    for task in ("sst2", "imdb"):
        names = load_task_data(builtin_task(task), TrainingSettings(max_eval_examples=10), str(data_dir))
        assert applies("negation", False, names.label_names) == "", task
    spec = CellSpec(
        suite="probes",
        task=builtin_task("imdb"),
        model=CNN,
        seed=0,
        training=TrainingSettings(epochs=1, max_seq_length=64, max_train_examples=300, max_eval_examples=100),
        threads=1,
        data_dir=str(data_dir),
        probes=[ProbeSpec(name="negation")],
    )
    negation = run_cell(spec, "run-probes").record.probes["negation"]
    assert negation["status"] == "ok" and negation["rows"] == 100
    assert 0 < negation["changed"] <= 100 and 0 <= negation["moved"] <= 100
    assert "pair" in applies("negation", True, ["negative", "positive"])
