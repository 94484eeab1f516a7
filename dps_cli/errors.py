"""Errors the library raises on purpose.

A `UserError` is a mistake the user can fix (unknown task, bad flag, unreadable file). The CLI
prints its message and hint as one or two sentences and exits with code 2; every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class DpsError(Exception):
    """Base class for the errors dps raises deliberately."""


class UserError(DpsError):
    """A problem with the user's input, reported without a traceback (exit code 2)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} {self.hint}"


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGINT) received while `dps sample` ran; finished work is saved.

    A `KeyboardInterrupt` so that it passes every ``except Exception`` on its way up. The CLI
    prints ``message`` and exits with ``exit_code`` (128 + the signal number: 143 for SIGTERM,
    130 for SIGINT), as a shell reports a process the signal stopped.
    """

    def __init__(self, signum: int, message: str | None = None) -> None:
        import signal

        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.message = message or (
            f"Stopped by {self.signal_name}; every finished sample is saved. "
            "Rerun the same command to resume."
        )
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal stopped."""
        return 128 + self.signum
