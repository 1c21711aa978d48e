"""`harness report`: leaderboards from a store of real tiny runs, checked as text and in a real browser."""

from __future__ import annotations

import copy
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CHROMIUM_ARGS, harness
from scipy import stats

from harness.config import CellSpec, ModelSpec, ProbeSpec, TrainingSettings
from harness.errors import InputError
from harness.report.references import BUILTIN_REFERENCES, load_references
from harness.report.scores import group_scores, pool_seeds, score_over
from harness.report.stats import paired_bootstrap, t_interval
from harness.store import Store, load_records
from harness.tasks.registry import BUILTIN_DIR, builtin_task, load_group

EVIL = "<img src=x onerror=alert(1)>"
PROBES = [ProbeSpec(name="typos", rate=0.3), ProbeSpec(name="negation")]
GLUE = load_group(BUILTIN_DIR / "groups" / "glue.yaml")
TASKS = ("sst2", "mrpc", "stsb")
SEEDS = (0, 1)
MODELS = (
    ModelSpec(adapter="cnn", label="cnn", params={"embed_dim": 32, "num_filters": 16, "vocab_size": 2000}),
    ModelSpec(
        adapter="cnn",
        label=EVIL,
        params={"embed_dim": 16, "num_filters": 8, "kernel_sizes": [3], "vocab_size": 1000},
    ),
    ModelSpec(
        adapter="hf",
        label="tiny-bert",
        params={
            "config": {
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            },
            "vocab_size": 2000,
        },
    ),
)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, data_dir) -> Path:
    """3 models × 3 tasks × 2 seeds of real tiny runs, written the way the runner writes them."""
    import torch

    from harness.cell import run_cell

    path = tmp_path_factory.mktemp("report-store") / "harness.db"
    training = TrainingSettings(
        epochs=1, batch_size=32, max_seq_length=48, max_train_examples=300, max_eval_examples=100
    )
    threads = torch.get_num_threads()
    store = Store(path)
    store.start_run("run-tiny", "tiny", "tiny.yaml", len(TASKS) * len(MODELS) * len(SEEDS))
    try:
        for order, name in enumerate(TASKS):
            task = builtin_task(name)
            for model in MODELS:
                for seed in SEEDS:
                    spec = CellSpec(
                        suite="tiny",
                        task=task,
                        model=model,
                        seed=seed,
                        training=training,
                        device="cpu",
                        threads=1,
                        data_dir=str(data_dir),
                        group=GLUE,
                        task_order=order,  # as planning numbers the suite's tasks
                        probes=PROBES,
                        probe_rows=60,
                    )
                    result = run_cell(spec, "run-tiny")
                    store.write_cell(result.record, result.predictions)
        store.finish_run("run-tiny", "ok")
    finally:
        store.close()
        torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="module")
