"""The command line of `make reproduce`: ``python -m dps_cli.pipeline.reproduce [options]``.

Parses the options, runs `dps_cli.pipeline.reproduce.reproduce` with rich progress bars (or
submits it to Slurm), and prints the paper-style table on stdout; logs go to stderr. Errors the
user can fix exit 2 with one sentence, other deliberate failures 1, Ctrl-C 130 (a rerun resumes).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from dps_cli.errors import UserError
from dps_cli.pipeline.reproduce import STAGES, ReproduceOptions, reproduce
from dps_cli.pipeline.sample import ProgressCallback

if TYPE_CHECKING:
    from dps_cli.report.reproduce import ReproduceReport


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m dps_cli.pipeline.reproduce`` (what `make reproduce` calls)."""
    from dps_cli.pipeline.profiles import PROFILES

    parser = argparse.ArgumentParser(
        prog="python -m dps_cli.pipeline.reproduce",
        description="Reproduce the DPS paper's pipeline end to end (resumable: rerun to continue).",
        epilog="Examples: make reproduce | make reproduce TASK=math500 | "
        "make reproduce PROFILE=paper SLURM=1",
    )
    parser.add_argument("--task", default="arith", help="arith (default) or math500.")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="Scale.")
    parser.add_argument(
        "--model", default=None, help="Model id, directory or alias (default: the profile's)."
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="Default runs/reproduce-<task>-<profile>."
    )
    parser.add_argument(
        "--reports-dir", type=Path, default=Path("reports"), help="Default reports."
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="Controller registry (default <out-dir>/controllers).",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps.")
    parser.add_argument(
        "--stage", default="all", choices=("all", *STAGES), help="Run one stage only."
    )
    parser.add_argument(
        "--slurm", action="store_true", help="Submit every stage as Slurm jobs and exit."
    )
    parser.add_argument(
        "--sbatch", action="append", default=[], metavar="KEY=VALUE",
        help="Extra #SBATCH option for every job, e.g. partition=cpu (repeatable; KEY= drops one).",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reproduction (or submit it to Slurm) and print the table; returns the exit code."""
    from rich.logging import RichHandler

    from dps_cli.errors import DpsError
    from dps_cli.pipeline.profiles import get_profile
    from dps_cli.pipeline.slurm import parse_sbatch

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[
        RichHandler(console=Console(stderr=True), show_path=False)])  # fmt: skip
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        args = parse_args(argv)
        options = ReproduceOptions(
            task=args.task, profile=get_profile(args.profile), model=args.model,
            out_dir=args.out_dir, reports_dir=args.reports_dir, registry=args.registry,
            device=args.device, sbatch=parse_sbatch(args.sbatch),
        )  # fmt: skip
        if args.slurm:
            return _submit(options, args.stage, errors)
        stages = STAGES if args.stage == "all" else (args.stage,)
        result = reproduce(options, stages, progress=_progress_bars)
    except UserError as err:
        errors.print(f"[bold red]error:[/] {err}")
        return 2
    except DpsError as err:
        errors.print(f"[bold red]error:[/] {err}")
        return 1
    except KeyboardInterrupt:
        errors.print(
            "[bold red]interrupted:[/] finished work is stored; rerun the same command to resume."
        )
        return 130
    if result.report is not None:
        _print_report(result.report, options.reports_dir)
    return 0


def _submit(options: ReproduceOptions, stage: str, errors: Console) -> int:
    from dps_cli.pipeline.reproduce_slurm import resume_command, submit_reproduction

    if stage != "all":
        raise UserError("--slurm submits the whole pipeline; it cannot be combined with --stage.")
    jobs = submit_reproduction(options)
    for job in jobs:
        errors.print(f"{job.name}: job {job.job_id} ({job.script})")
    Console().print(f"Submitted {len(jobs)} jobs; the report job is {jobs[-1].job_id}.")
    Console(soft_wrap=True).print(
        "A failed or cancelled job cancels the jobs after it. Once none is left in the queue, "
        f"resume (finished work is skipped) with:\n{resume_command(options)}",
        highlight=False, markup=False,
    )  # fmt: skip
    return 0


def _print_report(report: ReproduceReport, reports_dir: Path) -> None:
    """The paper-style table on stdout, with where the report went."""
    from dps_cli.report.reproduce import results_table

    out = Console()
    if not out.is_terminal:  # a log file or pipe: don't squeeze the table into 80 columns
        out = Console(width=160)
    out.print(results_table(report.rows, title=f"DPS reproduction: {report.task}, {report.model}"))
    out.print(report.scale_note, highlight=False, soft_wrap=True)
    out.print(f"Report: {reports_dir / 'reproduce.md'}", highlight=False, soft_wrap=True)


def _progress_bars(_: str) -> AbstractContextManager[ProgressCallback | None]:
    from dps_cli.cli.progress import sample_progress

    return sample_progress()
