"""Nothing lost, nothing overwritten, whatever the input: each silent-loss bug that a new user
could hit, on real data, with the behaviour it has now."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import harness
from typer.testing import CliRunner

from harness.cell import run_cell
from harness.compare import Thresholds, compare, has_regression, load_side, save_baseline
from harness.config import CellSpec, ModelSpec, TrainingSettings
from harness.errors import InputError
from harness.models.hf import ensure_pad_token
from harness.planning import expand_cells, load_suite
from harness.record import CellRecord
from harness.runner import keep, run_suite
from harness.store import Store, load_records
from harness.tasks.data import load_task_data
from harness.tasks.metrics import compute_metrics
from harness.tasks.registry import builtin_task

REPO = Path(__file__).resolve().parents[1]
TINY_CNN = "{adapter: cnn, label: cnn, params: {embed_dim: 16, num_filters: 8, vocab_size: 1000}}"
TINY_TRAINING = "training: {epochs: 1, max_seq_length: 32, max_train_examples: 120, max_eval_examples: 40}\n"


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def tiny_spec(data_dir: Path, task: str = "sst2", label: str = "cnn", **training) -> CellSpec:
    settings = {"epochs": 1, "max_seq_length": 32, "max_train_examples": 120, "max_eval_examples": 40}
    return CellSpec(
        suite="reliability",
        task=builtin_task(task),
        model=ModelSpec(
            adapter="cnn", label=label, params={"embed_dim": 16, "num_filters": 8, "vocab_size": 1000}
        ),
        seed=0,
        training=TrainingSettings(**{**settings, **training}),
        threads=1,
        data_dir=str(data_dir),
    )


# --------------------------------------------------------------------------- 1. duplicate cell ids


def test_a_task_listed_twice_is_refused_naming_both_entries(tmp_path):
    suite = tmp_path / "twice.yaml"
    suite.write_text(
        'name: twice\ntasks: [sst2, {name: sst2, splits: {train: "train[:500]", eval: validation}}]\n'
        f"models: [{TINY_CNN}]\n{TINY_TRAINING}"
    )
    one_line_error(
        harness("run", str(suite), "--store", str(tmp_path / "h.db")),
        "tasks.0/models.0/seeds.0 and tasks.1/models.0/seeds.0",
        "sst2__cnn__seed0",
        "a task may appear once",
    )
    assert not (tmp_path / "h.db").exists() or load_records(tmp_path / "h.db").empty


def test_a_repeated_seed_is_refused(tmp_path):
    suite = tmp_path / "seeds.yaml"
    suite.write_text(f"name: seeds\ntasks: [sst2]\nmodels: [{TINY_CNN}]\nseeds: [0, 1, 0]\n{TINY_TRAINING}")
    with pytest.raises(InputError) as caught:
        expand_cells(load_suite(suite), suite)
    assert caught.value.field == "seeds.2" and "repeated seed" in str(caught.value)


def test_a_copied_task_file_must_carry_its_own_name(tmp_path):
    (tmp_path / "tasks").mkdir()
    copied = (REPO / "harness" / "tasks" / "builtin" / "sst2.yaml").read_text()
    (tmp_path / "tasks" / "sst2-small.yaml").write_text(copied)  # `name: sst2` left as it was
    suite = tmp_path / "copy.yaml"
    suite.write_text(f"name: copy\ntasks: [sst2, sst2-small]\nmodels: [{TINY_CNN}]\n{TINY_TRAINING}")
    one_line_error(
        harness("run", str(suite), "--store", str(tmp_path / "h.db")),
        "sst2-small.yaml: name",
        "differs from the file name 'sst2-small'",
    )


# --------------------------------------------------------------------------- 2. labels as paths


def test_any_label_text_stays_a_label_and_files_stay_inside_the_run_folder(tmp_path, data_dir):
    suite = tmp_path / "labels.yaml"
    labels = ["../../escaped", "cnn/wide", "a b: c?"]
    models = "\n".join(
        f"  - {{adapter: cnn, label: {json.dumps(label)}, params: {{embed_dim: 16, num_filters: {8 + i}, "
        "vocab_size: 1000}}"
        for i, label in enumerate(labels)
    )
    suite.write_text(f"name: labels\ntasks: [sst2]\nmodels:\n{models}\n{TINY_TRAINING}")
    store = tmp_path / "store" / "h.db"
    summary = run_suite(suite, store, _console(), str(data_dir), executor="inline")
    assert (summary.ran, summary.failed, summary.unsaved) == (3, 0, 0)
    records = load_records(store)
    assert sorted(records["model"]) == sorted(labels) and set(records["status"]) == {"ok"}
    run_folder = (store.parent / "runs" / summary.run_id).resolve()
    written = [p.resolve() for p in tmp_path.rglob("*.parquet")]
    assert len(written) == 3 and all(p.is_relative_to(run_folder / "predictions") for p in written)
    with Store(store, create=False) as db:
        for row in records.itertuples():
            assert len(db.predictions(row.run_id, row.cell_id)) == 40


def test_a_failed_predictions_write_keeps_every_record_and_the_run_goes_on(tmp_path, data_dir):
    suite = tmp_path / "blocked.yaml"
    suite.write_text(f"name: blocked\ntasks: [sst2, rte]\nmodels: [{TINY_CNN}]\n{TINY_TRAINING}")
    store_path = tmp_path / "h.db"
    with Store(store_path) as store:  # a run to resume whose predictions folder cannot be made
        store.start_run("blocked-run", "blocked", str(suite), 2)
        store.finish_run("blocked-run", "interrupted")
        store.run_folder("blocked-run").mkdir(parents=True)
        (store.run_folder("blocked-run") / "predictions").write_text("a file where the folder goes")
    summary = run_suite(suite, store_path, _console(), str(data_dir), resume=True, executor="inline")
    assert summary.run_id == "blocked-run" and (summary.ran, summary.failed, summary.unsaved) == (2, 0, 2)
    records = load_records(store_path)
    assert len(records) == 2 and set(records["status"]) == {"ok"}
    for row in records.itertuples():
        assert row.predictions_file is None and row.metrics["accuracy"] > 0
        assert any("predictions not saved" in note for note in row.notes)
    with Store(store_path, create=False) as store:
        assert store.run_status("blocked-run") == "failed"  # said, not silent


def test_a_record_the_store_cannot_take_is_kept_as_json(tmp_path, data_dir):
    result = run_cell(tiny_spec(data_dir), "run-x")
    store = Store(tmp_path / "h.db")
    store.close()  # every write now fails
    assert keep(store, tiny_spec(data_dir), result, "run-x", _console()) is False
    (kept,) = (tmp_path / "runs" / "run-x" / "unsaved").iterdir()
    assert json.loads(kept.read_text())["metrics"] == result.record.metrics


# --------------------------------------------------------------------------- 4 and 6. NaN metrics


def constant_stsb_records(data_dir: Path, run_id: str) -> list[CellRecord]:
    """Two seeds of a constant STS-B predictor on the real dev set: Pearson is undefined."""
    data = load_task_data(builtin_task("stsb"), TrainingSettings(max_train_examples=10), str(data_dir))
    labels = data.eval[""].labels
    records = []
    for seed in (0, 1):
        spec = tiny_spec(data_dir, task="stsb").model_copy(update={"seed": seed})
        record = CellRecord.for_spec(spec, run_id)
        record.status = "ok"
        record.metrics = compute_metrics(
            ["pearson", "spearmanr"], np.full(len(labels), 2.5, np.float32), labels
        )
        records.append(record)
    return records


def test_metrics_json_is_strict_and_sqlite_reads_an_undefined_metric_as_null(tmp_path, data_dir):
    (record, _) = constant_stsb_records(data_dir, "run-nan")
    assert np.isnan(record.metrics["pearson"])
    with Store(tmp_path / "h.db") as store:
        store.start_run("run-nan", "reliability", "x.yaml", 1)
        store.write_cell(record)
    db = sqlite3.connect(tmp_path / "h.db")
    valid, pearson = db.execute(
        "SELECT json_valid(metrics), json_extract(metrics, '$.pearson') FROM records"
    ).fetchone()
    db.close()
    assert (valid, pearson) == (1, None)
    assert np.isnan(load_records(tmp_path / "h.db")["metric.pearson"].iloc[0])  # NaN again in pandas


def test_a_metric_undefined_on_both_sides_is_not_a_regression(tmp_path, data_dir):
    with Store(tmp_path / "h.db") as store:
        for run_id in ("base", "current"):
            store.start_run(run_id, "reliability", "x.yaml", 2)
            for record in constant_stsb_records(data_dir, run_id):
                store.write_cell(record)
    save_baseline(load_side("base", tmp_path / "h.db"), tmp_path / "base.json")
    assert "NaN" not in (tmp_path / "base.json").read_text()
    results = compare(
        load_side(str(tmp_path / "base.json"), tmp_path / "h.db"),
        load_side("current", tmp_path / "h.db"),
        Thresholds(),
    )
    assert {r.metric: r.verdict for r in results} == {"pearson": "undefined", "spearmanr": "undefined"}
    assert not has_regression(results)
    assert all("undefined (NaN) on every seed of both sides" in r.reason for r in results)


# --------------------------------------------------------------------------- 5. tiny evaluation sets


@pytest.mark.parametrize("rows", [1, 5])
def test_an_evaluation_set_of_one_to_five_rows_measures_latency(data_dir, rows):
    result = run_cell(tiny_spec(data_dir, max_eval_examples=rows), "run-tiny-eval")
    record = result.record
    assert record.status == "ok" and record.eval_examples == rows == len(result.predictions)
    assert 0 < record.latency_p50_ms <= record.latency_p95_ms


# --------------------------------------------------------------------------- 7. connections, pad tokens, f1


def test_every_store_connection_a_command_opens_is_closed(tmp_path, data_dir, monkeypatch):
    from harness.cli import app

    store = tmp_path / "h.db"
    with Store(store) as db:
        db.start_run("run-a", "reliability", "x.yaml", 1)
        result = run_cell(tiny_spec(data_dir), "run-a")
        db.write_cell(result.record, result.predictions)
        db.finish_run("run-a", "ok")
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def tracking_connect(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        opened.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", tracking_connect)
    runner = CliRunner()
    commands = [
        ["list", "runs"],
        ["show"],
        ["show", "no-such-run"],
        ["export", "run-a", "--format", "json"],
        ["baseline", "save", "run-a", "--out", str(tmp_path / "b.json")],
        ["compare", str(tmp_path / "b.json"), "run-a", "--no-cost"],
        ["report", "run-a", "--out", str(tmp_path / "report"), "--no-references"],
    ]
    for command in commands:
        before = len(opened)
        outcome = runner.invoke(app, [*command, "--store", str(store)])
        assert outcome.exit_code in (0, 2), (command, outcome.output)
        assert len(opened) > before, command
    for connection in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")


def gpt2_tokenizer_without_pad(folder: Path, data_dir: Path) -> Path:
    """A real byte-level BPE tokenizer trained on SST-2 sentences, with EOS and no pad token (as GPT-2's)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    data = load_task_data(builtin_task("sst2"), TrainingSettings(max_train_examples=2000), str(data_dir))
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(data.train.text_a, vocab_size=1000, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    assert tokenizer.pad_token is None
    tokenizer.save_pretrained(folder)
    return folder


def test_an_hf_tokenizer_without_a_pad_token_pads_with_eos_and_says_so(tmp_path, data_dir):
    folder = gpt2_tokenizer_without_pad(tmp_path / "gpt2-tok", data_dir)
    params = {
        "config": {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2},
        "tokenizer": str(folder),
    }
    spec = tiny_spec(data_dir).model_copy(
        update={"model": ModelSpec(adapter="hf", label="tiny-gpt2", params=params)}
    )
    from harness.models.registry import resolve_model_spec

    spec = spec.model_copy(update={"model": resolve_model_spec(spec.model, "test", "models.0")})
    result = run_cell(spec, "run-gpt2")
    assert result.record.status == "ok" and result.record.metrics["accuracy"] > 0
    assert result.record.notes == [
        "the tokenizer has no pad token; padding with its EOS token '<|endoftext|>'"
    ]


def test_a_tokenizer_with_no_pad_eos_or_unk_gets_a_pad_token_added(tmp_path, data_dir):
    from transformers import AutoTokenizer

    folder = gpt2_tokenizer_without_pad(tmp_path / "tok", data_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.eos_token = None
    size = len(tokenizer)
    note = ensure_pad_token(tokenizer)
    assert "added [PAD]" in note and tokenizer.pad_token == "[PAD]" and len(tokenizer) == size + 1


def test_binary_f1_on_a_multi_class_task_is_refused_before_training(tmp_path):
    (tmp_path / "tasks").mkdir()
    mnli = (REPO / "harness" / "tasks" / "builtin" / "mnli.yaml").read_text()
    (tmp_path / "tasks" / "mnli3.yaml").write_text(
        mnli.replace("name: mnli", "name: mnli3").replace("metrics: [accuracy]", "metrics: [accuracy, f1]")
    )
    suite = tmp_path / "f1.yaml"
    suite.write_text(f"name: f1\ntasks: [mnli3]\nmodels: [{TINY_CNN}]\n{TINY_TRAINING}")
    one_line_error(
        harness("run", str(suite), "--store", str(tmp_path / "h.db")),
        "mnli3.yaml",
        "defined for two classes and this task has 3",
        "f1_macro",
    )


# --------------------------------------------------------------------------- 8. the README's set-up


def test_the_readme_setup_is_two_commands_and_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    setup = re.search(r"## Set up.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make quickstart", "make test"], setup
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest -q$", makefile, re.M), "make test runs pytest"
    assert re.search(r"apt-get install -y\S* .*chromium", makefile)  # the report test's browser
    assert "torch==$(TORCH_VERSION)" in makefile  # torch pinned first, never a bare requirement
    assert "`python -m pytest -q`" in readme  # the test command by hand, what `make test` runs
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if not line.startswith("#")]
    assert "make install browser tcmalloc" in ci  # the prerequisites of `make test`
    assert ci[-1] == ".venv/bin/python -m pytest -q"


def _console():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"), width=120)  # noqa: SIM115 (closed with the process)


def test_the_driver_side_imports_no_torch():
    driver = "harness.cli harness.runner harness.planning harness.executors.local harness.executors.inline"
    driver += " harness.store harness.progress harness.compare harness.report.build"
    code = f"import sys\nfor name in {driver.split()!r}: __import__(name)\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
