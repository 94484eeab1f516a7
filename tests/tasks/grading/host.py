"""What the sandbox tests look up on the host, outside any sandbox."""

from __future__ import annotations

from pathlib import Path


def processes_named(name: str) -> list[int]:
    """Host pids whose command name is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
