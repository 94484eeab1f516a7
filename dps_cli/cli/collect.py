"""`dps collect` (not built yet: see the open issue)."""

from __future__ import annotations

from dps_cli.errors import DpsError


def collect() -> None:
    """Not built yet: this command lands with its issue."""
    raise DpsError("'dps collect' is not built yet in this version.")
