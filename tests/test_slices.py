"""Slices of the evaluation rows: a slice planted to be weak is found, slices drawn at random are
called worse at no more than the level asked for, and a task file's own slices select the rows
their rule names, on real SST-2 dev rows."""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness.errors import InputError
from harness.report.slices import _model_cells, slice_members
from harness.report.stats import permutation_worse_p
from harness.samples import load_task_rows
from harness.tasks.registry import builtin_task, load_task

SEEDS = 3


@pytest.fixture(scope="module")
def sst2_rows(data_dir):
    return load_task_rows(builtin_task("sst2"), str(data_dir))


def simulated_seeds(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Three seeds of a model right on about `accuracy` of the rows: a shared per-row difficulty,
    so that the seeds agree on the hard rows as trained models do."""
    hard = rng.random(len(labels)) > accuracy + 0.05
    seeds = []
    for _ in range(SEEDS):
        wrong = hard ^ (rng.random(len(labels)) < 0.05)
        seeds.append(np.where(wrong, 1 - labels, labels))
    return seeds


def test_a_slice_planted_to_be_weak_is_found_and_the_others_are_not(sst2_rows):
    frame = sst2_rows.eval
    members, notes = slice_members(sst2_rows, frame.index)
    assert notes == [] and {"label: negative", "label: positive"} <= set(members)
    negation = members["negation (not, no, never, n't, …)"]
    texts = frame["text_a"].tolist()
    assert negation.sum() == sum(
        bool(
            re.search(
                r"\bnot\b|\bno\b|\bnever\b|n't\b|\bnothing\b|\bnone\b|\bnobody\b|"
                r"\bnowhere\b|\bneither\b|\bnor\b|\bcannot\b",
                t,
                re.I,
            )
        )
        for t in texts
    )
    labels = frame["label"].to_numpy()
    predictions = simulated_seeds(labels, 0.85, np.random.default_rng(0))
    planted = labels.copy()
    planted[negation] = 1 - planted[negation]  # the evaluation labels of the negation rows flipped
    cells, overall = _model_cells("accuracy", members, planted, predictions, resamples=300)
    weak = cells["negation (not, no, never, n't, …)"]
    assert (
        weak.p_value < 0.05 and weak.mean < overall - 30
    )  # Holm over 11 slices of 300 permutations: ≥ 0.037 and weak.low <= weak.mean <= weak.high
    others = [
        name for name in cells if name != "negation (not, no, never, n't, …)" and not name.startswith("label")
    ]
    assert all(cells[name].p_value is None or cells[name].p_value > 0.05 for name in others), {
        name: cells[name].p_value for name in others
    }


def test_random_slices_are_called_worse_at_no_more_than_alpha(sst2_rows):
    """200 slices of 150 rows drawn at random from SST-2 dev, each tested against the rest of a
    model's rows: the share called worse at α = 0.05 stays within its binomial spread."""
    labels = sst2_rows.eval["label"].to_numpy()
    rng = np.random.default_rng(1)
    predictions = simulated_seeds(labels, 0.8, rng)
    alarms = 0
    draws = 200
    for draw in range(draws):
        members = np.zeros(len(labels), dtype=bool)
        members[rng.choice(len(labels), size=150, replace=False)] = True
        p = permutation_worse_p("accuracy", labels, predictions, members, True, permutations=200, seed=draw)
        alarms += p < 0.05
    assert alarms / draws <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / draws), alarms


def test_a_task_files_own_slices_select_the_rows_their_rule_names(sst2_rows, tmp_path):
    task = sst2_rows.task.model_copy(
        update={
            "slices": load_task_slices(tmp_path, 'contrast: {regex: "\\\\bbut\\\\b"}\nshort: {max_words: 5}')
        }
    )
    rows = sst2_rows.__class__(task, sst2_rows.eval, sst2_rows.label_names, sst2_rows.train_words)
    members, _ = slice_members(rows, rows.eval.index)
    texts = rows.eval["text_a"].tolist()
    assert members["contrast"].sum() == sum(bool(re.search(r"\bbut\b", t, re.I)) for t in texts) > 30
    assert (members["short"] == (rows.eval["words"].to_numpy() <= 5)).all()
    with pytest.raises(InputError) as bad:
        load_task_slices(tmp_path, 'broken: {regex: "(unclosed"}')
    assert "slices" in str(bad.value) and "does not compile" in str(bad.value)
    with pytest.raises(InputError, match="regex, min_words or max_words"):
        load_task_slices(tmp_path, "empty: {}")


def load_task_slices(folder, slices_yaml: str):
    """A copy of the built-in SST-2 task file with these slices, loaded as a user's task file."""
    from harness.tasks.registry import BUILTIN_DIR

    text = (
        (BUILTIN_DIR / "sst2.yaml").read_text()
        + "slices:\n"
        + "".join(f"  {line}\n" for line in slices_yaml.splitlines())
    )
    path = folder / "sst2.yaml"
    path.write_text(text)
    return load_task(path).slices
