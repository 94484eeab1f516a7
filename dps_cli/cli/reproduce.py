"""`dps reproduce` (what `make reproduce` runs): the paper's pipeline end to end, or one stage.

Runs `dps_cli.reproduce.stages.reproduce` with rich progress bars (or submits it to Slurm) and
prints the paper-style table on stdout; logs go to stderr.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dps_cli.cli.console import stdout_console
from dps_cli.cli.options import DeviceOption, SbatchOption
from dps_cli.reproduce.profiles import PROFILES
from dps_cli.reproduce.runs import DEFAULT_PROFILE, DEFAULT_REPORTS, DEFAULT_TASK, STAGES

if TYPE_CHECKING:
    from dps_cli.pipeline.sample import ProgressCallback
    from dps_cli.reproduce.runs import ReproduceOptions
    from dps_cli.reproduce.table import ReproduceReport

ALL_STAGES = "all"
ProfileChoice = Enum("ProfileChoice", {name: name for name in PROFILES}, type=str)  # type: ignore[misc]
StageChoice = Enum("StageChoice", {name: name for name in (ALL_STAGES, *STAGES)}, type=str)  # type: ignore[misc]


def reproduce(
    task: Annotated[str, typer.Option(help="Task of the reproduction: arith or math500.")] = DEFAULT_TASK,
    profile: Annotated[ProfileChoice, typer.Option(help="Scale: cpu, cpu-large, paper or smoke (docs/results.md gives their cost).")] = ProfileChoice[DEFAULT_PROFILE],
    model: Annotated[str | None, typer.Option(help="Model id, directory or alias (default: the profile's).", show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Run directory; an earlier one is resumed (default: runs/reproduce-<task>-<profile>).", show_default=False)] = None,
    reports_dir: Annotated[Path, typer.Option(help="Where reproduce.md and the figures go.")] = DEFAULT_REPORTS,
    registry: Annotated[Path | None, typer.Option(help="Controller registry (default: <out-dir>/controllers).", show_default=False)] = None,
    device: DeviceOption = "auto",
    stage: Annotated[StageChoice, typer.Option(help="Run one stage only.")] = StageChoice[ALL_STAGES],
    slurm: Annotated[bool, typer.Option("--slurm", help="Submit every stage as Slurm jobs and exit.")] = False,
    sbatch: SbatchOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the table's rows as JSON instead.")] = False,
) -> None:
    """Reproduce the DPS paper's pipeline end to end (resumable: rerun to continue).

    Examples:

      dps reproduce                       (what `make reproduce` runs)

      dps reproduce --task math500 --profile paper --slurm --sbatch partition=gpu

      dps reproduce --stage report --out-dir runs/reproduce-arith-cpu
    """  # fmt: skip
    from rich.logging import RichHandler

    from dps_cli.errors import UserError
    from dps_cli.pipeline.slurm import parse_sbatch
    from dps_cli.reproduce.profiles import get_profile
    from dps_cli.reproduce.runs import ReproduceOptions
    from dps_cli.reproduce.stages import reproduce as run_reproduce

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[
        RichHandler(console=Console(stderr=True), show_path=False)])  # fmt: skip
    options = ReproduceOptions(
        task=task, profile=get_profile(profile.value), model=model, out_dir=out_dir,
        reports_dir=reports_dir, registry=registry, device=device, sbatch=parse_sbatch(sbatch or []),
    )  # fmt: skip
    if slurm:
        if stage.value != ALL_STAGES:
            raise UserError("--slurm submits the whole pipeline; it cannot be combined with --stage.")
        _submit(options)
        return
    stages = STAGES if stage.value == ALL_STAGES else (stage.value,)
    result = run_reproduce(options, stages, progress=_progress_bars)
    if result.report is not None and json_output:
        import json

        typer.echo(json.dumps(result.report.to_dict(), indent=2))
    elif result.report is not None:
        _print_report(result.report, options.reports_dir)


def _submit(options: ReproduceOptions) -> None:
    from dps_cli.reproduce.slurm import resume_command, submit_reproduction

    jobs = submit_reproduction(options)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    for job in jobs:
        errors.print(f"{job.name}: job {job.job_id} ({job.script})", markup=False)
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"Submitted {len(jobs)} jobs; the report job is {jobs[-1].job_id}.")
    out.print("A failed or cancelled job cancels the jobs after it. Once none is left in the queue, "
              f"resume (finished work is skipped) with:\n{resume_command(options)}", markup=False)  # fmt: skip


def _print_report(report: ReproduceReport, reports_dir: Path) -> None:
    """The paper-style table on stdout, with where the report went."""
    from dps_cli.reproduce.table import results_table

    out = stdout_console()
    out.print(results_table(report.rows, title=f"DPS reproduction: {report.task}, {report.model}"))
    out.print(report.scale_note, highlight=False, soft_wrap=True, markup=False)
    out.print(f"Report: {reports_dir / 'reproduce.md'}", highlight=False, soft_wrap=True, markup=False)


def _progress_bars(_: str) -> AbstractContextManager[ProgressCallback | None]:
    from dps_cli.cli.progress import sample_progress

    return sample_progress()
