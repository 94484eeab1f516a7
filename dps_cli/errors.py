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
