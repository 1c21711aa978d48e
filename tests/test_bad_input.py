"""A user's bad input: one line naming the file, the field and the fix, exit code 2, before
anything trains (never a traceback, never a silently wrong answer); and reading a store
writes nothing beside it.

Every case runs the real command line (typer's runner, in this process) on tiny real files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.store import load_records

REPO = Path(__file__).resolve().parents[1]
COMMITTED_STORE = REPO / "results" / "leaderboard-diagnostics" / "harness.db"
CNN = "{adapter: cnn, label: cnn, params: {embed_dim: 16, num_filters: 8, vocab_size: 1000}}"
TRAIN = (
    "body,team\nmy invoice is wrong,billing\nthe app crashes,tech\nwant a demo,sales\nrefund please,billing\n"
)
TEST = "body,team\ncharged twice,billing\nlogin fails,tech\n"
IDS_TRAIN = "body,team\nmy invoice is wrong,0\nthe app crashes,1\nwant a demo,1\n"


def project(
    root: Path,
    train: str = TRAIN,
    test: str = TEST,
    task: str = "",
    suite: str = "",
    fmt: str = "csv",
) -> Path:
    """A user's folder: suite.yaml, and beside it tasks/tickets.yaml on tasks/data/ files."""
    data = root / "tasks" / "data"
    data.mkdir(parents=True, exist_ok=True)
    ext = "csv" if fmt == "csv" else "jsonl"
    (data / f"train.{ext}").write_text(train)
    (data / f"test.{ext}").write_text(test)
    (root / "tasks" / "tickets.yaml").write_text(
        f"name: tickets\ndataset: {{format: {fmt}, "
        f"data_files: {{train: data/train.{ext}, test: data/test.{ext}}}}}\n"
        "splits: {train: train, eval: test}\ntext_fields: [body]\nlabel_field: team\n"
        + (task or "metrics: [accuracy, f1_macro]\nprimary_metric: f1_macro\n")
    )
    (root / "suite.yaml").write_text(
        f"name: s\ntasks: [tickets]\nmodels: [{CNN}]\ntraining: {{epochs: 1}}\n{suite}"
    )
    return root


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line(result, where: str, field: str | None, *words: str) -> str:
    """Exit 2 and one line on stderr: `error: <file>: <field>: <problem> (fix: <fix>)`."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"error: {where}: " + (f"{field}: " if field else "")), line
    assert "(fix: " in line, line
    for word in words:
        assert word in line, line
    return line


def nothing_ran(root: Path) -> None:
    assert not (root / "h.db").exists() and not (root / "runs").exists()


def run(root: Path):
    result = cli("run", "suite.yaml", "--store", "h.db")
    nothing_ran(root)
    return result


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


REGRESSION = "problem_type: regression\nmetrics: [pearson]\nprimary_metric: pearson\n"

# ------------------------------------------------------------------- 1. blank and ill-typed labels

LABELS = {
    "null-in-train": (
        dict(train=TRAIN.replace("crashes,tech", "crashes,")),
        "split 'train' has no label",
        "row 1",
    ),
    "null-in-eval": (
        dict(test=TEST.replace("twice,billing", "twice,")),
        "split 'test' has no label",
        "row 0",
    ),
    "blank": (
        dict(train=TRAIN.replace("crashes,tech", 'crashes,"   "')),
        "split 'train' has no label",
        "row 1",
    ),
    "json-null-and-empty": (
        dict(
            fmt="json",
            train=jsonl({"body": "a", "team": "x"}, {"body": "b", "team": None}, {"body": "c", "team": ""}),
            test=jsonl({"body": "d", "team": "x"}),
        ),
        "at row 1 (and 1 more row(s))",
        "fill them in",
    ),
    "fractional-class-id": (
        dict(train=IDS_TRAIN.replace("crashes,1", "crashes,1.5"), test="body,team\nx,0\ny,1\n"),
        "row 1 has the label 1.5",
        "problem_type: regression",
    ),
    "text-in-regression": (
        dict(task=REGRESSION, train="body,team\na,0.5\nb,high\nc,2\n", test="body,team\nd,1.0\ne,2.0\n"),
        "row 1 has the label 'high'",
        "not a finite number",
    ),
    "null-in-regression": (
        dict(task=REGRESSION, train="body,team\na,0.5\nb,1.5\nc,2\n", test="body,team\nd,\ne,2.0\n"),
        "split 'test' has no label",
        "row 0",
    ),
    "names-and-ids-mixed": (
        dict(
            fmt="json",
            train=jsonl({"body": "a", "team": 1}, {"body": "b", "team": "pos"}),
            test=jsonl({"body": "c", "team": 1}),
        ),
        "mixes class names and ids",
        "use one kind of label",
    ),
    "one-class": (
        dict(train="body,team\na,billing\nb,billing\n", test="body,team\nc,billing\n"),
        "has a single class (billing)",
        "add rows of the other classes",
    ),
}


@pytest.mark.parametrize("case", list(LABELS))
def test_a_missing_or_ill_typed_label_is_one_line(here, case):
    files, *words = LABELS[case]
    project(here, **files)
    one_line(run(here), "tasks/tickets.yaml", "team", *words)


def test_the_real_command_line_says_one_line_for_a_bad_label(tmp_path):
    project(tmp_path, train=TRAIN.replace("crashes,tech", "crashes,"))
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "suite.yaml", "--store", "h.db"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: tasks/tickets.yaml: team: split 'train' has no label in column 'team' at row 1 "
        "(fix: drop the rows without a label, or fill them in)"
    )
    nothing_ran(tmp_path)


# ------------------------------------------------------------------- 2. evaluation ids the model lacks


def test_an_evaluation_id_the_training_split_never_has_is_one_line_not_a_quiet_metric(here):
    project(here, train=IDS_TRAIN, test="body,team\ncharged twice,0\nlogin fails,2\nparcel,7\n")
    line = one_line(run(here), "tasks/tickets.yaml", "team", "split 'test' has label id(s) [2, 7]")
    assert "never has (it has [0, 1])" in line and "label_names" in line and "label_map" in line


def test_an_evaluation_id_beyond_label_names_is_one_line(here):
    project(
        here,
        train=IDS_TRAIN,
        test="body,team\ncharged twice,0\nlogin fails,2\n",
        task="label_names: [billing, tech]\nmetrics: [accuracy]\nprimary_metric: accuracy\n",
    )
    one_line(run(here), "tasks/tickets.yaml", "label_names", "split 'test' has label id(s) [2]", "ids 0..1")


def test_a_negative_id_in_a_users_file_is_one_line(here):
    project(here, train=IDS_TRAIN, test="body,team\ncharged twice,0\nlogin fails,-1\n")
    one_line(run(here), "tasks/tickets.yaml", "team", "negative label id(s) [-1]")


# ------------------------------------------------------------------- 3. label_map and label_names

METRICS = "metrics: [accuracy, f1_macro]\nprimary_metric: f1_macro\n"
LABEL_FIELDS = {
    "two-names-one-id": (
        "label_map: {billing: 0, tech: 0, sales: 1}\n",
        "label_map",
        "'billing', 'tech' share the id 0",
    ),
    "all-on-one-id": ("label_map: {billing: 0, tech: 0, sales: 0}\n", "label_map", "share the id 0"),
    "ids-with-a-gap": ("label_map: {billing: 1, tech: 2, sales: 3}\n", "label_map", "0..2 without gaps"),
    "negative-id": ("label_map: {billing: -1, tech: 0, sales: 1}\n", "label_map", "they are [-1, 0, 1]"),
    "repeated-name": ("label_names: [billing, billing]\n", "label_names", "names ['billing'] more than once"),
}


@pytest.mark.parametrize("case", list(LABEL_FIELDS))
def test_a_label_map_or_label_names_that_is_not_one_id_per_class_is_one_line(here, case):
    extra, field, words = LABEL_FIELDS[case]
    project(here, task=extra + METRICS)
    one_line(run(here), "tasks/tickets.yaml", field, words)


def test_a_label_map_with_number_keys_matches_number_labels(here):
    """YAML reads {0: 0, 1: 1} with integer keys; they name the labels 0 and 1 of the data."""
    from harness.planning import expand_cells, load_suite

    project(here, train=IDS_TRAIN, test="body,team\nc,0\nd,1\n", task="label_map: {0: 0, 1: 1}\n" + METRICS)
    (cell,) = expand_cells(load_suite(here / "suite.yaml"), here / "suite.yaml")
    assert cell.task.label_map == {"0": 0, "1": 1}


# ------------------------------------------------------------------- 4. values planning knows are impossible


def test_a_training_size_larger_than_a_local_split_is_refused_while_planning(here):
    project(here, suite="train_sizes: [2, 10]\n")
    one_line(run(here), "suite.yaml", "train_sizes", "10 rows asked of task tickets", "has 4", "up to 4")


def test_a_training_size_larger_than_a_mirrored_hub_split_is_refused_while_planning(here, data_dir):
    (here / "suite.yaml").write_text(
        f"name: s\nmodels: [{CNN}]\ntraining: {{epochs: 1, early_stopping_patience: 1}}\n"
        'tasks: [{name: rte, splits: {train: "train[:2%]", eval: validation}, train_sizes: [40, 100]}]\n'
    )
    line = one_line(run(here), "suite.yaml", "tasks.0.train_sizes", "100 rows asked of task rte")
    assert "'train[:2%]' has 50 (45 after the holdout)" in line and "up to 45" in line


def test_a_negative_seed_is_refused_before_any_cell(here):
    project(here, suite="seeds: [0, -1]\n")
    one_line(run(here), "suite.yaml", "seeds", "seed -1 is out of range", "use seeds >= 0")


def test_a_repeated_seed_is_refused_before_any_cell(here):
    project(here, suite="seeds: [3, 3]\n")
    one_line(run(here), "suite.yaml", "seeds.1", "remove the repeated seed")


def test_a_holdout_that_leaves_no_training_row_is_refused_before_any_cell(here):
    project(
        here,
        train="body,team\nmy invoice is wrong,billing\n",
        test="body,team\nc,billing\nd,tech\n",
        task="label_map: {billing: 0, tech: 1}\n" + METRICS,
        suite="",
    )
    (here / "suite.yaml").write_text(
        (here / "suite.yaml").read_text().replace("{epochs: 1}", "{epochs: 1, early_stopping_patience: 1}")
    )
    one_line(run(here), "suite.yaml", "training.holdout_fraction", "leaves none to train on")


# ------------------------------------------------------------------- odd files a user brings

ODD_FILES = {
    "empty-file": (dict(train=""), "dataset.data_files", "train.csv is empty"),
    "only-a-header": (dict(test="body,team\n"), "dataset.data_files", "test.csv holds only a header row"),
    "empty-jsonl": (
        dict(fmt="json", train="", test=jsonl({"body": "a", "team": "x"})),
        "dataset.data_files",
        "is empty",
    ),
    "columns-differ": (
        dict(test="body,tm\ncharged twice,billing\n"),
        "dataset.data_files",
        "has the columns ['body', 'tm'], but",
    ),
    "numbers-as-text": (
        dict(train="body,team\n12,billing\n13,tech\n", test="body,team\n14,billing\n"),
        "text_fields",
        "row 0 has 12 in column 'body', not text",
    ),
}


@pytest.mark.parametrize("case", list(ODD_FILES))
def test_an_odd_data_file_is_one_line(here, case):
    files, field, words = ODD_FILES[case]
    project(here, **files)
    line = one_line(run(here), "tasks/tickets.yaml", field, words)
    assert "An error occurred while generating" not in line


def test_a_folder_where_a_file_belongs_is_one_line(here):
    project(here)
    (here / "tasks" / "data" / "test.csv").unlink()
    (here / "tasks" / "data" / "test.csv").mkdir()
    one_line(run(here), "tasks/tickets.yaml", "dataset.data_files.test", "test.csv is a folder")
    one_line(cli("run", "tasks", "--store", "h.db"), "tasks", None, "is a folder, not a YAML file")
    nothing_ran(here)


def test_a_tasks_dir_that_is_not_a_folder_is_one_line_not_ignored(here):
    project(here)
    one_line(cli("run", "suite.yaml", "--store", "h.db", "--tasks-dir", "nope"), "nope", "--tasks-dir")
    one_line(cli("list", "tasks", "--tasks-dir", "suite.yaml"), "suite.yaml", "--tasks-dir", "is a file")
    nothing_ran(here)


# ------------------------------------------------------------------- 5. output paths


@pytest.fixture
def store(here) -> Path:
    """A copy of a small committed store (one run of six cells)."""
    path = here / "store" / "harness.db"
    path.parent.mkdir()
    shutil.copyfile(COMMITTED_STORE, path)
    return path


def test_run_refuses_a_store_it_cannot_write_before_anything_is_planned(here):
    project(here)
    (here / "afile").write_text("x")
    one_line(
        cli("run", "suite.yaml", "--store", "tasks"), "tasks", "--store", "is a folder", "tasks/harness.db"
    )
    one_line(cli("run", "suite.yaml", "--store", "afile/h.db"), "afile/h.db", "--store", "afile is a file")
    one_line(
        cli("run", "suite.yaml", "--store", "suite.yaml"), "suite.yaml", "--store", "not a results store"
    )
    assert (here / "suite.yaml").read_text().startswith("name: s")  # untouched
    nothing_ran(here)


def test_readers_refuse_a_folder_or_an_empty_file_as_a_store(here):
    (here / "empty.db").write_bytes(b"")
    one_line(cli("show", "--store", str(here)), str(here), "--store", "is a folder")
    one_line(cli("list", "runs", "--store", "empty.db"), "empty.db", "--store", "not a results store")
    assert (here / "empty.db").read_bytes() == b""


def test_export_makes_a_missing_folder_and_refuses_a_folder_or_the_store(here, store):
    exported = cli("export", "latest", "--out", "new/deeper/records.csv", "--store", str(store))
    assert exported.exit_code == 0, exported.output
    assert (here / "new" / "deeper" / "records.csv").read_text().count("\n") == 7  # header + 6 cells
    one_line(cli("export", "latest", "--out", "new", "--store", str(store)), "new", "--out", "is a folder")
    before = store.read_bytes()
    one_line(
        cli("export", "latest", "--out", str(store), "--store", str(store)),
        str(store),
        "--out",
        "store itself",
    )
    assert store.read_bytes() == before


def test_compare_makes_missing_folders_and_refuses_a_folder(here, store):
    saved = cli("baseline", "save", "latest", "--out", "base/b.json", "--store", str(store))
    assert saved.exit_code == 0, saved.output
    compared = cli(
        "compare", "base/b.json", "latest", "--no-cost", "--store", str(store),
        "--markdown", "out/md/summary.md", "--junit", "out/xml/junit.xml",
    )  # fmt: skip
    assert compared.exit_code == 0, compared.output
    assert (here / "out" / "md" / "summary.md").stat().st_size and (
        here / "out" / "xml" / "junit.xml"
    ).stat().st_size
    bad = cli("compare", "base/b.json", "latest", "--store", str(store), "--junit", "out")
    one_line(bad, "out", "--junit", "is a folder")
    one_line(
        cli("baseline", "save", "latest", "--out", "base", "--store", str(store)), "base", "--out", "folder"
    )


def test_report_onto_a_file_is_one_line_before_the_report_is_built(here, store):
    (here / "taken").write_text("mine")
    one_line(cli("report", "--out", "taken", "--store", str(store)), "taken", "--out", "is a file")
    one_line(
        cli("report", "--out", "taken/sub", "--store", str(store)), "taken/sub", "--out", "taken is a file"
    )
    assert (here / "taken").read_text() == "mine"


# ------------------------------------------------------------------- 6. reading a store writes nothing


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_reading_a_committed_store_leaves_it_byte_for_byte_and_nothing_beside_it(here, store):
    before = digest(store)
    run_id = load_records(store)["run_id"].iloc[0]
    commands = [
        ["show"],
        ["show", run_id],
        ["list", "runs"],
        ["export", run_id, "--format", "json"],
        ["baseline", "save", run_id, "--out", "b.json"],
        ["compare", "b.json", run_id, "--no-cost"],
        ["compare", run_id, "latest", "--no-cost"],
        ["report", "--out", "report", "--no-references"],
    ]
    for command in commands:
        result = cli(*command, "--store", str(store))
        assert result.exit_code == 0, (command, result.output, result.exception)
        assert beside(store) == ["harness.db"], command  # no -wal, no -shm
    assert digest(store) == before
    assert (here / "report" / "leaderboard.md").exists()


def test_the_real_command_line_reads_a_store_without_a_trace(store):
    before = digest(store)
    shown = subprocess.run(
        [sys.executable, "-m", "harness", "show", "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert beside(store) == ["harness.db"] and digest(store) == before


def test_a_dead_drivers_run_reads_as_abandoned_without_a_write(here, store):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)  # a process that has exited
    db = sqlite3.connect(store)
    db.execute(
        "INSERT INTO runs (run_id, suite, started_at, status, cells, driver_host, driver_pid, driver_started)"
        " VALUES ('killed-run', 's', '2099-01-01T00:00:00+00:00', 'running', 3, ?, ?, 1.0)",
        (socket.gethostname(), dead_pid),
    )
    db.commit()
    db.close()  # the last connection: SQLite folds the WAL back into the file and removes it
    assert beside(store) == ["harness.db"]
    before = digest(store)
    listed = cli("list", "runs", "--store", str(store))
    assert listed.exit_code == 0, listed.output
    assert "killed-run" in listed.stdout and "abandoned" in listed.stdout
    assert digest(store) == before and beside(store) == ["harness.db"]
    check = sqlite3.connect(f"{store.as_uri()}?mode=ro&immutable=1", uri=True)
    assert check.execute("SELECT status FROM runs WHERE run_id = 'killed-run'").fetchone() == ("running",)
    check.close()


def test_a_store_from_before_some_columns_is_read_as_it_is(here, store):
    """Another version's store lacks columns the records have now: read-only, they read as
    missing, and the file is not altered to add them."""
    db = sqlite3.connect(store)
    db.execute("ALTER TABLE records DROP COLUMN notes")
    db.execute("ALTER TABLE records DROP COLUMN predictions_file")
    db.execute("ALTER TABLE runs DROP COLUMN driver_pid")
    db.close()
    before = digest(store)
    records = load_records(store)
    assert len(records) == 6 and all(notes == [] for notes in records["notes"])
    assert records["predictions_file"].isna().all()
    for command in (["show"], ["list", "runs"], ["report", "--out", "r", "--no-references"]):
        result = cli(*command, "--store", str(store))
        assert result.exit_code == 0, (command, result.output, result.exception)
    assert digest(store) == before and beside(store) == ["harness.db"]
