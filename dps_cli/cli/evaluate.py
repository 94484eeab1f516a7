"""`dps evaluate`: grade runs and print accuracy, cost and paired comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dps_cli.cli.console import stdout_console


def evaluate(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN",
            help="Run directories written by `dps sample`; the first is the baseline.",
            show_default=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    regrade: Annotated[
        bool, typer.Option("--regrade", help="Grade again even if grades.parquet is current.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Grading processes, for tasks that grade in parallel."
        ),
    ] = None,
    unsafe_sandbox: Annotated[
        bool,
        typer.Option(
            "--unsafe-sandbox",
            help="Grade HumanEval where bubblewrap cannot start, with only resource limits and "
            "a Python-level guard: generated code can then reach your files and network.",
        ),
    ] = False,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            help="Judge AlpacaEval runs offline with this model (id, directory, .gguf or alias).",
        ),
    ] = None,
    judge_device: Annotated[
        str, typer.Option("--judge-device", help="Device of the --judge model.")
    ] = "auto",
    vote: Annotated[
        int | None,
        typer.Option(
            "--vote",
            help="Also report maj@N and best-of-N (by the base model's mean log p) over the first "
            "N seeds of each question of every run.",
        ),
    ] = None,
    match: Annotated[
        Path | None,
        typer.Option(
            "--match",
            help="Pick N so that voting over the temperature/greedy runs costs the tokens per "
            "question of this run (one of RUN).",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write accuracy against tokens per question as a PNG."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Device that scores log p for --vote/--match/--plot.")
    ] = "auto",
) -> None:
    """Grade runs and report accuracy [95% CI], time, k, tokens and acceptance per run.

    Every run after the first is compared with the first on their shared questions
    (accuracy difference with a paired bootstrap interval, and the time ratio).

    Examples:

      dps evaluate runs/math500-k8 runs/math500-dps-gbdt

      dps evaluate runs/alpacaeval-power --judge smollm2-135m

      dps evaluate runs/math500-k8 runs/math500-t025 --match runs/math500-k8 --plot acc.png
    """
    from dps_cli.pipeline.evaluate import evaluate_runs
    from dps_cli.report.tables import (
        comparison_table,
        evaluation_notes,
        evaluation_table,
        voting_notes,
        voting_table,
    )

    if plot is not None:
        from dps_cli.runs.atomic import check_output_file

        check_output_file(plot, "--plot")  # before grading, so no work is lost to a bad path
    with Console(stderr=True).status("Grading and summarising runs..."):
        report = evaluate_runs(
            runs, regrade=regrade, workers=workers, judge=judge, judge_device=judge_device,
            vote=vote, match=match, curves=plot is not None, device=device,
            unsafe_sandbox=unsafe_sandbox,
        )  # fmt: skip
    if plot is not None:
        from dps_cli.report.plots import plot_accuracy_tokens

        plot_accuracy_tokens(report, plot)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return
    out = stdout_console()
    out.print(evaluation_table(report))
    table = comparison_table(report)
    if table is not None:
        out.print(table)
    votes = voting_table(report)
    if votes is not None:
        out.print(votes)
    for note in evaluation_notes(report) + voting_notes(report):
        out.print(note, highlight=False, soft_wrap=True, markup=False)
    if plot is not None:
        out.print(f"Plot: {plot}", highlight=False, soft_wrap=True, markup=False)
