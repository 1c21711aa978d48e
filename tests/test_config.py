"""Suites and tasks as data: every built-in task parses; bad input names file, field and fix."""

from __future__ import annotations

import pytest

from harness.errors import InputError
from harness.planning import expand_cells, load_suite
from harness.tasks.registry import available_tasks, builtin_task, load_task

GLUE = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}

SUITE = """
name: t
tasks: [sst2, {name: mrpc, training: {max_seq_length: 96}}]
models:
  - {adapter: cnn, label: small, params: {embed_dim: 16}, training: {epochs: 5},
     task_training: {sst2: {batch_size: 8}}}
  - {adapter: hf, params: {pretrained: minilm-l6}, training: {learning_rate: 5.0e-5}}
seeds: [1, 2]
training: {epochs: 2, learning_rate: 0.001}
"""


def test_every_glue_task_and_imdb_is_a_yaml_file():
    tasks = available_tasks()
    assert GLUE | {"imdb"} <= set(tasks)
    for name, found in tasks.items():
        task = load_task(found.path)
        assert task.name == name
        assert task.primary_metric in task.metric_keys()


def test_task_facts_follow_glue():
    mnli = builtin_task("mnli")
    assert mnli.metric_keys() == ["accuracy_matched", "accuracy_mismatched"]
    assert mnli.is_pair
    assert builtin_task("cola").metrics == ["matthews_correlation"]
    assert builtin_task("mrpc").metrics == ["f1", "accuracy"]
    assert builtin_task("qqp").metrics == ["f1", "accuracy"]
    stsb = builtin_task("stsb")
    assert stsb.problem_type == "regression" and stsb.metrics == ["pearson", "spearmanr"]


