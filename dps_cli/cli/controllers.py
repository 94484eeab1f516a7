"""`dps controllers list|show|remove` (not built yet: see the open issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Trained DPS controllers in the registry (not built yet).", no_args_is_help=True)
