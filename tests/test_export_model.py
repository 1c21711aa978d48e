"""Choose and ship: `keep_models: true` keeps each cell's trained model in its run folder, and
`harness export-model` turns one into a folder to ship (weights or ONNX, tokenizer, loader.py, a
model card). A fresh process that loads the kept model, or the exported folder through its own
loader.py, reproduces the cell's stored predictions: exactly for eager, within the backend's
tolerance otherwise; the card's model-index parses back to the record's values."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import harness, write_suite
from huggingface_hub import ModelCard

from harness.store import Store, load_records

SUITE = """
name: ship
tasks:
  - {name: sst2, training: {max_train_examples: 600, max_eval_examples: 200}}
models:
  - {adapter: cnn, label: cnn, params: {embed_dim: 16, num_filters: 8, vocab_size: 2000}}
  - {adapter: tfidf, label: tfidf}
  - adapter: hf
    label: tiny-bert
    params:
      vocab_size: 2000
      config: {model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2,
               intermediate_size: 64}
seeds: [0, 1]
threads: 1
keep_models: true
probes: [typos]
training: {epochs: 1, max_seq_length: 64}
"""

RELOAD_KEPT = """
import sys, numpy as np, torch
from transformers import AutoTokenizer
from harness.batching import encode
from harness.config import TrainingSettings
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task
from harness.train import predict
settings = TrainingSettings(max_train_examples=600, max_eval_examples=200, max_seq_length=64)
rows = load_task_data(builtin_task("sst2"), settings, sys.argv[1]).eval[""]
for folder, out in zip(sys.argv[2::2], sys.argv[3::2]):
    model = torch.load(f"{folder}/model.pt", weights_only=False)
    tokenizer = AutoTokenizer.from_pretrained(f"{folder}/tokenizer")
    np.save(out, predict(model, encode(tokenizer, rows, 64), 128, torch.device("cpu"), amp=False))