def test_expand_cells_with_overrides(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    cells = expand_cells(load_suite(path), path)
    assert len(cells) == 2 * 2 * 2
    by_id = {cell.cell_id: cell for cell in cells}
    small = by_id["mrpc__small__seed1"].training
    assert (small.epochs, small.learning_rate, small.max_seq_length) == (5, 0.001, 96)
    assert small.batch_size == 32 and by_id["sst2__small__seed1"].training.batch_size == 8
    hf = by_id["sst2__hf__seed2"].training
    assert (hf.epochs, hf.learning_rate, hf.max_seq_length) == (2, 5e-5, 128)
    assert len({cell.config_hash for cell in cells}) == len(cells)


def test_task_params_override_a_models_parameters_on_one_task_only(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    before = {cell.cell_id: cell for cell in expand_cells(load_suite(path), path)}
    path.write_text(
        SUITE.replace(
            "task_training: {sst2: {batch_size: 8}}}",
            "task_training: {sst2: {batch_size: 8}, mrpc: {learning_rate: 0.01}},\n"
            "     task_params: {mrpc: {dropout: 0.1}}}",
        )
    )
    after = {cell.cell_id: cell for cell in expand_cells(load_suite(path), path)}
    mrpc, sst2 = after["mrpc__small__seed1"], after["sst2__small__seed1"]
    assert mrpc.model.params["dropout"] == 0.1 and mrpc.training.learning_rate == 0.01
    assert mrpc.model.params["embed_dim"] == 16  # the model's own params stay
    assert sst2.model.params == before["sst2__small__seed1"].model.params  # dropout: the default
    assert mrpc.config_hash != before["mrpc__small__seed1"].config_hash
    # an override for MRPC leaves every other cell, and its `--resume` identity, as it was
    for cell_id in ("sst2__small__seed1", "sst2__hf__seed2", "mrpc__hf__seed1"):
        assert after[cell_id].config_hash == before[cell_id].config_hash, cell_id

    error = _error(
        tmp_path,
        SUITE.replace("task_training: {sst2:", "task_params: {mrpc: {dropouts: 0.1}}, task_training: {sst2:"),
    )
    assert error.field == "models.0.task_params.mrpc.dropouts" and "unknown parameter" in str(error)
    error = _error(
        tmp_path,
        SUITE.replace("task_training: {sst2:", "task_params: {cola: {dropout: 0.1}}, task_training: {sst2:"),
    )
    assert error.field == "models.0.task_params" and "not a task of this suite" in str(error)


def test_a_task_sets_its_own_deploy_backends(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.replace("{name: mrpc,", "{name: mrpc, deploy: [int8, onnx, eager, int8],"))
    by_id = {cell.cell_id: cell for cell in expand_cells(load_suite(path), path)}
    assert by_id["mrpc__small__seed1"].deploy == ["eager", "int8", "onnx"]  # eager first, once
    assert by_id["sst2__small__seed1"].deploy == ["eager"]  # the suite's default
    error = _error(tmp_path, SUITE.replace("{name: mrpc,", "{name: mrpc, deploy: [int4],"))
    assert "tasks.1.deploy" in str(error)


def test_cells_carry_every_adapter_parameter_so_a_changed_default_is_a_new_cell(tmp_path):
    """Spelling a default out is the same cell (same hash); changing it is a different one, which
    is how `--resume` notices that an adapter's default moved since a cell was stored."""

    def cell(params: str):
        path = tmp_path / "suite.yaml"
        path.write_text(f"name: t\ntasks: [sst2]\nmodels: [{{adapter: cnn, params: {params}}}]\n")
        (only,) = expand_cells(load_suite(path), path)
        return only

    implicit, spelled, changed = cell("{}"), cell("{embed_init_range: 0.05}"), cell("{embed_init_range: 1.0}")
    assert implicit.model.params["embed_init_range"] == 0.05
    assert implicit.model.params["kernel_sizes"] == [3, 4, 5] and implicit.model.params["vocab_size"] == 20000
    assert implicit.config_hash == spelled.config_hash != changed.config_hash


def _error(tmp_path, text: str) -> InputError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        expand_cells(load_suite(path), path)
    return caught.value


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (SUITE + "epochs: 3\n", "epochs", "unknown key"),
        (SUITE.replace("seeds: [1, 2]", "seeds: [1, 2]\nseed: 1"), "seed", "unknown key"),
        (
            SUITE.replace("training: {epochs: 2,", "training: {epoch: 2,"),
            "training.epoch",
            "unknown key",
        ),
        (SUITE.replace("[sst2,", "[sst3,"), "tasks.0.name", "unknown task 'sst3'"),
        (
            SUITE.replace("adapter: cnn", "adapter: lstm"),
            "models.0.adapter",
            "unknown model adapter",
        ),
        (
            SUITE.replace("embed_dim: 16", "embed_dims: 16"),
            "models.0.params.embed_dims",
            "unknown parameter",
        ),
        (
            SUITE.replace("training: {epochs: 5}", "training: {epochs: 0}"),
            "models.0.training.epochs",
            "greater than",
        ),
        (SUITE.replace("name: t\n", ""), "name", "missing"),
        (SUITE.replace("{sst2: {batch_size", "{cola: {batch_size"), "models.0.task_training", "not a task"),
    ],
)
def test_bad_suites_name_file_field_and_fix(tmp_path, text, field, words):
    error = _error(tmp_path, text)
    message = str(error)
    assert str(tmp_path / "bad.yaml") in message
    assert error.field == field
    assert words in message
    assert "fix:" in message


def test_malformed_yaml_names_the_line(tmp_path):
    error = _error(tmp_path, "name: t\ntasks: [sst2\nmodels: []\n")
    assert "malformed YAML at line" in str(error)


def test_a_bad_task_file_is_reported_as_that_file(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text(
        "name: mine\ndataset: {path: x}\nsplits: {train: train, eval: test}\n"
        "text_fields: [a]\nmetrics: [accuracy]\nprimary_metric: f1\n"
    )
    error = _error(tmp_path, SUITE.replace("[sst2,", "[mine,"))
    assert "tasks/mine.yaml" in str(error) and "primary_metric 'f1'" in str(error)
