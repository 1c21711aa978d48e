"""Equal size and equal training time: budgets size models by their widths; every cell records
its learning trajectory (metric, training seconds, training FLOPs); the report races them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import CELL_THREADS, browser_page, harness

from harness.cell import data_phase, run_cell
from harness.config import BudgetPoint, CellSpec, ModelSpec, TrainingSettings, amount
from harness.export_model import card_text
from harness.models.registry import TaskInfo, get_adapter
from harness.record import CellRecord
from harness.report.equal_size import size_race_sentences
from harness.report.trajectories import Reach, SeedPath, races, seed_band, task_trajectories
from harness.sizing import BudgetUnreachable, sized_adapter
from harness.store import Store
from harness.tasks.registry import BUILTIN_DIR as BUILTIN_TASK_DIR
from harness.tasks.registry import load_task

RECIPES = {  # the leaderboard's widths: sizing keeps their proportions
    "cnn": {"vocab_size": 20000, "embed_dim": 128, "num_filters": 100},
    "rnn": {"vocab_size": 20000, "embed_dim": 128, "hidden_size": 128},
    "transformer": {"vocab_size": 20000, "d_model": 128, "num_heads": 4, "d_ff": 512},
}
INFO = TaskInfo(num_labels=2, is_pair=False, max_seq_length=128, vocab_size=20000, pad_token_id=0)


def cnn_params_by_hand(E: int, F: int, V: int = 20000, C: int = 2) -> int:
    """Embedding V·E; a width-k convolution E·F·k weights and F biases (k = 3, 4, 5); head 3F·C + C."""
    return V * E + sum(E * F * k + F for k in (3, 4, 5)) + 3 * F * C + C


def lstm_params_by_hand(E: int, H: int, V: int = 20000, C: int = 2) -> int:
    """Embedding; per direction 4 gates of H × (E + H) weights and two biases of 4H; attention
    pooling's projection (2H)² + 2H and query 2H; head 2H·C + C."""
    recurrence = 2 * (4 * H * (E + H) + 2 * 4 * H)
    return V * E + recurrence + (2 * H) ** 2 + 2 * H + 2 * H + 2 * H * C + C


@pytest.mark.parametrize("budget", [250e3, 1e6, 4e6])
def test_each_model_is_sized_within_five_percent_keeping_its_proportions(budget):
    point = BudgetPoint(kind="params", value=budget)
    for adapter_name, params in RECIPES.items():
        adapter = get_adapter(ModelSpec(adapter=adapter_name, params=params))
        sized, sizing = sized_adapter(adapter, INFO, point, tokens=20, model=adapter_name)
        assert abs(sizing.value / budget - 1) <= 0.05, (adapter_name, sizing)
        built = sized.build(INFO)
        assert sum(p.numel() for p in built.parameters()) == sizing.value
        coarse, fine = sizing.widths.values()
        base_coarse, base_fine = (params[f] for f in adapter.width_fields)
        assert 0.5 < (fine / coarse) / (base_fine / base_coarse) < 2, sizing.widths
        if adapter_name == "cnn":
            assert sizing.value == cnn_params_by_hand(coarse, fine)
        if adapter_name == "rnn":
            assert sizing.value == lstm_params_by_hand(coarse, fine)
        if adapter_name == "transformer":
            assert coarse % 4 == 0  # d_model divisible by the 4 heads


def test_a_flops_budget_sizes_forward_flops_at_the_stated_length():
    adapter = get_adapter(ModelSpec(adapter="cnn", params=RECIPES["cnn"]))
    point = BudgetPoint(kind="flops_per_example", value=amount("5M"))
    sized, sizing = sized_adapter(adapter, INFO, point, tokens=24, model="cnn")
    E, F = sizing.widths["embed_dim"], sizing.widths["num_filters"]
    by_hand = sum(2 * E * F * k * (24 + k - 1) for k in (3, 4, 5)) + 2 * 3 * F * 2
    assert sizing.value == by_hand == sized.build(INFO).flops(24)
    assert abs(by_hand / 5e6 - 1) <= 0.05 and sizing.tokens == 24


def test_a_budget_below_the_vocabulary_is_refused_with_the_closest_size():
    adapter = get_adapter(ModelSpec(adapter="cnn", params=RECIPES["cnn"]))
    with pytest.raises(
        BudgetUnreachable, match="no embed_dim and num_filters of cnn give params within ±5% of 10,000"
    ):
        sized_adapter(adapter, INFO, BudgetPoint(kind="params", value=1e4), tokens=20, model="cnn")


