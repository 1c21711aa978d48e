"""Executors run cells and hand each outcome back to the runner, the only writer of the store.

| module | one job |
|---|---|
| `base.py` | the types every executor shares: `CellFailure`, `Outcome`, `Executor` |
| `child.py` | one function in a fresh process (forked from a fork server): events relayed, death named |
| `warm.py` | what the fork server imports once, so that a cell's process starts in a fraction of a second |
| `local.py` | `local`: a child process per cell (crash- and OOM-isolated, honest peak RSS) |
| `inline.py` | `inline`: cells in this process, for debugging with pdb |
| `ray.py` | `ray`: a Ray task per cell, on a local or an existing cluster |

All run the same function, `harness.cell.run_cell`, and yield `(spec, outcome)` as
cells finish. Nothing here imports torch: the cell side does, in its own process.
"""

from __future__ import annotations

from harness.executors.base import CellFailure, Executor, Outcome

__all__ = ["CellFailure", "Executor", "Outcome", "make_executor"]


def make_executor(name: str, ray_address: str | None = None) -> Executor:
    if name == "ray":
        from harness.executors.ray import ray_executor

        return ray_executor(ray_address)
    if name == "inline":
        from harness.executors.inline import run_inline

        return run_inline
    from harness.executors.local import run_local

    return run_local