"""

RELOAD_EXPORTED = """
import importlib.util, sys, numpy as np
texts = [line.rstrip("\\n") for line in open(sys.argv[1])]
for index, (folder, out) in enumerate(zip(sys.argv[2::2], sys.argv[3::2])):
    spec = importlib.util.spec_from_file_location(f"loader{index}", f"{folder}/loader.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    np.save(out, loader.load().outputs(texts))
"""


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ship")
    ran = harness("run", str(write_suite(folder / "suite.yaml", SUITE)), "--store", str(folder / "store.db"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return folder, load_records(folder / "store.db")


def stored(folder, record) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, predictions, labels) the cell stored."""
    with Store(folder / "store.db", create=False) as db:
        frame = db.predictions(record.run_id, record.cell_id)
    return np.stack(frame["logits"]), frame["prediction"].to_numpy(), frame["label"].to_numpy()


def test_a_kept_model_reloads_in_a_fresh_process_and_reproduces_its_cell(shipped, data_dir):
    folder, records = shipped
    cells = [f"sst2__{model}__seed{seed}" for model in ("cnn", "tiny-bert") for seed in (0, 1)]
    assert sorted(records["cell_id"]) == sorted([*cells, "sst2__tfidf__seed0"])
    args = []
    for record in records.itertuples():
        kept = folder / record.model_dir
        files = [path for path in kept.rglob("*") if path.is_file()]
        assert {"model.pt", "tokenizer.json"} <= {path.name for path in files}
        assert record.model_mb == sum(path.stat().st_size for path in files) / 1024**2
        args += [str(kept), str(folder / f"{record.cell_id}.npy")]
    subprocess.run([sys.executable, "-c", RELOAD_KEPT, str(data_dir), *args], check=True, capture_output=True)
    for record in records.itertuples():
        logits, predictions, _ = stored(folder, record)
        reloaded = np.load(folder / f"{record.cell_id}.npy")
        assert np.array_equal(logits, reloaded) and (reloaded.argmax(1) == predictions).all()
    plain = write_suite(
        folder / "plain.yaml", SUITE.replace("keep_models: true", "").replace("[0, 1]", "[0]")
    )
    without = harness("run", str(plain), "--store", str(folder / "plain.db"), "--model", "tfidf")
    assert without.returncode == 0 and load_records(folder / "plain.db")["model_dir"].isna().all()


EXPORTS = [("cnn", "eager"), ("cnn", "int8"), ("cnn", "onnx"), ("tfidf", "eager"), ("tiny-bert", "eager"),
           ("tiny-bert", "onnx-int8")]  # fmt: skip


def test_exported_folders_reproduce_their_cell_through_their_own_loader(shipped, data_dir):
    folder, records = shipped
    texts = folder / "texts.txt"
    rows = load_task_rows(data_dir)
    texts.write_text("".join(f"{text}\n" for text in rows))
    args = []
    for variant, backend in EXPORTS:
        out = folder / f"export-{variant}-{backend}"
        ran = harness("export-model", "latest", variant, "--backend", backend, "--out", str(out),
                      "--store", str(folder / "store.db"))  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        args += [str(out), str(folder / f"export-{variant}-{backend}.npy")]
    subprocess.run(
        [sys.executable, "-c", RELOAD_EXPORTED, str(texts), *args], check=True, capture_output=True
    )
    for variant, backend in EXPORTS:
        record = records[(records["variant"] == variant) & (records["seed"] == 0)].iloc[0]
        logits, predictions, labels = stored(folder, record)
        out = np.load(folder / f"export-{variant}-{backend}.npy")
        if backend == "eager":
            assert (out.argmax(1) == predictions).all() and np.abs(out - logits).max() < 1e-5
        elif backend == "onnx":
            assert np.abs(out - logits).max() < 1e-3  # the deploy phase's tolerance for fp32 backends
        else:  # int8: its accuracy within the deploy tolerance (1 point) of eager's
            assert abs((out.argmax(1) == labels).mean() - (predictions == labels).mean()) * 100 <= 1.0
    transformers_folder = folder / "export-tiny-bert-eager"
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(transformers_folder)
    assert loaded.config.id2label == {0: "negative", 1: "positive"}
    assert json.loads((folder / "export-cnn-onnx" / "export.json").read_text())["format"] == "onnx"
    unserved = ModelCard.load(
        folder / "export-tiny-bert-onnx-int8" / "README.md"
    )  # not in the suite's deploy:
    assert not unserved.data.eval_results and "did not serve `onnx-int8`" in unserved.text


def load_task_rows(data_dir) -> list[str]:
    from harness.config import TrainingSettings
    from harness.tasks.data import load_task_data
    from harness.tasks.registry import builtin_task

    settings = TrainingSettings(max_train_examples=600, max_eval_examples=200, max_seq_length=64)
    return load_task_data(builtin_task("sst2"), settings, str(data_dir)).eval[""].text_a


def test_the_card_parses_back_to_the_records_values(shipped):
    folder, records = shipped
    out = folder / "card-cnn"
    ran = harness(
        "export-model", "latest", "cnn", "--seed", "1", "--out", str(out), "--store", str(folder / "store.db")
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    card = ModelCard.load(out / "README.md")
    cnn = records[records["variant"] == "cnn"].set_index("seed")
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == (
        "nyu-mll/glue",
        "sst2",
        "validation",
    )
    assert result.metric_type == "accuracy"
    assert result.metric_value == pytest.approx(cnn.loc[1, "metric.accuracy"], abs=1e-4)
    assert result.metric_args["seeds"] == 2
    assert result.metric_args["mean"] == pytest.approx(cnn["metric.accuracy"].mean())
    text = card.text
    assert "## Calibration" in text and "## Robustness probes" in text and "typos" in text
    assert cnn.loc[1, "code_hash"] in text and cnn.loc[1, "data_fingerprint"] in text
    assert "cpu (" in text and "examples/s" in text  # the deployed speed, with the machine


def test_what_cannot_be_exported_is_refused_in_one_line(shipped, tmp_path):
    folder, _ = shipped
    store = str(folder / "store.db")
    cases = [
        (["tfidf", "--backend", "onnx"], "sparse n-gram model"),
        (["cnn", "--seed", "5"], "no kept model of seed 5"),
        (["lstm"], "has no finished cell of 'lstm'"),
        (["cnn", "--backend", "bf16"], "'bf16' cannot be exported"),
    ]
    for index, (args, message) in enumerate(cases):
        ran = harness("export-model", "latest", *args, "--out", str(tmp_path / f"o{index}"), "--store", store)
        assert ran.returncode == 2 and message in " ".join(ran.stderr.split()), ran.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    ran = harness("export-model", "latest", "cnn", "--out", str(tmp_path / "full"), "--store", store)
    assert ran.returncode == 2 and "already holds files" in ran.stderr
    plain = folder / "plain.db"
    if plain.exists():
        ran = harness("export-model", "latest", "tfidf", "--out", str(tmp_path / "p"), "--store", str(plain))
        assert ran.returncode == 2 and "kept no model" in " ".join(ran.stderr.split())
