"""Run one function in a fresh process: its events relayed, its result returned, its death named.

Why a process: a segfault, an out-of-memory kill or a leaked allocation ends with the
child, and the child's memory high-water mark is its own. The local executor runs each cell
this way, a cell each deploy backend, and `harness profile` each (model, length) point.

Where the process comes from: multiprocessing's fork server. Started once per driver (on its
first child), it imports what every cell imports (`warm.py`) and then forks a process per call,
a cell's own processes (its deploy backends) included, so a process starts in a fraction of a
second instead of importing torch, pandas, datasets and transformers afresh (docs/benchmarks.md,
"Starting a cell's process"). The server runs no torch op and starts no thread pool, so a fork
of it is as safe as a spawn; where there is no fork server (Windows) each process is spawned.
Each child runs under the caller's current environment variables and working directory (the
server has those of its start); only what the warm modules read while importing was read then.

The child dies with the process that asked for it: it watches that process (a pidfd) and ends
itself when it ends, so a driver killed with `kill -9` does not leave an orphan training on,
competing with the run that resumes it. (`PR_SET_PDEATHSIG` cannot do this: a forked child's
parent is the fork server.)

The work (function and arguments) travels in a file, not in the process object: the process
object is written into a pipe whose reading end the parent holds open until the write ends,
so a child that died while starting (a script calling the harness without an
`if __name__ == "__main__":` guard, re-run by the child's bootstrap) blocked the parent forever
once the arguments passed the pipe's 64 KiB. Now such a child's exit is read and named.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_module
import select
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing import forkserver, resource_tracker
from typing import Any

from harness.allocator import tcmalloc_library
from harness.executors.base import CellFailure, describe
from harness.interrupts import stops_held

POLL_S = 0.5
NO_TCMALLOC_ENV = "HARNESS_NO_TCMALLOC"  # "1": the cells run on the C library's malloc
EmitFn = Callable[[Any], None]


def exit_reason(code: int | None, who: str = "the child process", started: bool = True) -> str:
    """Why a child ended without a result, in words: the signal by name, or the exit code, and
    the likely cause where it exited before running the work at all."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"{who} died from {name}{hint}"
    if not started:
        return (
            f"{who} exited with code {code} while starting, before it ran anything: a spawned process "
            "first re-runs the top level of the script that started it, so that script must keep its "
            'entry point under `if __name__ == "__main__":` (the error above this message says more)'
        )
    return f"{who} exited with code {code} before reporting a result"


def _die_with(pid: int) -> None:
    """End this process (SIGKILL, as the kernel's parent-death signal would) when process `pid`
    ends. Without pidfds (not Linux 5.3+) nothing is watched: an orphan finishes and exits."""
    try:
        watched = os.pidfd_open(pid)
    except ProcessLookupError:  # gone already, before this process got going
        os.kill(os.getpid(), signal.SIGKILL)
    except (AttributeError, OSError):
        return

    def wait_then_die() -> None:
        select.select([watched], [], [])  # readable once the process has ended
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait_then_die, name="harness-die-with-parent", daemon=True).start()


