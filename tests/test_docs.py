"""The "Add a task" and "Add a model" pages are true as written: their code runs, their YAML parses."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml

from harness.cell import run_cell
from harness.config import CellSpec, ModelSpec, TaskSpec, TrainingSettings
from harness.models.registry import load_adapters, resolve_model_spec
from harness.tasks.registry import builtin_task

DOCS = Path(__file__).resolve().parents[1] / "docs"


def code_blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(), re.S)


def test_the_add_a_model_page_trains_on_real_rows(tmp_path, data_dir):
    (module_code,) = code_blocks("add-a-model.md", "python")
    path = tmp_path / "bag.py"
    path.write_text(module_code)
    spec = importlib.util.spec_from_file_location("docs_bag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs @register_adapter("bag")
    assert "bag" in load_adapters()

    suite_yaml = code_blocks("add-a-model.md", "yaml")[0]
    (model,) = yaml.safe_load(suite_yaml)["models"]
    cell = CellSpec(
        suite="docs",
        task=builtin_task("sst2"),
        model=resolve_model_spec(ModelSpec.model_validate(model), "docs", "models.0"),
        seed=0,
        # a bag of embeddings learns with a large step, as fastText does
        training=TrainingSettings(epochs=4, learning_rate=1e-2, max_seq_length=48, max_train_examples=3000),
        threads=1,
        data_dir=str(data_dir),
    )
    record = run_cell(cell, "run-docs").record
    assert record.status == "ok" and record.params_total > 64 * 1000
    assert record.metrics["accuracy"] > 60  # it learns SST-2 (chance ≈ 50)


def test_the_add_a_task_page_is_a_valid_task_file():
    task_yaml = next(block for block in code_blocks("add-a-task.md", "yaml") if "name: tickets" in block)
    task = TaskSpec.model_validate(yaml.safe_load(task_yaml))
    assert task.name == "tickets" and task.display_title == "Support tickets"
    assert task.num_labels == 3 and task.metric_keys() == ["accuracy", "f1_macro"]