def report_dir(store_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "tiny"
    result = harness("report", "run-tiny", "--store", str(store_path), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "leaderboard.md").is_file() and (out / "index.html").is_file()
    kinds = {"sst2": ("reliability",), "mrpc": ("reliability",)}  # STS-B, a regression, has none
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(
        f"{task}-{kind}.json"
        for task in TASKS
        for kind in ("params", "throughput", "robustness", *kinds.get(task, ()))
    )
    return out


# --------------------------------------------------------------------------- markdown


def table_after(markdown: str, heading: str) -> list[list[str]]:
    """The first markdown table after `heading`, as rows of cells (header first, separator dropped)."""
    lines = markdown[markdown.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if not all(set(cell) <= set("-:") for cell in cells):
            rows.append(cells)
    return rows


def md_label(label: str) -> str:
    return re.sub(r"([\\`*_\[\]<>|~&$])", r"\\\1", label)


def seed_values(records, task: str, model: str, metric: str) -> list[float]:
    rows = records[(records.task == task) & (records.model == model)]
    assert len(rows) == len(SEEDS)
    return [float(v) for v in rows[f"metric.{metric}"] if not math.isnan(v)]


def shown_interval(values: list[float]) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.1f}"
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return f"{mean:.1f} ± {half:.1f}"


def test_markdown_numbers_equal_the_records(report_dir, store_path):
    markdown = (report_dir / "leaderboard.md").read_text()
    records = load_records(store_path)
    assert md_label(EVIL) in markdown and not re.search(r"(?<!\\)<img", markdown)  # escaped for markdown
    for section in (
        "## Overview",
        "## Per task",
        "## Is the leader really ahead?",
        "## Sources",
        "## Provenance",
    ):
        assert section in markdown

    overview = table_after(markdown, "## Overview")
    header = overview[0]
    assert header[:3] == ["Model", "GLUE-9", "GLUE-8"]
    assert "SST-2 (accuracy)" in header and "MRPC (f1)" in header and "STS-B (pearson)" in header
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in overview[1:]}
    for model in MODELS:
        label = model.display_label
        row = rows[md_label(label)]
        means = {
            (task, metric): float(np.mean(seed_values(records, task, label, metric)))
            for task, metric in [
                ("sst2", "accuracy"),
                ("mrpc", "f1"),
                ("mrpc", "accuracy"),
                ("stsb", "pearson"),
                ("stsb", "spearmanr"),
            ]
        }
        assert row["SST-2 (accuracy)"] == f"{means['sst2', 'accuracy']:.1f}"
        assert row["MRPC (f1)"] == f"{means['mrpc', 'f1']:.1f}"
        assert row["STS-B (pearson)"] == f"{means['stsb', 'pearson']:.1f}"
        glue = np.mean(
            [
                means["sst2", "accuracy"],
                (means["mrpc", "f1"] + means["mrpc", "accuracy"]) / 2,
                (means["stsb", "pearson"] + means["stsb", "spearmanr"]) / 2,
            ]
        )
        assert row["GLUE-9"] == f"{glue:.1f} (partial: 3/9, missing cola, qqp, mnli, qnli, rte, wnli)"
        assert row["GLUE-8"] == f"{glue:.1f} (partial: 3/8, missing cola, qqp, mnli, qnli, rte)"

    # the published rows are there and marked; the BiLSTM's GLUE score is complete, not partial
    bilstm = next(row for name, row in rows.items() if name.startswith("BiLSTM"))
    assert "_(not run here)_" in next(name for name in rows if name.startswith("BiLSTM"))
    assert bilstm["GLUE-9"].startswith("66.7") and "partial" not in bilstm["GLUE-9"]
    assert bilstm["SST-2 (accuracy)"] == "87.5"

    # per task: mean ± t-interval per metric, n seeds, ranks, cost figures
    titles = {"sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B"}
    ranks: dict[str, dict[str, str]] = {}
    for task, metrics in {
        "sst2": ["accuracy"],
        "mrpc": ["f1", "accuracy"],
        "stsb": ["pearson", "spearmanr"],
    }.items():
        table = table_after(markdown, f"### {titles[task]} ({task})")
        header = table[0]
        assert header[:3] == ["Rank", "Model", "n"] and header[3 : 3 + len(metrics)] == metrics
        ours = {row[1]: dict(zip(header, row, strict=True)) for row in table[1:] if row[0] != "—"}
        assert set(ours) == {md_label(m.display_label) for m in MODELS}
        for model in MODELS:
            row = ours[md_label(model.display_label)]
            assert row["n"] == str(len(SEEDS))
            for metric in metrics:
                assert row[metric] == shown_interval(seed_values(records, task, model.display_label, metric))
            # the seeds whose inference had the machine to themselves (others ≤ 10% of it), else all
            mine = records[(records.task == task) & (records.model == model.display_label)]
            quiet = mine[[shares.get("inference", 0) <= 0.10 for shares in mine["contention"]]]
            rate = (quiet if len(quiet) else mine)["infer_examples_per_s"].mean()
            assert row["infer ex/s"] == (f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}")
            assert row["peak mem MB"].endswith("(RSS)")
            assert row["trained on"] == "300 × 1"  # max_train_examples × epochs of the fixture
        ranks[titles[task]] = {model: row["Rank"] for model, row in ours.items()}
        assert any(row[0] == "—" and "_(not run here)_" in row[1] for row in table[1:])

    leader = table_after(markdown, "## Is the leader really ahead?")
    assert [row[0] for row in leader[1:]] == ["SST-2", "MRPC", "STS-B"]
    for row in leader[1:]:
        p = float(row[6].replace("< ", ""))
        assert 0 < p <= 1 and row[8] == ("ahead" if p < 0.05 else "tied (=1)")
        expected, position = {}, 1  # the tie groups, best first, give the ranks of the task's table
        for group in row[9].split("; "):
            members = group.split(" = ")
            for member in members:
                expected[member] = f"={position}" if len(members) > 1 else str(position)
            position += len(members)
        assert expected == ranks[row[0]]
    assert "run-tiny" in markdown and "torch" in markdown.split("## Provenance")[1]