def tiny_cell(data_dir, **changes) -> CellSpec:
    settings = {"epochs": 2, "max_seq_length": 48, "max_train_examples": 400, "max_eval_examples": 100}
    fields = {
        "suite": "unit",
        "task": load_task(BUILTIN_TASK_DIR / "sst2.yaml"),
        "model": ModelSpec(adapter="cnn", params={"embed_dim": 32, "num_filters": 16, "vocab_size": 2000}),
        "seed": 0,
        "training": TrainingSettings(**settings),
        "data_dir": str(data_dir),
        "threads": CELL_THREADS,
    }
    return CellSpec(**{**fields, **changes})


def test_trajectory_points_time_and_flops_by_hand(data_dir):
    training = TrainingSettings(
        epochs=2, max_seq_length=48, max_train_examples=400, max_eval_examples=100, early_stopping_patience=2
    )
    spec = tiny_cell(data_dir, training=training, trajectory_every_steps=5)
    result = run_cell(spec, "traj")
    record, trajectory = result.record, result.record.trajectory
    assert trajectory["split"] == "holdout" and trajectory["metric"] == "accuracy"
    points = trajectory["points"]
    # 360 rows after the holdout, batches of 32: 12 steps an epoch; every 5th step and each epoch's end
    assert [p["step"] for p in points] == [5, 10, 12, 15, 20, 24]
    assert [p["epoch"] for p in points] == pytest.approx([5 / 12, 10 / 12, 1, 15 / 12, 20 / 12, 2], abs=1e-4)
    assert [p["examples"] for p in points if p["step"] in (12, 24)] == [360, 720]
    seconds = [p["train_seconds"] for p in points]
    assert seconds == sorted(set(seconds)) and seconds[-1] <= record.train_seconds
    # an epoch's training FLOPs: 3 × forward FLOPs of every training row at its own length
    inputs = data_phase(spec, CellRecord.for_spec(spec, "hand"))
    E, F = 32, 16
    forward = [
        E * F * 2 * sum(k * (t + k - 1) for k in (3, 4, 5)) + 2 * 3 * F * 2 for t in inputs.train.lengths
    ]
    by_hand = 3 * sum(forward)
    assert [p["train_flops"] for p in points if p["step"] in (12, 24)] == [by_hand, 2 * by_hand]
    # the epochs' holdout scores are early stopping's: the best one is the model kept
    epoch_ends = [p["value"] for p in points if p["step"] in (12, 24)]
    assert record.holdout_metrics["accuracy"] == pytest.approx(max(epoch_ends))
    # scoring between steps does not change the training
    plain = run_cell(tiny_cell(data_dir, training=training), "plain")
    assert np.array_equal(np.stack(plain.predictions["logits"]), np.stack(result.predictions["logits"]))
    assert [p["step"] for p in plain.record.trajectory["points"]] == [12, 24]


def test_without_a_holdout_the_trajectory_ends_at_the_evaluation_itself(data_dir):
    result = run_cell(tiny_cell(data_dir), "eval")
    trajectory = result.record.trajectory
    assert trajectory["split"] == "eval"
    assert [p["step"] for p in trajectory["points"]] == [13, 26]  # 400 rows, 13 steps an epoch
    assert trajectory["points"][-1]["value"] == result.record.primary_value
    assert 0 <= trajectory["points"][0]["value"] <= 100


def path(seed: int, values: list[float], seconds: list[float], flops_per_second: float = 10) -> SeedPath:
    points = [
        {"value": v, "train_seconds": s, "train_flops": flops_per_second * s}
        for v, s in zip(values, seconds, strict=True)
    ]
    return SeedPath(seed, points)


