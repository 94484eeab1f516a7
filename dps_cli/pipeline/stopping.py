"""SIGTERM and SIGINT become an exception at a safe point, so finished samples are written first.

Slurm stops and preempts jobs with SIGTERM (then SIGKILL after its KillWait, 30 s by default);
Ctrl-C sends SIGINT. Python's default SIGTERM action ends the process at once and loses every
finished sample still in the write buffer. While `stop_signals()` is active, both signals raise
`Interrupted` in the main thread, except inside a `StopSignals.deferred()` block (turning a
finished chain into a row, writing a part): there the signal is remembered and raised when the
block ends, so a row is never half added and a part never written twice. After `ignore()`
(the final flush) further signals are only remembered.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dps_cli.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """The signal handler's state: whether a stop may be raised now, and one that is pending."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._deferring = 0
        self._ignoring = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The installed handler: raise now, or remember the signal for later."""
        if self._deferring or self._ignoring:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that a stop signal must not cut in half; a pending stop is raised after it."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and not self._ignoring and self.pending is not None:
            raise Interrupted(self.pending)

    def ignore(self) -> None:
        """From now on only remember signals (the process is already stopping)."""
        self._ignoring = True


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Install the handler for SIGTERM and SIGINT; the previous handlers come back afterwards.

    Outside the main thread (where Python cannot install handlers) nothing is installed and the
    returned state never raises.
    """
    state = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {signum: signal.signal(signum, state.handle) for signum in STOP_SIGNALS}
    for handler in previous.values():
        if isinstance(handler, EarlyStop):
            handler.started = True  # once restored, it must not say that nothing was drawn
    try:
        yield state
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: What `dps sample` says when stopped before `stop_signals()` took over (imports, data, model).
EARLY_STOP_MESSAGE = ("Stopped by {signal} before any sample was drawn; nothing was lost. "
                      "Rerun the same command to start.")
#: What it says when stopped after `stop_signals()` gave the handlers back (the run has ended).
LATE_STOP_MESSAGE = ("Stopped by {signal} as the run ended; every finished sample is saved. "
                     "Rerun the same command to resume.")


class EarlyStop:
    """The handler of `stop_before_start`: before sampling starts a stop raises `Interrupted`
    with `EARLY_STOP_MESSAGE`; once `stop_signals()` has taken over (``started``), a stop that
    arrives after it gave the handlers back (releasing the lock, the last progress frame, or
    while its own `Interrupted` is on its way up) is only remembered, so it neither replaces
    that exception nor claims that nothing was drawn."""

    def __init__(self) -> None:
        self.started = False
        self.pending: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.started:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum, EARLY_STOP_MESSAGE.format(signal=signal.Signals(signum).name))


@contextmanager
def stop_before_start() -> Iterator[None]:
    """SIGTERM and SIGINT raise `Interrupted` with `EARLY_STOP_MESSAGE` while the block runs,
    until `stop_signals()` takes over.

    `dps sample` enters this before its heavy imports (torch, the model): without it a stop in
    those first seconds ends the process silently (SIGTERM's default action) or with a traceback
    (SIGINT). `stop_signals()` replaces the handler while chains run; a stop after it (see
    `EarlyStop`) is raised with `LATE_STOP_MESSAGE` when the block ends without an exception.
    Outside the main thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = EarlyStop()
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, earlier in previous.items():
            signal.signal(signum, earlier)
    if handler.pending is not None:
        name = signal.Signals(handler.pending).name
        raise Interrupted(handler.pending, LATE_STOP_MESSAGE.format(signal=name))
