"""How a run is stopped: Ctrl-C (SIGINT) and `kill PID` (SIGTERM) both raise KeyboardInterrupt in
the driver, and a stop that lands while the driver stores a finished cell waits until the cell is
stored, so a stop never costs a cell already computed."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """`kill PID` ends a run as Ctrl-C does (finished cells kept, the run marked interrupted, the
    running cell's process killed): a scheduler stops jobs so, and a run started with `nohup … &`
    ignores SIGINT, so SIGTERM is its only clean stop."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def stops_held(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Record a stop signal that arrives in here instead of acting on it, and deliver it, to the
    handler of the moment, when the block ends (the first one only: a second Ctrl-C asks for
    the same stop). Only the main thread can change signal handlers; elsewhere this holds
    nothing back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def record(signum, frame):
        caught.append(signum)

    previous = {number: signal.signal(number, record) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if caught:
        signal.raise_signal(caught[0])  # as if it arrived now
