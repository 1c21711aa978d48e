"""The published suites and what they rest on: every suite plans, and the leaderboard trains each
model with the recipe its held-out slice chose (the committed store of
`suites/leaderboard-recipes.yaml`), per task family."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.planning import expand_cells, load_suite
from harness.report.tuning import select_points
from harness.store import load_records

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "suites").glob("*.yaml"))
# the task each family's recipe was chosen on → the leaderboard's tasks of that family
FAMILIES = {"sst2": ("sst2", "cola", "imdb"), "mrpc": ("mrpc", "stsb", "rte", "wnli")}


@pytest.mark.parametrize("path", SUITES, ids=[path.stem for path in SUITES])
def test_every_published_suite_plans(path):
    cells = expand_cells(load_suite(path), path)
    assert cells and len({cell.cell_id for cell in cells}) == len(cells)


def test_the_leaderboard_trains_the_recipes_its_holdout_chose():
    records = load_records(ROOT / "results" / "leaderboard-recipes" / "harness.db")
    _, tuned = select_points(records[records["status"] == "ok"])
    chosen = {(table.task, table.model): table.selected.values for table in tuned}
    path = ROOT / "suites" / "leaderboard.yaml"
    cells = expand_cells(load_suite(path), path)
    models = {cell.model.display_label for cell in cells}
    assert {model for _, model in chosen} == models and len(chosen) == len(models) * len(FAMILIES)
    checked = 0
    for cell in cells:
        family = next(task for task, members in FAMILIES.items() if cell.task.name in members)
        for name, value in chosen[(family, cell.model.display_label)].items():
            used = cell.model.params[name] if name in cell.model.params else getattr(cell.training, name)
            assert used == value, f"{cell.cell_id}: {name} = {used}, the holdout chose {value}"
            checked += 1
    assert checked >= len(cells)  # every cell has at least one chosen value


def test_the_why_suite_trains_the_leaderboards_cells_with_probes_added():
    """suites/why.yaml repeats the leaderboard's SST-2 and IMDb cells: the same config hash once its
    probes are taken away, so its figures stand beside the leaderboard's."""
    why_path, board_path = ROOT / "suites" / "why.yaml", ROOT / "suites" / "leaderboard.yaml"
    why = {cell.cell_id: cell for cell in expand_cells(load_suite(why_path), why_path)}
    board = {cell.cell_id: cell for cell in expand_cells(load_suite(board_path), board_path)}
    assert why and set(why) <= set(board)
    assert {cell.task.name for cell in why.values()} == {"sst2", "imdb"} and len(why) == 2 * 4 * 3
    for cell_id, cell in why.items():
        assert [probe.name for probe in cell.probes] == [
            "typos", "lowercase", "punctuation", "contractions", "names", "negation"
        ]  # fmt: skip
        plain = cell.model_copy(update={"probes": [], "deploy": board[cell_id].deploy})
        assert plain.config_hash == board[cell_id].config_hash, cell_id


def test_upgrade_store_narrows_hashes_made_before_overrides_were_per_task(tmp_path):
    """A record from before planning narrowed a model's per-task overrides to the cell's task
    (its config carries another task's `task_training`, its hash covers it) gets the narrowed
    config and hash from `upgrade-store`, so `--resume` finds the cell instead of training it."""
    import shutil
    import sqlite3

    from conftest import harness

    from harness import strict_json
    from harness.config import CellSpec

    store = tmp_path / "harness.db"
    shutil.copy(ROOT / "results" / "leaderboard-recipes" / "harness.db", store)
    path = ROOT / "suites" / "leaderboard-recipes.yaml"
    planned = {cell.cell_id: cell.config_hash for cell in expand_cells(load_suite(path), path)}
    records = load_records(store)
    row = records[records["cell_id"] == "sst2__minilm-l6[learning_rate=0.0002]__seed0"].iloc[0]
    assert row["config_hash"] == planned[row["cell_id"]]
    own = row["config"]["model"]["task_training"]
    assert set(own) == {"sst2"}
    widened = {
        **row["config"],
        "model": {**row["config"]["model"], "task_training": {**own, "mrpc": {"epochs": 3}}},
    }
    old_hash = CellSpec.model_validate(widened).config_hash
    assert old_hash != row["config_hash"]
    with sqlite3.connect(store) as db:  # the record as the older planner wrote it
        db.execute(
            "UPDATE records SET config = ?, config_hash = ? WHERE run_id = ? AND cell_id = ?",
            (strict_json.dumps(widened), old_hash, row["run_id"], row["cell_id"]),
        )
    done = harness("upgrade-store", "--store", str(store))
    assert done.returncode == 0 and "1 config hash(es) narrowed" in done.stdout
    after = load_records(store).set_index("cell_id")
    assert after.loc[row["cell_id"], "config_hash"] == planned[row["cell_id"]]
    assert after.loc[row["cell_id"], "config"]["model"]["task_training"] == own
    again = harness("upgrade-store", "--store", str(store))
    assert "0 config hash(es) narrowed" in again.stdout
