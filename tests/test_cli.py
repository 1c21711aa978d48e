"""The command line end to end: real data, real models, a process per cell. The commands run in
the test's process (`conftest.harness`), bad input as a process of its own, as a shell sees it."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
from conftest import harness, harness_process

from harness.store import Store, load_records

TINY = """
name: tiny
tasks:
  - {name: sst2, splits: {train: "train[:2000]", eval: validation}}
  - rte
  - stsb
models:
  - {adapter: cnn, label: cnn, params: {embed_dim: 32, num_filters: 16, vocab_size: 2000}}
  - adapter: hf
    label: minilm
    params: {pretrained: sentence-transformers/all-MiniLM-L6-v2}
    tasks: [sst2, stsb]  # SST-2 shows it learns (> 62); STS-B that pairs and regression do (> 20)
    training: {learning_rate: 2.0e-4, epochs: 1}
    task_training:
      sst2: {max_train_examples: 480, max_eval_examples: 200}
      stsb: {learning_rate: 1.0e-4, epochs: 2}  # 2.0e-4 diverges on 160 pairs
  - adapter: hf
    label: tiny-bert
    params:
      config:
        model_type: bert
        hidden_size: 32
        num_hidden_layers: 2
        num_attention_heads: 2
        intermediate_size: 64
      vocab_size: 2000
seeds: [0]
speed: {passes: 1, latency_rows: 20}  # one timed pass: these tests need a speed, not its best estimate
training: {epochs: 1, batch_size: 16, max_seq_length: 48, max_train_examples: 160, max_eval_examples: 64}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    suite = folder / "tiny.yaml"
    suite.write_text(TINY)
    store = folder / "harness.db"
    result = harness("run", str(suite), "--store", str(store))
    return result, store


def test_run_trains_every_cell_and_stores_records(tiny_run):
    result, store = tiny_run
    assert result.returncode == 0, result.stdout + result.stderr
    records = load_records(store)
    assert len(records) == 8 and set(records["status"]) == {"ok"}
    assert set(records["task"]) == {"sst2", "rte", "stsb"}
    assert set(records["model"]) == {"cnn", "minilm", "tiny-bert"}
    assert "minilm" not in set(records[records.task == "rte"]["model"])  # a model's `tasks:` holds
    for _, row in records.iterrows():
        expected = {"sst2": {"accuracy"}, "rte": {"accuracy"}, "stsb": {"pearson", "spearmanr"}}[row["task"]]
        assert set(row["metrics"]) == expected
        fine_tuned_on_more = row["task"] == "sst2" and row["model"] == "minilm"
        assert row["train_examples"] == (480 if fine_tuned_on_more else 160)
        assert row["eval_examples"] == (200 if fine_tuned_on_more else 64)
        assert row["train_examples_per_s"] > 0 and row["infer_examples_per_s"] > 0
        assert row["params_total"] > 0 and row["peak_rss_mb"] > 100
        assert row["cuda_peak_allocated_mb"] is None or math.isnan(row["cuda_peak_allocated_mb"])
        assert row["git_commit"] is None or len(row["git_commit"]) == 40
        assert row["versions"]["torch"]
        if row["model"] == "minilm":  # its training is seconds long: the other processes' share of it
            assert 0 <= row["contention"]["train"] <= 1
        with Store(store, create=False) as db:
            predictions = db.predictions(row["run_id"], row["cell_id"])
        assert len(predictions) == row["eval_examples"]
    accuracies = records[records.task == "sst2"].set_index("model")["metric.accuracy"]
    assert accuracies["minilm"] > 62  # pretrained MiniLM learns SST-2 from 480 sentences (chance ≈ 50 ± 3.5)
    minilm = records[(records.task == "stsb") & (records.model == "minilm")].iloc[0]
    assert minilm["metric.pearson"] > 20  # regression head and MSE loss work


def test_show_reproduces_the_run_table(tiny_run):
    result, store = tiny_run
    shown = harness("show", "--store", str(store))
    assert shown.returncode == 0, shown.stderr
    table_rows = [line for line in shown.stdout.splitlines() if "│" in line]
    assert len(table_rows) >= 8
    for line in table_rows:
        assert line in result.stdout


