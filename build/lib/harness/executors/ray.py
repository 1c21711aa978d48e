"""The Ray executor: every cell a Ray task, on an existing cluster or a local one.

Why Ray: it schedules cells onto GPUs and CPUs by the resources they ask for,
retries a task whose worker died, and the same code runs on a laptop, a Slurm
allocation, Kubernetes (KubeRay) or a cloud cluster through Ray's own launchers.

The task runs `harness.cell.run_cell`, the same function as the local executor,
and returns the result to the driver, which stays the only writer of the store
and writes each record as its task finishes: a lost worker or a killed driver loses
at most the cells in flight, and `harness run --resume` finishes the rest.

- A Python error in a cell comes back as a failed record with the worker's error
  (not retried: it would fail again).
- A worker that dies mid-cell (killed, out of memory, node lost) is retried once
  by Ray (`max_retries=1`), then recorded as failed.
- `max_calls=1`: each worker process runs one cell and exits, so its peak resident
  memory is that cell's own, as with the local executor.
- Workers report "started" and their training progress through a Ray queue, so the
  display shows cells pending / running / done / failed across the cluster.

Ray is an optional extra: `pip install -e .[ray]`.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness.config import CellSpec
from harness.errors import InputError
from harness.executors.base import CellFailure, Executor, describe, throttled

if TYPE_CHECKING:
    from harness.cell import CellResult
    from harness.progress import Events

POLL_S = 0.5


def _cell_task(spec_json: str, run_id: str, channel) -> CellResult | CellFailure:
    """Runs on a Ray worker: one cell, its events sent through `channel` (a ray.util.queue.Queue)."""
    from harness.cell import run_cell

    spec = CellSpec.model_validate_json(spec_json)

    def send(item) -> None:
        try:
            channel.put_nowait(item)
        except Exception:  # a full or lost queue must not fail the cell
            pass

    send(("started", spec.cell_id, os.getpid()))
    try:
        return run_cell(spec, run_id, throttled(lambda p: send(("progress", spec.cell_id, p))))
    except Exception as error:
        return CellFailure(describe(error), traceback.format_exc())


def _num_gpus(spec: CellSpec, cluster_gpus: float) -> float:
    if spec.resources.num_gpus is not None:
        return spec.resources.num_gpus
    wants_cuda = spec.device == "cuda" or (spec.device == "auto" and cluster_gpus > 0)
    return 1 if wants_cuda else 0


def ray_executor(address: str | None) -> Executor:
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray", "Ray is not installed", 'pip install -e ".[ray]"') from None

    def execute(specs: list[CellSpec], run_id: str, events: Events) -> Iterator[tuple[CellSpec, object]]:
        started_here = not ray.is_initialized()
        if started_here:
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:  # a local cluster for this run
                    ray.init(include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise InputError(
                    f"--address {address}",
                    f"cannot reach the Ray cluster ({describe(error)})",
                    "start one with `ray start --head`, or leave out --address for a local one",
                ) from None
        try:
            yield from _run(ray, specs, run_id, events)
        finally:
            if started_here:
                ray.shutdown()

    return execute


def _run(ray, specs: list[CellSpec], run_id: str, events: Events):
    from ray.util.queue import Queue

    channel = Queue(maxsize=10_000)
    task = ray.remote(max_retries=1, max_calls=1)(_cell_task)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    by_ref = {}
    for spec in specs:
        ref = task.options(num_cpus=spec.resources.num_cpus, num_gpus=_num_gpus(spec, cluster_gpus)).remote(
            spec.model_dump_json(), run_id, channel
        )
        by_ref[ref] = spec
    by_id = {spec.cell_id: spec for spec in specs}
    started: set[str] = set()
    pending = list(by_ref)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            _drain(channel, by_id, started, events)
            for ref in ready:
                spec = by_ref[ref]
                if spec.cell_id not in started:
                    started.add(spec.cell_id)
                    events.started(spec)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as error:  # worker lost twice, node died, ...
                    outcome = CellFailure(f"Ray: {describe(error)}", str(error))
                yield spec, outcome
    finally:
        for ref in pending:  # the driver is stopping: do not leave orphan cells running
            ray.cancel(ref, force=True)
        channel.shutdown()


def _drain(channel, by_id: dict[str, CellSpec], started: set[str], events: Events) -> None:
    from ray.util.queue import Empty

    while True:
        try:
            item = channel.get_nowait()
        except Empty:
            return
        kind, cell_id = item[0], item[1]
        spec = by_id.get(cell_id)
        if spec is None:
            continue
        if kind == "started" and cell_id not in started:
            started.add(cell_id)
            events.started(spec)
        elif kind == "progress":
            events.progress(spec, item[2])
