"""`keep_models: true`: each cell's trained model lands in its run folder with its tokenizer and
its size in the record, and a fresh process that loads it reproduces the cell's stored
predictions and logits exactly (the same rows, the same batches)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import harness, write_suite

from harness.store import Store, load_records

SUITE = """
name: kept
tasks:
  - {name: sst2, training: {max_train_examples: 600, max_eval_examples: 200}}
models:
  - {adapter: cnn, label: cnn, params: {embed_dim: 16, num_filters: 8, vocab_size: 2000}}
  - {adapter: tfidf, label: tfidf}
seeds: [0]
threads: 1
keep_models: true
training: {epochs: 1, max_seq_length: 64}
"""

RELOAD = """
import sys, numpy as np, torch
from transformers import AutoTokenizer
from harness.batching import encode
from harness.config import TrainingSettings
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task
from harness.train import predict
folder = sys.argv[1]
model = torch.load(f"{folder}/model.pt", weights_only=False)
tokenizer = AutoTokenizer.from_pretrained(f"{folder}/tokenizer")
settings = TrainingSettings(max_train_examples=600, max_eval_examples=200, max_seq_length=64)
rows = load_task_data(builtin_task("sst2"), settings, sys.argv[2]).eval[""]
logits = predict(model, encode(tokenizer, rows, 64), 128, torch.device("cpu"), amp=False)
np.save(sys.argv[3], logits)
"""


def test_a_kept_model_reloads_in_a_fresh_process_and_reproduces_its_cell(tmp_path, data_dir):
    suite = write_suite(tmp_path / "suite.yaml", SUITE)
    ran = harness("run", str(suite), "--store", str(tmp_path / "store.db"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    records = load_records(tmp_path / "store.db")
    assert sorted(records["model"]) == ["cnn", "tfidf"]
    with Store(tmp_path / "store.db", create=False) as db:
        for record in records.itertuples():
            folder = tmp_path / record.model_dir
            files = [path for path in folder.rglob("*") if path.is_file()]
            assert {"model.pt", "tokenizer.json"} <= {path.name for path in files}
            assert record.model_mb == sum(path.stat().st_size for path in files) / 1024**2
            out = tmp_path / f"{record.model}.npy"
            reload = [sys.executable, "-c", RELOAD, str(folder), str(data_dir), str(out)]
            subprocess.run(reload, check=True, capture_output=True, text=True)
            stored = db.predictions(record.run_id, record.cell_id)
            logits = np.load(out)
            assert np.array_equal(np.stack(stored["logits"]), logits)
            assert (logits.argmax(1) == stored["prediction"]).all()
    without = harness("run", str(write_suite(tmp_path / "b.yaml", SUITE.replace("keep_models: true", ""))),
                      "--store", str(tmp_path / "b.db"))  # fmt: skip
    assert without.returncode == 0 and load_records(tmp_path / "b.db")["model_dir"].isna().all()
