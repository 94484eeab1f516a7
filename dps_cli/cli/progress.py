"""Rich progress display for long commands (stderr): problems done, tokens/s, acceptance, ETA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def sample_progress() -> Iterator[Callable[[Any], None]]:
    """Yields a callback taking a `SampleProgress`; renders a bar on stderr."""
    progress = Progress(
        TextColumn("[bold]sampling"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} tok/s"), TextColumn("acc {task.fields[acceptance]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False,
    )
    task_id = None

    def update(state: Any) -> None:
        nonlocal task_id
        acceptance = "-" if state.acceptance is None else f"{state.acceptance:.2f}"
        if task_id is None:
            task_id = progress.add_task("sample", total=state.total, completed=state.done,
                                        rate="0", acceptance=acceptance)
        progress.update(task_id, completed=state.done, rate=f"{state.tokens_per_s:.0f}", acceptance=acceptance)

    with progress:
        yield update
