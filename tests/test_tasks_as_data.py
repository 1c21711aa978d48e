"""Tasks and metrics as data: a task on the user's own CSV or JSONL is one YAML file, through
run, show, report and compare; a metric is one registration; bad task files are one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import harness
from scipy import stats
from sklearn.metrics import f1_score, roc_auc_score

from harness.cell import run_cell
from harness.config import CellSpec, ModelSpec, TaskSpec, TrainingSettings
from harness.store import Store, load_records
from harness.tasks.data import load_task_data
from harness.tasks.metrics import compute_metrics, get_metric, register_metric
from harness.tasks.registry import builtin_task

CNN = "{adapter: cnn, label: cnn, params: {embed_dim: 32, num_filters: 16, vocab_size: 2000}}"


def real_rows(data_dir: Path, task: str, train: int, evaluation: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real rows of a built-in task with its labels as their names (strings)."""
    data = load_task_data(builtin_task(task), TrainingSettings(), str(data_dir))
    frames = []
    for rows, limit in ((data.train, train), (data.eval[""], evaluation)):
        frame = pd.DataFrame(
            {"first": rows.text_a[:limit], "label": [data.label_names[i] for i in rows.labels[:limit]]}
        )
        if rows.text_b is not None:
            frame["second"] = rows.text_b[:limit]
        frames.append(frame)
    return frames[0], frames[1]


@pytest.fixture(scope="module")
def user_project(tmp_path_factory, data_dir) -> Path:
    """A user's folder: a suite, and beside it tasks/ with a CSV task and a JSONL pair task."""
    root = tmp_path_factory.mktemp("user-project")
    (root / "tasks" / "data").mkdir(parents=True)
    train, test = real_rows(data_dir, "sst2", 3000, 300)
    train.rename(columns={"first": "body", "label": "mood"}).to_csv(
        root / "tasks" / "data" / "train.csv", index=False
    )
    test.rename(columns={"first": "body", "label": "mood"}).to_csv(
        root / "tasks" / "data" / "test.csv", index=False
    )
    (root / "tasks" / "reviews.yaml").write_text(
        "name: reviews\ntitle: Movie reviews (CSV)\n"
        "dataset: {format: csv, data_files: {train: data/train.csv, test: data/test.csv}}\n"
        "splits: {train: train, eval: test}\ntext_fields: [body]\nlabel_field: mood\n"
        "metrics: [accuracy, f1_macro, roc_auc]\nprimary_metric: f1_macro\n"
    )
    train, test = real_rows(data_dir, "rte", 1200, 200)
    for name, frame in (("pairs-train.jsonl", train), ("pairs-test.jsonl", test)):
        frame.to_json(root / "tasks" / "data" / name, orient="records", lines=True)
    (root / "tasks" / "pairs.yaml").write_text(
        "name: pairs\ntitle: Entailment pairs (JSONL)\n"
        "dataset: {format: json, data_files: {train: data/pairs-train.jsonl, test: data/pairs-test.jsonl}}\n"
        "splits: {train: 'train[:90%]', eval: test}\ntext_fields: [first, second]\n"
        "label_map: {not_entailment: 0, entailment: 1}\nmetrics: [accuracy, f1]\nprimary_metric: accuracy\n"
    )
    (root / "mine.yaml").write_text(
        f"name: mine\nmodels: [{CNN}]\nseeds: [0, 1]\n"
        "tasks: [reviews, pairs, {name: sst2, splits: {train: 'train[:3000]', eval: 'validation[:300]'}}]\n"
        "training: {epochs: 4, learning_rate: 3.0e-3, max_seq_length: 64}\n"
    )
    return root


@pytest.fixture(scope="module")
def user_run(user_project) -> subprocess.CompletedProcess:
    return harness("run", "mine.yaml", "--store", "results/h.db", cwd=user_project)


