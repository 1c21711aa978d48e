"""Shared fixtures: the real data mirror beside the checkout, an offline Hub, a private cache."""

from __future__ import annotations

import os
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
