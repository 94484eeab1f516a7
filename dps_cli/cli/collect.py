"""`dps collect`: build a controller training table from fixed-k power runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def collect(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Fixed-k power run directories with k in 2, 4, 6, 8 (one must be k=8), "
            "all of one task, model and alpha.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Parquet table to write.", show_default=False)],
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Grading processes for runs not graded yet."),
    ] = None,
) -> None:
    """Label every checkpoint of fixed-k runs with enough = correct(k) or not correct(8).

    Runs without current grades are graded first.

    Example: dps collect runs/k2 runs/k4 runs/k6 runs/k8 --out table.parquet
    """
    from dps_cli.pipeline.collect import collect as build_table

    with Console(stderr=True).status("Collecting checkpoints..."):
        summary = build_table(runs, out, workers=workers)
    typer.echo(
        f"Wrote {summary.rows} rows ({summary.questions} questions, "
        f"{summary.positives} positive labels) to {summary.path}."
    )
    if summary.dropped_rows:
        typer.echo(f"Dropped {summary.dropped_rows} rows whose (question, seed) has no k=8 sample.")
