"""`dps doctor`: one table of what this machine offers dps (devices, backends, sandbox, Slurm, files)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from dps_cli.cli.console import stdout_console

if TYPE_CHECKING:
    from dps_cli.doctor import Check

JsonOption = Annotated[bool, typer.Option("--json", help="Print the checks as JSON (for scripts).")]
STYLES = {"yes": "green", "no": "red", "warn": "yellow"}


def doctor(as_json: JsonOption = False) -> None:
    """Check what this machine offers: torch and its device, backends, sandbox, Slurm, files.

    Every line says yes, no or warn, and why. It always exits 0: a "no" is information, not a
    failure.

    Example: dps doctor --json
    """
    from dps_cli.doctor import run_checks

    checks = run_checks()
    if as_json:
        typer.echo(json.dumps({"checks": [check.to_dict() for check in checks]}, indent=2))
        return
    stdout_console().print(checks_table(checks))


def checks_table(checks: list[Check]) -> Table:
    """The checks as a rich table, a rule between groups; every cell is plain text, so paths
    print literally (a directory named ``[red]`` stays ``[red]``)."""
    table = Table(show_edge=False)
    for column in ("check", "status", "detail"):
        table.add_column(column, overflow="fold")
    for index, check in enumerate(checks):
        last_of_group = index + 1 == len(checks) or checks[index + 1].group != check.group
        table.add_row(Text(check.name), Text(check.status, style=STYLES[check.status]),
                      Text(check.detail), end_section=last_of_group)  # fmt: skip
    return table
