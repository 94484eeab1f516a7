"""`dps passk`: pass@k tables (and an optional plot) for runs with several seeds per question."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dps_cli.cli.console import stdout_console


def passk(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN",
            help="Run directories written by `dps sample` with several seeds.",
            show_default=False,
        ),
    ],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw the curves to this PNG file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Print pass@k for k = 1 .. seeds per question (unbiased estimator, mean over questions).

    Questions with fewer than k graded samples are left out of pass@k and listed below the table.

    Example: dps passk runs/math500-k8 runs/math500-temp --plot passk.png
    """
    from dps_cli.pipeline.passk import passk_table
    from dps_cli.report.tables import passk_notes, passk_rich_table

    if plot is not None:
        from dps_cli.runs.atomic import check_output_file

        check_output_file(plot, "--plot")
    err = Console(stderr=True)
    with err.status("Grading and counting..."):
        report = passk_table(runs)
    if plot is not None:
        from dps_cli.report.plots import plot_passk

        plot_passk(report, plot)
        err.print(f"Wrote {plot}", highlight=False, markup=False)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return
    out = stdout_console()
    out.print(passk_rich_table(report))
    for note in passk_notes(report):
        out.print(note, highlight=False, soft_wrap=True, markup=False)
