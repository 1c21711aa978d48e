"""Run one function in a fresh spawned process: its events relayed, its result returned,
its death named.

Why a process: a segfault, an out-of-memory kill or a leaked allocation ends with the
child, and the child's memory high-water mark is its own. Why "spawn": a fork of a
process that has started threads (torch, tokenizers) can deadlock. The local executor
runs each cell this way, a cell each deploy backend, and `harness profile` each (model,
length) point.

The child dies with its parent (Linux `PR_SET_PDEATHSIG`): a driver killed with
`kill -9` does not leave an orphan training on, competing with the run that resumes it.

The work (function and arguments) travels in a file, not in the process object: spawn writes
the process object into a pipe whose reading end the parent holds open until the write ends,
so a child that died while starting (a script calling the harness without an
`if __name__ == "__main__":` guard, re-run by the child's bootstrap) blocked the parent forever
once the arguments passed the pipe's 64 KiB. Now such a child's exit is read and named.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from multiprocessing import resource_tracker
from typing import Any

from harness.executors.base import CellFailure, describe

POLL_S = 0.5
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


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # best effort: without it an orphan finishes its work and exits


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
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending one lands here
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)  # as if it arrived now, to the handler of now


def _child_main(work: str, channel) -> None:
    _die_with_parent()
    channel.put(("started", None))
    try:
        with open(work, "rb") as file:
            function, args = pickle.load(file)
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
    """`function(*args, emit=...)` in a spawned child; its return value, or a `CellFailure`.

    `function` must be importable by name (spawn pickles it by reference); whatever it
    passes to `emit` reaches `on_event` here. If this process is interrupted (Ctrl-C) or
    the caller stops waiting, the child is killed at once rather than left running.
    """
    context = mp.get_context("spawn")
    channel = context.Queue()
    work = tempfile.NamedTemporaryFile(prefix="harness-work-", suffix=".pkl", delete=False)
    try:
        with work:
            pickle.dump((function, args), work, protocol=pickle.HIGHEST_PROTOCOL)
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
        with sigint_deferred():  # the mask is inherited: Ctrl-C is the parent's to handle
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