def test_a_csv_and_a_jsonl_task_with_string_labels_run_end_to_end(user_project, user_run):
    assert user_run.returncode == 0, user_run.stdout + user_run.stderr
    records = load_records(user_project / "results" / "h.db")
    assert len(records) == 6 and set(records["status"]) == {"ok"}
    reviews = records[records.task == "reviews"]
    assert set(reviews.iloc[0]["metrics"]) == {"accuracy", "f1_macro", "roc_auc"}
    assert reviews.iloc[0]["label_names"] == ["negative", "positive"]  # sorted set of train labels
    assert records[records.task == "pairs"].iloc[0]["label_names"] == ["not_entailment", "entailment"]
    # 3,000 real SST-2 sentences are learnable: every seed far above the majority class of the
    # 300 test rows (a label mix-up lands at or below it). Across seeds and CPUs the cnn reads
    # 64-71, so the bar is a significance level, not a figure inside that spread.
    test_labels = pd.read_csv(user_project / "tasks" / "data" / "test.csv")["mood"]
    majority = test_labels.value_counts(normalize=True).max()
    for accuracy in reviews["metric.accuracy"]:
        correct = round(accuracy / 100 * len(test_labels))
        assert stats.binomtest(correct, len(test_labels), majority, alternative="greater").pvalue < 1e-4
    # the same rows through the CSV builder and through the Hub-style loader: the same result
    sst2 = records[records.task == "sst2"].set_index("seed")["metric.accuracy"]
    assert reviews.set_index("seed")["metric.accuracy"].to_dict() == sst2.to_dict()
    assert (records[records.task == "pairs"]["train_examples"] == 1080).all()  # train[:90%]
    with Store(user_project / "results" / "h.db", create=False) as db:
        row = reviews.iloc[0]
        stored = db.predictions(row["run_id"], row["cell_id"])
    scores = np.stack(stored["logits"])
    probability = np.exp(scores[:, 1]) / np.exp(scores).sum(axis=1)
    assert row["metric.roc_auc"] == pytest.approx(100 * roc_auc_score(stored["label"], probability), abs=1e-6)
    assert row["metric.f1_macro"] == pytest.approx(
        100 * f1_score(stored["label"], stored["prediction"], average="macro")
    )


def test_show_report_and_compare_treat_the_user_tasks_like_built_ins(user_project, user_run):
    shown = harness("show", "--store", "results/h.db", cwd=user_project)
    assert shown.returncode == 0 and "reviews" in shown.stdout and "f1_macro" in shown.stdout
    report = harness("report", "--store", "results/h.db", "--out", "report", cwd=user_project)
    assert report.returncode == 0, report.stderr
    markdown = (user_project / "report" / "leaderboard.md").read_text()
    assert "Movie reviews (CSV)" in markdown and "Entailment pairs (JSONL)" in markdown
    # of GLUE's tasks only sst2 ran (the user tasks are not GLUE's): no group score
    assert "GLUE-9" not in markdown.split("## Per task")[0]
    assert markdown.index("Movie reviews (CSV)") < markdown.index("Entailment pairs (JSONL)")  # suite order
    saved = harness(
        "baseline", "save", "latest", "--out", "base.json", "--store", "results/h.db", cwd=user_project
    )
    assert saved.returncode == 0, saved.stderr
    compared = harness(
        "compare", "base.json", "latest", "--store", "results/h.db", "--no-cost", cwd=user_project
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert (
        "reviews" in compared.stdout and "roc_auc" in compared.stdout and "no regression" in compared.stdout
    )


def test_the_task_list_says_where_each_task_comes_from(user_project):
    listed = harness("list", "tasks", "--suite", "mine.yaml", cwd=user_project)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.startswith("│")}
    assert "beside the suite" in rows["reviews"] and "built-in" in rows["sst2"]


