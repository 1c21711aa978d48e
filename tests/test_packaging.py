"""A non-editable install works: a wheel built from this checkout, installed into a fresh
virtual environment, lists the built-in tasks and runs a suite from a folder outside the repo.

The fresh environment borrows the test environment's dependencies (torch and the rest) through
a `.pth` line, so nothing is downloaded; the harness itself comes only from the wheel, which
the test checks before it trusts anything else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILTIN_TASKS = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "imdb"}


def test_a_wheel_installed_elsewhere_has_its_tasks_and_runs_a_suite(tmp_path, data_dir):
    source = tmp_path / "source"  # a copy, so that setuptools' build/ folder lands there
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "harness", source / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("text_classifier_harness-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_TASKS_DIR")}
    env["HARNESS_DATA_DIR"] = str(data_dir)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600)

    where = run(str(python), "-c", "import harness; print(harness.__file__)")
    assert where.stdout.strip().startswith(site), where.stdout + where.stderr  # the wheel, not the checkout

    listed = run(str(venv / "bin" / "harness"), "list", "tasks")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip() for line in listed.stdout.splitlines() if line.startswith("│")}
    assert rows == BUILTIN_TASKS

    (elsewhere / "tiny.yaml").write_text(
        "name: tiny\ntasks: [sst2, rte]\n"
        "models: [{adapter: cnn, params: {embed_dim: 16, num_filters: 8, vocab_size: 1000}}]\n"
        "training: {epochs: 1, max_seq_length: 32, max_train_examples: 100, max_eval_examples: 50}\n"
    )
    ran = run(str(venv / "bin" / "harness"), "run", "tiny.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = run(str(venv / "bin" / "harness"), "report", "--out", "report")
    assert report.returncode == 0, report.stdout + report.stderr
    markdown = (elsewhere / "report" / "leaderboard.md").read_text()
    # the task title and the group score (two GLUE tasks ran) came with the wheel
    assert "SST-2" in markdown and "GLUE-9" in markdown
    assert "MiniLM-L6-H384" in markdown  # the published references ship too