# --------------------------------------------------------------------------- scores and statistics


def test_glue_score_reproduces_the_glue_papers_bilstm_average():
    references = [r for r in load_references(BUILTIN_REFERENCES) if r.model.startswith("BiLSTM (GLUE")]
    dev: dict[str, dict[str, float]] = {}
    for reference in references:
        if reference.split == "validation" and reference.task != "glue":
            dev.setdefault(reference.task, {})[reference.metric] = reference.value
    scores = group_scores(GLUE, dev)
    glue9, glue8 = scores["GLUE-9"], scores["GLUE-8"]
    published = next(r.value for r in references if r.metric == "glue_score")
    # (17.6 + 87.5 + (85.1+77.9)/2 + (82.0+85.3)/2 + (71.6+72.0)/2 + 66.7 + 77.0 + 58.5 + 56.3) / 9 = 66.73
    assert not glue9.partial and glue9.present == tuple(GLUE.members)
    assert abs(glue9.value - published) <= 0.1 and f"{glue9.value:.1f}" == "66.7"
    assert f"{glue8.value:.1f}" == "68.0" and not glue8.partial  # without WNLI


def test_a_group_score_needs_two_of_its_tasks(store_path):
    from harness.report.build import build_report

    records = load_records(store_path)
    with Store(store_path) as db:
        one = build_report(records[records.task == "sst2"], db.predictions, resamples=50)
        two = build_report(records[records.task.isin(["sst2", "mrpc"])], db.predictions, resamples=50)
    assert one.groups == []  # GLUE over SST-2 alone would repeat SST-2's column
    assert [group.score_names for group in two.groups] == [["GLUE-9", "GLUE-8"]]


def test_partial_glue_score_is_marked():
    scores = {"cola": 30.0, "sst2": 90.0, "mrpc": 80.0, "stsb": 70.0, "rte": 60.0, "wnli": 50.0}
    partial = score_over("GLUE-8", tuple(GLUE.scores["GLUE-8"]), scores)
    assert partial.partial and partial.value == pytest.approx(66.0)
    assert partial.note == "partial: 5/8, missing qqp, mnli, qnli"