def test_a_multi_class_task_reports_sklearns_macro_f1(data_dir):
    mnli = builtin_task("mnli")
    task = TaskSpec.model_validate(
        {
            **mnli.model_dump(),
            "name": "mnli_sample",
            "dataset": {"path": "nyu-mll/glue", "name": "mnli_subset"},
            "splits": {"train": "train[:380]", "eval": "train[380:]"},
            "metrics": ["accuracy", "f1_macro"],
            "primary_metric": "f1_macro",
        }
    )
    spec = CellSpec(
        suite="t",
        task=task,
        model=ModelSpec(adapter="cnn", params={"embed_dim": 16, "num_filters": 8, "vocab_size": 1000}),
        seed=0,
        training=TrainingSettings(epochs=2, max_seq_length=64),
        threads=1,
        data_dir=str(data_dir),
    )
    result = run_cell(spec, "run-mnli")
    frame = result.predictions
    assert len(frame) == 100 and set(frame["label"]) == {0, 1, 2}
    expected = 100 * f1_score(frame["label"], frame["prediction"], average="macro", zero_division=0)
    assert result.record.metrics["f1_macro"] == pytest.approx(expected, abs=1e-9)


def test_a_new_metric_is_one_registration(data_dir):
    from sklearn.metrics import balanced_accuracy_score

    @register_metric("balanced_accuracy_test")
    def balanced(predictions, labels):
        """Mean recall over classes."""
        return float(balanced_accuracy_score(labels, predictions))

    assert get_metric("balanced_accuracy_test").higher_is_better
    task = TaskSpec.model_validate(
        {**builtin_task("sst2").model_dump(), "metrics": ["accuracy", "balanced_accuracy_test"]}
    )
    outputs = np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    got = compute_metrics(task.metrics, outputs, labels)
    assert got == {"accuracy": 75.0, "balanced_accuracy_test": pytest.approx(100 * (2 / 3 + 1) / 2)}


# --------------------------------------------------------------------------- bad task files


BAD_TASKS = [
    ("format: xlsx", "dataset.format", "Input should be 'csv', 'json' or 'parquet'"),
    ("data/nothere.csv", "dataset.data_files.train", "not found"),
    ("label_map: {billing: 0, tech: 1}", "label_map", "that label_map does not name"),
    ("unseen", "team", "that the training split never has"),
    ("text_fields: [subject]", "text_fields", "has no column(s) ['subject']"),
    ("empty", "text_fields", "has an empty text in column 'body'"),
    ("latin-1", "dataset.data_files", "not UTF-8"),
]


@pytest.mark.parametrize(("case", "field", "words"), BAD_TASKS, ids=[c[0].split(":")[0] for c in BAD_TASKS])
def test_a_bad_task_file_is_one_line_and_exit_2(tmp_path, case, field, words):
    data = tmp_path / "tasks" / "data"
    data.mkdir(parents=True)
    train = (
        "body,team\nmy invoice is wrong,billing\nthe app crashes,tech\nwant a demo,sales\n"
        "refund please,billing\n"
    )
    test = "body,team\ncharged twice,billing\nlogin fails,tech\n"
    if case == "unseen":
        test += "where is my parcel,shipping\n"
    if case == "empty":
        train += ",tech\n"
    (data / "train.csv").write_text(train)
    if case == "latin-1":
        (data / "test.csv").write_bytes((test + "caf\xe9 bill,billing\n").encode("latin-1"))
    else:
        (data / "test.csv").write_text(test)
    task = {
        "name": "tickets",
        "dataset": {"format": "csv", "data_files": {"train": "data/train.csv", "test": "data/test.csv"}},
        "splits": {"train": "train", "eval": "test"},
        "text_fields": ["body"],
        "label_field": "team",
        "metrics": ["accuracy", "f1_macro"],
        "primary_metric": "f1_macro",
    }
    if case.startswith("format"):
        task["dataset"]["format"] = "xlsx"
    if case.startswith("data/"):
        task["dataset"]["data_files"]["train"] = case
    if case.startswith("label_map"):
        task["label_map"] = {"billing": 0, "tech": 1}
    if case.startswith("text_fields"):
        task["text_fields"] = ["subject"]
    (tmp_path / "tasks" / "tickets.yaml").write_text(json.dumps(task))  # JSON is YAML
    (tmp_path / "suite.yaml").write_text(f"name: s\ntasks: [tickets]\nmodels: [{CNN}]\n")
    result = harness("run", "suite.yaml", "--store", "h.db", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"tickets.yaml: {field}:" in result.stderr and words in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran
