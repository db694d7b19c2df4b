"""Stop requests: SIGTERM or SIGINT ask a run to save its checkpoint at the next step and end; a second one ends it
at once.

`StopFlag` is the training loop's: while the loop runs, a signal sets the flag and the loop checkpoints at the next
step boundary (engine/train.py). `watch()` covers a whole process that runs several runs (a study, a study's job
process): a signal outside any loop is kept as `StopFlag.pending`, so a run being set up stops at its first step and
the study starts no new run (studies/runner.py). Torch-free, so a study's planning process can import it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """Raised after the checkpoint on a signal, so the record says where to resume."""


def name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "an interrupt"


def install(handler: Callable) -> dict[int, Any]:
    """Set `handler` for SIGTERM and SIGINT; returns the old handlers. Only the main thread may set handlers: in any
    other (a launcher running jobs in threads) nothing is set, and the process keeps its own handling."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in SIGNALS}


def restore(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


class AtOnce(KeyboardInterrupt):
    """A second stop signal: raised wherever the process is, without waiting for a checkpoint."""


def at_once(signum: int) -> AtOnce:
    return AtOnce(f"a second {name(signum)}: stopped at once, without a new checkpoint")


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the next step boundary and stops cleanly. A signal that came
    before the loop (`pending`) sets it from the start; a second signal raises KeyboardInterrupt at once."""

    pending: ClassVar[int | None] = None  # the first stop signal this process got (while watched, or in a loop)
    watched: ClassVar[int] = 0  # how many `watch()` blocks are open: outside them a request ends with its loop

    def __init__(self) -> None:
        self.signal: int | None = StopFlag.pending
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        self._old = install(self._set)
        return self

    def _set(self, signum, frame) -> None:
        if self.signal is not None:  # the user asked twice: don't wait for the step to end
            raise at_once(signum)
        self.signal = signum
        StopFlag.pending = StopFlag.pending or signum

    def __exit__(self, *exc) -> None:
        restore(self._old)
        if not StopFlag.watched:  # a plain run: its request was its own
            StopFlag.pending = None


@contextmanager
def watch() -> Iterator[None]:
    """While the block runs, SIGTERM/SIGINT in this process request a stop (`StopFlag.pending`) instead of ending it
    wherever it is; a second one raises KeyboardInterrupt at once. The old handlers come back afterwards."""
    StopFlag.pending = None  # an earlier block's request (a reused Ray worker) is not this one's

    def request(signum, frame) -> None:
        if StopFlag.pending is not None:
            raise at_once(signum)
        StopFlag.pending = signum

    old = install(request)
    StopFlag.watched += 1
    try:
        yield
    finally:
        StopFlag.watched -= 1
        StopFlag.pending = None  # asked of this block only: a later run in this process (a test, a notebook) trains
        restore(old)


def requested() -> int | None:
    """The stop signal this process got, if any."""
    return StopFlag.pending
