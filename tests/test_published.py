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