def test_list_and_export(tiny_run):
    _, store = tiny_run
    run_id = load_records(store)["run_id"].iloc[0]
    runs = harness("list", "runs", "--store", str(store))
    assert run_id in runs.stdout
    models = harness("list", "models")
    assert "cnn" in models.stdout and "hf" in models.stdout
    csv = harness("export", run_id, "--format", "csv", "--store", str(store))
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert len(frame) == 8 and "metric.accuracy" in frame and "metric.pearson" in frame
    exported = json.loads(harness("export", run_id, "--format", "json", "--store", str(store)).stdout)
    assert {record["cell_id"] for record in exported} == set(frame["cell_id"])
    assert all("metrics" in record for record in exported)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "{dir}/broken.yaml"], "malformed YAML"),
        (["run", "{dir}/nothere.yaml"], "file not found"),
        (["run", "{dir}/unknown_key.yaml"], "unknown key"),
        (["run", "{dir}/ok.yaml", "--data-dir", "{dir}/no-such-dir"], "--data-dir is not a folder"),
        (["run", "{dir}/ok.yaml", "--model", "nobody"], "--model 'nobody' is not a model of this suite"),
        (["run", "{dir}/ok.yaml", "--task", "imdb"], "--task 'imdb' is not a task of this suite"),
        (["run", "{dir}/ok.yaml", "--seed", "7"], "--seed 7 is not a seed of this suite (fix: use one of 0)"),
        (["show", "no-such-run", "--store", "{dir}/store.db"], "no run 'no-such-run'"),
        (["show", "--store", "{dir}/missing.db"], "no results store"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    (tmp_path / "broken.yaml").write_text("name: x\ntasks: [sst2\n")
    (tmp_path / "unknown_key.yaml").write_text(TINY + "learning_rate: 0.1\n")
    (tmp_path / "ok.yaml").write_text(TINY)
    from harness.store import Store

    Store(tmp_path / "store.db").close()
    result = harness_process(*[a.format(dir=tmp_path) for a in args])  # as a shell sees it
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_failed_cells_are_recorded_and_resume_finishes_them(tmp_path, data_dir):
    # a mirror that has GLUE but not IMDb: the imdb cell fails, the sst2 cell does not
    partial = tmp_path / "mirror" / "hf" / "datasets"
    partial.mkdir(parents=True)
    (partial / "nyu-mll").symlink_to(data_dir / "hf" / "datasets" / "nyu-mll")
    suite = tmp_path / "two.yaml"
    suite.write_text(
        "name: two\ntasks: [sst2, imdb]\n"
        "models: [{adapter: cnn, params: {embed_dim: 16, num_filters: 8, vocab_size: 1000}}]\n"
        "training: {epochs: 1, max_seq_length: 64, max_train_examples: 100, max_eval_examples: 50}\n"
    )
    store = tmp_path / "harness.db"
    first = harness("run", str(suite), "--store", str(store), "--data-dir", str(tmp_path / "mirror"))
    assert first.returncode == 1, first.stdout + first.stderr
    records = load_records(store).set_index("task")
    assert records.loc["sst2", "status"] == "ok"
    assert records.loc["imdb", "status"] == "failed"
    assert (
        "stanfordnlp/imdb" in records.loc["imdb", "error"]
        and "HARNESS_DATA_DIR" in records.loc["imdb", "error"]
    )

    second = harness("run", str(suite), "--store", str(store), "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 already done" in second.stdout
    records = load_records(store)
    assert records["run_id"].nunique() == 1 and set(records["status"]) == {"ok"}
    assert len(records) == 2


def test_model_filter_runs_one_model_and_resume_adds_another_to_the_same_run(tmp_path):
    suite = tmp_path / "pair.yaml"
    suite.write_text(
        "name: pair\ntasks: [sst2]\nmodels:\n"
        "  - {adapter: cnn, label: narrow, params: {embed_dim: 16, num_filters: 8, vocab_size: 1000}}\n"
        "  - {adapter: cnn, label: wide, params: {embed_dim: 16, num_filters: 32, vocab_size: 1000}}\n"
        "training: {epochs: 1, max_seq_length: 64, max_train_examples: 100, max_eval_examples: 50}\n"
    )
    store = tmp_path / "harness.db"
    first = harness("run", str(suite), "--store", str(store), "--model", "narrow")
    assert first.returncode == 0, first.stdout + first.stderr
    assert list(load_records(store)["model"]) == ["narrow"]

    second = harness("run", str(suite), "--store", str(store), "--resume", "--model", "wide")
    assert second.returncode == 0, second.stdout + second.stderr
    records = load_records(store)
    assert sorted(records["model"]) == ["narrow", "wide"] and records["run_id"].nunique() == 1


def test_task_and_seed_filters_run_only_those_cells_as_a_new_run(tmp_path):
    suite = tmp_path / "part.yaml"
    suite.write_text(
        "name: part\ntasks: [sst2, rte]\nseeds: [0, 1]\nmodels:\n"
        "  - {adapter: cnn, label: narrow, params: {embed_dim: 16, num_filters: 8, vocab_size: 1000}}\n"
        "  - {adapter: tfidf}\n"
        "training: {epochs: 1, max_seq_length: 64, max_train_examples: 100, max_eval_examples: 50}\n"
    )
    store = tmp_path / "harness.db"
    first = harness("run", str(suite), "--store", str(store), "--task", "rte", "--seed", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    records = load_records(store)
    assert list(zip(records["task"], records["model"], records["seed"], strict=True)) == [
        ("rte", "narrow", 1)
    ]

    second = harness("run", str(suite), "--store", str(store), "--model", "tfidf", "--task", "sst2")
    assert second.returncode == 0, second.stdout + second.stderr
    records = load_records(store)
    assert sorted(zip(records["task"], records["model"], records["seed"], strict=True)) == [
        ("rte", "narrow", 1),
        ("sst2", "tfidf", 0),
    ]
    assert records["run_id"].nunique() == 2  # without --resume, each selection is a run of its own

    # the fitted model runs one seed: nothing matches, and nothing runs
    none = harness_process("run", str(suite), "--store", str(store), "--model", "tfidf", "--seed", "1")
    assert none.returncode == 2, none.stdout + none.stderr
    assert "no cell of this suite matches --model tfidf --seed 1" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1 and len(load_records(store)) == 2