def test_t_interval_and_paired_bootstrap():
    values = [80.0, 82.0, 84.0]
    estimate = t_interval(values + [float("nan")])
    assert estimate.n == 3 and estimate.mean == pytest.approx(82.0)
    assert estimate.half_width == pytest.approx(stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3))
    assert t_interval([70.0]).half_width is None

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    good = [np.where(rng.random(400) < 0.9, labels, 1 - labels) for _ in range(2)]
    poor = [np.where(rng.random(400) < 0.6, labels, 1 - labels) for _ in range(2)]
    ahead = paired_bootstrap("accuracy", labels, good, poor, resamples=500)
    assert ahead.p_value < 0.01 and ahead.low > 0
    assert ahead.delta == pytest.approx(
        100 * (np.mean([(g == labels).mean() for g in good]) - np.mean([(p == labels).mean() for p in poor]))
    )
    same = paired_bootstrap("f1", labels, good, good, resamples=200, resample_seeds=False)
    assert same.delta == 0 and same.p_value == 1.0  # the same seeds on the same examples: never ahead
    same = paired_bootstrap("f1", labels, good, good, resamples=200)  # each side draws its own seeds
    assert same.delta == 0 and same.p_value > 0.5 and same.low < 0 < same.high
    scores = rng.random(300) * 5
    noisy = [scores + rng.normal(0, s, 300) for s in (0.5, 0.6)]
    assert paired_bootstrap("spearmanr", scores, noisy, [rng.random(300)], resamples=200).p_value < 0.01


def test_a_run_resumed_on_another_machine_says_which_cells_ran_where(store_path, tmp_path):
    """A leaderboard that spans sessions: the provenance names each machine with its cells, and
    the wall time is the time cells ran, not the gap between sessions."""
    import sqlite3

    store = tmp_path / "harness.db"
    shutil.copy(store_path, store)
    shutil.copytree(store_path.parent / "runs", tmp_path / "runs")
    with sqlite3.connect(store) as db:  # MRPC "resumed" years later on an Intel machine with AMX
        db.execute(
            "UPDATE records SET cpu_model = 'Intel Xeon', device_name = 'cpu (Intel Xeon)', "
            "capabilities = ?, started_at = replace(started_at, substr(started_at, 1, 10), '2031-01-02'), "
            "finished_at = replace(finished_at, substr(finished_at, 1, 10), '2031-01-02') "
            "WHERE task = 'mrpc'",
            ('{"avx512_bf16": true, "amx_bf16": true}',),
        )
    out = tmp_path / "report"
    result = harness("report", "run-tiny", "--store", str(store), "--out", str(out))
    assert result.returncode == 0, result.stderr
    markdown = (out / "leaderboard.md").read_text()
    provenance = markdown[markdown.index("## Provenance") :]
    machines = [line for line in provenance.splitlines() if line.startswith("  - ")]
    assert len(machines) == 2
    intel = next(line for line in machines if "Intel Xeon" in line)
    other = next(line for line in machines if "Intel Xeon" not in line)
    assert "native bf16: AVX512-BF16 + AMX" in intel and f"{len(MODELS) * len(SEEDS)} cell(s)" in intel
    assert "cpu (Intel Xeon)" in intel and "AMD" not in intel
    assert "— mrpc: " in intel and "cnn (seeds 0, 1)" in intel and "sst2" not in intel and "stsb" not in intel
    assert "mrpc" not in other and "sst2: " in other and "; stsb: " in other

    records = load_records(store)
    spans = sorted(zip(records.started_at, records.finished_at, strict=True))
    busy = (
        sum((np.datetime64(end[:19]) - np.datetime64(start[:19])).astype(float) for start, end in spans)
        / 3600
    )  # the cells ran one after another: the union of their spans is their sum
    wall = float(re.search(r"([\d.]+) hours of wall time while cells ran", provenance).group(1))
    assert wall == pytest.approx(busy, abs=0.006) and wall < 1  # not the five years in between


