"""Shared fixtures: the real data mirror beside the checkout, an offline Hub, a private cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HARNESS_DATA_DIR", REPO.parent / "shared" / "data")).resolve()

# Nothing may reach the network in tests; fail fast instead of waiting on timeouts.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HARNESS_DATA_DIR"] = str(DATA_DIR)

# With pytest-xdist's workers side by side (`-n 2`, what `make test` runs), each worker's torch
# gets its share of the cores: two OpenMP pools on two cores wait on each other's time slices
# (steps measured 10x slower). Set before anything imports torch; the cells' processes inherit it.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_share = max(1, (os.cpu_count() or 1) // _workers)
CELL_THREADS = min(2, _share)  # torch threads for a test's cells, where a test names them
if _workers > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))


CHROMIUM_ARGS = [  # a headless Chromium that reaches nothing beyond the page (the HTML tests)
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser_page(path: Path, viewport: dict | None = None):
    """The page at `path` in headless Chromium, and the errors it raises or logs, as a person's
    browser would show it."""
    from playwright import sync_api  # the `test` extra installs it; .ci/run installs chromium

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).is_file(), "no chromium: apt-get install chromium (.ci/run does)"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1366, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(path.resolve().as_uri())
            yield page, problems
        finally:
            browser.close()


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Vocabulary cache per test session, so a test never depends on an earlier run's files."""
    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("harness-cache"))
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert (DATA_DIR / "hf" / "datasets" / "nyu-mll" / "glue").is_dir(), (
        f"real data mirror not found at {DATA_DIR}; set HARNESS_DATA_DIR"
    )
    return DATA_DIR


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def harness(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Ran:
    """`harness ARGS` as a user types it, run in this test's process by typer's CliRunner: the
    same command code, with this worker's imports and fork server already warm, so a test pays
    for its cells rather than for starting Python, torch and a fork server once more. An
    exception the command does not handle ends it as it would a process: code 1 and its
    traceback on stderr. What only a process of its own shows (a signal, Ctrl-C, kill -9, an
    installed wheel) is tested with `harness_process`."""
    import torch
    from typer.testing import CliRunner

    from harness.cli import app

    before, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(cwd or before)
    try:
        result = CliRunner(env=env).invoke(app, list(args))
    finally:
        os.chdir(before)
        torch.set_num_threads(threads)  # the inline executor sets a cell's threads in this process
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return Ran(result.exit_code, result.stdout, stderr)


def harness_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a process of its own, under this environment plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