def test_race_and_band_by_hand():
    fast = [path(0, [70, 80, 90], [1, 2, 3]), path(1, [60, 85, 88], [1, 2, 4])]
    slow = [path(0, [50, 60, 80], [2, 4, 6]), path(1, [55, 65, 82], [2, 4, 8])]
    finals = {"fast": 89.0, "slow": 81.0}
    race = races({"fast": fast, "slow": slow}, finals)
    assert [r.target for r in race] == pytest.approx([0.9 * 89, 0.95 * 89, 0.99 * 89])
    # 80.1: fast's seeds at 3 s (90) and 2 s (85): median 2.5; slow's at 8 s (82) and never (80)
    first = race[0]
    assert first.times["fast"] == Reach(2.5, 25.0, 2, 2)
    assert first.times["slow"] == Reach(8.0, 80.0, 1, 2)
    assert first.winner("seconds") == first.winner("flops") == "fast"
    # 88.1: only fast's seed 0 (90 at 3 s); 1 of 2 seeds is not a majority, so no winner
    assert race[2].times["fast"] == Reach(3.0, 30.0, 1, 2) and race[2].winner("seconds") is None
    x, mean, low, high = seed_band(fast, "train_seconds")
    assert list(x) == [1, 2, 3]  # where both seeds were measured: up to seed 0's last point
    assert list(mean) == pytest.approx([65, 82.5, (90 + (85 + 88) / 2) / 2])
    assert list(low) == pytest.approx([60, 80, 86.5]) and list(high) == pytest.approx([70, 85, 90])


def test_each_size_has_its_own_race_winner():
    """At equal size the question is who gets there first among models of one size: the 4M cnn,
    which never reaches the score, does not hand the 4M race to nobody, and the 1M rnn, one of
    whose two seeds reaches it, does not win the 1M race."""
    paths = {
        "cnn@1M": [path(0, [70, 80, 90], [1, 2, 4], 1e9), path(1, [60, 85, 88], [1, 2, 4], 1e9)],
        "rnn@1M": [path(0, [50, 60, 80], [2, 4, 6], 1e9), path(1, [55, 65, 82], [2, 4, 8], 1e9)],
        "cnn@4M": [path(0, [40, 50, 60], [5, 10, 20], 1e9), path(1, [40, 50, 60], [5, 10, 20], 1e9)],
        "rnn@4M": [path(0, [70, 75, 85], [3, 6, 9], 3e9), path(1, [72, 76, 84], [3, 6, 11], 3e9)],
    }
    finals = {model: float(np.mean([p.points[-1]["value"] for p in seeds])) for model, seeds in paths.items()}
    sizes = {"1M params": {"cnn@1M": "cnn", "rnn@1M": "rnn"}, "4M params": {"cnn@4M": "cnn", "rnn@4M": "rnn"}}
    first, _, last = size_race_sentences(races(paths, finals), sizes)
    # 90% of the best final (89): 80.1. cnn@1M's seeds reach it at 4 s and 2 s (median 3 s, 3G
    # FLOPs); rnn@4M's at 9 s (85) and 11 s (84): median 10 s, 30G
    assert first == (
        "At each size, first to 80.1: by training time 1M params cnn (3 s), 4M params rnn (10 s); "
        "by training FLOPs 1M params cnn (3G), 4M params rnn (30G)."
    )
    # 99% (88.1): only cnn@1M's seed 0 (90 at 4 s): one seed of two is no majority
    assert last == (
        "At each size, first to 88.1: by training time 1M params none, 4M params none; "
        "by training FLOPs 1M params none, 4M params none."
    )


def test_a_seed_trained_on_a_shared_machine_is_named_beside_the_time_axis():
    """Training seconds stretch when other processes share the machine (FLOPs do not): the
    trajectories say which seeds' time axis that is, from `record.contention`."""
    points = [{"value": v, "train_seconds": s, "train_flops": 10 * s} for v, s in ((70, 1), (80, 2))]
    rows = pd.DataFrame(
        {
            "task": "sst2",
            "model": ["fast", "fast", "slow"],
            "seed": [0, 1, 0],
            "trajectory": [{"split": "holdout", "metric": "accuracy", "points": points}] * 3,
            "contention": [{"train": 0.03}, {"train": 0.62, "inference": 0.5}, {}],
        }
    )
    found = task_trajectories(rows, "sst2", ["fast", "slow"])
    assert found.notes == [
        "fast, time axis: training speed from seed(s) 0; seed(s) 1 measured while other processes "
        "used up to 62% of the machine"
    ]


EQUAL = """
name: equal
tasks:
  - {name: sst2, trajectory_every_steps: 4}
models:
  - {adapter: cnn, params: {vocab_size: 2000, embed_dim: 32, num_filters: 16}}
  - {adapter: transformer, params: {vocab_size: 2000, d_model: 32, num_heads: 2, num_layers: 1, d_ff: 64}}
budget: {params: [40k, 80k]}
seeds: [0, 1]
threads: 1
speed: {passes: 1, latency_rows: 5}
training: {epochs: 2, batch_size: 32, max_seq_length: 48, max_train_examples: 240, max_eval_examples: 80,
           early_stopping_patience: 2}
"""