def test_a_model_whose_seeds_ran_on_a_gpu_and_a_cpu_pools_accuracy_not_speed(store_path, tmp_path):
    """Seed 1 of every cell "moved" to a GPU: accuracy still pools both seeds, but a mean of a GPU's
    and a CPU's examples/s describes neither machine, so speed and memory come from one machine
    (the first of equals), a note says which, and the GPU's wall time is GPU-hours, not CPU-hours."""
    import sqlite3

    from harness.report.scores import cpu_hours, gpu_hours, pool_seeds

    store = tmp_path / "harness.db"
    shutil.copy(store_path, store)
    shutil.copytree(store_path.parent / "runs", tmp_path / "runs")
    with sqlite3.connect(store) as db:
        db.execute(
            "UPDATE records SET device = 'cuda', device_name = 'NVIDIA H200', threads = 16, "
            "train_examples_per_s = 100 * train_examples_per_s, cuda_peak_allocated_mb = 300 WHERE seed = 1"
        )
    records = load_records(store)
    cpu, gpu = records[records["seed"] == 0], records[records["seed"] == 1]
    for entry in pool_seeds(records):
        mine = records[(records["task"] == entry.task) & (records["model"] == entry.model)]
        on_cpu = mine[mine["seed"] == 0].iloc[0]
        assert entry.primary.n == 2  # accuracy: both seeds
        assert entry.cost["train_examples_per_s"] == pytest.approx(on_cpu["train_examples_per_s"])
        assert entry.memory_kind == "RSS" and entry.memory_mb == pytest.approx(on_cpu["peak_rss_mb"])
        assert entry.cost_basis.startswith("speed and memory from the 1 of 2 seeds that ran on cpu")
        assert "the others ran on cuda, NVIDIA H200" in entry.cost_basis
    walls = cpu["wall_seconds"] * cpu["threads"]
    assert cpu_hours(records) == pytest.approx(walls.sum() / 3600)
    assert gpu_hours(records) == pytest.approx(gpu["wall_seconds"].sum() / 3600)
    out = tmp_path / "report"
    result = harness("report", "run-tiny", "--store", str(store), "--out", str(out))
    assert result.returncode == 0, result.stderr
    markdown = (out / "leaderboard.md").read_text()
    assert f"{gpu_hours(records):.2f} GPU-hours (CUDA cells: wall)" in markdown
    assert "speed and memory from the 1 of 2 seeds" in markdown


