"""Contention: the share of the machine other processes used during a phase, against hand
arithmetic and against the CPU time of a real stranger process. How the report and `compare`
use it: tests/test_report.py and tests/test_compare.py."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import psutil
import pytest

from harness.trackers.contention import ContentionTracker, CpuSample, other_share, sample

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def test_the_share_is_others_busy_time_over_the_machines_capacity():
    start = CpuSample(wall=10.0, machine_busy=100.0, own=20.0, cpus=2)
    # 2 s on 2 CPUs: 4 CPU-seconds of capacity; 3.5 busy, 1.5 of them ours: others used 2 of 4
    assert other_share(start, CpuSample(12.0, 103.5, 21.5, 2)) == pytest.approx(0.5)
    assert other_share(start, CpuSample(12.0, 101.0, 21.5, 2)) == 0.0  # tick rounding below 0: clamped
    assert other_share(start, CpuSample(10.1, 100.2, 20.0, 2)) is None  # too short to say


def test_a_stranger_busy_beside_a_phase_is_counted_and_our_own_work_is_not():
    """A spinning process that is not ours (its parent exits at once) reads as others' share: at
    least its own CPU time over the capacity. Our in-process spin and a child's spin (reaped in the
    phase) are ours: the tracker's own time equals what getrusage gives for us and our children."""
    stranger = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "{SPIN.format(seconds=2)}" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(stranger.stdout.strip())
    assert pid not in {child.pid for child in psutil.Process().children(recursive=True)}
    tracker, before = ContentionTracker(), psutil.Process(pid).cpu_times()
    with tracker.phase("beside a stranger"):
        start = sample()
        time.sleep(1.0)
        end = sample()
    after = psutil.Process(pid).cpu_times()
    stranger_seconds = (after.user + after.system) - (before.user + before.system)
    capacity = (end.wall - start.wall) * end.cpus
    assert stranger_seconds > 0.3  # it ran (on any machine, a spinner gets a good part of a core)
    assert tracker.phases["beside a stranger"] * capacity >= stranger_seconds - 0.1

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = sample()
    child = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=0.5)])
    exec(SPIN.format(seconds=0.5))  # noqa: S102  (our own spin, in this process)
    child.wait()
    end = sample()
    used = sum(
        (now.ru_utime + now.ru_stime) - (then.ru_utime + then.ru_stime)
        for now, then in zip(
            (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)),
            usage,
            strict=True,
        )
    )
    assert used > 0.2  # our spin and the child's ran (how much depends on who else runs)
    assert end.own - start.own == pytest.approx(used, abs=0.1)


def test_the_run_table_marks_the_timings_of_a_shared_phase():
    """`harness run` and `harness show` end with one row per cell: a timing whose phase shared
    the machine carries `*` and the caption says what that means; the quiet cell's do not."""
    import pandas as pd
    from rich.console import Console

    from harness.tables import records_table

    def cell(seed: int, contention: dict) -> dict:
        return {
            "task": "sst2", "model": "cnn", "seed": seed, "status": "ok", "error": None,
            "primary_metric": "accuracy", "metrics": {"accuracy": 80.0}, "train_examples_per_s": 1500.0,
            "infer_examples_per_s": 9000.0, "latency_p50_ms": 0.5, "peak_rss_mb": 500.0,
            "params_total": 1_100_000, "train_seconds": 6.0, "contention": contention,
        }  # fmt: skip

    records = pd.DataFrame([cell(0, {"train": 0.01, "inference": 0.02}), cell(1, {"train": 0.4})])
    console = Console(record=True, width=200)
    console.print(records_table(records, "cells"))
    lines = console.export_text().splitlines()
    quiet, shared = (next(line for line in lines if f"│    {seed} │" in line) for seed in (0, 1))
    assert "1,500.0 " in quiet and "*" not in quiet
    assert "1,500.0*" in shared and "9,000.0 " in shared and shared.count("*") == 1  # training only
    assert "* timed while other processes used over 10% of the machine" in lines[-1]
