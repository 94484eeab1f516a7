"""The console results are printed on: stdout, wide enough for our tables when not a terminal."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Piped output (logs, CI, `| less`) has no width; rich would assume 80 columns and squeeze tables.
PIPED_WIDTH = 160


def stdout_console() -> Console:
    """A rich Console on stdout; 160 columns when stdout is not a terminal and COLUMNS is unset."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=PIPED_WIDTH)