def test_report_of_an_unknown_run_is_one_line_and_exit_2(store_path, tmp_path):
    result = harness("report", "no-such-run", "--store", str(store_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "no run 'no-such-run'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the page in a browser


def column_values(page, table: str, column: int) -> list[tuple[float, str]]:
    """(sort value, model) of the rows of `table` that have a value in `column`, in page order."""
    return [
        (float(value), model)
        for value, model in page.eval_on_selector(
            table,
            f"t => Array.from(t.tBodies[0].rows).map(r => [r.cells[{column}].getAttribute('data-sort'), "
            "r.cells[1].innerText.trim()])",
        )
        if value != ""
    ]


def test_html_page_in_a_real_browser(report_dir, tmp_path):
    from playwright import sync_api  # the `test` extra installs it; .ci/run installs chromium

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).is_file(), "no chromium: apt-get install chromium (.ci/run does)"
    url = (report_dir / "index.html").resolve().as_uri()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for name, viewport in (
                ("desktop", {"width": 1366, "height": 900}),
                ("phone", {"width": 390, "height": 844}),
            ):
                page = browser.new_page(viewport=viewport)
                problems, requests, dialogs = [], [], []
                page.on("console", lambda m, p=problems: p.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, p=problems: p.append(str(e)))
                page.on("request", lambda r, q=requests: q.append(r.url))
                page.on("dialog", lambda d, q=dialogs: (q.append(d.message), d.dismiss()))
                page.goto(url)
                page.wait_for_selector('[data-figure="fig-0-throughput"] .scatterlayer .point')
                page.screenshot(path=str(tmp_path / f"report-{name}.png"), full_page=True)

                assert problems == []
                assert [u for u in requests if u != url and not u.startswith("data:")] == []
                # the hostile label is text, and ran nothing
                assert EVIL in page.evaluate("document.body.innerText")
                assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
                assert dialogs == []
                # one point per model in the first task's throughput plot
                points = page.locator('[data-figure="fig-0-throughput"] .scatterlayer .point').count()
                traces = page.evaluate(
                    "document.querySelector('[data-figure=\"fig-0-throughput\"]').data"
                    ".filter(t => t.mode === 'markers').map(t => t.x.length)"
                )
                assert points == len(MODELS) and traces == [1] * len(MODELS)
                if name == "phone":  # nothing wider than the screen but the scrolling tables
                    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                    continue

                # sorting: click "infer ex/s" of the first task's table, ascending then descending
                table = "#task-0 table"
                headers = page.eval_on_selector_all(f"{table} thead th", "hs => hs.map(h => h.textContent)")
                column = headers.index("infer ex/s")
                before = column_values(page, table, column)
                assert sorted(model for _, model in before) == sorted(m.display_label for m in MODELS)
                page.click(f"{table} thead th:nth-child({column + 1})")
                assert column_values(page, table, column) == sorted(before)
                page.click(f"{table} thead th:nth-child({column + 1})")
                assert column_values(page, table, column) == sorted(before, reverse=True)

                # the task filter shows one task's section
                page.click('.filter button[data-filter="mrpc"]')
                assert page.is_hidden('section.task[data-task="sst2"]')
                assert page.is_visible('section.task[data-task="mrpc"]')
                page.click('.filter button[data-filter=""]')
                assert page.is_visible('section.task[data-task="sst2"]')

                # where two models differ: filter by side, search, page; counts are McNemar's
                blocks = page.locator(".differ")
                counts = [
                    tuple(int(blocks.nth(k).locator(f".{side}-only").inner_text()) for side in ("a", "b"))
                    for k in range(blocks.count())
                ]
                busiest = max(range(len(counts)), key=lambda k: sum(counts[k]))  # tiny models may agree
                block, (a_only, b_only) = blocks.nth(busiest), counts[busiest]
                assert a_only + b_only > 0 and len(counts) == 4, counts  # leader vs two others, two tasks
                first_model = block.locator("select option").nth(1).get_attribute("value")
                block.locator("select").select_option(first_model)
                assert block.locator(".count").inner_text().startswith(f"{a_only} rows")
                assert block.locator("tbody tr").count() == min(a_only, 25)
                block.locator("select").select_option("")
                assert block.locator(".count").inner_text().startswith(f"{a_only + b_only} rows")
                # the search matches the example id (hex) too: a word that cannot be part of one
                first_text = block.locator("tbody tr td:nth-child(2)").first.inner_text()
                word = next(w for w in first_text.split() if not set(w.lower()) <= set("0123456789abcdef"))
                block.locator("input[type=search]").fill(word)
                texts = block.locator("tbody tr td:nth-child(2)").all_inner_texts()
                assert texts and all(word.lower() in text.lower() for text in texts)
                assert problems == [] and dialogs == []
                page.close()
        finally:
            browser.close()


def test_samples_export_every_row_with_a_stable_id_and_reads_back(store_path, tmp_path):
    """One JSON line per (cell, evaluation row); the id is SHA-256 of the normalized text and the
    label, the same for every model and seed; probabilities are the softmax of the stored logits."""
    import hashlib
    import unicodedata

    from harness.report.calibration import softmax
    from harness.samples import read_samples

    out = tmp_path / "samples.jsonl"
    result = harness("export", "run-tiny", "--samples", "--out", str(out), "--store", str(store_path))
    assert result.returncode == 0, result.stdout + result.stderr
    samples = read_samples(out)
    records = load_records(store_path)
    with Store(store_path, create=False) as db:
        predictions = {row.cell_id: db.predictions("run-tiny", row.cell_id) for row in records.itertuples()}
    assert len(samples) == sum(len(frame) for frame in predictions.values())
    ids = samples.groupby(["task", "eval_split", "row_id"])["example_id"].nunique()
    assert (ids == 1).all()  # every model and seed names a row alike
    row = samples[(samples.task == "mrpc")].iloc[0]
    fields = "\x1f".join(" ".join(unicodedata.normalize("NFC", t).split()) for t in (row.text_a, row.text_b))
    assert row.example_id == hashlib.sha256(f"{fields}\x1e{row.label}".encode()).hexdigest()[:16]
    assert row.label in ("equivalent", "not_equivalent") and isinstance(row.text_b, str)
    sst2 = samples[samples.cell_id == "sst2__cnn__seed0"].set_index("row_id")
    frame = predictions["sst2__cnn__seed0"].set_index("row_id")
    expected = softmax(np.stack(frame["logits"].to_numpy()))
    got = np.array([[p["negative"], p["positive"]] for p in sst2.loc[frame.index, "probabilities"]])
    assert np.allclose(got, expected, atol=1e-6)
    names = np.array(["negative", "positive"])
    assert (sst2.loc[frame.index, "prediction"].to_numpy() == names[frame["prediction"].to_numpy()]).all()
    stsb = samples[samples.task == "stsb"]
    assert stsb["score"].notna().all() and "probabilities" not in stsb.dropna(axis=1, how="all")

    missing = harness(
        "export", "run-tiny", "--samples", "--data-dir", str(tmp_path / "nowhere"), "--store", str(store_path)
    )
    assert missing.returncode == 2 and "--data-dir is not a folder" in missing.stderr, missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = tmp_path / "old.jsonl"
    bad.write_text(out.read_text().replace('"version": 1', '"version": 99', 1))
    with pytest.raises(InputError, match="version 99"):
        read_samples(bad)


def test_where_two_models_differ_counts_mcnemars_discordant_cells(store_path):
    """The rows only one ensemble gets right, recomputed here from the stored logits: the
    counts and the sides match the table, and the leader's first pair matches the leader test."""
    from harness.report.build import build_report
    from harness.report.calibration import softmax
    from harness.samples import task_rows_loader

    with Store(store_path, create=False) as db:
        records = db.records(["run-tiny"])
        report = build_report(
            records, db.predictions, task_rows=task_rows_loader(records, None), resamples=50
        )
        section = next(t for t in report.tasks if t.name == "sst2")
        examples = section.examples
        assert examples.note == "" and len(examples.confusion) == len(MODELS)
        first = examples.differences[0]
        assert (first.a_only, first.b_only) == (section.leader.mcnemar.a_only, section.leader.mcnemar.b_only)

        def ensemble(model: str):
            frames = [
                db.predictions("run-tiny", f"sst2__{model}__seed{seed}").set_index("row_id") for seed in SEEDS
            ]
            mean = np.mean([softmax(np.stack(f["logits"].to_numpy())) for f in frames], axis=0)
            return pd.Series(mean.argmax(axis=1) == frames[0]["label"].to_numpy(), index=frames[0].index)

        for pair in examples.differences:
            right_a, right_b = ensemble(pair.model_a), ensemble(pair.model_b)
            assert pair.a_only == int((right_a & ~right_b).sum()) and pair.b_only == int(
                (right_b & ~right_a).sum()
            )
            sides = pd.Series([row.right for row in pair.rows]).value_counts()
            assert sides.get(pair.model_a, 0) == pair.a_only and sides.get(pair.model_b, 0) == pair.b_only
            gaps = [row.gap for row in pair.rows]
            assert gaps == sorted(gaps, reverse=True)
            assert all(len(row.text) <= 300 and row.example_id for row in pair.rows)
    said = " ".join(section.findings)  # the sentences quote the tables' own figures
    assert (
        f"{first.model_a} is right on {first.a_only:,} rows and {first.model_b} on {first.b_only:,}" in said
    )
    robustness = section.robustness
    assert robustness.probes == ["typos", "negation"] and robustness.rows == 60
    for model in robustness.models:
        typos = robustness.cells[model]["typos"]
        assert typos.change.n == len(SEEDS) and typos.invariance.mean <= 100
        assert robustness.cells[model]["negation"].moved is not None
        assert f"{model}: " in said  # its costliest probe and worst case
    assert "predicts a score" in next(t for t in report.tasks if t.name == "stsb").examples.note
    mrpc = next(t for t in report.tasks if t.name == "mrpc").robustness
    assert all("pair" in mrpc.cells[model]["negation"].reason for model in mrpc.models)
    slices = section.slices  # on the same rows: the two labels' slices hold every row of each model
    assert slices.notes == [] and {"label: negative", "label: positive"} <= set(slices.names)
    for model in slices.models:
        assert (
            slices.cells["label: negative"][model].rows + slices.cells["label: positive"][model].rows == 100
        )
    confusion = next(c for c in examples.confusion if c.model == "cnn")
    assert sum(map(sum, confusion.counts)) == 100 and confusion.labels == ["negative", "positive"]


def _configs_changed(records: pd.DataFrame, seed: int, change) -> pd.DataFrame:
    """The records with `change(config)` applied to each of `seed`'s configs (a copy)."""
    configs = [copy.deepcopy(c) for c in records["config"]]
    for config, row_seed in zip(configs, records["seed"], strict=True):
        if row_seed == seed:
            change(config)
    return records.assign(config=configs)


def test_seeds_pool_as_mixed_settings_only_when_a_setting_differs_not_when_the_schema_grew(store_path):
    """Seed 1's configs as older code stored them, without the model's `tasks` field (added later,
    default None): the same settings. The why report once flagged every IMDb model so."""
    records = load_records(store_path)
    assert all("tasks" in config["model"] for config in records["config"])
    older = _configs_changed(records, 1, lambda config: config["model"].pop("tasks"))
    assert not any(entry.mixed_configs for entry in pool_seeds(older))

    def other_learning_rate(config):
        config["training"]["learning_rate"] *= 2

    changed = pool_seeds(_configs_changed(older, 1, other_learning_rate))
    assert changed and all(entry.mixed_configs for entry in changed)


def _with_contention(records: pd.DataFrame, shares: dict[int, dict[str, float]]) -> pd.DataFrame:
    """The records as if each seed's phases had shared the machine as given ({} for none)."""
    return records.assign(contention=[shares.get(int(seed), {}) for seed in records["seed"]])


def test_a_contended_seeds_timings_leave_the_means_and_a_note_says_so(store_path):
    """Seed 1's inference "shared the machine" (55% to others) and read 10× slower: speed and
    latency come from seed 0, a note says why; its training had the machine and stays in."""
    records = load_records(store_path)
    slowed = records.assign(
        infer_examples_per_s=np.where(records["seed"] == 1, 0.1, 1.0) * records["infer_examples_per_s"]
    )
    for entry in pool_seeds(_with_contention(slowed, {1: {"train": 0.02, "inference": 0.55}})):
        mine = records[(records["task"] == entry.task) & (records["model"] == entry.model)]
        quiet = mine[mine["seed"] == 0].iloc[0]
        assert entry.cost["infer_examples_per_s"] == pytest.approx(quiet["infer_examples_per_s"])
        assert entry.cost["latency_p50_ms"] == pytest.approx(quiet["latency_p50_ms"])
        assert entry.cost["train_examples_per_s"] == pytest.approx(mine["train_examples_per_s"].mean())
        assert entry.cost_basis == (
            "inference speed and latency from seed(s) 0; seed(s) 1 measured while other processes "
            "used up to 55% of the machine"
        )
        assert entry.primary.n == 2  # accuracy: a busy machine does not change a prediction

    # every seed shared it: the figure is all there is, kept and marked
    for entry in pool_seeds(_with_contention(slowed, {0: {"inference": 0.3}, 1: {"inference": 0.55}})):
        mine = slowed[(slowed["task"] == entry.task) & (slowed["model"] == entry.model)]
        assert entry.cost["infer_examples_per_s"] == pytest.approx(mine["infer_examples_per_s"].mean())
        assert entry.cost_basis == (
            "inference speed and latency: every seed measured while other processes used up to 55% "
            "of the machine"
        )
