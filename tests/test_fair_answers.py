"""Fair answers: learning curves, sweeps selected on the holdout, calibration from stored logits,
tie groups and McNemar's test. Real data and real tiny runs through the command line."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import browser_page, harness
from scipy import stats

from harness.config import TrainingSettings
from harness.errors import InputError
from harness.report.calibration import cell_calibration
from harness.report.leader import judge_leader
from harness.report.scores import Entry
from harness.report.stats import Estimate, holm_adjusted, mcnemar_exact
from harness.report.tuning import select_points
from harness.store import Store, load_records
from harness.tasks.data import load_task_data
from harness.tasks.registry import builtin_task

SUITE = """
name: fair
tasks:
  - {name: sst2, train_sizes: [120, 480]}
models:
  - adapter: cnn
    label: cnn
    params: {embed_dim: 16, num_filters: 8, kernel_sizes: [3], vocab_size: 1500}
    sweep: {training: {learning_rate: [1.0e-4, 3.0e-3]}}
  - adapter: transformer
    label: transformer
    params: {d_model: 16, num_heads: 2, num_layers: 1, d_ff: 32, vocab_size: 1500}
seeds: [0, 1]
training: {epochs: 2, batch_size: 16, max_seq_length: 48, max_train_examples: 2000, max_eval_examples: 300}
device: cpu
threads: 1
"""


@pytest.fixture(scope="module")
def fair_run(tmp_path_factory, data_dir) -> tuple[Path, Path]:
    """The suite above, run inline: 2 sizes × (2 sweep points + 1 model) × 2 seeds = 12 cells."""
    folder = tmp_path_factory.mktemp("fair")
    (folder / "fair.yaml").write_text(SUITE)
    store = folder / "harness.db"
    done = harness("run", "fair.yaml", "--store", str(store), "--executor", "inline", cwd=folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder, store


# --------------------------------------------------------------------------- learning curves


def test_curve_subsets_are_nested_stratified_and_the_same_for_every_seed(data_dir):
    task = builtin_task("sst2")
    settings = TrainingSettings(max_train_examples=5000)
    full = load_task_data(task, settings, str(data_dir), holdout=True)
    sizes = {
        n: load_task_data(task, settings, str(data_dir), holdout=True, train_size=n)
        for n in (250, 1000, 4000)
    }
    share = full.train.labels.mean()  # positive share of the training rows the subsets come from
    previous: set[int] = set()
    for n, data in sizes.items():
        rows = set(data.train.row_ids)
        assert len(rows) == n
        assert previous <= rows  # nested
        previous = rows
        assert abs(data.train.labels.sum() - share * n) <= 1  # stratified: within one row of its share
        assert set(data.holdout.row_ids) == set(full.holdout.row_ids)  # one holdout for every size
        assert not rows & set(data.holdout.row_ids)
        assert len(data.eval[""]) == len(full.eval[""])  # the evaluation split stays whole
    again = load_task_data(task, settings, str(data_dir), holdout=True, train_size=1000)
    assert list(again.train.row_ids) == list(sizes[1000].train.row_ids)  # fixed: no seed enters


def test_a_size_beyond_the_training_set_is_one_clear_error(data_dir):
    from harness.errors import InputError

    with pytest.raises(InputError, match="train_sizes asks for 9,999 rows, but training has 100"):
        load_task_data(
            builtin_task("sst2"), TrainingSettings(max_train_examples=100), str(data_dir), train_size=9999
        )


def test_a_suite_with_sizes_and_a_sweep_runs_and_reports_curves_and_the_tuned_table(fair_run):
    folder, store = fair_run
    records = load_records(store)
    assert (records["status"] == "ok").all() and len(records) == 12
    assert sorted(set(records["train_size"])) == ["120", "480"]
    assert sorted(records.loc[records["model"] == "cnn", "train_examples"].unique().tolist()) == [120, 480]
    swept = records[records["model"] == "cnn"]
    assert {p["learning_rate"] for p in swept["sweep_point"]} == {1e-4, 3e-3}
    assert all(set(m) == {"accuracy"} for m in records["holdout_metrics"])  # every cell scored its holdout
    out = folder / "report"
    done = harness("report", "--store", str(store), "--out", str(out), cwd=folder)
    assert done.returncode == 0, done.stderr
    markdown = (out / "leaderboard.md").read_text()
    assert "#### Learning curve: SST-2" in markdown and "#### Tuned: cnn on SST-2 (480 rows)" in markdown
    assert "2 points × 2 seed(s) = 4 cells" in markdown
    assert "#### Confidence: SST-2" in markdown
    cost = sum(w * t for w, t in zip(records["wall_seconds"], records["threads"], strict=True)) / 3600
    assert f"{cost:.2f} CPU-hours (CPU cells: wall × threads)" in markdown


def test_resume_after_the_grid_grows_runs_only_the_new_points(fair_run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(fair_run[0], folder)  # the other tests read the original
    store = folder / "harness.db"
    before = load_records(store)
    grown = SUITE.replace("learning_rate: [1.0e-4, 3.0e-3]", "learning_rate: [1.0e-4, 3.0e-3, 1.0e-2]")
    (folder / "fair.yaml").write_text(grown)
    done = harness("run", "fair.yaml", "--store", str(store), "--executor", "inline", "--resume", cwd=folder)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "16 cells, 12 already done" in done.stdout
    after = load_records(store)
    new = after[~after["cell_id"].isin(before["cell_id"])]
    assert len(after) == 16 and {p["learning_rate"] for p in new["sweep_point"]} == {1e-2}
    kept = after.set_index("cell_id").loc[before["cell_id"], "finished_at"]
    assert kept.tolist() == before["finished_at"].tolist()  # the finished points were not re-run
    # the report's grid is the grown one, though the older records keep the grid they ran under
    _, tuned = select_points(after[after["status"] == "ok"])
    assert {tuple(table.grid["learning_rate"]) for table in tuned} == {(1.0e-4, 3.0e-3, 1.0e-2)}


# --------------------------------------------------------------------------- sweep selection


def _record(model: str, point: dict, seed: int, holdout: float, evaluation: float) -> dict:
    return {
        "run_id": "r", "cell_id": f"t__{model}{point}__seed{seed}", "task": "t", "model": model, "seed": seed,
        "status": "ok", "primary_metric": "accuracy", "metrics": {"accuracy": evaluation},
        "holdout_metrics": {"accuracy": holdout}, "sweep_point": point, "train_size": None,
        "config": {"model": {"sweep": {"training": {"learning_rate": [1, 2]}}}},
        "wall_seconds": 36.0, "threads": 2,
    }  # fmt: skip


def test_the_sweep_selects_on_the_holdout_not_on_the_reported_split():
    records = pd.DataFrame(
        [_record("m", {"learning_rate": 1}, s, holdout=80 + s, evaluation=70) for s in (0, 1)]
        + [_record("m", {"learning_rate": 2}, s, holdout=75, evaluation=85 + s) for s in (0, 1)]
    )
    kept, tuned = select_points(records)
    assert [p["learning_rate"] for p in kept["sweep_point"]] == [1, 1]  # holdout-best, though eval-worse
    (table,) = tuned
    assert table.selected.values == {"learning_rate": 1} and table.selected.holdout.mean == 80.5
    assert table.cells == 4 and table.seeds == 2 and math.isclose(table.cpu_hours, 4 * 36 * 2 / 3600)
    assert [p.evaluation.mean for p in table.points] == [70, 85.5]


# --------------------------------------------------------------------------- calibration


def test_calibration_equals_a_hand_computation_on_stored_logits(fair_run):
    _, store = fair_run
    with Store(store) as db:
        records = db.records()
        row = records[(records["model"] == "transformer") & (records["train_size"] == "480")].iloc[0]
        frame = db.predictions(row["run_id"], row["cell_id"])
    logits = np.stack(frame["logits"].to_numpy()).astype(np.float64)
    labels = frame["label"].to_numpy()
    figures = cell_calibration(logits, labels)

    probs = [np.exp(z - z.max()) / np.exp(z - z.max()).sum() for z in logits]  # row by row
    n = len(labels)
    confidence = [p.max() for p in probs]
    right = [int(np.argmax(p) == y) for p, y in zip(probs, labels, strict=True)]
    order = sorted(range(n), key=lambda i: confidence[i])
    ece, start = 0.0, 0
    for b in range(10):  # equal mass: bin sizes differ by at most one, the larger bins first
        size = n // 10 + (1 if b < n % 10 else 0)
        members = order[start : start + size]
        start += size
        gap = abs(sum(right[i] for i in members) / size - sum(confidence[i] for i in members) / size)
        ece += size / n * gap
    brier = sum(sum((p[k] - (k == y)) ** 2 for k in range(2)) for p, y in zip(probs, labels, strict=True)) / n
    nll = -sum(math.log(p[y]) for p, y in zip(probs, labels, strict=True)) / n
    top = sorted(range(n), key=lambda i: -confidence[i])[: math.ceil(0.1 * n)]
    assert figures["ece"] == pytest.approx(100 * ece, abs=1e-9)
    assert figures["brier"] == pytest.approx(brier, abs=1e-9)
    assert figures["nll"] == pytest.approx(nll, abs=1e-9)
    assert figures["selective_10"] == pytest.approx(100 * sum(right[i] for i in top) / len(top), abs=1e-9)


# --------------------------------------------------------------------------- ties and McNemar


def _entry(model: str, accuracy: float, metric: str = "accuracy") -> Entry:
    return Entry(
        task="t", model=model, variant=model, primary_metric=metric,
        metrics={metric: Estimate(accuracy, None, 1)},
        cost={}, memory_mb=None, memory_kind=None, seeds=[0], cells=[("r", model, 0)], eval_splits=("dev",),
    )  # fmt: skip


def test_tie_groups_over_the_whole_ranking():
    """a and b differ on 4 of 2,000 rows (tied); c is 5 points behind both; d and e are tied with each
    other, far below c: ranks =1 =1 3 =4 =4."""
    n = 2000
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    right = {  # which rows each model gets right
        "a": np.arange(n) < 1800,
        "b": (np.arange(n) < 1796) | (np.arange(n) >= 1998),
        "c": np.arange(n) < 1700,
        "d": np.arange(n) < 1400,
        "e": (np.arange(n) < 1398) | (np.arange(n) >= 1998),
    }
    frames = {
        m: pd.DataFrame({"eval_split": "dev", "row_id": np.arange(n), "label": labels,
                         "prediction": np.where(r, labels, 1 - labels)})
        for m, r in right.items()
    }  # fmt: skip
    entries = [_entry(m, 100 * r.mean()) for m, r in right.items()]
    test = judge_leader(entries, lambda run, cell: frames[cell], resamples=2000)
    assert [e.rank for e in entries] == ["=1", "=1", "3", "=4", "=4"]
    assert test.groups == [["a", "b"], ["c"], ["d", "e"]]
    assert test.mcnemar.a_only == 4 and test.mcnemar.b_only == 2
    assert test.mcnemar.p_value == pytest.approx(stats.binomtest(4, 6, 0.5).pvalue)


def test_mcnemar_and_holm_by_hand():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    result = mcnemar_exact(a, b)
    assert (result.a_only, result.b_only) == (7, 1)
    assert result.p_value == pytest.approx(2 * sum(math.comb(8, k) for k in range(2)) / 2**8)  # 0.0703
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# --------------------------------------------------------------------------- in a browser


def test_the_new_plots_render_one_line_per_model(fair_run, tmp_path):
    folder, store = fair_run
    done = harness("report", "--store", str(store), "--out", str(tmp_path / "report"), cwd=folder)
    assert done.returncode == 0, done.stderr
    with browser_page(tmp_path / "report" / "index.html") as (page, problems):
        for kind in ("curve", "reliability"):
            # a line's markers: the first trace may be a seed band, of no height where seeds agree
            page.wait_for_selector(f'[data-figure="fig-0-{kind}"] .scatterlayer .trace .points path')
            lines = page.evaluate(
                f"document.querySelector('[data-figure=\"fig-0-{kind}\"]').data"
                ".filter(t => t.mode === 'lines+markers').map(t => t.name)"
            )
            assert sorted(lines) == ["cnn", "transformer"], kind
        curve_points = page.evaluate(
            "document.querySelector('[data-figure=\"fig-0-curve\"]').data"
            ".filter(t => t.mode === 'lines+markers').map(t => t.x)"
        )
        assert curve_points == [[120, 480], [120, 480]]
        page.screenshot(path=str(tmp_path / "fair.png"), full_page=True)
        assert problems == []


# --------------------------------------------------------------------------- against the literature


def test_a_gap_to_the_published_counterpart_is_explained_or_flagged():
    from harness.report.gaps import task_gaps
    from harness.report.references import Reference

    references = [
        Reference("Kim CNN-rand", "sst2", "test", "accuracy", 82.7, "Kim 2014"),
        Reference("BiLSTM (GLUE)", "sst2", "validation", "accuracy", 87.5, "GLUE"),
        Reference("MiniLM-L6-H384", "sst2", "validation", "accuracy", 91.5, "unilm"),
    ]
    configs = {
        "cnn": {"counterparts": {"Kim CNN-rand": ""}},  # another split: explained by the records
        "bilstm": {"counterparts": {"BiLSTM (GLUE)": ""}},  # same split, whole data: unexplained
        "minilm": {"counterparts": {"MiniLM-L6-H384": "a sentence-similarity checkpoint, not the GLUE one"}},
    }
    records = pd.DataFrame(
        [{"task": "sst2", "model": m, "config": {"model": c, "training": {}}} for m, c in configs.items()]
    )
    entries = [_entry(m, v) for m, v in (("cnn", 80.0), ("bilstm", 80.0), ("minilm", 85.0))]
    for entry in entries:
        entry.task, entry.eval_splits = "sst2", ("validation",)
    gaps = {g.model: g for g in task_gaps(records, entries, references, "sst2")}
    assert gaps["cnn"].delta == pytest.approx(-2.7) and gaps["cnn"].reasons == [
        "published on the test split, ours on validation"
    ]
    assert gaps["bilstm"].delta == pytest.approx(-7.5) and gaps["bilstm"].unexplained
    assert gaps["minilm"].delta == pytest.approx(-6.5) and not gaps["minilm"].unexplained
    capped = records.assign(
        config=[{"model": c, "training": {"max_train_examples": 4000}} for c in configs.values()]
    )
    (bilstm,) = [g for g in task_gaps(capped, entries, references, "sst2") if g.model == "bilstm"]
    assert bilstm.reasons == ["trained on 4,000 rows, not the whole training set"] and not bilstm.unexplained


def test_a_gap_is_explained_per_task_and_by_the_reference_s_own_note():
    from harness.report.gaps import task_gaps
    from harness.report.references import Reference

    why = {"cola": "the recipe is too hot for CoLA", "*": "another checkpoint"}
    records = pd.DataFrame(
        [
            {"task": task, "model": "minilm", "config": {"model": {"counterparts": {"MiniLM": why}}}}
            for task in ("cola", "sst2", "wnli")
        ]
    )
    references = [
        Reference("MiniLM", "cola", "validation", "matthews_correlation", 47.5, "unilm"),
        Reference("MiniLM", "sst2", "validation", "accuracy", 91.5, "unilm"),
        Reference("MiniLM", "wnli", "validation", "accuracy", 56.3, "GLUE", note="the majority class"),
    ]
    reasons = {}
    for task, metric in (("cola", "matthews_correlation"), ("sst2", "accuracy"), ("wnli", "accuracy")):
        entry = _entry("minilm", 10.0, metric=metric)
        entry.task, entry.eval_splits = task, ("validation",)
        (gap,) = task_gaps(records, [entry], references, task)
        reasons[task] = gap.reasons
    assert reasons == {
        "cola": ["the recipe is too hot for CoLA"],
        "sst2": ["another checkpoint"],
        "wnli": ["another checkpoint", "the majority class"],
    }


def test_the_report_takes_counterparts_from_the_suite_file_as_it_is_now(tmp_path):
    """Explanations are commentary: editing the suite updates a report of cells that already ran."""
    from harness.report.gaps import with_counterparts_from

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks: [sst2]\nseeds: [0]\nmodels:\n"
        "  - {adapter: cnn, label: cnn, counterparts: {Kim CNN-rand: {sst2: evidence found later}}}\n"
    )
    stored = {"model": {"adapter": "cnn", "counterparts": {"Kim CNN-rand": "old text"}}, "training": {}}
    records = pd.DataFrame(
        [
            {"task": "sst2", "model": "cnn", "config": stored},
            {"task": "sst2", "model": "rnn", "config": stored},
        ]
    )
    fresh = with_counterparts_from(records, suite)
    assert fresh.loc[0, "config"]["model"]["counterparts"] == {
        "Kim CNN-rand": {"sst2": "evidence found later"}
    }
    assert fresh.loc[1, "config"]["model"]["counterparts"] == {"Kim CNN-rand": "old text"}  # not in the file
    assert records.loc[0, "config"]["model"]["counterparts"] == {
        "Kim CNN-rand": "old text"
    }  # input untouched
    other = tmp_path / "other.yaml"
    other.write_text("name: o\ntasks: [sst2]\nseeds: [0]\nmodels: [{adapter: rnn, label: bilstm}]\n")
    with pytest.raises(InputError, match="names none of the report's models"):
        with_counterparts_from(records, other)


def test_curve_min_steps_raises_the_epochs_of_small_sizes_only(tmp_path):
    from harness.planning import expand_cells, load_suite

    base = "name: c\ntasks: [{name: sst2, train_sizes: [100, 1000]}]\nmodels: [{adapter: cnn}]\n"
    base += "training: {epochs: 3, batch_size: 32}\n"
    plain, stepped = tmp_path / "plain.yaml", tmp_path / "stepped.yaml"
    plain.write_text(base)
    stepped.write_text(base + "curve_min_steps: 50\n")
    before = {c.cell_id: c for c in expand_cells(load_suite(plain), plain)}
    after = {c.cell_id: c for c in expand_cells(load_suite(stepped), stepped)}
    assert after["sst2__cnn__n100__seed0"].training.epochs == 13  # ⌈50 / ⌈100 / 32⌉⌉
    assert after["sst2__cnn__n1000__seed0"].training.epochs == 3  # 32 steps × 3 ≥ 50 already
    # a size it does not change keeps its config hash: `--resume` after adding it redoes only the small ones
    assert after["sst2__cnn__n1000__seed0"].config_hash == before["sst2__cnn__n1000__seed0"].config_hash
    assert after["sst2__cnn__n100__seed0"].config_hash != before["sst2__cnn__n100__seed0"].config_hash


# --------------------------------------------------------------------------- a variant is an identity

VARIANTS = {f"cnn[learning_rate={rate}]@n={size}" for rate in (0.0001, 0.003) for size in (120, 480)} | {
    "transformer@n=120",
    "transformer@n=480",
}


def test_compare_and_baselines_key_on_the_variant_never_pooling_points_or_sizes(fair_run, tmp_path):
    from harness.compare import Thresholds, compare, load_side, save_baseline

    folder, store = fair_run
    records = load_records(store)
    assert set(records["variant"]) == VARIANTS
    run = load_side(str(records["run_id"].iloc[0]), store)
    results = [r for r in compare(run, run, Thresholds(compare_cost=False)) if r.metric == "accuracy"]
    assert {r.variant for r in results} == VARIANTS  # six tests of two seeds, not two of eight
    assert {(r.n_baseline, r.n_current) for r in results} == {(2, 2)}
    save_baseline(records, tmp_path / "baseline.json")
    assert set(load_side(str(tmp_path / "baseline.json"), store)["variant"]) == VARIANTS


def test_a_seed_run_again_counts_once_in_a_suite_report(fair_run, tmp_path):
    from harness.report.build import build_report

    folder = tmp_path / "copy"
    shutil.copytree(fair_run[0], folder)
    store = folder / "harness.db"
    again = harness(
        "run",
        "fair.yaml",
        "--store",
        str(store),
        "--executor",
        "inline",
        "--model",
        "transformer",
        cwd=folder,
    )
    assert again.returncode == 0, again.stdout[-2000:]
    records = load_records(store, suite="fair")
    assert len(records) == 16  # 4 transformer cells (2 sizes × 2 seeds) twice
    with Store(store) as db:
        report = build_report(records, db.predictions)
    (section,) = report.tasks
    transformer = next(e for e in section.entries if e.model == "transformer")
    assert transformer.variant == "transformer@n=480" and transformer.seeds == [0, 1]
    newest = records[records["run_id"] == max(records["run_id"])]
    assert {run for run, _, _ in transformer.cells} == set(newest["run_id"])  # the latest record wins
    (note,) = [n for n in report.notes if "ran again" in n]
    assert note.startswith("4 record(s) of a (task, variant, seed) that ran again are left out")
    for old in records[records["run_id"] != max(records["run_id"])].itertuples():
        if old.model != "transformer":
            continue
        new = newest.set_index(["variant", "seed"]).loc[(old.variant, old.seed)]
        before_after = f"{old.primary_value:.2f} (run {old.run_id}) → {new.primary_value:.2f}"
        assert f"{old.task} {old.variant} seed {old.seed}: {before_after}" in note


def test_resume_refuses_to_mix_code_versions_unless_asked(fair_run, tmp_path):
    import sqlite3

    folder = tmp_path / "copy"
    shutil.copytree(fair_run[0], folder)
    store = folder / "harness.db"
    with sqlite3.connect(store) as db:  # one finished cell made by other code
        db.execute("UPDATE records SET code_hash = 'older0123456789a' WHERE rowid = 1")
    before = load_records(store)
    refused = harness(
        "run", "fair.yaml", "--store", str(store), "--executor", "inline", "--resume", cwd=folder
    )
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "1 by older0123456789a" in message
    assert "--allow-mixed-code" in message
    assert load_records(store)["finished_at"].tolist() == before["finished_at"].tolist()  # nothing ran
    mixed = harness(
        "run", "fair.yaml", "--store", str(store), "--executor", "inline", "--resume", "--allow-mixed-code",
        cwd=folder,
    )  # fmt: skip
    assert mixed.returncode == 0 and "12 cells, 12 already done" in mixed.stdout
    report = harness("report", "--store", str(store), "--out", str(folder / "report"), cwd=folder)
    assert report.returncode == 0, report.stderr
    code = next(
        line for line in (folder / "report" / "leaderboard.md").read_text().splitlines() if "Code" in line
    )
    assert code.startswith("- Code (mixed): source ") and "source older0123456789a (commit" in code
    assert "11 cells;" in code and ": 1 cell" in code


def test_records_carry_code_data_and_vocabulary_fingerprints(fair_run):
    from harness.fingerprint import code_fingerprint

    records = load_records(fair_run[1])
    assert set(records["code_hash"]) == {code_fingerprint().source_hash}
    by_size = records.groupby("train_size")
    # the same rows for every seed and model at one size, other rows at another
    assert by_size["data_fingerprint"].nunique().tolist() == [1, 1]
    assert records["data_fingerprint"].nunique() == 2
    # one vocabulary per size (trained on those rows, the same for every seed of a model)
    assert records.groupby(["train_size", "model"])["vocab_hash"].nunique().max() == 1


def test_upgrade_store_recomputes_old_counter_figures_from_the_formula(fair_run, tmp_path):
    """An older store held torch's count: on a CPU it missed the transformer's QKᵀ and AV, 2·2·T²·D per
    layer (D=16, one layer). The upgrade finds T from that figure and stores the formula's."""
    import sqlite3

    folder = tmp_path / "copy"
    shutil.copytree(fair_run[0], folder)
    store = folder / "harness.db"
    records = load_records(store)
    transformer = records[records["model"] == "transformer"]
    with sqlite3.connect(store) as db:
        for row in transformer.itertuples():
            old = row.flops_per_example - 4 * row.flops_tokens**2 * 16
            db.execute(
                "UPDATE records SET flops_per_example = ?, flops_tokens = NULL, variant = NULL"
                " WHERE run_id = ? AND cell_id = ?",
                (old, row.run_id, row.cell_id),
            )
    done = harness("upgrade-store", "--store", str(store), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "4 FLOPs figure(s) recomputed, 4 variant(s) filled" in done.stdout
    after = load_records(store).set_index("cell_id").loc[transformer["cell_id"]]
    assert after["flops_per_example"].tolist() == transformer["flops_per_example"].tolist()
    assert after["flops_tokens"].tolist() == transformer["flops_tokens"].tolist()
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM records WHERE variant IS NULL").fetchone() == (0,)


def test_a_curve_s_smaller_sizes_do_not_explain_its_full_size_gap():
    """The report reads gaps from the records it shows (a curve's largest size): the 250-row point
    of a learning curve must not excuse the full-data model's gap to its published number."""
    from harness.report.curves import largest_sizes
    from harness.report.gaps import task_gaps
    from harness.report.references import Reference

    config = {"model": {"counterparts": {"BiLSTM (GLUE)": ""}}, "training": {}}
    records = pd.DataFrame(
        [
            {"task": "sst2", "model": "bilstm", "train_size": size, "config": {**config, "train_size": size}}
            for size in ("250", "full")
        ]
    )
    entry = _entry("bilstm", 80.0)
    entry.task, entry.eval_splits = "sst2", ("validation",)
    reference = [Reference("BiLSTM (GLUE)", "sst2", "validation", "accuracy", 87.5, "GLUE")]
    (pooled,) = task_gaps(records, [entry], reference, "sst2")
    assert pooled.reasons == ["trained on 250 rows, not the whole training set"]  # what it used to say
    (shown,) = task_gaps(largest_sizes(records), [entry], reference, "sst2")
    assert shown.reasons == [] and shown.unexplained