def _context() -> mp.context.BaseContext:
    """The fork server, started with SIGINT blocked (its forks inherit the mask, whichever thread
    asks for them); spawn where there is none. In a process the server forked, the same server
    (`_fork_from_own_server`)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["harness.executors.warm"])
    resource_tracker.ensure_running()  # it unblocks SIGINT once started: start it first
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with _preloaded(tcmalloc_library()):
            forkserver._forkserver.ensure_running()  # the instance's: `_fork_from_own_server` sets it
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
    return context


def _fork_from_own_server() -> None:
    """Let this process, forked by the fork server, fork its own children from that server.

    The server's forks inherit its address and the keep-alive pipe of the processes it serves,
    but not its pid, so multiprocessing's `ensure_running` starts a second server in them, which
    imports torch, datasets and transformers again: seconds of every cell that serves deploy
    backends. The first server lives as long as this process does (this process holds the
    keep-alive pipe), and what it forks holds what the server holds, not this process's memory.
    Where the state is not that of a fork (spawned, or another Python's multiprocessing),
    nothing changes and a second server starts as before."""
    server = forkserver._forkserver
    forked = (
        getattr(server, "_forkserver_pid", 0) is None
        and getattr(server, "_forkserver_address", None) is not None
        and getattr(server, "_forkserver_alive_fd", None) is not None
    )
    if forked:
        # the server is not this process's child: its liveness cannot be polled, nor need be
        server.ensure_running = resource_tracker.ensure_running


@contextmanager
def _preloaded(library: str | None):
    """`LD_PRELOAD` the library for a process started in here (the fork server, and so every
    cell): tcmalloc keeps freed blocks for reuse as fast as glibc's heap does, without the heap's
    fragmentation (see `harness/allocator.py`)."""
    before = os.environ.get("LD_PRELOAD")
    if library is not None and os.environ.get(NO_TCMALLOC_ENV) != "1":
        os.environ["LD_PRELOAD"] = " ".join(filter(None, [before, library]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = before


@contextmanager
def sigint_deferred():
    """Start children with SIGINT blocked, and hold back a Ctrl-C that arrives meanwhile.

    A terminal's Ctrl-C reaches the whole process group; the parent turns it into
    `interrupted` and kills the child, which must not print a KeyboardInterrupt traceback of
    its own (it may be anywhere, even importing torch). A blocked signal mask survives
    fork and exec, so a child started in here never receives SIGINT. The parent's Ctrl-C
    that lands in here is recorded, not lost (as it was when SIGINT was ignored for the
    start), and raised the moment the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # multiprocessing starts its resource tracker on first use and then *unblocks* SIGINT in
    # this thread; start it before blocking
    resource_tracker.ensure_running()
    with stops_held((signal.SIGINT,)):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending one lands here


def _child_main(work: str, channel) -> None:
    try:
        with open(work, "rb") as file:
            function, args, environment, parent = pickle.load(file)
        _die_with(parent)
        _fork_from_own_server()
        os.environ.clear()
        os.environ.update(environment)
        channel.put(("started", None))
        result = function(*args, emit=lambda event: channel.put(("event", event)))
        channel.put(("result", result))
    except BaseException as error:  # everything, KeyboardInterrupt too: the parent decides
        channel.put(("failure", CellFailure(describe(error), traceback.format_exc())))


def run_in_child(
    function: Callable[..., Any],
    args: tuple,
    on_event: EmitFn = lambda event: None,
    timeout_s: float | None = None,
    who: str = "the child process",
) -> Any:
    """`function(*args, emit=...)` in a child process; its return value, or a `CellFailure`.

    `function` must be importable by name (it is pickled by reference); whatever it
    passes to `emit` reaches `on_event` here. If this process is interrupted (Ctrl-C) or
    the caller stops waiting, the child is killed at once rather than left running.
    """
    context = _context()
    channel = context.Queue()
    work = tempfile.NamedTemporaryFile(prefix="harness-work-", suffix=".pkl", delete=False)
    try:
        with work:
            work_and_setting = (function, args, dict(os.environ), os.getpid())
            pickle.dump(work_and_setting, work, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # arguments that cannot be pickled: the caller's error, no file left
        os.unlink(work.name)
        raise
    # not a daemon: a cell's process starts processes of its own (one per deploy backend), which
    # multiprocessing forbids a daemon; the `finally` below and PR_SET_PDEATHSIG end it instead
    process = context.Process(target=_child_main, args=(work.name, channel))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    outcome: Any = None
    finished = started = False
    try:
        # the mask is inherited (by the fork server too, started here): Ctrl-C is the parent's
        with sigint_deferred():
            process.start()
        while not finished:
            if deadline is not None and time.monotonic() > deadline:
                outcome, finished = CellFailure(f"no result within {timeout_s:.0f} s", ""), True
                break
            try:
                kind, payload = channel.get(timeout=POLL_S)
            except queue_module.Empty:
                if process.is_alive():
                    continue
                try:  # the result may have landed just as the process exited
                    kind, payload = channel.get(timeout=1.0)
                except queue_module.Empty:
                    outcome = CellFailure(exit_reason(process.exitcode, who, started), "")
                    finished = True
                    break
            if kind == "started":
                started = True
            elif kind == "event":
                on_event(payload)
            else:
                outcome, finished = payload, True
    finally:
        if finished and process.is_alive():
            process.join(timeout=30)  # a child that reported is on its way out
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
        channel.close()
        os.unlink(work.name)
    return outcome
