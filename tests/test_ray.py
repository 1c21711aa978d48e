"""The Ray executor on a real local cluster: same metrics as the local executor; a killed worker
is retried and its cell recorded, not lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from harness.store import load_records

SUITE = """
name: ray-small
tasks: [{name: sst2, splits: {train: "train[:3000]", eval: validation}}]
models: [{adapter: cnn, params: {embed_dim: 32, num_filters: 16, vocab_size: 2000}}]
seeds: [0, 1]
training: {epochs: 1, max_seq_length: 48, max_train_examples: 400, max_eval_examples: 200}
"""


def harness(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
        **kwargs,
    )


def metrics_by_seed(store) -> dict[int, dict]:
    records = load_records(store)
    assert set(records["status"]) == {"ok"}, records[["cell_id", "status", "error"]]
    return {int(row.seed): row.metrics for row in records.itertuples()}


def test_ray_gives_the_same_metrics_as_the_local_executor(tmp_path):
    suite = tmp_path / "ray-small.yaml"
    suite.write_text(SUITE)
    local = harness("run", str(suite), "--store", str(tmp_path / "local.db"))
    assert local.wait(timeout=600) == 0, local.stdout.read()
    ray = harness("run", str(suite), "--store", str(tmp_path / "ray.db"), "--executor", "ray")
    assert ray.wait(timeout=600) == 0, ray.stdout.read()
    assert metrics_by_seed(tmp_path / "ray.db") == metrics_by_seed(tmp_path / "local.db")
    assert len(metrics_by_seed(tmp_path / "ray.db")) == 2


def _cell_worker() -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("ray::_cell_task"):
            return process
    return None


def test_a_worker_killed_mid_cell_is_retried_and_recorded(tmp_path):
    suite = tmp_path / "ray-kill.yaml"
    suite.write_text(
        SUITE.replace("seeds: [0, 1]", "seeds: [0]")
        .replace("epochs: 1", "epochs: 6")
        .replace("max_train_examples: 400", "max_train_examples: 2000")
    )
    store = tmp_path / "ray.db"
    run = harness("run", str(suite), "--store", str(store), "--executor", "ray")
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline and run.poll() is None:
        victim = _cell_worker()
        time.sleep(0.2)
    assert victim is not None, "no Ray worker ran the cell"
    time.sleep(3)  # let it get into training
    victim.kill()
    assert run.wait(timeout=600) == 0, run.stdout.read()
    records = load_records(store)
    assert len(records) == 1 and records["status"].iloc[0] == "ok"  # Ray's one retry finished it
    assert not psutil.pid_exists(victim.pid) or victim.status() == psutil.STATUS_ZOMBIE