def test_a_budgeted_suite_runs_each_size_as_a_model_and_reports_the_grid_and_the_race(tmp_path):
    suite = tmp_path / "equal.yaml"
    suite.write_text(EQUAL)
    store = tmp_path / "harness.db"
    ran = harness("run", str(suite), "--store", str(store))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with Store(store, create=False) as db:
        records = db.records()
    assert sorted(set(records["model"])) == [
        "cnn@40k-params", "cnn@80k-params", "transformer@40k-params", "transformer@80k-params"
    ]  # fmt: skip
    for _, row in records.iterrows():
        sizing = row["sizing"]
        assert abs(row["params_total"] / sizing["target"] - 1) <= 0.05
        assert (
            row["params_total"] == sizing["value"]
            and row["model"] == f"{sizing['model']}@{row['model'].split('@')[1]}"
        )
        assert row["trajectory"]["points"][-1]["step"] == row["steps"]
    # an exported sized model's card gives the widths it ran with, not the suite's
    row = records.iloc[0]
    with Store(store, create=False) as db:
        card = card_text(
            row, db.predictions(row["run_id"], row["cell_id"]), "eager", "model.pt", "validation"
        )
    for name, value in row["sizing"]["widths"].items():
        assert f'"{name}": {value},' in card
    assert f"Sized to {row['sizing']['target']:,.0f} params" in card
    out = tmp_path / "report"
    reported = harness("report", "--store", str(store), "--out", str(out))
    assert reported.returncode == 0, reported.stderr
    text = (out / "leaderboard.md").read_text()
    assert "| Model | 40k params | 80k params |" in text
    grid = text.split("#### At equal size: SST-2")[1].split("####")[0]
    cnn_row = next(line for line in grid.splitlines() if line.startswith("| cnn |"))
    cnn_40k = records[records["model"] == "cnn@40k-params"]["primary_value"].mean()
    assert f"{cnn_40k:.1f}" in cnn_row.split("|")[2]
    race = text.split("#### Training time and FLOPs: SST-2")[1].split("####")[0]
    assert race.count("First to ") + race.count("no model's seeds mostly reached it") == 3
    # the 90% race by hand: per model, the median over seeds of when a seed first reached it
    paths = {m: [t["points"] for t in g["trajectory"]] for m, g in records.groupby("model")}
    target = 0.9 * max(np.mean([p[-1]["value"] for p in seeds]) for seeds in paths.values())
    medians = {}  # the models both of whose seeds reached it (a majority of two), and when
    for model, seeds in paths.items():
        hits = [next((p["train_seconds"] for p in points if p["value"] >= target), None) for points in seeds]
        hits = [h for h in hits if h is not None]
        row = next(line for line in race.splitlines() if line.startswith(f"| {model} |"))
        expected = f"{np.median(hits):,.0f} ({len(hits)}/2)" if hits else "—"
        assert row.split("|")[3].strip() == expected, (row, hits)
        if len(hits) == 2:
            medians[model] = float(np.median(hits))
    # and within each size, the first of that size's models
    assert race.count("At each size, first to ") == 3
    by_time = next(line for line in race.splitlines() if "At each size, first to" in line).split(
        "; by training"
    )[0]
    for size in ("40k", "80k"):
        mine = {m: t for m, t in medians.items() if m.endswith(f"@{size}-params")}
        first = min(mine, key=mine.get) if mine else None
        expected = (
            f"{size} params {first.split('@')[0]} ({mine[first]:,.0f} s)" if first else f"{size} params none"
        )
        assert expected in by_time, (by_time, medians)
    in_browser(out / "index.html", records)


def in_browser(page_file, records) -> None:
    """The two trajectory plots draw a line per model and a band per model with two seeds."""
    with browser_page(page_file) as (page, problems):
        for axis in ("train_seconds", "train_flops"):
            figure = f'[data-figure="fig-0-{axis}"]'
            page.wait_for_selector(f"{figure} .scatterlayer .trace", state="attached")
            names = page.evaluate(f"document.querySelector('{figure}').data.map(t => t.name)")
            models = sorted(set(records["model"]))
            assert sorted(n for n in names if not n.endswith(" band")) == models
            assert sorted(n.removesuffix(" band") for n in names if n.endswith(" band")) == models
        assert problems == []
