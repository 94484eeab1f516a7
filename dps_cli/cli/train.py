"""`dps train-controller` (not built yet: see the open issue)."""

from __future__ import annotations

from dps_cli.errors import DpsError


def train_controller() -> None:
    """Not built yet: this command lands with its issue."""
    raise DpsError("'dps train-controller' is not built yet in this version.")
