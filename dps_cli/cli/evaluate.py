"""`dps evaluate` (not built yet: see the open issue)."""

from __future__ import annotations

from dps_cli.errors import DpsError


def evaluate() -> None:
    """Not built yet: this command lands with its issue."""
    raise DpsError("'dps evaluate' is not built yet in this version.")
